"""Face-crop geometry (METHOD.md Sec. 1): from 68 landmarks to a 416 x 320 crop and its transform.

With nose bridge p29, nose base p33, mouth corners p48/p54 and the chin (max y of jaw 0..16):
    r     = max(chin_y - p29.y, p54.x - p48.x) * s / 2           (s = 1.05 at inference)
    rows  = [p29.y - r, p29.y + 2.25 r)     cols = [p33.x - 1.25 r, p33.x + 1.25 r)
so the 3.25 r x 2.5 r box maps to 416 x 320 with r -> 128 px, the anchor (p33.x, p29.y) to (160, 128),
and the mouth square rows [p29.y, p29.y + 2r), cols [p33.x - r, p33.x + r) to rows 128..383, cols 32..287.
The transform is a uniform scale + translation: crop = A @ [x, y, 1] with A = [[k, 0, tx], [0, k, ty]].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

CROP_H, CROP_W = 416, 320
R_PX = 128  # r in crop pixels at 416 x 320
ANCHOR = (160.0, 128.0)  # crop (x, y) of (p33.x, p29.y)
MOUTH_BOX = (128, 384, 32, 288)  # rows [128, 384), cols [32, 288) at 416 x 320


@dataclass(frozen=True)
class CropParams:
    scale: float = 1.05  # s at inference (train-time augmentation draws s ~ U[1.05, 1.15))
    window: int = 25  # frames: r is the max over a centred window, so the scale is stable
    smooth_sigma: float = 2.0  # frames: Gaussian smoothing of the anchor and r after the window max
    height: int = CROP_H
    width: int = CROP_W


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
    k = p.width / (boxes[:, 2] - boxes[:, 0])  # = p.height / box height: the box has the crop's aspect
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
    """Cut the crop of one frame with its affine (area-like quality when shrinking, replicate border)."""
    import cv2

    k = A[0, 0]
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        # INTER_AREA is not supported by warpAffine: pre-shrink the region of interest with resize.
        return _crop_by_resize(frame, A, p)
    return cv2.warpAffine(frame, A.astype(np.float32), (p.width, p.height), flags=interp,
                          borderMode=cv2.BORDER_REPLICATE)


def _crop_by_resize(frame: np.ndarray, A: np.ndarray, p: CropParams) -> np.ndarray:
    import cv2

    Ainv = invert_affine(A[None])[0]
    x0, y0 = Ainv[0, 2], Ainv[1, 2]
    x1, y1 = x0 + Ainv[0, 0] * p.width, y0 + Ainv[1, 1] * p.height
    h, w = frame.shape[:2]
    ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
    ix1, iy1 = int(np.ceil(x1)) + 1, int(np.ceil(y1)) + 1
    pad = [max(0, -iy0), max(0, iy1 - h), max(0, -ix0), max(0, ix1 - w)]
    region = frame[max(iy0, 0):min(iy1, h), max(ix0, 0):min(ix1, w)]
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    # shrink with INTER_AREA (anti-aliased), then a warp that makes the mapping exactly A:
    # small pixel u <-> source X = u / kx + ix0, and crop c = k (X - x0).
    k = A[0, 0]
    sw, sh = max(1, int(round(region.shape[1] * k))), max(1, int(round(region.shape[0] * k)))
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
    kx, ky = sw / region.shape[1], sh / region.shape[0]
    M = np.float32([[k / kx, 0, k * (ix0 - x0)], [0, k / ky, k * (iy0 - y0)]])
    return cv2.warpAffine(small, M, (p.width, p.height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
