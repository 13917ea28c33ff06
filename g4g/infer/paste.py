"""Paste a generated face crop back into the full-resolution frame (docs/design/method.md Sec. 7).

The crop transform A (2x3, source pixels -> 416 x 320 crop pixels, stored per frame by the crops stage)
is inverted: every frame pixel p inside the crop's footprint samples the face at A p (bilinear). The
face may be at any working size (104 x 80 at the demo scale): its pixels relate to the 416 x 320 crop
by x_face = (x_crop + 0.5) k - 0.5, k = face width / 320 (pixel centres at integers, as OpenCV).
The pasted face fades in over `feather` crop pixels from the crop border (a linear ramp), so no seam
shows; only the footprint region of the frame is touched. An optional `mask` (416 x 320, in [0, 1])
weights the face further: with the lower-face mask G (`lower_face_alpha`, as the generator's composite)
only the regenerated lower face replaces the frame, and the frame outside G stays bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from g4g.data.crops import CROP_H, CROP_W, invert_affine
from g4g.models.composite import lower_face_mask


def face_affine(A: np.ndarray, face_shape: tuple[int, int],
                crop_size: tuple[int, int] = (CROP_H, CROP_W)) -> np.ndarray:
    """(2, 3) source -> face pixels for a face of face_shape (h, w), from A (source -> crop pixels)."""
    k = face_shape[1] / crop_size[1]
    A = np.asarray(A, np.float64)
    return np.vstack([A[0] * k, A[1] * k]) + np.array([[0, 0, 0.5 * k - 0.5], [0, 0, 0.5 * k - 0.5]])


def footprint(A: np.ndarray, frame_shape: tuple[int, int], crop_size: tuple[int, int] = (CROP_H, CROP_W),
              box: tuple[float, float, float, float] | None = None) -> tuple[int, int, int, int] | None:
    """Integer frame region (x0, y0, x1, y1) covered by the crop of A, clipped to the frame (None: outside).

    box: only this rectangle (x0, y0, x1, y1) of the crop, in crop pixel coordinates (default: all of it).
    """

    H, W = crop_size
    bx0, by0, bx1, by1 = box if box is not None else (-0.5, -0.5, W - 0.5, H - 0.5)
    inv = invert_affine(np.asarray(A, np.float64)[None])[0]
    corners = np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]])
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
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    A = np.asarray(A, np.float32)
    cx = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]  # crop coordinates of each frame pixel (broadcast to h x w)
    cy = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    d = np.minimum(np.minimum(cx + 0.5, W - 0.5 - cx), np.minimum(cy + 0.5, H - 0.5 - cy))
    if feather <= 0:
        return (d > 0).astype(np.float32)
    return np.clip(d / feather, 0.0, 1.0)


def lower_face_alpha(crop_lmk: np.ndarray, crop_lmk_r: np.ndarray, sigma_frac: float = 0.04, div: int = 2,
                     crop_size: tuple[int, int] = (CROP_H, CROP_W)) -> np.ndarray:
    """G (g4g.models.composite.lower_face_mask) for (n, 68, 2) frame landmarks and the (R, 68, 2) landmarks
    of the references they share, in crop pixels, at the crop size: rendered at 1/div size (smooth, so it
    upsamples within a few % at the hull border, 30x faster) and resized: (n, H, W, 1) float32 in
    [0, 1], exactly 0 beyond 3 sigma of the hull."""
    import torch


    H, W = crop_size
    lmk = torch.from_numpy((np.asarray(crop_lmk, np.float64) + 0.5) / div - 0.5)
    lmk_r = torch.from_numpy((np.asarray(crop_lmk_r, np.float64) + 0.5) / div - 0.5)
    small = lower_face_mask(lmk, lmk_r[None].expand(len(lmk), -1, -1, -1), (H // div, W // div), sigma_frac)
    return np.stack([cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR) for g in small[:, 0].numpy()])[..., None]


def paste_face(frame: np.ndarray, face: np.ndarray, A: np.ndarray, feather: float = 16.0,
               crop_size: tuple[int, int] = (CROP_H, CROP_W), mask: np.ndarray | None = None) -> np.ndarray:
    """The frame (H, W, 3) uint8 with `face` (h, w, 3) uint8 or float in [0, 255] pasted through A.

    mask: optional (H_c, W_c) or (H_c, W_c, 1) weight of the face in [0, 1] at `crop_size` (e.g. G from
    `lower_face_alpha`); the frame keeps (1 - mask) of its own pixels. Returns a new array; pixels outside
    the crop's footprint, or where the mask is 0, are the frame's own, bit for bit.
    """
    out = frame.copy()
    box = None
    if mask is not None:  # only where the mask is nonzero (G: the lower face, a third of the crop)
        mask = np.asarray(mask, np.float32).reshape(crop_size)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows) == 0:
            return out
        box = (cols[0] - 1.0, rows[0] - 1.0, cols[-1] + 1.0, rows[-1] + 1.0)  # + bilinear reach
    region = footprint(A, frame.shape[:2], crop_size, box)
    if region is None:
        return out
    x0, y0, x1, y1 = region

    def to_region(img: np.ndarray, M: np.ndarray, border: int) -> np.ndarray:
        """img sampled at every region pixel: M maps frame pixels to img pixels."""
        M = M.copy()
        M[:, 2] += M[:, 0] * x0 + M[:, 1] * y0  # region pixel (u, v) is frame pixel (x0 + u, y0 + v)
        return cv2.warpAffine(np.ascontiguousarray(img, np.float32), M, (x1 - x0, y1 - y0),  # M float64
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)

    warped = to_region(face, face_affine(A, face.shape[:2], crop_size), cv2.BORDER_REPLICATE)
    a = feather_alpha(A, region, feather, crop_size)
    if mask is not None:  # the mask lives in crop pixels: A itself maps frame -> mask
        a = a * to_region(mask, np.asarray(A, np.float64), cv2.BORDER_CONSTANT)
    a = a[..., None]
    base = frame[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(a * warped + (1 - a) * base + 0.5, 0, 255).astype(np.uint8)
    return out
