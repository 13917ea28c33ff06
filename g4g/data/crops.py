"""Face-crop geometry (docs/design/method.md Sec. 1): from 68 landmarks to a 416 x 320 crop and its transform.

With nose bridge p29, nose base p33, mouth corners p48/p54 and the chin (max y of jaw 0..16):
    r     = max(chin_y - p29.y, p54.x - p48.x) * s / 2           (s = 1.05 at inference)
    rows  = [p29.y - r, p29.y + 2.25 r)     cols = [p33.x - 1.25 r, p33.x + 1.25 r)
so the 3.25 r x 2.5 r box maps to 416 x 320 with r -> 128 px, the anchor (p33.x, p29.y) to (160, 128),
and the mouth square rows [p29.y, p29.y + 2r), cols [p33.x - r, p33.x + r) to rows 128..383, cols 32..287.
The transform is a uniform scale + translation: crop = A @ [x, y, 1] with A = [[k, 0, tx], [0, k, ty]].
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from g4g.params import CropParams
from g4g.rejects import ClipError

CROP_H, CROP_W = 416, 320
R_PX = 128  # r in crop pixels at 416 x 320
ANCHOR = (160.0, 128.0)  # crop (x, y) of (p33.x, p29.y)
MOUTH_BOX = (128, 384, 32, 288)  # rows [128, 384), cols [32, 288) at 416 x 320




def frame_radius(points: np.ndarray, scale: float) -> np.ndarray:
    """r per frame from (T, 68, 2) landmarks (no temporal processing)."""
    chin_y = points[:, 0:17, 1].max(axis=1)
    a = chin_y - points[:, 29, 1]
    b = points[:, 54, 0] - points[:, 48, 0]
    return np.maximum(a, b) * scale / 2


def crop_boxes(points: np.ndarray, p: CropParams = CropParams()) -> np.ndarray:
    """(T, 4) boxes (x0, y0, x1, y1) in source pixels, temporally stabilised."""
    pts = np.asarray(points, dtype=np.float64)
    r = frame_radius(pts, p.scale)
    ax, ay = pts[:, 33, 0], pts[:, 29, 1]
    if len(pts) > 1:
        if p.window > 1:
            r = maximum_filter1d(r, size=p.window, mode="nearest")
        if p.smooth_sigma > 0:
            r = gaussian_filter1d(r, p.smooth_sigma, mode="nearest")
            ax = gaussian_filter1d(ax, p.smooth_sigma, mode="nearest")
            ay = gaussian_filter1d(ay, p.smooth_sigma, mode="nearest")
    return np.stack([ax - 1.25 * r, ay - r, ax + 1.25 * r, ay + 2.25 * r], axis=1)


def box_to_affine(boxes: np.ndarray, p: CropParams = CropParams()) -> np.ndarray:
    """(T, 2, 3) affine from source pixels to crop pixels for each box."""
    boxes = np.atleast_2d(boxes)
    k = CROP_W / (boxes[:, 2] - boxes[:, 0])  # = CROP_H / box height: the box has the crop's aspect
    A = np.zeros((len(boxes), 2, 3), dtype=np.float64)
    A[:, 0, 0] = k
    A[:, 1, 1] = k
    A[:, 0, 2] = -k * boxes[:, 0]
    A[:, 1, 2] = -k * boxes[:, 1]
    return A


def invert_affine(A: np.ndarray) -> np.ndarray:
    """Inverse of (…, 2, 3) affines (crop pixels back to source pixels)."""
    A = np.asarray(A, dtype=np.float64)
    M = np.concatenate([A, np.broadcast_to([0, 0, 1], A.shape[:-2] + (1, 3))], axis=-2)
    return np.linalg.inv(M)[..., :2, :]


def apply_affine(A: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (…, N, 2) points through (…, 2, 3) affines."""
    return pts @ np.swapaxes(A[..., :, :2], -1, -2) + A[..., None, :, 2]


