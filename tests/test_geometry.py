"""Crop geometry on hand-made landmarks, and mel window indexing (docs/design/method.md Sec. 1)."""

import numpy as np
import pytest

from g4g.data import crops
from g4g.data.mels import audio_windows, melspectrogram, window_start
from g4g.io.video import Yuv420
from g4g.params import MelParams


def face(cx=200.0, top=100.0, r_half=60.0, mouth_w=50.0):
    """68 points with the few that the geometry reads placed by hand (others on the jaw line)."""
    p = np.zeros((68, 2))
    p[0:17, 0] = np.linspace(cx - 80, cx + 80, 17)
    p[0:17, 1] = top + 2 * r_half - np.abs(np.linspace(-1, 1, 17)) * 40  # chin (max y) at index 8
    p[29] = (cx, top)
    p[33] = (cx + 2, top + 30)
    p[48] = (cx - mouth_w / 2, top + 60)
    p[54] = (cx + mouth_w / 2, top + 60)
    p[49:54] = np.linspace(p[48], p[54], 7)[1:-1]
    p[55:68] = p[48] + [[mouth_w * i / 13, 3] for i in range(13)]
    return p


def audio_window(mel: np.ndarray, t: int) -> np.ndarray:
    """The definition, one frame at a time: mel[:, s : s + 16], s = window_start(t), edges replicated."""
    s = int(window_start(t))
    return mel[:, np.clip(np.arange(s, s + 16), 0, mel.shape[1] - 1)]


def test_radius_box_and_anchor_map_to_crop_constants():
    p = face()
    r = crops.frame_radius(p[None], 1.05)[0]
    assert r == pytest.approx(max(120.0, 50.0) * 1.05 / 2)
    box = crops.crop_boxes(p[None], crops.CropParams(window=1, smooth_sigma=0))[0]
    np.testing.assert_allclose(box, [202 - 1.25 * r, 100 - r, 202 + 1.25 * r, 100 + 2.25 * r])
    A = crops.box_to_affine(box[None])[0]
    # r -> 128 px, anchor (p33.x, p29.y) -> (160, 128), corners -> crop corners
    assert A[0, 0] * r == pytest.approx(crops.R_PX)
    np.testing.assert_allclose(crops.apply_affine(A, np.array([[202.0, 100.0]])), [crops.ANCHOR])
    np.testing.assert_allclose(crops.apply_affine(A, box.reshape(2, 2)), [[0, 0], [320, 416]], atol=1e-9)
    # the mouth square [p29.y, p29.y + 2r) x [p33.x - r, p33.x + r) is rows 128..384, cols 32..288
    mouth = np.array([[202 - r, 100], [202 + r, 100 + 2 * r]])
    r0, r1, c0, c1 = crops.MOUTH_BOX
    np.testing.assert_allclose(crops.apply_affine(A, mouth), [[c0, r0], [c1, r1]], atol=1e-9)


def test_mouth_width_can_set_radius():
    p = face(r_half=10, mouth_w=100)  # a wide mouth and a short face: width wins
    assert crops.frame_radius(p[None], 1.0)[0] == pytest.approx(50.0)


def test_affine_inverse_round_trip(rng):
    A = crops.box_to_affine(np.array([[10.0, 20.0, 260.0, 345.0]]))
    pts = rng.uniform(0, 400, (5, 2))
    back = crops.apply_affine(crops.invert_affine(A)[0], crops.apply_affine(A[0], pts))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_window_max_keeps_scale_stable():
    pts = np.stack([face(r_half=60 + (5 if t == 10 else 0)) for t in range(30)])
    boxes = crops.crop_boxes(pts, crops.CropParams(window=25, smooth_sigma=0))
    heights = boxes[:, 3] - boxes[:, 1]
    assert np.ptp(heights[:20]) == 0  # the one larger frame sets r for its whole window


def test_warp_crop_matches_affine(rng):
    """A marker at a known source position lands where the affine says, shrinking and enlarging."""
    for scale in (0.5, 2.0):
        img = np.zeros((600, 800, 3), np.uint8)
        x, y = 410, 290
        img[y - 3:y + 4, x - 3:x + 4] = 255
        w = 320 / scale
        box = np.array([[x - w / 2, y - w * 1.3 / 2, x + w / 2, y + w * 1.3 / 2]])
        A = crops.box_to_affine(box)[0]
        out = crops.warp_crop(img, A)
        assert out.shape == (416, 320, 3)
        ys, xs = np.nonzero(out[..., 0] > 100)
        exp = crops.apply_affine(A, np.array([[x, y]]))[0]
        assert abs(xs.mean() - exp[0]) < 1.0 and abs(ys.mean() - exp[1]) < 1.0


