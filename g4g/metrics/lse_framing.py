"""syncnet_python's framing of a video for LSE (run_pipeline.py): shots, face tracks, the smoothed crop.

The published LSE-D/LSE-C values (Wav2Lip, and every paper that reuses its scripts) come from this
pipeline, not from the network alone: faces are detected on every 25 fps frame (S3FD, g4g.metrics.s3fd),
linked into tracks within each shot, and each track is cut out as a square around its median-filtered
box and scored on its own. Definitions (syncnet_python's defaults):

- shots: PySceneDetect's ContentDetector as syncnet_python ran it (version 0.5): on the 25 fps frames,
  downscaled by 0.5's integer factor for the width (every 2nd..12th pixel), threshold 30, a cut at least
  15 frames after the previous one (0.5's rule, `FlashFilter` SUPPRESS in 0.7); a shot shorter than
  `min_track` frames is not tracked.
- tracks, per shot, built one at a time from the remaining detections: a track starts at the first
  remaining face and takes, frame after frame, the first face whose IoU with its last face is > 0.5,
  until the next face is more than `num_failed_det` (25) frames after its last (24 frames without a face
  are bridged, 25 end it); it is kept when it holds more than `min_track`
  (100) detections and the mean width or height of its boxes, linearly interpolated over the frames
  without one, is more than `min_face_size` (100) px.
- crop, per frame of a track: s = max(box w, h) / 2 and the box centre, each median-filtered over the
  track (scipy.signal.medfilt, kernel 13, zero-padded ends as there); the frame padded by
  int(s (1 + 2 c)) pixels of value 110 (c = crop_scale 0.4), rows [y - s, y + s (1 + 2 c)) and
  columns [x - s (1 + c), x + s (1 + c)) in the padded frame, truncated to integers, resized to 224 x 224.
- audio: the track's frames' own span, [first / 25, (last + 1) / 25) s.
- per clip: the mean over its tracks of their LSE-D, LSE-C (run_syncnet.py scores each track alone).

One stated rule of our own: a clip of at most `min_track` frames could never have a track, so its
minimum becomes half its length (frames // 2, at least 5) for both the shot and the track; the clip's
summary says so. A clip with no track has no framed LSE and the reason is recorded.

Boxes come from S3FD when its weights (sfd_face.pth) are present; otherwise from `HogFaceBoxes`, dlib's
HOG detector, labelled as a surrogate wherever its numbers go: its boxes are tighter than S3FD's, so
the crops are tighter too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from g4g.metrics.weights_info import WeightsInfo

MIN_TRACK = 100
NUM_FAILED_DET = 25
MIN_FACE_SIZE = 100
CROP_SCALE = 0.40
IOU_THRES = 0.5
MEDFILT = 13
PAD_VALUE = 110
SIZE = 224
SCENE_THRESHOLD = 30.0
SCENE_MIN_LEN = 15
FPS = 25


@dataclass
class Track:
    frames: np.ndarray  # (L,) consecutive frame indices
    boxes: np.ndarray   # (L, 4) x1, y1, x2, y2, interpolated where no face was detected
    n_detections: int

    def crop_params(self) -> np.ndarray:
        """(L, 3) x centre, y centre, half size s, median-filtered as syncnet_python's crop_video."""
        from scipy.signal import medfilt

        b = self.boxes
        s = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
        x, y = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        return np.stack([medfilt(x, MEDFILT), medfilt(y, MEDFILT), medfilt(s, MEDFILT)], 1)

    def audio_span(self, sr: int = 16000) -> tuple[int, int]:
        """Sample range of the track's frames."""
        per = sr // FPS
        return int(self.frames[0]) * per, (int(self.frames[-1]) + 1) * per


def min_track_for(n_frames: int, min_track: int = MIN_TRACK) -> int:
    """syncnet_python's minimum, or half the clip for a clip too short to ever reach it (our rule; at
    least 5, so that a track has the 6 frames one sync window needs)."""
    return min_track if n_frames > min_track else max(n_frames // 2, 5)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """syncnet_python's bb_intersection_over_union (no +1 pixel convention)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def track_shot(detections: list[np.ndarray], start: int, min_track: int = MIN_TRACK,
               num_failed_det: int = NUM_FAILED_DET, min_face_size: float = MIN_FACE_SIZE) -> list[Track]:
    """Tracks of one shot. detections[k]: (N, >= 4) boxes of frame start + k, best first."""
    from scipy.interpolate import interp1d

    # One face per frame joins a track (the first that overlaps): the reference's loop has no break but
    # removes from the list it iterates, which skips the next face, and after S3FD's final NMS (IoU <= 0.1)
    # no second face of a frame could overlap the first by > 0.5: the same tracks.
    remaining = [[np.asarray(b[:4], np.float64) for b in d] for d in detections]
    tracks = []
    while True:
        track: list[tuple[int, np.ndarray]] = []
        for k, faces in enumerate(remaining):
            if track and k - track[-1][0] > num_failed_det:
                break
            for i, box in enumerate(faces):
                if not track or iou(box, track[-1][1]) > IOU_THRES:
                    track.append((k, faces.pop(i)))
                    break
        if not track:
            return tracks
        if len(track) <= min_track:
            continue
        frames = np.array([k for k, _ in track])
        boxes = np.stack([b for _, b in track])
        span = np.arange(frames[0], frames[-1] + 1)
        filled = np.stack([interp1d(frames, boxes[:, j])(span) for j in range(4)], 1)
        if max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1])) > min_face_size:
            tracks.append(Track(span + start, filled, len(track)))


