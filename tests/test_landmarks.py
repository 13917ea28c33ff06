"""Landmarks: real clips (skipped without ../shared/data/real) and synthetic clips built here."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REAL, needs_real

from g4g.data.landmarks import LandmarkParams, get_backend, track_landmarks
from g4g.io.video import decode_all, frame_times, iter_frames, probe, resample_index, write_video
from g4g.rejects import ClipError
from g4g.weights import WeightsError


def _index(path) -> np.ndarray:
    return resample_index(frame_times(path))


def _jitter(points: np.ndarray) -> float:
    return float(np.abs(np.diff(points, 2, axis=0)).mean())


def _face_frames(n: int, side: int) -> np.ndarray:
    """First n frames of face_a as RGB side x side."""
    path = REAL / "face_a.mp4"
    return decode_all(path, _index(path)[:n], size=(side, side))


@needs_real
@pytest.mark.parametrize("name", ["face_a", "face_b", "face_c"])
def test_real_clip_landmarks_found_and_plausible(name):
    path = REAL / f"{name}.mp4"
    idx = _index(path)
    tr = track_landmarks(path, idx)
    T = len(idx)
    assert tr.points.shape == (T, 68, 2) and tr.points.dtype == np.float32
    assert np.isfinite(tr.points).all()
    found = tr.detected & ~tr.interpolated
    faces = sorted(set(tr.n_faces[tr.n_faces >= 0].tolist()))
    print(f"\n{name}: detected {found.mean():.1%} of {T} frames; faces per detection {faces}")
    assert found.mean() >= 0.95
    assert (tr.n_faces[::LandmarkParams().full_detect_every] >= 1).all()  # whole-frame detections
    info = probe(path)
    h, w = info.height, info.width
    pts = tr.points
    assert (pts >= -1).all() and (pts[..., 0] <= w).all() and (pts[..., 1] <= h).all()
    mouth, nose, jaw = pts[:, 48:68], pts[:, 27:36], pts[:, 0:17]
    assert (mouth[..., 1].min(1) > nose[:, :4, 1].max(1)).all()  # mouth below the nose bridge
    assert (mouth[..., 1].mean(1) > nose[..., 1].mean(1)).all()
    assert (mouth[..., 0].min(1) > jaw[..., 0].min(1)).all()
    assert (mouth[..., 0].max(1) < jaw[..., 0].max(1)).all()
    assert (mouth[..., 1].max(1) < jaw[..., 1].max(1)).all()  # above the chin


def test_no_face_rejected(tmp_path):
    rng = np.random.default_rng(0)
    grad = np.tile(np.linspace(0, 255, 320, dtype=np.float32), (240, 1))
    frames = [np.clip(grad[..., None] + rng.normal(0, 25, (240, 320, 3)), 0, 255).astype(np.uint8)
              for _ in range(25)]
    path = tmp_path / "noface.mp4"
    write_video(path, frames, fps=25)
    with pytest.raises(ClipError, match="no face"):
        track_landmarks(path, _index(path))


@needs_real
def test_face_in_some_frames_flagged_and_filled(tmp_path):
    face = _face_frames(65, 320)
    blank = np.full_like(face[0], 120)
    layout = [(False, 15), (True, 40), (False, 20), (True, 25)]
    frames, truth, i = [], [], 0
    for has_face, n in layout:
        for _ in range(n):
            frames.append(face[i] if has_face else blank)
            i += has_face
            truth.append(has_face)
    truth = np.array(truth)
    path = tmp_path / "partial.mp4"
    write_video(path, frames, fps=25)
    params = LandmarkParams(min_detected_fraction=0.5, max_gap=12)
    tr = track_landmarks(path, _index(path), params)
    assert len(tr.detected) == len(truth)
    edges = np.flatnonzero(np.diff(truth.astype(int))) + 1
    near = np.zeros(len(truth), bool)
    for e in edges:
        near[max(e - 2, 0):e + 2] = True
    wrong = np.flatnonzero((tr.detected != truth) & ~near)
    print(f"\npartial: detected {tr.detected.sum()}/{truth.sum()} face frames, "
          f"wrong away from boundaries: {wrong.tolist()}, "
          f"all mismatches: {np.flatnonzero(tr.detected != truth).tolist()}")
    assert wrong.size == 0
    assert np.array_equal(tr.interpolated, ~tr.detected)
    assert np.isfinite(tr.points).all() and np.isnan(tr.raw[~tr.detected]).all()
    assert tr.long_gap[20:50].sum() == 0 and tr.long_gap[2:13].all() and tr.long_gap[57:73].all()
    # held at the start: the first frames copy the first detected frame's (smoothed) points
    first = int(np.argmax(tr.detected))
    assert np.allclose(tr.points[0], tr.points[first - 6], atol=1e-3)
    with pytest.raises(ClipError, match="too few frames"):
        track_landmarks(path, _index(path), LandmarkParams(min_detected_fraction=0.9))


@needs_real
@pytest.mark.parametrize("big_left", [True, False])
def test_several_faces_keeps_the_larger(tmp_path, big_left):
    big, small = _face_frames(30, 420), _face_frames(30, 300)
    W, H = 1000, 500
    xb, xs = (40, 640) if big_left else (540, 60)
    frames = []
    for b, s in zip(big, small):
        canvas = np.full((H, W, 3), 90, np.uint8)
        canvas[40:460, xb:xb + 420] = b
        canvas[100:400, xs:xs + 300] = s
        frames.append(canvas)
    path = tmp_path / "two.mp4"
    write_video(path, frames, fps=25)
    # every confirmation a whole-frame detection here, so n_faces is counted every 5 frames
    tr = track_landmarks(path, _index(path), LandmarkParams(detect_max_side=1000, full_detect_every=5))
    assert tr.detected.all()
    cx = tr.points[..., 0].mean(1)
    assert ((cx > xb) & (cx < xb + 420)).all()
    seen = tr.n_faces[tr.n_faces >= 0]
    assert len(seen) >= 5 and (seen == 2).mean() >= 0.8
    # by default the confirmations look near the tracked face only, the whole frame once a second
    tr = track_landmarks(path, _index(path), LandmarkParams(detect_max_side=1000))
    assert tr.detected.all() and ((tr.points[..., 0].mean(1) > xb) & (tr.points[..., 0].mean(1) < xb + 420)).all()
    assert list(np.flatnonzero(tr.n_faces >= 0)) == [0, 25] and (tr.n_faces[[0, 25]] == 2).all()


@needs_real
def test_repeated_source_frames_reuse_results():
    path = REAL / "face_c.mp4"
    idx = np.repeat(np.arange(20), 2).astype(np.int32)  # like 12.5 -> 25 fps
    tr = track_landmarks(path, idx, LandmarkParams(smooth_sigma=0))
    assert tr.detected.all()
    assert np.array_equal(tr.raw[0::2], tr.raw[1::2])
    assert (tr.n_faces[1::2] == -1).all()


@needs_real
def test_smoothing_reduces_jitter():
    path = REAL / "face_a.mp4"
    idx = _index(path)
    raw = track_landmarks(path, idx, LandmarkParams(smooth_sigma=0))
    sm = track_landmarks(path, idx, LandmarkParams(smooth_sigma=1.5))
    j0, j1 = _jitter(raw.points), _jitter(sm.points)
    size = np.ptp(raw.points, axis=1).max()
    dev = np.linalg.norm(sm.points - raw.points, axis=2).mean() / size
    print(f"\njitter (mean |2nd diff| px): raw {j0:.3f}, smoothed {j1:.3f}; "
          f"mean shift {dev:.2%} of face size")
    assert j1 < 0.6 * j0 and dev < 0.02


def test_fan_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="2DFAN4"):
        get_backend(LandmarkParams(backend="fan"))


def test_fan_glue_with_random_weights(tmp_path):
    """FanBackend's calls into face_alignment, with untrained nets (no weights needed): shapes/types only."""
    torch = pytest.importorskip("torch")
    from face_alignment.api import FaceAlignment, LandmarksType
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.detection.sfd.sfd_detector import SFDDetector
    from face_alignment.models import FAN

    from g4g.data.landmarks import FanBackend

    torch.save(s3fd().state_dict(), tmp_path / "s3fd.pth")
    fa = FaceAlignment.__new__(FaceAlignment)
    fa.device, fa.dtype, fa.flip_input, fa.max_batch_size = "cpu", torch.float32, False, 1
    fa.landmarks_type, fa.verbose = LandmarksType.TWO_D, False
    fa.face_detector = SFDDetector("cpu", path_to_detector=str(tmp_path / "s3fd.pth"))
    fa.face_alignment_net = FAN(4).eval()
    backend = FanBackend.__new__(FanBackend)
    backend.fa = fa
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert backend.detect(img).ndim == 2 and backend.detect(img).shape[1] == 4
    pts = backend.fit(img, np.array([40, 20, 120, 100]))
    assert pts.shape == (68, 2) and pts.dtype == np.float32 and np.isfinite(pts).all()


@needs_real
@pytest.mark.parametrize("name", ["face_a", "face_b", "face_c"])
def test_fit_on_the_box_neighbourhood_equals_whole_frame_fit(name):
    """The tracker fits on the box +- FIT_MARGIN cut out of the frame (and expands the limited range of
    the Y plane only there); the points equal a fit on the whole full-range grey frame."""
    from g4g.data.landmarks import _Image, _Tracker

    path = REAL / f"{name}.mp4"
    backend = get_backend(LandmarkParams())
    tr = _Tracker(backend, LandmarkParams(), 1)
    raw = dict(iter_frames(path, np.arange(0, 60, 6), raw_yuv420p=True))
    gray = dict(iter_frames(path, np.arange(0, 60, 6), fmt="gray"))
    for k, frame in raw.items():
        whole = np.ascontiguousarray(gray[k])
        boxes = backend.detect(whole)
        assert len(boxes), (name, k)
        np.testing.assert_array_equal(tr._fit(_Image.of(frame, "gray"), boxes[0]), backend.fit(whole, boxes[0]))