def test_box_outside_flag():
    boxes = np.array([[-5, 10, 100, 200], [0, 0, 100, 100], [10, 10, 101, 50]], float)
    assert crops.box_outside(boxes, 100, 100).tolist() == [True, False, True]


# ---------------------------------------------------------------------------------------------- mels

def test_mel_shape_range_and_rate():
    sr = 16000
    t = np.arange(sr * 2) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    m = melspectrogram(y)
    assert m.shape == (80, 1 + len(y) // 200)  # 80 mel frames per second
    assert m.dtype == np.float32 and m.min() >= -4 and m.max() <= 4
    import librosa

    centres = librosa.mel_frequencies(n_mels=82, fmin=55, fmax=7600)[1:-1]  # band centres
    assert abs(int(np.argmax(m[:, 50])) - int(np.argmin(np.abs(centres - 440)))) <= 1


def test_silence_is_floor():
    m = melspectrogram(np.zeros(16000, np.float32))
    assert np.allclose(m, -4.0)


@pytest.mark.parametrize("t,start", [(0, -6), (1, -3), (2, 0), (3, 3), (10, 26), (25, 74)])
def test_window_start(t, start):
    assert int(window_start(t)) == start == round(80 * (t - 2) / 25)


def test_audio_window_edges_replicate():
    mel = np.arange(80 * 40, dtype=np.float32).reshape(80, 40)
    a0 = audio_window(mel, 0)  # starts at -6: the first 6 columns replicate column 0
    assert a0.shape == (80, 16)
    assert (a0[:, :7] == mel[:, [0]]).all() and (a0[:, 7] == mel[:, 1]).all()
    last = audio_window(mel, 14)  # starts at 38: columns 38, 39, then 39 replicated
    assert (last[:, 2:] == mel[:, [39]]).all()
    batch = audio_windows(mel, np.array([0, 5, 14]))
    np.testing.assert_array_equal(batch[0], a0)
    np.testing.assert_array_equal(batch[1], audio_window(mel, 5))
    np.testing.assert_array_equal(batch[2], last)


def test_window_is_centred_on_frame():
    p = MelParams()
    t = 50
    s = int(window_start(t, p))
    centre_s = (s + p.window_frames / 2) / p.mel_fps
    assert centre_s == pytest.approx((t + 0.5) / p.fps, abs=1 / p.mel_fps)  # middle of frame t



@pytest.mark.parametrize("box", [[700.0, 200.0, 1340.0, 1032.0], [-40.0, -30.0, 280.0, 386.0],
                                 [100.5, 50.25, 260.5, 258.25]])
def test_yuv_region_crop_matches_rgb_crop(rng, box):
    """The fast path (convert only the region of a yuv420p frame) equals converting the whole frame."""
    import cv2

    h, w = (1080, 1920) if box[0] > 0 and box[2] > 400 else (590, 590)  # 590: U/V rows are not whole
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 4)
    planar = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # (1.5 h, w): Y, then U and V back to back
    full = cv2.cvtColor(planar, cv2.COLOR_YUV2RGB_I420)
    flat, n = planar.ravel(), h * w
    yuv = Yuv420(flat[:n].reshape(h, w), flat[n:n + n // 4].reshape(h // 2, w // 2),
                 flat[n + n // 4:].reshape(h // 2, w // 2))
    A = crops.box_to_affine(np.array([box]))[0]
    a = crops.warp_crop(full, A).astype(float)
    b = crops.crop_yuv420(yuv, A).astype(float)
    assert a.shape == b.shape == (416, 320, 3)
    assert np.abs(a - b).mean() < 1.0


@pytest.mark.parametrize("yuv", [False, True])
def test_crop_box_outside_the_frame_is_a_clip_error(yuv):
    from g4g.rejects import ClipError

    h, w = 64, 96
    A = crops.box_to_affine(np.array([[500.0, 500.0, 580.0, 604.0]]))[0]  # far right of and below the frame
    frame = (Yuv420(np.zeros((h, w), np.uint8), np.zeros((h // 2, w // 2), np.uint8),
                    np.zeros((h // 2, w // 2), np.uint8)) if yuv else np.zeros((h, w, 3), np.uint8))
    with pytest.raises(ClipError, match="outside the 96x64 frame") as e:
        crops.crop_yuv420(frame, A) if yuv else crops.warp_crop(frame, A)
    assert e.value.stage == "crops"