def box_outside(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """True where a box leaves the frame (it is then padded by edge replication and flagged)."""
    return (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)


def warp_crop(frame: np.ndarray, A: np.ndarray, p: CropParams = CropParams()) -> np.ndarray:
    """Cut the crop of one RGB frame with its affine (anti-aliased when shrinking, replicate border)."""
    x0, y0, x1, y1 = _region(A, p)
    h, w = frame.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 - ix0 < 1 or iy1 - iy0 < 1:
        raise ClipError(f"crop box {x0, y0, x1, y1} lies outside the {w}x{h} frame", stage="crops")
    return warp_region(frame[iy0:iy1, ix0:ix1], (ix0, iy0), (x0, y0, x1, y1), A, p)


def crop_yuv420(frame, A: np.ndarray, p: CropParams = CropParams()) -> np.ndarray:
    """Crop from a decoded yuv420p frame (g4g.io.video.Yuv420 planes) converting only the region.

    Converting a whole 1080p frame to RGB costs more than the rest of the crop stage together; the
    face region is a fraction of it. The colour conversion is OpenCV's BT.601 I420 (what the decoder
    uses for unflagged video; within ~1 grey level of swscale's, whose chroma filter differs).
    """
    height, width = frame.shape
    x0, y0, x1, y1 = _region(A, p)
    ix0, iy0 = max(x0, 0) & ~1, max(y0, 0) & ~1  # chroma is subsampled 2x2: even-aligned region
    ix1, iy1 = min(x1 + (x1 & 1), width & ~1), min(y1 + (y1 & 1), height & ~1)
    if ix1 - ix0 < 2 or iy1 - iy0 < 2:
        raise ClipError(f"crop box {x0, y0, x1, y1} lies outside the {width}x{height} frame", stage="crops")
    return warp_region(frame.region(ix0, iy0, ix1, iy1).rgb(), (ix0, iy0), (x0, y0, x1, y1), A, p)


def _region(A: np.ndarray, p: CropParams) -> tuple[int, int, int, int]:
    """Integer source region (x0, y0, x1, y1) covering the crop, with a 2 px margin for filtering."""
    Ainv = invert_affine(np.asarray(A, np.float64)[None])[0]
    x0, y0 = Ainv[0, 2], Ainv[1, 2]
    x1, y1 = x0 + Ainv[0, 0] * CROP_W, y0 + Ainv[1, 1] * CROP_H
    return int(np.floor(x0)) - 2, int(np.floor(y0)) - 2, int(np.ceil(x1)) + 2, int(np.ceil(y1)) + 2


def warp_region(region: np.ndarray, origin: tuple[int, int], want: tuple[int, int, int, int], A: np.ndarray,
                p: CropParams = CropParams()) -> np.ndarray:
    """Warp a cut-out `region` (whose pixel (0, 0) is source pixel `origin`) to the crop of affine A.

    Parts of the wanted region outside the frame are edge-replicated. warpAffine has no anti-aliasing,
    so a shrink is low-passed first: by an integer area average (OpenCV's fast INTER_AREA path) while
    it is 2x or more, then by a Gaussian of sigma (1/s - 1) / 2 for the remaining factor s (the
    prefilter scikit-image's `resize(anti_aliasing=True)` uses); one warp then makes the mapping A.
    """
    import cv2

    ox, oy = origin
    x0, y0, x1, y1 = want
    pad = [max(0, oy - y0), max(0, y1 - (oy + region.shape[0])), max(0, ox - x0),
           max(0, x1 - (ox + region.shape[1]))]
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
        ox, oy = ox - pad[2], oy - pad[0]
    A = np.asarray(A, np.float64)
    k = A[0, 0]  # uniform scale, source -> crop pixels
    f = int(1.0 / k) if k < 0.5 else 1
    if f >= 2:
        h0, w0 = region.shape[:2]
        if h0 % f or w0 % f:
            region = cv2.copyMakeBorder(region, 0, -h0 % f, 0, -w0 % f, cv2.BORDER_REPLICATE)
        region = cv2.resize(region, (region.shape[1] // f, region.shape[0] // f), interpolation=cv2.INTER_AREA)
    sigma = (1.0 / (k * f) - 1.0) / 2.0
    if sigma > 0.2:
        region = cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    # region pixel u averages source pixels [u f, u f + f): centre X = f u + (f - 1) / 2 + ox;
    # crop c = A00 X + A02 (likewise for rows)
    M = np.float32([[k * f, 0, k * ((f - 1) / 2 + ox) + A[0, 2]],
                    [0, A[1, 1] * f, A[1, 1] * ((f - 1) / 2 + oy) + A[1, 2]]])
    return cv2.warpAffine(region, M, (CROP_W, CROP_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
