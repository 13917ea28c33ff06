"""Paste a generated face crop back into the full-resolution frame (METHOD.md Sec. 7).

The crop transform A (2x3, source pixels -> 416 x 320 crop pixels, stored per frame by the crops stage)
is inverted: every frame pixel p inside the crop's footprint samples the face at A p (bilinear). The
face may be at any working size (104 x 80 at the demo scale): its pixels relate to the 416 x 320 crop
by x_face = (x_crop + 0.5) k - 0.5, k = face width / 320 (pixel centres at integers, as OpenCV).
The pasted face fades in over `feather` crop pixels from the crop border (a linear ramp), so no seam
shows; only the footprint region of the frame is touched.
"""

from __future__ import annotations

import cv2
import numpy as np

from g4g.data.crops import CROP_H, CROP_W


def face_affine(A: np.ndarray, face_shape: tuple[int, int],
                crop_size: tuple[int, int] = (CROP_H, CROP_W)) -> np.ndarray:
    """(2, 3) source -> face pixels for a face of face_shape (h, w), from A (source -> crop pixels)."""
    k = face_shape[1] / crop_size[1]
    A = np.asarray(A, np.float64)
    return np.vstack([A[0] * k, A[1] * k]) + np.array([[0, 0, 0.5 * k - 0.5], [0, 0, 0.5 * k - 0.5]])


def footprint(A: np.ndarray, frame_shape: tuple[int, int], crop_size: tuple[int, int] = (CROP_H, CROP_W)
              ) -> tuple[int, int, int, int] | None:
    """Integer frame region (x0, y0, x1, y1) covered by the crop of A, clipped to the frame (None: outside)."""
    from g4g.data.crops import invert_affine

    H, W = crop_size
    inv = invert_affine(np.asarray(A, np.float64)[None])[0]
    corners = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [-0.5, H - 0.5], [W - 0.5, H - 0.5]])
    src = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(src.min(0)).astype(int)
    x1, y1 = np.ceil(src.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, frame_shape[1]), min(y1, frame_shape[0])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def feather_alpha(A: np.ndarray, region: tuple[int, int, int, int], feather: float,
                  crop_size: tuple[int, int] = (CROP_H, CROP_W)) -> np.ndarray:
    """(h, w) float32 weight of the face over `region`: 0 outside the crop, rising linearly to 1 over
    `feather` crop pixels inside its border."""
    H, W = crop_size
    x0, y0, x1, y1 = region
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    A = np.asarray(A, np.float32)
    cx = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]  # crop coordinates of each frame pixel
    cy = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    d = np.minimum(np.minimum(cx + 0.5, W - 0.5 - cx), np.minimum(cy + 0.5, H - 0.5 - cy))
    if feather <= 0:
        return (d > 0).astype(np.float32)
    return np.clip(d / feather, 0.0, 1.0)


def paste_face(frame: np.ndarray, face: np.ndarray, A: np.ndarray, feather: float = 16.0,
               crop_size: tuple[int, int] = (CROP_H, CROP_W)) -> np.ndarray:
    """The frame (H, W, 3) uint8 with `face` (h, w, 3) uint8 or float in [0, 255] pasted through A.

    Returns a new array; pixels outside the crop's footprint are the frame's own, bit for bit.
    """
    out = frame.copy()
    region = footprint(A, frame.shape[:2], crop_size)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    M = face_affine(A, face.shape[:2], crop_size)
    M[:, 2] += M[:, 0] * x0 + M[:, 1] * y0  # region pixel (u, v) is frame pixel (x0 + u, y0 + v)
    warped = cv2.warpAffine(np.ascontiguousarray(face, np.float32), M.astype(np.float32), (x1 - x0, y1 - y0),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    a = feather_alpha(A, region, feather, crop_size)[..., None]
    base = frame[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(a * warped + (1 - a) * base + 0.5, 0, 255).astype(np.uint8)
    return out
