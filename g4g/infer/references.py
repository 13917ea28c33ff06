"""Trivial baselines, rendered exactly like the model's output so the evaluator treats them alike.

For every test clip and ground-truth frame t, a stand-in face is pasted back through the crop transform
with the feathered edge, weighted by the lower-face mask G (filled hull of jaw 2..14 and p33,
Gaussian-blurred, as the generator's composite), so only the lower face is replaced, exactly as the
model's output is pasted with `infer.paste_region: lower_face` (the default):
    reference_paste  the crop of one random frame of the same clip (seeded by the clip id): the
                     mouth never moves with the audio, the face is real
    mean_face        the per-pixel mean of all the clip's crops: a blurred, average mouth
A generator that does not beat these has learned nothing from the audio or the references.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from g4g.data.shards import FrameReader
from g4g.infer.frames import ChunkReader
from g4g.infer.paste import lower_face_alpha, paste_face
from g4g.infer.testset import TestClip, run_clips, setting_dir, stored_track, test_clips
from g4g.infer.timeline import reference_frames
from g4g.io.audio import write_wav
from g4g.io.video import VideoWriter, remux_audio
from g4g.params import InferParams
from g4g.rejects import ClipError
from g4g.utils import scratch_dir, stable_seed

log = logging.getLogger(__name__)

KINDS = ("reference_paste", "mean_face")


def stand_in_face(clip: TestClip, kind: str, seed: int = 0) -> tuple[np.ndarray, dict]:
    """(416, 320, 3) float32 face that replaces the lower face in every frame, and what it is."""

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


def render_reference(clip: TestClip, path: Path, kind: str, p: InferParams = InferParams(), seed: int = 0,
                     sigma_frac: float = 0.04) -> int:
    """Write the baseline video of one clip (its own audio muxed); returns the number of frames."""
    track = stored_track(clip)
    face, _ = stand_in_face(clip, kind, seed)
    T = len(track)
    ref_lmk = track.crop_landmarks[reference_frames(T)]  # G from the references, as G4G's paste-back
    chunk = p.chunk_frames
    with ChunkReader(clip.source, track.index_map, cache_frames=chunk) as reader, \
            scratch_dir("g4g-ref-") as tmp:
        wav = Path(tmp) / "audio.wav"
        write_wav(wav, clip.audio)
        first = reader.get([0])[0]
        with VideoWriter(path, 25, (first.shape[1], first.shape[0]), audio=wav, crf=p.crf, preset=p.preset,
                         threads=p.encode_threads, duration=T / 25) as writer:
            for c0 in range(0, T, chunk):
                idx = np.arange(c0, min(T, c0 + chunk))
                frames = reader.get(idx)
                G = lower_face_alpha(track.crop_landmarks[idx], ref_lmk, sigma_frac)  # (n, 416, 320, 1)
                for f, g, j in zip(frames, G, idx):
                    writer.write(paste_face(f, face, track.affine[j], p.feather, mask=g))
    return T


def reference_videos(clips_parquet: str, resampled: list[str], kind: str, out_dir: str, index_out: str,
                     rejects_out: str, p: InferParams = InferParams(), seed: int = 0) -> list[dict]:
    """Rule `reference_videos`: the `kind` baseline for every test clip."""
    if kind not in KINDS:
        raise ValueError(f"unknown reference kind {kind!r}; known: {', '.join(KINDS)}")

    def render(clip: TestClip, setting: str, audio: np.ndarray, path: Path) -> int:
        if setting == "reconstruction":
            return render_reference(clip, path, kind, p, seed)
        # a baseline's frames never depend on the audio (what the cross-driven and silent settings show): its
        # reconstruction video with the driving audio muxed, the video stream copied
        own = setting_dir(out_dir, "reconstruction") / path.name
        if not own.exists():
            raise ClipError(f"no reconstruction render to reuse ({own})")
        with scratch_dir("g4g-ref-") as tmp:
            write_wav(Path(tmp) / "audio.wav", audio)
            n = len(stored_track(clip))  # the frames render_reference wrote
            remux_audio(own, Path(tmp) / "audio.wav", path, n / 25)
        return n

    rows = run_clips(test_clips(clips_parquet, resampled), render, out_dir, index_out, rejects_out,
                     f"reference_{kind}", seed)
    log.info("%s: %d/%d clips rendered", kind, sum(r["status"] == "ok" for r in rows), len(rows))
    return rows
