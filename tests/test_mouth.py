"""Lip-sync measures from dlib's landmarks on face crops (g4g.metrics.mouth): LMD, mouth-audio agreement,
silent-mouth ratio, on the demo's talking face, whose mouth opening is known (the renderer's articulation)."""

from __future__ import annotations

import numpy as np
import pytest

from g4g.metrics.mouth import MAX_LAG, MouthLandmarks, audio_envelope, inner_opening, mouth_audio, mouth_distance

SECONDS = 3.2


def _talking_crops(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(416 x 320 crops, 16 kHz audio, the renderer's mouth openness per frame) of a demo talking face held
    still (no head motion, no blinks), cut with the crop transform of its first frame's landmarks."""
    from g4g.data.crops import box_to_affine, crop_boxes, warp_crop
    from g4g.data.demo import FaceRenderer, speech_and_articulation
    from g4g.data.landmarks import get_backend
    from g4g.params import LandmarkParams

    audio, openness, width = speech_and_articulation(SECONDS, seed)
    face = FaceRenderer((320, 320), face_height=200, backdrop="gradient")
    frames = [face.render(o, w) for o, w in zip(openness, width)]
    dlib = get_backend(LandmarkParams())
    gray = frames[0].mean(axis=2).astype(np.uint8)
    pts = dlib.fit(gray, dlib.detect(gray)[0])
    A = box_to_affine(crop_boxes(pts[None]))[0]
    return np.stack([warp_crop(f, A) for f in frames]), audio, openness


@pytest.fixture(scope="module")
def talking():
    return {seed: _talking_crops(seed) for seed in (3, 4)}


@pytest.fixture(scope="module")
def landmarks():
    return MouthLandmarks()


def test_inner_opening_follows_the_mouth(talking, landmarks):
    crops, _, openness = talking[3]
    opening = inner_opening(landmarks.points(crops))
    assert np.isfinite(opening).all()
    assert np.corrcoef(opening, openness)[0, 1] > 0.8


def test_agreement_is_high_for_the_own_audio_and_low_for_another(talking, landmarks):
    crops, audio, _ = talking[3]
    _, other_audio, _ = talking[4]
    opening = inner_opening(landmarks.points(crops))
    own = mouth_audio(opening, audio_envelope(audio, len(opening)))
    other = mouth_audio(opening, audio_envelope(other_audio, len(opening)))
    assert own.agreement > 0.5 and abs(own.lag) <= MAX_LAG, own
    assert other.agreement < own.agreement - 0.3, (own, other)
    # the demo's mouth closes in its pauses
    assert own.silent_ratio is not None and own.silent_ratio < 0.5, own


def test_lmd_is_zero_for_the_same_frames_and_grows_with_a_shift(talking, landmarks):
    crops, _, _ = talking[3]
    pts = landmarks.points(crops)
    assert np.nanmax(mouth_distance(pts, pts)) == 0
    shifted = mouth_distance(pts[5:], pts[:-5])
    assert np.nanmean(shifted) > 1.0  # pixels of the 416 x 320 crop (r = 128 px)


def test_frames_without_a_face_are_missing_not_zero(talking, landmarks):
    """A crop where the detector finds no face (flat, or blurred beyond recognition) has no points of its own:
    NaN, never 0, and the measures leave it out."""
    import cv2

    crops, audio, _ = talking[3]
    bad = crops.copy()
    bad[10] = 128
    bad[11] = cv2.GaussianBlur(crops[11], (0, 0), 25)
    pts = landmarks.points(bad)
    assert np.isnan(pts[10]).all() and np.isnan(pts[11]).all() and np.isfinite(pts[12]).all()
    lmd = mouth_distance(pts, landmarks.points(crops))
    assert np.isnan(lmd[10]) and np.isnan(lmd[11]) and np.isfinite(lmd[12])
    r = mouth_audio(inner_opening(pts), audio_envelope(audio, len(pts)))
    assert r.agreement is not None and np.isfinite(r.agreement)


def test_a_blurred_mouth_is_measured_in_the_ground_truths_box(talking, landmarks):
    """Fitted in the ground truth's face box, a method's blurred or flattened frame gets points and a larger LMD
    than a sharp one (dropping it would reward the blur); a frame whose ground truth shows no face is the one
    left out."""
    import cv2

    crops, _, _ = talking[3]
    gt_boxes = landmarks.boxes(crops)
    assert np.isfinite(gt_boxes).all()
    made = crops.copy()
    made[11] = cv2.GaussianBlur(crops[11], (0, 0), 25)
    made[12, 250:] = made[12, 250:].mean(axis=(0, 1))  # the lower face painted over
    lmd = mouth_distance(landmarks.points(made, gt_boxes), landmarks.points(crops, gt_boxes))
    assert np.isfinite(lmd).all()
    assert lmd[10] == 0 and lmd[11] > 1.0 and lmd[12] > 1.0, lmd[10:14]  # crop pixels (r = 128 px)
    truth = crops.copy()
    truth[13] = 128
    boxes = landmarks.boxes(truth)
    assert np.isnan(boxes[13]).all() and np.isfinite(boxes[14]).all()
    lmd = mouth_distance(landmarks.points(made, boxes), landmarks.points(truth, boxes))
    assert np.isnan(lmd[13]) and np.isfinite(lmd[11]) and np.isfinite(lmd[14])


def test_short_or_silent_audio_leaves_the_measures_empty_with_the_reason():
    opening = np.abs(np.sin(np.arange(60) / 3.0))
    short = mouth_audio(opening[:6], np.abs(np.cos(np.arange(6) / 3.0)))
    assert short.agreement is None and "fewer than" in short.reason[0]
    silent = mouth_audio(opening, audio_envelope(np.zeros(16000 * 2, np.float32), 60))
    assert silent.agreement is None and silent.silent_ratio is None
    assert any("silent" in r for r in silent.reason)
    # audio shorter than the video: the frames past its end are silence, not an error
    assert len(audio_envelope(np.ones(1000, np.float32), 10)) == 10
