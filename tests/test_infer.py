"""Inference: paste-back, the ping-pong timeline, chunked frame access, bad input, rejects rows. `g4g lipsync`
end to end (real clip, damaged files, user errors, frame rates): tests/test_lipsync.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ffmpeg, make_video


# ------------------------------------------------------------------------------------------ geometry
def test_paste_back_of_the_input_crop_reproduces_the_frame():
    import cv2
    from skimage import data

    from g4g.data.crops import box_to_affine, warp_crop
    from g4g.infer.paste import feather_alpha, footprint, paste_face

    frame = cv2.resize(data.astronaut(), (960, 720), interpolation=cv2.INTER_AREA)
    A = box_to_affine(np.array([[300.0, 100.0, 300 + 320 * 1.1, 100 + 416 * 1.1]]))[0]
    out = paste_face(frame, warp_crop(frame, A), A, feather=16)
    x0, y0, x1, y1 = footprint(A, frame.shape[:2])
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], frame[outside])  # untouched, bit for bit
    alpha = np.zeros(frame.shape[:2], np.float32)
    alpha[y0:y1, x0:x1] = feather_alpha(A, (x0, y0, x1, y1), 16)
    keep = (alpha == 0) | (alpha == 1)  # everything but the feathered edge
    err = np.mean((out[keep].astype(float) - frame[keep]) ** 2)
    assert 10 * np.log10(255 ** 2 / err) > 40
    # a face at the demo model size lands in the same place (resampling only)
    small = cv2.resize(warp_crop(frame, A), (80, 104), interpolation=cv2.INTER_AREA)
    assert np.abs(paste_face(frame, small, A).astype(float) - frame).mean() < 4


def crop_face_landmarks() -> np.ndarray:
    """(1, 68, 2) landmarks in 416 x 320 crop pixels: jaw 0..16 on a half ellipse round the lower face
    (bottom at row 390), nose base p33 at (160, 240); the other points (unused by G) at the crop centre."""
    lmk = np.full((1, 68, 2), [160.0, 208.0])
    t = np.linspace(np.pi, 0, 17)  # jaw from the left ear down round the chin to the right ear
    lmk[0, :17] = np.stack([160 + 130 * np.cos(t), 200 + 190 * np.sin(t)], 1)
    lmk[0, 33] = [160.0, 240.0]
    return lmk


def frame_and_affine():
    """A 960 x 720 test frame and the (2, 3) transform of a 1.1 x (320 x 416) crop box at (300, 100)."""
    import cv2
    from skimage import data

    from g4g.data.crops import box_to_affine

    frame = cv2.resize(data.astronaut(), (960, 720), interpolation=cv2.INTER_AREA)
    return frame, box_to_affine(np.array([[300.0, 100.0, 300 + 320 * 1.1, 100 + 416 * 1.1]]))[0]


def mask_in_frame(g: np.ndarray, A: np.ndarray, frame_shape) -> np.ndarray:
    """(H, W) value of the crop-space mask g (416, 320, 1) at each frame pixel (nearest; 0 off the crop)."""
    ys, xs = np.mgrid[0:frame_shape[0], 0:frame_shape[1]].astype(np.float64)
    cx = np.round(A[0, 0] * xs + A[0, 1] * ys + A[0, 2]).astype(int)
    cy = np.round(A[1, 0] * xs + A[1, 1] * ys + A[1, 2]).astype(int)
    on = (cx >= 0) & (cx < 320) & (cy >= 0) & (cy < 416)
    return np.where(on, g[np.clip(cy, 0, 415), np.clip(cx, 0, 319), 0], 0.0)


def test_lower_face_alpha_is_the_generators_mask_at_the_crop_size():
    import torch

    from g4g.infer.paste import lower_face_alpha
    from g4g.models.composite import lower_face_mask

    lmk = crop_face_landmarks()
    g = lower_face_alpha(lmk, lmk)[0, ..., 0]  # (416, 320), rendered at half size and resized
    full = lower_face_mask(torch.from_numpy(lmk), torch.from_numpy(lmk)[None], (416, 320))[0, 0].numpy()
    assert g.shape == (416, 320) and np.abs(g - full).max() < 0.05
    assert g[310, 160] == pytest.approx(1.0)  # mouth: > 3 sigma (38 px) inside the hull
    assert np.all(g[:190] == 0)  # eyes and brows: exactly 0 beyond 3 sigma of the hull


def test_paste_through_the_mask_replaces_only_the_lower_face():
    import cv2

    from g4g.infer.paste import lower_face_alpha, paste_face

    frame, A = frame_and_affine()
    g = lower_face_alpha(crop_face_landmarks(), crop_face_landmarks())[0]  # (416, 320, 1)
    black = np.zeros((104, 80, 3), np.uint8)  # a demo-size "generated" face, far from the frame
    out = paste_face(frame, black, A, feather=16, mask=g)
    whole = paste_face(frame, black, A, feather=16)
    g_at = mask_in_frame(g, A, frame.shape[:2])
    zero = cv2.dilate((g_at > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0  # 2 px margin: bilinear
    assert np.array_equal(out[zero], frame[zero])  # G = 0: the frame's own pixels, bit for bit
    changed = zero & ~np.all(whole == frame, axis=-1)
    assert changed.sum() > 50_000  # ... which the whole-crop paste replaces (upper face)
    core = cv2.erode((g_at > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert core.sum() > 5_000 and out[core].max() <= 1  # inside G: the face itself (black)
    assert np.array_equal(out[core], whole[core])


def test_lipsync_pastes_the_lower_face_or_the_whole_crop(tiny_checkpoint):
    from g4g.infer.lipsync import Lipsync
    from g4g.infer.paste import lower_face_alpha
    from g4g.params import InferParams

    frame, A = frame_and_affine()
    lmk = crop_face_landmarks()
    g_at = mask_in_frame(lower_face_alpha(lmk, lmk)[0], A, frame.shape[:2])
    face = np.zeros((1, 104, 80, 3), np.float32)
    out = {}
    for region in ("lower_face", "crop"):
        engine = Lipsync.from_checkpoint(tiny_checkpoint, InferParams(paste_region=region, device="cpu"))
        out[region] = engine.paste([frame], face, A[None], lmk, lmk)[0]
    eyes = (slice(150, 250), slice(400, 560))  # crop rows ~45..136: above G's support
    assert np.all(g_at[eyes] == 0) and frame[eyes].max() > 100
    assert np.array_equal(out["lower_face"][eyes], frame[eyes])
    assert out["crop"][eyes].max() <= 1
    mouth = (slice(420, 450), slice(460, 500))  # crop rows ~291..318, G = 1
    assert np.all(g_at[mouth] > 0.999)
    assert out["lower_face"][mouth].max() <= 1 and np.array_equal(out["lower_face"][mouth], out["crop"][mouth])
    with pytest.raises(ValueError, match="paste_region"):
        Lipsync.from_checkpoint(tiny_checkpoint, InferParams(paste_region="face"))


def fixed_track(n: int):
    """A Track of n frames with frame_and_affine's crop and crop_face_landmarks (no landmark detection)."""
    from g4g.infer.lipsync import Track

    _, A = frame_and_affine()
    return Track(np.arange(n), np.repeat(A[None], n, 0), np.repeat(crop_face_landmarks(), n, 0).astype(np.float32))


