"""Lip-sync measures from the project's own dlib landmarks on the 416 x 320 face crops: no downloaded weights.

    LMD                    landmark distance (Chen et al., "Lip Movements Generation at a Glance", ECCV 2018):
                           mean Euclidean distance between the 20 mouth points (48-67) of a frame and those of
                           its ground-truth frame, in stored-crop pixels. The crop maps the face's scale r to
                           128 px whatever the video's resolution, so the value means the same at any size.
    mouth-audio agreement  Pearson correlation between the inner-lip opening per frame and the driving audio's
                           RMS envelope at 25 fps, at the best lag within +-MAX_LAG frames (the mouth may lead
                           the sound); needs no ground-truth video, so it scores cross-driven output too
    silent-mouth ratio     mean inner-lip opening over the audio's silent frames / over its speech frames: a
                           mouth that closes when nobody speaks scores low

Points are fitted in the face box that dlib's HOG detector finds in the *ground-truth* crop of the same frame (at
half size: the face fills the crop, about 250 px wide, and HOG's window is 80 px), for the method's crop and the
ground truth's alike. Every method's video is cut with the ground truth's crop transforms, so that box frames its
face too; the two shapes are then fitted from one start, and a method whose mouth is blurred is measured, not
dropped (a detector run on generated frames fails on exactly the worst of them: 66 of 116 frames of one demo clip
at 270 steps, and LMD over the frames left would reward the blur). A frame whose ground truth has no face found has
no points (NaN), is left out of every mean and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from g4g import weights
from g4g.data.landmarks import MOUTH
from g4g.metrics.weights_info import WeightsInfo, file_sha256

FPS, SR = 25, 16000
MAX_LAG = 2               # frames (80 ms) either way
MIN_FRAMES = 5            # 0.2 s: fewer frames give no correlation worth reporting
SILENT, SPEECH = 0.1, 0.3  # RMS below / above these fractions of the clip's 95th-percentile RMS
SETTLE = 2                # frames next to speech that count as neither: the mouth is still closing
INNER = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points, 0-indexed iBUG-68


class MouthLandmarks:
    """68 points per crop, fitted by dlib's shape predictor in a face box found by its HOG detector."""

    DETECT_SCALE = 0.5

    def __init__(self):
        import dlib

        path = weights.dlib_predictor_path()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.rect = dlib.rectangle
        self.info = WeightsInfo("dlib shape_predictor_68_face_landmarks.dat", ((str(path), file_sha256(path)),))
        self._boxes: dict[tuple, np.ndarray] = {}

    def boxes(self, crops: np.ndarray, key: tuple | None = None) -> np.ndarray:
        """(c, 4) face box (left, top, right, bottom) of each RGB crop in its pixels, the largest HOG finds;
        NaN where it finds none. key: the same crops asked for again (another setting of the clip) are not
        searched again."""
        import cv2

        if key is not None and key in self._boxes:
            return self._boxes[key]
        out = np.full((len(crops), 4), np.nan)
        k = self.DETECT_SCALE
        for i, crop in enumerate(crops):
            small = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (0, 0), fx=k, fy=k, interpolation=cv2.INTER_AREA)
            rects = self.detector(small, 0)
            if rects:
                r = max(rects, key=lambda r: r.width() * r.height())
                out[i] = [r.left() / k, r.top() / k, r.right() / k, r.bottom() / k]
        if key is not None:
            self._boxes[key] = out
        return out

    def points(self, crops: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """(c, 68, 2) float32 points of each RGB crop in its pixels, fitted in `boxes` ((c, 4), e.g. the ground
        truth's; default: each crop's own); NaN where a box is NaN."""
        import cv2

        boxes = self.boxes(crops) if boxes is None else boxes
        out = np.full((len(crops), 68, 2), np.nan, np.float32)
        for i, (crop, box) in enumerate(zip(crops, boxes)):
            if np.isfinite(box).all():
                shape = self.predictor(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), self.rect(*(int(v) for v in box)))
                out[i] = [(p.x, p.y) for p in shape.parts()]
        return out


def mouth_distance(points: np.ndarray, gt_points: np.ndarray) -> np.ndarray:
    """(c,) LMD per frame: mean distance of the 20 mouth points; NaN where either side has none."""
    return np.linalg.norm(points[:, MOUTH] - gt_points[:, MOUTH], axis=-1).mean(axis=1)


def inner_opening(points: np.ndarray) -> np.ndarray:
    """(c,) inner-lip opening per frame in crop pixels: the mean gap of the three upper/lower point pairs."""
    return np.mean([np.linalg.norm(points[:, a] - points[:, b], axis=-1) for a, b in INNER], axis=0)


def audio_envelope(audio: np.ndarray, n: int, sr: int = SR, fps: int = FPS) -> np.ndarray:
    """(n,) RMS of each 25 fps frame's audio (frame k: samples [k, k + 1) x sr / fps); zero past the audio's end."""
    hop = sr // fps
    a = np.zeros(n * hop, np.float64)
    m = min(len(audio), n * hop)
    a[:m] = audio[:m]
    return np.sqrt((a.reshape(n, hop) ** 2).mean(axis=1))


@dataclass
class MouthAudio:
    agreement: float | None   # correlation at the best lag, None with `reason`
    lag: int | None           # frames the mouth follows the audio by (negative: leads)
    silent_ratio: float | None
    reason: list[str]


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    d = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / d) if d > 0 else float("nan")


def mouth_audio(opening: np.ndarray, envelope: np.ndarray) -> MouthAudio:
    """Agreement and silent-mouth ratio of one clip (see the top); frames without points are left out."""
    reasons: list[str] = []
    ok = np.isfinite(opening)
    agreement = lag = ratio = None
    if ok.sum() < MIN_FRAMES + 2 * MAX_LAG:
        reasons.append(f"mouth-audio agreement: {int(ok.sum())} frames with mouth points, fewer than "
                       f"{MIN_FRAMES + 2 * MAX_LAG}")
    elif envelope.max() <= 0 or np.ptp(envelope) <= 1e-4 * envelope.max():
        reasons.append("mouth-audio agreement: the audio is silent or constant")
    else:
        best = None
        for d in range(-MAX_LAG, MAX_LAG + 1):  # opening[t + d] against envelope[t]
            o = opening[max(d, 0):len(opening) + min(d, 0)]
            e = envelope[max(-d, 0):len(envelope) - max(d, 0)]
            keep = np.isfinite(o)
            r = _corr(o[keep], e[keep]) if keep.sum() >= MIN_FRAMES else float("nan")
            if np.isfinite(r) and (best is None or r > best[0]):
                best = (r, d)
        if best is None:
            reasons.append("mouth-audio agreement: the mouth does not move")
        else:
            agreement, lag = best
    ref = np.percentile(envelope, 95) if len(envelope) else 0.0
    if ref > 0:
        speech = envelope > SPEECH * ref
        near = np.convolve(speech.astype(float), np.ones(2 * SETTLE + 1), mode="same") > 0
        silent = (envelope < SILENT * ref) & ~near & ok
        talking = speech & ok
        if silent.sum() < MIN_FRAMES or talking.sum() < MIN_FRAMES:
            reasons.append(f"silent-mouth ratio: {int(silent.sum())} silent and {int(talking.sum())} speech frames "
                           f"with mouth points, fewer than {MIN_FRAMES} of either")
        elif opening[talking].mean() > 0:
            ratio = float(opening[silent].mean() / opening[talking].mean())
    else:
        reasons.append("silent-mouth ratio: the audio is silent")
    return MouthAudio(agreement, lag, ratio, reasons)

