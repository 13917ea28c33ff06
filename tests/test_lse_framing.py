"""syncnet_python's framing for LSE (g4g.metrics.lse_framing, g4g.metrics.s3fd): the crop geometry, the
smoothing, the track rules and the S3FD plumbing, each pinned to values worked out by hand from
run_pipeline.py's definition; and the whole framing on a real clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from g4g.metrics.lse_framing import (
    PAD_VALUE,
    HogFaceBoxes,
    ShotCuts,
    Track,
    crop,
    face_tracks,
    min_track_for,
    track_shot,
)
from g4g.metrics.s3fd import S3FD, S3FDNet, decode, priors


def coded_frame(h: int = 600, w: int = 800) -> np.ndarray:
    """A frame whose every pixel names its own position: R = row % 256, G = col % 256, B = high bits."""
    r, c = np.mgrid[:h, :w]
    return np.stack([r % 256, c % 256, (r // 256) * 16 + c // 256], -1).astype(np.uint8)


def test_crop_is_the_square_from_s_above_to_1_8_s_below_the_box_centre():
    # s = 80: the padding is int(80 * 1.8) = 144 px; rows [y - s, y + 1.8 s), columns [x - 1.4 s, x + 1.4 s):
    # a 224 px square, so the resize to 224 x 224 is the identity and the crop is exact frame pixels
    frame = coded_frame()
    out = crop(frame, x=400.0, y=300.0, s=80.0)
    assert np.array_equal(out, frame[220:444, 288:512])
    # the face box (half size s around the centre) fills columns 32..192 and rows 0..160 of the crop
    # near the left edge: x = 50 reaches 62 px into the padding, which is the value 110
    out = crop(frame, x=50.0, y=300.0, s=80.0)
    assert (out[:, :62] == PAD_VALUE).all() and np.array_equal(out[:, 62:], frame[220:444, :162])


def test_crop_truncates_like_the_reference_slicing():
    frame = coded_frame()
    x, y, s = 401.7, 299.2, 79.6  # bsi = int(143.28) = 143
    padded = np.pad(frame, ((143, 143), (143, 143), (0, 0)), constant_values=PAD_VALUE)
    ref = padded[int(y + 143 - s):int(y + 143 + s * 1.8), int(x + 143 - s * 1.4):int(x + 143 + s * 1.4)]
    import cv2

    assert np.array_equal(crop(frame, x, y, s), cv2.resize(ref, (224, 224)))


def test_smoothing_is_a_13_tap_median_with_zero_padded_ends():
    # a box growing by 1 px per frame: the median of 13 keeps the start (the 6 zeros sort below every
    # value) but pulls the last 6 frames back to frame 13's value (x_13), scipy's zero padding at the end
    n = 20
    x1 = np.full(n, 100.0)
    boxes = np.stack([x1, x1, x1 + 200 + np.arange(n) * 2, x1 + 200], 1)  # width 200 + 2k, height 200
    p = Track(np.arange(n), boxes, n).crop_params()
    half = (200 + np.arange(n) * 2) / 2
    assert np.array_equal(p[:13, 2], half[:13]) and (p[13:, 2] == half[13]).all()
    # one wild frame in a steady track is removed by the median
    boxes = np.tile([100.0, 100.0, 300.0, 300.0], (n, 1))
    boxes[7] = [400, 400, 500, 500]
    p = Track(np.arange(n), boxes, n).crop_params()
    assert (p == [200.0, 200.0, 100.0]).all()


def face(x: float = 100.0, size: float = 120.0) -> np.ndarray:
    return np.array([[x, 50.0, x + size, 50.0 + size, 0.99]])


NONE = np.zeros((0, 5))


def test_track_rules():
    # kept: more than 100 detections; 100 are not enough
    assert len(track_shot([face()] * 101, 0)) == 1 and track_shot([face()] * 100, 0) == []
    # the mean box side must be over 100 px: 100 is not
    assert track_shot([face(size=100.0)] * 101, 0) == [] and len(track_shot([face(size=101.0)] * 101, 0)) == 1
    # a face again 25 frames after the last one (24 frames without) continues the track, with the boxes
    # interpolated in between; 26 frames after (25 without) ends it
    dets = [face()] * 60 + [NONE] * 24 + [face(x=110.0)] * 60
    (t,) = track_shot(dets, 7)
    assert (t.frames[0], t.frames[-1], t.n_detections) == (7, 150, 120)
    assert t.boxes[72, 0] == pytest.approx(100 + 10 * 13 / 25)  # linear between frames 59 and 84
    dets = [face()] * 60 + [NONE] * 25 + [face()] * 60
    assert track_shot(dets, 0) == []  # two halves of 60 detections: neither is long enough
    # a face moving so that IoU with the last one is exactly 0.5 is not linked (> 0.5 is needed):
    # 120 px boxes shifted by 40 px overlap 80 x 120 over a union of 160 x 120
    dets = [face()] * 101 + [face(x=140.0)] * 101
    assert [(t.frames[0], t.frames[-1]) for t in track_shot(dets, 0)] == [(0, 100), (101, 201)]
    # two faces in every frame: two tracks
    two = [np.concatenate([face(x=0.0), face(x=400.0)])] * 101
    assert sorted(t.boxes[0, 0] for t in track_shot(two, 0)) == [0.0, 400.0]


def test_shots_as_pyscenedetect_0_5_cut_them_and_short_clips_have_a_rule():
    # black frames 0-9, white 10-19, black from 20 on: both changes are cuts to the detector (HSV value
    # jumps by 255, content score 85 > 30), but 0.5 keeps a cut only 15 frames or more after the last one
    # (the first frame counts as one): the cut at 10 is dropped, the one at 20 kept. The first shot (20
    # frames) is then too short to track; the second holds the only track.
    cuts = ShotCuts()
    for k in range(150):
        cuts.feed(np.full((48, 64, 3), 255 if 10 <= k < 20 else 0, np.uint8))
    assert cuts.cuts == [20] and cuts.shots(100) == [(20, 150)] and cuts.shots(15) == [(0, 20), (20, 150)]
    (t,) = face_tracks([face()] * 150, cuts.shots(100), 100)
    assert (t.frames[0], t.frames[-1]) == (20, 149)
    assert [len(t.frames) for t in face_tracks([face()] * 300, [(0, 150), (150, 300)], 100)] == [150, 150]
    assert (min_track_for(125), min_track_for(101), min_track_for(100), min_track_for(60), min_track_for(8)) \
        == (100, 100, 50, 30, 5)


# ---------------------------------------------------------------------------------------------- S3FD
REFERENCE_KEYS = (  # syncnet_python detectors/s3fd/nets.py S3FDNet.state_dict(), written out by hand
    [f"vgg.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33) for p in ("weight", "bias")]
    + ["L2Norm3_3.weight", "L2Norm4_3.weight", "L2Norm5_3.weight"]
    + [f"{head}.{i}.{p}" for head, n in (("extras", 4), ("loc", 6), ("conf", 6)) for i in range(n)
       for p in ("weight", "bias")])


def test_s3fd_loads_the_reference_state_dict_layout():
    sd = S3FDNet().state_dict()
    assert sorted(sd) == sorted(REFERENCE_KEYS)
    assert sd["conf.0.weight"].shape == (4, 256, 3, 3) and sd["conf.1.weight"].shape == (2, 512, 3, 3)
    assert (sd["L2Norm3_3.weight"] == 10).all() and (sd["L2Norm5_3.weight"] == 5).all()


def test_s3fd_priors_and_decoding():
    # a 64 x 48 input: the stride-4 map is 16 x 12, its first prior a 16 px square centred at (2, 2) px
    p = priors((48, 64), [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1), (1, 1)])
    assert len(p) == 192 + 48 + 12 + 4 + 1 + 1
    assert p[0].tolist() == pytest.approx([2 / 64, 2 / 48, 16 / 64, 16 / 48])
    assert p[1].tolist() == pytest.approx([6 / 64, 2 / 48, 16 / 64, 16 / 48])  # row-major: x first
    assert p[-1].tolist() == pytest.approx([64 / 64, 64 / 48, 512 / 64, 512 / 48])
    box = decode(torch.zeros(1, 4), p[:1])  # no regression: the prior itself, as corners
    assert box[0].tolist() == pytest.approx([-6 / 64, -6 / 48, 10 / 64, 10 / 48])
    box = decode(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), p[:1])  # dx = 1: 0.1 of the prior's width
    assert box[0, 0].item() == pytest.approx((2 + 1.6 - 8) / 64)


def test_s3fd_sources_max_out_and_frame_pixels():
    torch.manual_seed(0)
    net = S3FDNet().eval()
    # sources of a 100 x 100 input: conv3_3 before pool3 (25), pool3 rounds up (13), then 6, 3 and the
    # two stride-2 extras (2, 1)
    with torch.no_grad():
        _, score, maps = net(torch.zeros(1, 3, 100, 100))
    assert maps == [(25, 25), (13, 13), (6, 6), (3, 3), (2, 2), (1, 1)]
    # max-out on the first head: background = the max of its 3 background channels (here 5), face 0
    with torch.no_grad():
        net.conf[0].weight.zero_()
        net.conf[0].bias.copy_(torch.tensor([1.0, 5.0, 2.0, 0.0]))
        _, score, _ = net(torch.zeros(1, 3, 100, 100))
    assert torch.allclose(score[0, :625], torch.full((625,), 1 / (1 + np.exp(5.0))))
    det = S3FD(pretrained=False, device="cpu")
    boxes = det.detect(coded_frame(240, 320), conf_th=0.0)
    assert boxes.shape[1] == 5 and len(boxes) > 0 and (np.diff(boxes[:, 4]) <= 0).all()  # best first
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2  # in the frame's pixels, not the 0.25-scaled input's
    assert np.ptp(centres[:, 0]) > 160 and np.ptp(centres[:, 1]) > 120
    assert det.info.label.startswith("random-init")


def test_missing_s3fd_weights_name_the_file(tmp_path, monkeypatch):
    from g4g.weights import WeightsError

    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match=r"sfd_face\.pth") as e:
        S3FD(pretrained=True, device="cpu")
    assert "g4g weights fetch sfd_face" in str(e.value)


# ---------------------------------------------------------------------------------------------- real clip
@pytest.fixture(scope="module")
def face_a(real_dir):
    from g4g.io.audio import load_audio
    from g4g.io.video import decode_all

    path = real_dir / "face_a.mp4"
    return path, decode_all(path), load_audio(path)


@pytest.mark.real
def test_real_clip_one_track_and_its_crops(face_a):
    from g4g.evaluate.protocol import ChunkedLSE, TrackedLSE
    from g4g.metrics.syncnet import OfficialSyncNet

    path, frames, audio = face_a
    hog = HogFaceBoxes()
    assert hog.info.label.startswith("surrogate: dlib HOG")
    dets = [hog.detect(f) for f in frames]
    cuts = ShotCuts()
    for f in frames:
        cuts.feed(f)
    assert cuts.shots() == [(0, 125)]  # one shot: no cut in a single take
    (track,) = face_tracks(dets, [(0, 125)], 100)
    assert (track.frames[0], track.frames[-1]) == (0, 124) and track.n_detections == 125
    x, y, s = track.crop_params()[60]
    # the crop is exactly the definition's padded slice on real pixels, resized
    bsi = int(s * 1.8)
    padded = np.pad(frames[60], ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=110)
    ref = padded[int(y + bsi - s):int(y + bsi + s * 1.8), int(x + bsi - s * 1.4):int(x + bsi + s * 1.4)]
    import cv2

    assert np.array_equal(crop(frames[60], x, y, s), cv2.resize(ref, (224, 224)))

    # the plumbing: TrackedLSE equals ChunkedLSE on the track's crops with the track's audio (random
    # SyncNet weights); the values against syncnet_python's own scripts: tools/compare-syncnet-python
    torch.manual_seed(0)
    net = OfficialSyncNet(pretrained=False, device="cpu")
    tracked = TrackedLSE(net, hog, len(frames), audio, batch_size=16)
    for c0 in range(0, len(frames), 40):
        tracked.feed(list(frames[c0:c0 + 40]))
    t = tracked.result(iter(frames))
    crops = np.stack([crop(f, *p) for f, p in zip(frames, track.crop_params())])
    plain = ChunkedLSE(net, len(crops), audio[:125 * 640], 16)
    plain.feed(crops, 0)
    r = plain.result()
    assert t.lse_d == pytest.approx(r.lse_d, abs=1e-5) and t.lse_c == pytest.approx(r.lse_c, abs=1e-5)
    assert t.n_tracks == 1 and t.notes == [] and np.isfinite(t.window_dists[:r.n_windows]).all()

    # a 60-frame clip: syncnet_python would find no track; our stated rule asks for more than 30
    short = TrackedLSE(net, hog, 60, audio[:60 * 640], 16)
    short.feed(list(frames[:60]))
    t = short.result(iter(frames[:60]))
    assert t.n_tracks == 1 and "shorter than syncnet_python's track minimum" in t.notes[0]