def test_overlapped_chunks_render_the_serial_frames_in_order(tiny_checkpoint, tmp_path, monkeypatch):
    """Decode/crop ahead and paste/encode behind in threads (several paste threads, 7 chunks): the frames
    that reach the encoder are the serial run's, bit for bit and in the same order."""
    import hashlib

    from g4g.infer.lipsync import Lipsync
    from g4g.io.video import VideoWriter
    from g4g.params import InferParams

    video = make_video(tmp_path / "v.mp4", n=25, size=(960, 720))
    seen: list[str] = []
    write = VideoWriter.write
    monkeypatch.setattr(VideoWriter, "write", lambda self, f: (seen.append(hashlib.sha1(f.tobytes()).hexdigest()),
                                                             write(self, f))[1])
    runs = {}
    for overlap, threads in ((False, 1), (True, 3)):
        seen.clear()
        p = InferParams(device="cpu", chunk_frames=4, overlap=overlap, paste_threads=threads)
        engine = Lipsync.from_checkpoint(tiny_checkpoint, p)
        stats = engine.run(video, video, tmp_path / f"o{overlap}.mp4", track=fixed_track(25), progress=False)
        runs[overlap] = list(seen)
        assert stats["n_frames"] == 25 and all(v > 0 for v in engine.timings.values())
    assert len(runs[True]) == 25 and len(set(runs[True])) > 1
    assert runs[True] == runs[False]


