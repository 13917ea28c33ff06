"""Trivial baselines, rendered exactly like the model's output so the evaluator treats them alike.

For every test clip and ground-truth frame t, a stand-in face is composited over the frame's own crop
with the lower-face mask G (filled hull of jaw 2..14 and p33, Gaussian-blurred, as the generator's
composite) and pasted back through the crop transform with the same feathered edge:
    reference_paste  the crop of one random frame of the same clip (seeded by the clip id): the
                     mouth never moves with the audio, the face is real
    mean_face        the per-pixel mean of all the clip's crops: a blurred, average mouth
A generator that does not beat these has learned nothing from the audio or the references.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from g4g.infer.testset import TestClip, run_clips, stored_track, test_clips

log = logging.getLogger(__name__)

KINDS = ("reference_paste", "mean_face")


def stand_in_face(clip: TestClip, kind: str, seed: int = 0) -> tuple[np.ndarray, dict]:
    """(416, 320, 3) float32 face that replaces the lower face in every frame, and what it is."""
    from g4g.data.shards import FrameReader
    from g4g.utils import stable_seed

    reader = FrameReader(clip.frames_path)
    if kind == "reference_paste":
        r = int(np.random.default_rng(stable_seed(seed, clip.clip_id)).integers(clip.n_frames))
        return reader.get(clip.clip_id, r, ["image"])["image"].astype(np.float32), {"reference_frame": r}
    if kind == "mean_face":
        acc = None
        for f in range(clip.n_frames):
            img = reader.get(clip.clip_id, f, ["image"])["image"].astype(np.float64)
            acc = img if acc is None else acc + img
        return (acc / clip.n_frames).astype(np.float32), {"frames": clip.n_frames}
    raise ValueError(f"unknown reference kind {kind!r}; known: {', '.join(KINDS)}")


def composite_mask(crop_lmk: np.ndarray, sigma_frac: float = 0.04, div: int = 2) -> np.ndarray:
    """G for (n, 68, 2) landmarks at 416 x 320: rendered at 1/div size (smooth, so it upsamples within
    a few % at the hull border, 30x faster) and resized: (n, 416, 320, 1) float32."""
    import cv2

    from g4g.models.composite import lower_face_mask

    small = lower_face_mask(torch.from_numpy((crop_lmk + 0.5) / div - 0.5), (416 // div, 320 // div), sigma_frac)
    return np.stack([cv2.resize(g, (320, 416), interpolation=cv2.INTER_LINEAR) for g in small[:, 0].numpy()])[..., None]


def render_reference(clip: TestClip, path: Path, kind: str, feather: float = 16.0, seed: int = 0,
                     chunk: int = 32, sigma_frac: float = 0.04, crf: int = 18, preset: str = "veryfast") -> int:
    """Write the baseline video of one clip (its own audio muxed); returns the number of frames."""
    import tempfile

    from g4g.data.crops import warp_crop
    from g4g.infer.frames import ChunkReader
    from g4g.infer.paste import paste_face
    from g4g.io.audio import write_wav
    from g4g.io.video import VideoWriter

    track = stored_track(clip)
    face, _ = stand_in_face(clip, kind, seed)
    T = len(track)
    with ChunkReader(clip.source, track.index_map, cache_frames=chunk) as reader, \
            tempfile.TemporaryDirectory(prefix="g4g-ref-") as tmp:
        wav = Path(tmp) / "audio.wav"
        write_wav(wav, clip.audio)
        first = reader.get([0])[0]
        with VideoWriter(path, 25, (first.shape[1], first.shape[0]), audio=wav, crf=crf, preset=preset) as writer:
            for c0 in range(0, T, chunk):
                idx = np.arange(c0, min(T, c0 + chunk))
                frames = reader.get(idx)
                G = composite_mask(track.crop_landmarks[idx], sigma_frac)  # (n, 416, 320, 1)
                for f, g, j in zip(frames, G, idx):
                    comp = g * face + (1 - g) * warp_crop(f, track.affine[j]).astype(np.float32)
                    writer.write(paste_face(f, comp, track.affine[j], feather))
    return T


def reference_videos(clips_parquet: str, resampled: list[str], kind: str, out_dir: str, index_out: str,
                     rejects_out: str, feather: float = 16.0, seed: int = 0, crf: int = 18,
                     preset: str = "veryfast") -> list[dict]:
    """Rule `reference_videos`: the `kind` baseline for every test clip."""
    if kind not in KINDS:
        raise ValueError(f"unknown reference kind {kind!r}; known: {', '.join(KINDS)}")
    rows = run_clips(test_clips(clips_parquet, resampled),
                     lambda clip, path: render_reference(clip, path, kind, feather, seed, crf=crf, preset=preset),
                     out_dir, index_out, rejects_out, f"reference_{kind}")
    log.info("%s: %d/%d clips rendered", kind, sum(r["status"] == "ok" for r in rows), len(rows))
    return rows
