"""68-point facial landmarks for every 25 fps frame of a clip (iBUG-300W order, 0-indexed, pixels of
the displayed full-resolution frame).

Detection runs every `detect_every` frames on a copy downscaled to `detect_max_side`; in between, the
shape model is re-fitted on a box derived from the previous frame's points (tracking). Tracked frames
stay *pending* until the next detection confirms the face (box overlap); when it does not, the pending
frames are re-checked newest-first by detection and those after the last confirmed one are flagged as
failed. While no face is tracked, every frame is a detection frame. Failed frames are interpolated
(held at the clip ends), then all points are smoothed in time. Backends: dlib (HOG detector + 68-point
shape predictor, no download) and face-alignment's FAN (S3FD + 2DFAN4, only from local weights).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from g4g import weights
from g4g.io.video import iter_frames
from g4g.rejects import ClipError

NOSE, MOUTH = slice(27, 36), slice(48, 68)
# detector box relative to the landmark bbox (centre offset / size, side / size), dlib's HOG on
# real clips; replaced per clip by what each detection actually shows (see _Tracker._calibrate)
DEFAULT_CAL = np.array([-0.02, -0.09, 1.05])
CONFIRM_IOU = 0.3


@dataclass
class LandmarkParams:
    backend: str = "dlib"  # 'dlib' | 'fan'
    detect_every: int = 5  # frames between detections while tracking
    detect_max_side: int = 640  # long side of the frame the detector sees
    upsample: int = 0  # dlib HOG upsampling (1 finds faces down to ~40 px at detect scale, ~4x slower)
    smooth_sigma: float = 1.0  # Gaussian temporal smoothing of the points, in frames; 0 disables
    min_detected_fraction: float = 0.5  # below this the clip is rejected
    max_gap: int = 12  # failed runs longer than this are flagged in `long_gap`
    device: str = "cpu"  # FAN only


@dataclass
class LandmarkTrack:
    raw: np.ndarray  # (T, 68, 2) float32 fitted points, NaN where not detected
    points: np.ndarray  # (T, 68, 2) float32 interpolated + smoothed, complete
    detected: np.ndarray  # (T,) bool: a face was found/confirmed on this frame
    interpolated: np.ndarray  # (T,) bool: == ~detected, points filled from neighbours
    n_faces: np.ndarray  # (T,) int8 faces seen by the detector, -1 where it did not run
    long_gap: np.ndarray  # (T,) bool: inside a failed run longer than max_gap
    params: LandmarkParams = field(default_factory=LandmarkParams)

    @property
    def detected_fraction(self) -> float:
        return float(self.detected.mean()) if len(self.detected) else 0.0

    def stats(self) -> dict:
        return {"n_frames": len(self.detected), "detected_fraction": self.detected_fraction,
                "n_interpolated": int(self.interpolated.sum()), "n_long_gap": int(self.long_gap.sum()),
                "max_faces": int(self.n_faces.max(initial=-1)),
                **{f"p_{k}": v for k, v in asdict(self.params).items()}}


# ---------------------------------------------------------------------------------------------- backends
class DlibBackend:
    """HOG frontal detector + 68-point shape predictor; works on grayscale frames."""

    fmt = "gray"

    def __init__(self, params: LandmarkParams):
        import dlib

        self._dlib = dlib
        self.upsample = int(params.upsample)
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(weights.dlib_predictor_path()))

    def detect(self, img: np.ndarray) -> np.ndarray:
        rects = self.detector(np.ascontiguousarray(img), self.upsample)  # dlib misreads strided arrays
        boxes = [[r.left(), r.top(), r.right(), r.bottom()] for r in rects]
        return np.array(boxes, np.float64).reshape(-1, 4)

    def fit(self, img: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.predictor(np.ascontiguousarray(img), self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


class FanBackend:
    """face-alignment: S3FD detector + 2DFAN4, RGB frames; never downloads (weights checked first)."""

    fmt = "rgb24"

    def __init__(self, params: LandmarkParams):
        weights.require("fan2d")
        s3fd = weights.require("s3fd")
        import face_alignment
        from face_alignment import api

        # the file this face_alignment version actually loads (its name has changed across releases)
        url = api.models_urls["2DFAN-4"]
        need = weights.torch_home() / "hub" / "checkpoints" / os.path.basename(url)
        if not need.exists():
            raise weights.WeightsError(
                f"face_alignment {getattr(face_alignment, '__version__', '?')} loads {need.name}: missing.\n"
                f"  download: {url}\n  put it at: {need}")
        import torch.hub

        old = torch.hub.get_dir()
        torch.hub.set_dir(str(weights.torch_home() / "hub"))  # where `need` was checked
        try:
            self.fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=params.device, compile=False,
                face_detector="sfd", face_detector_kwargs={"path_to_detector": str(s3fd)})
        finally:
            torch.hub.set_dir(old)

    def detect(self, img: np.ndarray) -> np.ndarray:
        boxes = self.fa.face_detector.detect_from_image(img.copy())
        return np.array([b[:4] for b in boxes], np.float64).reshape(-1, 4)

    def fit(self, img: np.ndarray, box: np.ndarray) -> np.ndarray:
        out = self.fa.get_landmarks_from_image(img, detected_faces=[np.asarray(box, np.float64)])
        return np.asarray(out[0][:, :2], np.float32)


_BACKENDS: dict[tuple, object] = {}


def get_backend(params: LandmarkParams):
    """Backend instance, cached per (backend, upsample, device): loading models is the slow part."""
    key = (params.backend, params.upsample, params.device)
    if key not in _BACKENDS:
        cls = {"dlib": DlibBackend, "fan": FanBackend}.get(params.backend)
        if cls is None:
            raise ValueError(f"unknown landmarks backend {params.backend!r} (dlib | fan)")
        _BACKENDS[key] = cls(params)
    return _BACKENDS[key]


# ----------------------------------------------------------------------------------------------- geometry
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _size_centre(pts: np.ndarray) -> tuple[float, np.ndarray]:
    lo, hi = pts.min(0), pts.max(0)
    return float(max(hi - lo)), (lo + hi) / 2


def _box_from_points(pts: np.ndarray, cal: np.ndarray) -> np.ndarray:
    size, c = _size_centre(pts)
    c = c + cal[:2] * size
    half = cal[2] * size / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def _plausible(pts: np.ndarray, prev: np.ndarray | None, shape: tuple[int, int]) -> bool:
    """Cheap per-frame check of a tracked fit: face-like proportions, no jump in size or position."""
    size, c = _size_centre(pts)
    w, h = np.ptp(pts, 0)
    if size < 8 or not 0.6 < h / max(w, 1e-6) < 1.6 or not (0 <= c[0] < shape[1] and 0 <= c[1] < shape[0]):
        return False
    if pts[MOUTH, 1].mean() <= pts[NOSE, 1].mean():
        return False
    if prev is not None:
        psize, pc = _size_centre(prev)
        if not 0.8 < size / psize < 1.25 or np.hypot(*(c - pc)) > 0.25 * psize:
            return False
    return True


def _choose(boxes: np.ndarray, ref: np.ndarray | None, shape: tuple[int, int]) -> int:
    """First time: largest area weighted towards the frame centre; later: the box nearest `ref`."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)).clip(1)
    if ref is None:
        half_diag = np.hypot(*shape) / 2
        d = np.hypot(*(c - np.array([shape[1], shape[0]]) / 2).T) / half_diag
        return int(np.argmax(side ** 2 * np.exp(-2 * d ** 2)))
    rc, rside = (ref[:2] + ref[2:]) / 2, np.sqrt(np.prod(ref[2:] - ref[:2]))
    return int(np.argmin(np.hypot(*(c - rc).T) / rside + np.abs(np.log(side / rside))))