def test_a_failure_in_a_worker_thread_reaches_the_caller(tiny_checkpoint, tmp_path):
    """The read-ahead thread hits the end of a 12-frame video at frame 12 of a 25-frame track (13 frames that
    do not exist: more than video.max_damaged): the run raises that ClipError (not a hang, not a short video)
    and leaves no output file."""
    from g4g.infer.lipsync import Lipsync
    from g4g.params import InferParams
    from g4g.rejects import ClipError

    video = make_video(tmp_path / "short.mp4", n=12, size=(960, 720))
    audio = make_video(tmp_path / "audio.mp4", n=25, size=(64, 48))
    engine = Lipsync.from_checkpoint(tiny_checkpoint, InferParams(device="cpu", chunk_frames=4))
    with pytest.raises(ClipError, match="of 25 frames do not decode.*more than video.max_damaged"):
        engine.run(video, audio, tmp_path / "out.mp4", track=fixed_track(25), progress=False)
    assert not (tmp_path / "out.mp4").exists()


def test_pingpong_plays_forward_then_backward_and_trims():
    from g4g.infer.timeline import n_output_frames, pingpong_index, reference_frames

    assert pingpong_index(4, 11).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert pingpong_index(5, 3).tolist() == [0, 1, 2]  # shorter audio: trimmed
    assert pingpong_index(1, 3).tolist() == [0, 0, 0]
    idx = pingpong_index(125, 190)
    assert idx.max() == 124 and np.all(np.abs(np.diff(idx)) == 1)  # never a jump cut
    assert n_output_frames(int(7.616125 * 16000)) == 190
    assert reference_frames(100).tolist() == [0, 25, 50, 74, 99]


def test_chunk_reader_serves_any_order_like_a_full_decode(tmp_path):
    from g4g.infer.frames import ChunkReader
    from g4g.infer.timeline import pingpong_index
    from g4g.io.video import decode_all, frame_times, resample_index

    v = make_video(tmp_path / "v.mp4", n=40, size=(64, 48), fps=30, extra=("-g", "12"))
    idx = resample_index(frame_times(v), 25.0)
    full = decode_all(v, idx)
    order = pingpong_index(len(idx), 3 * len(idx))
    with ChunkReader(v, idx, cache_frames=8) as r:
        for c in range(0, len(order), 8):
            for k, img in zip(order[c:c + 8], r.get(order[c:c + 8])):
                assert np.array_equal(img, full[k])
        assert r.decoded < 3 * len(order)  # backward chunks reuse what the seek decoded


# ------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_raise_clear_reasons(tmp_path, tiny_checkpoint):
    from g4g.infer.lipsync import lipsync
    from g4g.rejects import ClipError

    no_face = make_video(tmp_path / "pattern.mp4", n=10, size=(64, 48))
    mute = make_video(tmp_path / "mute.mp4", n=10, size=(64, 48), audio=None)
    silent = make_video(tmp_path / "silent.mp4", n=10, size=(64, 48), audio="silence")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    cases = [(no_face, no_face, "no face"), (no_face, mute, "no audio stream"), (no_face, silent, "silent"),
             (corrupt, no_face, "cannot open")]
    for video, audio, reason in cases:
        with pytest.raises(ClipError, match=reason):
            lipsync(video, audio, tiny_checkpoint, tmp_path / "o.mp4", progress=False)
    assert not (tmp_path / "o.mp4").exists()


