"""68-point facial landmarks for every 25 fps frame of a clip (iBUG-300W order, 0-indexed, pixels of
the displayed full-resolution frame).

Detection runs on a copy downscaled to `detect_max_side` until a face is found; then the shape model is
re-fitted on a box derived from the previous frame's points (tracking), and every `detect_every` frames
a detection in the tracked face's neighbourhood (`roi_margin`, at a scale showing the face at
ROI_FACE_PX) confirms it, falling back to the whole frame when it finds nothing; a whole-frame detection
runs at least every `full_detect_every` frames, so `n_faces` keeps counting the faces in view. Tracked frames
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
from g4g.io.video import LIMITED_TO_FULL, Damage, Yuv420, iter_frames
from g4g.params import LandmarkParams, VideoParams
from g4g.rejects import ClipError

NOSE, MOUTH = slice(27, 36), slice(48, 68)
# detector box relative to the landmark bbox (centre offset / size, side / size), dlib's HOG on
# real clips; replaced per clip by what each detection actually shows (see _Tracker._calibrate)
DEFAULT_CAL = np.array([-0.02, -0.09, 1.05])
CONFIRM_IOU = 0.3
ROI_FACE_PX = 96  # confirmation detections see the tracked face at this size (dlib's HOG window is 80)




@dataclass
class LandmarkTrack:
    raw: np.ndarray  # (T, 68, 2) float32 fitted points, NaN where not detected
    points: np.ndarray  # (T, 68, 2) float32 interpolated + smoothed, complete
    detected: np.ndarray  # (T,) bool: a face was found/confirmed on this frame
    interpolated: np.ndarray  # (T,) bool: == ~detected, points filled from neighbours
    n_faces: np.ndarray  # (T,) int8 faces a whole-frame detection saw, -1 where none ran on that frame
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
FIT_MARGIN = 0.35  # the shape model is fitted on the box +- this x its side, cut out of the frame
# (its pixel samples stay inside: fits equal whole-frame fits from 0.3 on, on the real clips)


class _Image:
    """A frame as the tracker reads it: a region or a downscaled copy, in the backend's format.

    Wraps an array, or (dlib on yuv420p video) the limited-range Y plane, whose full-range grey is
    computed only where it is read: a detection's downscaled copy and the neighbourhood of a fit.
    """

    def __init__(self, img: np.ndarray, limited: bool = False):
        self.img, self.limited, self.shape = img, limited, img.shape

    @classmethod
    def of(cls, frame, fmt: str) -> _Image:
        """From what iter_frames yields (raw_yuv420p=True): a Yuv420, an RGB array or a grey array."""
        if isinstance(frame, Yuv420):
            return cls(frame.y, limited=True) if fmt == "gray" else cls(frame.rgb())
        if fmt == "gray" and frame.ndim == 3:
            return cls(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        if fmt != "gray" and frame.ndim == 2:
            return cls(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB))
        return cls(frame)

    def _out(self, a: np.ndarray) -> np.ndarray:
        # contiguous always: PyAV pads rows, and C code such as dlib silently misreads strided arrays
        return cv2.LUT(a, LIMITED_TO_FULL) if self.limited else np.ascontiguousarray(a)

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self._out(self.img[y0:y1, x0:x1])

    def scaled(self, s: float, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
        a = self.img if region is None else self.img[region[1]:region[3], region[0]:region[2]]
        return self._out(a if s == 1.0 else cv2.resize(a, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))


def _around(box: np.ndarray, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer region of `box` grown by `margin` x its side on each side, clipped to the frame."""
    m = margin * (box[2] - box[0])
    H, W = shape[:2]
    return (max(int(box[0] - m), 0), max(int(box[1] - m), 0), min(int(box[2] + m) + 1, W),
            min(int(box[3] + m) + 1, H))


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
        self.last_full = -(10 ** 9)  # frame of the last whole-frame detection

    def _fit(self, img: _Image, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = _around(box, FIT_MARGIN, img.shape)
        off = np.array([x0, y0], np.float32)
        return self.b.fit(img.region(x0, y0, x1, y1), box - np.r_[off, off]) + off

    def _detect(self, k: int, img: _Image) -> np.ndarray:
        s = min(1.0, self.p.detect_max_side / max(img.shape[:2]))
        boxes = self.b.detect(img.scaled(s)) / s
        self.n_faces[k] = min(len(boxes), 127)
        self.last_full = k
        return boxes

    def _detect_near(self, k: int, img: _Image, box: np.ndarray) -> np.ndarray:
        """Detection in the neighbourhood of `box` (a confirmation while tracking), at the scale that
        shows that face at ROI_FACE_PX: a fraction of the cost of a whole-frame detection."""
        x0, y0, x1, y1 = region = _around(box, self.p.roi_margin, img.shape)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return np.zeros((0, 4))
        s = min(1.0, ROI_FACE_PX / max(box[2] - box[0], 1.0))
        return self.b.detect(img.scaled(s, region)) / s + np.array([x0, y0, x0, y0])

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
                found = self._detect_near(k, img, box) if self.p.roi_margin > 0 else self._detect(k, img)
                if any(_iou(box, d) >= CONFIRM_IOU for d in found):
                    keep = i + 1
                    break
            self.pending = self.pending[:keep]
        for k, _, _ in self.pending:
            self.detected[k] = True
        self.pending = []

    def step(self, k: int, img: _Image) -> None:
        if self.prev is not None and self.since < self.p.detect_every:
            pts = self._fit(img, _box_from_points(self.prev, self.cal))
            if _plausible(pts, self.prev, img.shape[:2]):
                self.raw[k], self.prev, self.since = pts, pts, self.since + 1
                self.ref = _box_from_points(pts, self.cal)
                self.pending.append((k, img, self.ref))
                return
        boxes = np.zeros((0, 4))
        full_due = self.p.full_detect_every > 0 and k - self.last_full >= self.p.full_detect_every
        if self.prev is not None and self.p.roi_margin > 0 and not full_due:  # confirming: look near the face
            boxes = self._detect_near(k, img, self.ref)
        if not len(boxes):
            boxes = self._detect(k, img)
        self.since = 1
        if len(boxes):
            box = boxes[_choose(boxes, self.ref, img.shape[:2])]
            pts = self._fit(img, box)
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


class LandmarkStream:
    """Landmarks of one clip fed frame by frame, with the points of early frames available before the
    clip ends (the single-pass preparation crops them while later frames are still being decoded).

    `push` every output frame in order; `final_until()` is the number of leading frames whose filled
    (interpolated) points can no longer change; `points(a, b)` gives the smoothed points of [a, b)
    exactly as `finish()` will, once b + `smooth_reach` <= final_until() (or the clip is complete).
    """

    def __init__(self, T: int, params: LandmarkParams | None = None, backend=None):
        self.p = params or LandmarkParams()
        self.backend = backend or get_backend(self.p)
        self.T = T
        self.tr = _Tracker(self.backend, self.p, T)
        self.alias = np.arange(T)  # output frames that repeat a source frame reuse its result
        self.n = 0  # frames pushed
        self._last = None
        self.filled = np.zeros((T, 68, 2), np.float32)
        self._filled_until = 0  # filled[:_filled_until] is final
        self._last_good = -1  # last detected frame below _filled_until
        self.done = False
        s = self.p.smooth_sigma
        self.smooth_reach = int(4.0 * s + 0.5) + 1 if s > 0 else 0  # scipy's truncate=4 kernel radius, +1

    def push(self, k: int, img) -> None:
        """Frame k as iter_frames(raw_yuv420p=True) yields it (a Yuv420, or an RGB or grey array);
        pass the same object again for a repeated source frame."""
        if k != self.n:
            raise ValueError(f"frames must be pushed in order: got {k}, expected {self.n}")
        self.n += 1
        if img is self._last:
            self.alias[k] = self.alias[k - 1]
            return
        self._last = img
        self.tr.step(k, _Image.of(img, self.backend.fmt))

    def _status_final(self) -> int:
        """Frames [0, n) whose detected flag is final: those before the first pending tracked frame."""
        if self.done:
            return self.T
        return min(self.tr.pending[0][0], self.n) if self.tr.pending else self.n

    def detected(self, a: int, b: int) -> np.ndarray:
        return self.tr.detected[self.alias[a:b]]

    def landmark_columns(self, a: int, b: int) -> dict[str, np.ndarray]:
        """landmarks_raw (NaN where not detected), detected and n_faces of frames [a, b), whose
        detected flags are final (b <= final_until())."""
        det = self.detected(a, b)
        raw = np.where(det[:, None, None], self.tr.raw[self.alias[a:b]], np.nan).astype(np.float32)
        return {"landmarks_raw": raw, "detected": det, "n_faces": self.tr.n_faces[a:b]}

    def final_until(self) -> int:
        """Frames [0, e) whose interpolated points are final (e = T once the clip is finished)."""
        lim = self._status_final()
        det = self.detected(self._filled_until, lim)
        good = np.flatnonzero(det) + self._filled_until
        if self.done or len(good):
            end = self.T if self.done else int(good[-1]) + 1
            lo = self._last_good if self._last_good >= 0 else self._filled_until
            ok = self.detected(lo, end)
            if ok.any():
                self.filled[lo:end] = _fill(self.tr.raw[self.alias[lo:end]], ok)
                self._last_good = lo + int(np.flatnonzero(ok)[-1])
            self._filled_until = end
        return self._filled_until

    def points(self, a: int, b: int) -> np.ndarray:
        """(b - a, 68, 2) float32 smoothed points of frames [a, b) (see the class docstring)."""
        e, r = self._filled_until, self.smooth_reach
        if not (self.done or b + r <= e):
            raise ValueError(f"points [{a}, {b}) not final yet (final until {e}, reach {r})")
        lo, hi = max(0, a - r), min(e, b + r)
        pts = self.filled[lo:hi]
        if self.p.smooth_sigma > 0:
            pts = gaussian_filter1d(pts, self.p.smooth_sigma, axis=0, mode="nearest")
        return pts[a - lo:b - lo].astype(np.float32)

    def finish(self) -> LandmarkTrack:
        """Close the clip; raises ClipError when fewer than `min_detected_fraction` frames show a face."""
        if self.n != self.T:
            raise ClipError(f"stream ended after {self.n} of {self.T} frames")
        self.tr.finish()
        self.done = True
        detected, raw = self.tr.detected[self.alias], self.tr.raw[self.alias]
        n, T, p = int(detected.sum()), self.T, self.p
        if n == 0:
            raise ClipError(f"no face detected in any of the {T} frames (landmarks backend {p.backend})",
                            stage="landmarks")
        if n / T < p.min_detected_fraction:
            raise ClipError(f"too few frames with a detected face: {n}/{T} ({n / T:.0%}) < "
                            f"min_detected_fraction {p.min_detected_fraction:.0%}", stage="landmarks")
        self.final_until()
        return LandmarkTrack(raw=raw, points=self.points(0, T), detected=detected, interpolated=~detected,
                             n_faces=self.tr.n_faces, long_gap=_long_gaps(detected, p.max_gap), params=p)


def track_landmarks(video_path, index_map: np.ndarray, params: LandmarkParams | None = None,
                    progress: bool = False, damage: Damage | None = None,
                    max_damaged: float = VideoParams().max_damaged) -> LandmarkTrack:
    """Landmarks for every output frame of `index_map` (see g4g.io.video.resample_index), streamed.

    Raises ClipError when fewer than `min_detected_fraction` of the frames show a face, or when more than
    `max_damaged` of them do not decode (`damage` collects those that do not: g4g.io.video.iter_frames).
    """
    p = params or LandmarkParams()
    stream = LandmarkStream(len(index_map), p)
    frames = iter_frames(video_path, index_map, fmt="rgb24", raw_yuv420p=True,  # as the faces stage reads
                         damage=damage, max_damaged=max_damaged)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=len(index_map), desc=f"landmarks {os.path.basename(str(video_path))}",
                      unit="fr")
    for k, img in frames:
        stream.push(k, img)
    return stream.finish()