# ------------------------------------------------------------------------------------------------ tracking
class _Tracker:
    def __init__(self, backend, params: LandmarkParams, T: int):
        self.b, self.p = backend, params
        self.raw = np.full((T, 68, 2), np.nan, np.float32)
        self.detected = np.zeros(T, bool)
        self.n_faces = np.full(T, -1, np.int8)
        self.cal = DEFAULT_CAL.copy()
        self.prev = None  # points of the last frame while tracking, None when lost
        self.ref = None  # box of the followed face (last known)
        self.pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (k, frame, tracked box)
        self.since = 0  # frames since the last detection

    def _detect(self, k: int, img: np.ndarray) -> np.ndarray:
        s = min(1.0, self.p.detect_max_side / max(img.shape[:2]))
        small = img if s == 1.0 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        boxes = self.b.detect(small) / s
        self.n_faces[k] = min(len(boxes), 127)
        return boxes

    def _calibrate(self, box: np.ndarray, pts: np.ndarray) -> None:
        size, c = _size_centre(pts)
        obs = np.r_[((box[:2] + box[2:]) / 2 - c) / size, (box[2] - box[0]) / size]
        self.cal = 0.5 * self.cal + 0.5 * obs

    def _resolve_pending(self, confirmed: bool) -> None:
        """Accept pending tracked frames; if not confirmed, keep those up to the newest that detection
        still finds (re-detected newest-first) and leave the rest flagged as failed."""
        if not confirmed:
            keep = 0
            for i in range(len(self.pending) - 1, -1, -1):
                k, img, box = self.pending[i]
                if any(_iou(box, d) >= CONFIRM_IOU for d in self._detect(k, img)):
                    keep = i + 1
                    break
            self.pending = self.pending[:keep]
        for k, _, _ in self.pending:
            self.detected[k] = True
        self.pending = []

    def step(self, k: int, img: np.ndarray) -> None:
        if self.prev is not None and self.since < self.p.detect_every:
            pts = self.b.fit(img, _box_from_points(self.prev, self.cal))
            if _plausible(pts, self.prev, img.shape[:2]):
                self.raw[k], self.prev, self.since = pts, pts, self.since + 1
                self.ref = _box_from_points(pts, self.cal)
                self.pending.append((k, img, self.ref))
                return
        boxes = self._detect(k, img)
        self.since = 1
        if len(boxes):
            box = boxes[_choose(boxes, self.ref, img.shape[:2])]
            pts = self.b.fit(img, box)
        if not len(boxes) or not _plausible(pts, None, img.shape[:2]):  # no face, or a false detection
            self._resolve_pending(False)
            self.prev = None
            return
        if self.pending:
            self._resolve_pending(_iou(box, self.pending[-1][2]) >= CONFIRM_IOU)
        self._calibrate(box, pts)
        self.raw[k], self.detected[k], self.prev, self.ref = pts, True, pts, box

    def finish(self) -> None:
        if self.pending:  # nothing left to confirm them with: re-check the newest by detection
            self._resolve_pending(False)
        self.raw[~self.detected] = np.nan