# PySceneDetect 0.5's automatic downscaling (video_manager.DEFAULT_DOWNSCALE_FACTORS): frame width -> step
DOWNSCALE = ((3200, 12), (2100, 8), (1700, 6), (1200, 5), (900, 4), (600, 3), (400, 2))


class ShotCuts:
    """Shot cuts of frames fed in order (RGB, 25 fps), found as syncnet_python's scene_detect found them."""

    def __init__(self):
        from scenedetect import ContentDetector
        from scenedetect.detector import FlashFilter

        self.detector = ContentDetector(threshold=SCENE_THRESHOLD, min_scene_len=SCENE_MIN_LEN,
                                        filter_mode=FlashFilter.Mode.SUPPRESS)
        self.cuts: list[int] = []
        self.n = 0

    def feed(self, frame: np.ndarray) -> None:
        from scenedetect import FrameTimecode

        step = next((f for w, f in DOWNSCALE if frame.shape[1] >= w), 1)
        bgr = np.ascontiguousarray(frame[::step, ::step, ::-1])  # 0.5 sliced the BGR frame the same way
        self.cuts += [tc.frame_num for tc in self.detector.process_frame(FrameTimecode(self.n, float(FPS)), bgr)]
        self.n += 1

    def shots(self, min_track: int = MIN_TRACK) -> list[tuple[int, int]]:
        """[(first, end)) frame ranges of the shots long enough to be tracked."""
        bounds = [0, *sorted(c for c in set(self.cuts) if 0 < c < self.n), self.n]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b - a >= min_track]


def face_tracks(detections: list[np.ndarray], shot_ranges: list[tuple[int, int]], min_track: int) -> list[Track]:
    return [t for a, b in shot_ranges for t in track_shot(detections[a:b], a, min_track)]


def crop(frame: np.ndarray, x: float, y: float, s: float) -> np.ndarray:
    """The 224 x 224 crop of one frame (syncnet_python's crop_video, without materialising the padding)."""
    import cv2

    bsi = int(s * (1 + 2 * CROP_SCALE))
    h, w = frame.shape[:2]
    # rows/columns in the padded frame, truncated as the reference does; a start below 0 (a smoothed centre
    # more than ~0.4 s outside the frame) is clipped to 0, where the reference's numpy slicing would wrap
    # around to the far side of the padded frame: a departure on purpose
    r0, r1 = (min(max(int(v), 0), h + 2 * bsi) for v in (y + bsi - s, y + bsi + s * (1 + 2 * CROP_SCALE)))
    c0, c1 = (min(max(int(v), 0), w + 2 * bsi) for v in (x + bsi - s * (1 + CROP_SCALE),
                                                          x + bsi + s * (1 + CROP_SCALE)))
    out = np.full((r1 - r0, c1 - c0, frame.shape[2]), PAD_VALUE, np.uint8)
    fr0, fr1, fc0, fc1 = max(r0 - bsi, 0), min(r1 - bsi, h), max(c0 - bsi, 0), min(c1 - bsi, w)
    if fr1 > fr0 and fc1 > fc0:
        out[fr0 + bsi - r0:fr1 + bsi - r0, fc0 + bsi - c0:fc1 + bsi - c0] = frame[fr0:fr1, fc0:fc1]
    return cv2.resize(out, (SIZE, SIZE))


class HogFaceBoxes:
    """Face boxes from dlib's HOG frontal detector (shipped with dlib, no weights to fetch): the labelled
    stand-in for S3FD. It runs on the frame scaled to at most 480 px on its long side (HOG's window is
    80 px: faces smaller than a sixth of such a frame are missed)."""

    MAX_SIDE = 480

    def __init__(self):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.info = WeightsInfo.surrogate("dlib HOG face boxes instead of S3FD (sfd_face.pth missing)")

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """(N, 5) boxes x1, y1, x2, y2 (pixels of `frame`) and score, best first."""
        import cv2

        f = min(1.0, self.MAX_SIDE / max(frame.shape[:2]))
        small = cv2.resize(frame, (0, 0), fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else frame
        rects, scores, _ = self.detector.run(np.ascontiguousarray(small), 0, 0.0)
        boxes = [[r.left() / f, r.top() / f, (r.right() + 1) / f, (r.bottom() + 1) / f, sc]
                 for r, sc in zip(rects, scores)]
        return np.array(sorted(boxes, key=lambda b: -b[4]), np.float64).reshape(-1, 5)