def test_a_failing_clip_becomes_a_rejects_row(tmp_path):
    import pyarrow.parquet as pq

    from g4g.infer.testset import TestClip, run_clips
    from g4g.rejects import ClipError

    clips = [TestClip(c, 5, "", f"{c}.mp4", np.arange(5), np.full(3200, i + 1, np.float32), 64, 48)
             for i, c in enumerate(("a", "b"))]
    heard = {}

    def render(clip, setting, audio, path):
        heard[(clip.clip_id, setting)] = float(audio.max())
        if clip.clip_id == "a":
            raise ClipError("no face detected in any of the 5 frames")
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.2", "-pix_fmt", "yuv420p", str(path))
        return 5

    rows = run_clips(clips, render, tmp_path / "v", tmp_path / "index.parquet", tmp_path / "rejects.parquet", "infer",
                     seed=0)
    assert [(r["setting"], r["status"]) for r in rows] == [
        ("reconstruction", "rejected"), ("reconstruction", "ok"), ("cross", "rejected"), ("cross", "ok"),
        ("silent", "rejected"), ("silent", "ok")]
    # own audio, the other clip's (two clips: the only derangement swaps them), silence
    assert heard == {("a", "reconstruction"): 1, ("b", "reconstruction"): 2, ("a", "cross"): 2, ("b", "cross"): 1,
                     ("a", "silent"): 0, ("b", "silent"): 0}
    assert [r["driver"] for r in rows if r["setting"] == "cross"] == ["b", "a"]
    rej = pq.read_table(tmp_path / "rejects.parquet").to_pylist()  # the clip, once: its reconstruction failed
    assert rej == [{"clip_id": "a", "stage": "infer", "reason": "no face detected in any of the 5 frames",
                    "path": "a.mp4"}]
    assert (tmp_path / "v" / "b.mp4").exists() and not (tmp_path / "v" / "a.mp4").exists()
    assert (tmp_path / "v" / "cross" / "b.mp4").exists() and (tmp_path / "v" / "silent" / "b.mp4").exists()
    assert len(pq.read_table(tmp_path / "index.parquet")) == 6


def test_the_cross_driven_pairing_is_a_fixed_derangement():
    from g4g.infer.testset import drivers

    ids = [f"c{i:02d}" for i in range(9)]
    pairing = drivers(ids, seed=0)
    assert sorted(pairing) == ids and sorted(pairing.values()) == ids
    assert all(k != v for k, v in pairing.items())
    assert drivers(list(reversed(ids)), seed=0) == pairing  # fixed by the seed, not the order given
    assert drivers(ids, seed=1) != pairing
    assert drivers(["only"], seed=0) == {}


def test_audio_windows_at_another_rate_are_centred_on_each_frames_time():
    """At 30 fps a frame's window is the 0.2 s the model knows, centred on that frame's own time: frames
    at the instants a 25 fps frame also has get exactly that frame's window; 25 fps is unchanged."""
    from g4g.data.mels import window_start

    j = np.arange(0, 60, 5)  # 25 fps frames at 0, 0.2, 0.4 ... s
    k = j * 30 // 25  # the 30 fps frames at the same instants
    np.testing.assert_array_equal(window_start(k, rate=30), window_start(j))
    np.testing.assert_array_equal(window_start(np.arange(50), rate=25), window_start(np.arange(50)))
    centres = window_start(np.arange(300), rate=30) / 80 + 0.1  # s
    # as at 25 fps (frames t-2..t+2 = [t - 0.08, t + 0.12) s), the centre is 0.02 s after the frame's time
    np.testing.assert_allclose(centres, np.arange(300) / 30 + 0.02, atol=0.5 / 80 + 1e-9)  # half a mel hop