def _fill(raw: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Linear interpolation over failed frames from detected neighbours, held at the ends."""
    t = np.arange(len(raw))
    good = np.flatnonzero(detected)
    flat = raw.reshape(len(raw), -1)
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, good, flat[good, j])
    return out.reshape(raw.shape)


def _long_gaps(detected: np.ndarray, max_gap: int) -> np.ndarray:
    flag = np.zeros(len(detected), bool)
    edges = np.flatnonzero(np.diff(np.r_[0, (~detected).astype(np.int8), 0])).reshape(-1, 2)
    for a, b in edges[edges[:, 1] - edges[:, 0] > max_gap]:
        flag[a:b] = True
    return flag


def track_landmarks(video_path, index_map: np.ndarray, params: LandmarkParams | None = None,
                    progress: bool = False) -> LandmarkTrack:
    """Landmarks for every output frame of `index_map` (see g4g.io.video.resample_index), streamed.

    Raises ClipError when fewer than `min_detected_fraction` of the frames show a face.
    """
    p = params or LandmarkParams()
    backend = get_backend(p)
    T = len(index_map)
    tr = _Tracker(backend, p, T)
    alias = np.arange(T)  # output frames that repeat a source frame reuse its result
    frames = iter_frames(video_path, index_map, fmt=backend.fmt)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=T, desc=f"landmarks {os.path.basename(str(video_path))}", unit="fr")
    last = None
    for k, img in frames:
        if img is last:
            alias[k] = alias[k - 1]
            continue
        last = img
        tr.step(k, np.ascontiguousarray(img))  # PyAV pads rows: copy once, not per backend call
    tr.finish()
    detected, raw = tr.detected[alias], tr.raw[alias]
    n = int(detected.sum())
    if n == 0:
        raise ClipError(f"no face detected in any of the {T} frames (landmarks backend {p.backend})")
    if n / T < p.min_detected_fraction:
        raise ClipError(f"too few frames with a detected face: {n}/{T} ({n / T:.0%}) < "
                        f"min_detected_fraction {p.min_detected_fraction:.0%}")
    points = _fill(raw, detected)
    if p.smooth_sigma > 0:
        points = gaussian_filter1d(points, p.smooth_sigma, axis=0, mode="nearest")
    return LandmarkTrack(raw=raw, points=points.astype(np.float32), detected=detected,
                         interpolated=~detected, n_faces=tr.n_faces, long_gap=_long_gaps(detected, p.max_gap),
                         params=p)


def detect_image_landmarks(img: np.ndarray, params: LandmarkParams | None = None) -> np.ndarray | None:
    """(68, 2) float32 landmarks of the largest, most central face of one RGB or gray image, or None."""
    p = params or LandmarkParams()
    backend = get_backend(p)
    if backend.fmt == "gray" and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif backend.fmt != "gray" and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    img = np.ascontiguousarray(img, np.uint8)
    tr = _Tracker(backend, p, 1)
    boxes = tr._detect(0, img)
    if not len(boxes):
        return None
    return backend.fit(img, boxes[_choose(boxes, None, img.shape[:2])])
