"""Masks and priors drawn from the crop geometry and the 68 landmarks (docs/design/method.md Sec. 1-4), in torch.

- occlusion_mask: the mouth box at scale 0.8 / 1.0 / 1.2 of the 256 x 256 mouth square (Sec. 4).
- lower_face_mask: G, the Gaussian-smoothed filled hull of the references' jaw points 2..14 and nose base
  p33, mapped to the target's head pose and widened (Sec. 3.6, revised: nothing of the target's own mouth).
- landmark_sketch: L_r, anti-aliased polylines of the pose landmarks, no lips (Sec. 2), their width
  a fixed fraction of the face at every scale.
Landmarks are (B, 68, 2) (x, y) in crop pixel coordinates with pixel (row i, col j) centred at
(x=j, y=i), the OpenCV convention. Everything runs batched on any device, without OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

FULL_SIZE = (416, 320)  # face crop (H, W) at paper scale
MOUTH_BOX = (128, 384, 32, 288)  # top, bottom, left, right (exclusive ends) at 416 x 320
MASK_SCALES = (0.8, 1.0, 1.2)  # occlusion box scales for multi-scale supervision
HULL_POINTS = tuple(range(2, 15)) + (33,)  # jaw 2..14 and nose base
POSE_POINTS = tuple(range(27, 48))  # nose bridge and base, eyes: they follow the head, not the mouth
JAW_MARGIN = 0.15  # the mapped jaw hull widened by this fraction of its size away from p33
SKETCH_PATHS = (  # (first, last, closed): jaw sides, brows, nose bridge, nose base, eyes
    (0, 4, False), (12, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
    (36, 41, True), (42, 47, True))

# ----------------------------------------------------------------------------------------------------
# Crop geometry
# ----------------------------------------------------------------------------------------------------


def face_size(scale: int) -> tuple[int, int]:
    """Face crop (H, W) for a mouth size `scale` in {64, 128, 256}: (416, 320) * scale / 256."""
    return FULL_SIZE[0] * scale // 256, FULL_SIZE[1] * scale // 256


def mouth_box(size: tuple[int, int], mask_scale: float = 1.0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends, of the mouth square scaled by `mask_scale`, for a face
    of `size` (H, W), clipped to the crop. A larger box grows about the square's centre; a smaller one
    shrinks from the top only, so the jaw stays hidden: about the centre, the 0.8 box left the chin in
    view in 32 % of the demo's frames, and the chin tells the true mouth opening (docs/design/method.md
    Sec. 3 item 6, revised: the source must not show the target's jaw)."""
    H, W = size
    t, b, l, r = MOUTH_BOX
    cy, cx, half = (t + b) / 2, (l + r) / 2, (b - t) / 2 * mask_scale  # at 416 x 320
    if mask_scale < 1:
        y0, y1, x0, x1 = b - 2 * half, b, l, r
    else:
        y0, y1, x0, x1 = cy - half, cy + half, cx - half, cx + half
    fy, fx = H / FULL_SIZE[0], W / FULL_SIZE[1]
    top, bottom, left, right = round(y0 * fy), round(y1 * fy), round(x0 * fx), round(x1 * fx)
    return max(top, 0), min(bottom, H), max(left, 0), min(right, W)


def occlusion_mask(size: tuple[int, int], mask_scale: float | Sequence[float] | torch.Tensor = 1.0,
                   batch: int | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """M: 1 inside the (scaled) mouth box, 0 elsewhere: (B, 1, H, W). One scale per sample or shared."""
    scales = torch.as_tensor(mask_scale, dtype=torch.float64).flatten().tolist()
    if batch is not None and len(scales) == 1:
        scales = scales * batch
    m = torch.zeros(len(scales), 1, *size, device=device, dtype=dtype)
    for i, s in enumerate(scales):
        t, b, l, r = mouth_box(size, s)
        m[i, :, t:b, l:r] = 1.0
    return m


def crop_mouth(faces: torch.Tensor) -> torch.Tensor:
    """The 1.0-scale mouth square of face crops: (..., C, H, W) -> (..., C, S, S), S = 256 H / 416."""
    t, b, l, r = mouth_box(tuple(faces.shape[-2:]), 1.0)
    return faces[..., t:b, l:r]


# ----------------------------------------------------------------------------------------------------
# Lower-face mask G and the composite
# ----------------------------------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (zero padding, radius ceil(3 sigma)) of (B, C, H, W), in float32."""
    if sigma <= 0:
        return x
    rad = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-rad, rad + 1, device=x.device, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    y = F.conv2d(x.float(), k.view(1, 1, 1, -1).expand(C, 1, 1, -1), padding=(0, rad), groups=C)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), padding=(rad, 0), groups=C)


def _pixel_centres(size: tuple[int, int], device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size[0], device=device, dtype=torch.float32),
                            torch.arange(size[1], device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (HW, 2) as (x, y)


def fill_convex_hull(pts: torch.Tensor, size: tuple[int, int], eps: float = 1e-4) -> torch.Tensor:
    """Binary mask of the convex hull of pts (B, N, 2) at pixel centres: (B, 1, H, W).

    Directed edge i->j is a hull edge when every point lies strictly on its left or on the segment
    itself (collinear points keep only the longest edge), so there are at most N edges per sample.
    Repeated points count once (only a point's first copy starts or ends an edge): otherwise each
    hull edge appeared once per pair of copies and the N kept could miss a side.
    """
    pts = pts.float()
    B, N, _ = pts.shape
    same = (pts[:, :, None, :] == pts[:, None, :, :]).all(-1)  # (B, i, k)
    first = ~(same & torch.ones(N, N, dtype=torch.bool, device=pts.device).tril(-1)).any(-1)  # (B, i)
    e = pts[:, None, :, :] - pts[:, :, None, :]  # (B, i, j, 2): p_j - p_i
    d = pts[:, None, None, :, :] - pts[:, :, None, None, :]  # (B, i, 1, k, 2): p_k - p_i
    e_ = e[:, :, :, None, :]  # (B, i, j, 1, 2)
    cross = e_[..., 0] * d[..., 1] - e_[..., 1] * d[..., 0]  # (B, i, j, k)
    len2 = (e * e).sum(-1)  # (B, i, j)
    t = (e_ * d).sum(-1) / len2.clamp_min(1e-12)[..., None]  # (B, i, j, k) position along the edge
    ok = (cross > eps) | ((cross.abs() <= eps) & (t >= -1e-6) & (t <= 1 + 1e-6))
    is_edge = ok.all(dim=-1) & (len2 > 1e-12) & first[:, :, None] & first[:, None, :]  # (B, i, j)
    score, idx = is_edge.flatten(1).float().topk(N, dim=1)  # (B, N): up to N hull edges
    ii, jj = idx // N, idx % N
    a = torch.gather(pts, 1, ii[..., None].expand(-1, -1, 2))  # (B, N, 2) edge starts
    b = torch.gather(pts, 1, jj[..., None].expand(-1, -1, 2))  # (B, N, 2) edge ends
    x = _pixel_centres(size, pts.device)  # (HW, 2)
    inside = torch.ones(B, x.shape[0], dtype=torch.bool, device=pts.device)
    for n in range(N):
        ab, ax = b[:, n] - a[:, n], x[None] - a[:, n, None]  # (B, 2), (B, HW, 2)
        c = ab[:, None, 0] * ax[..., 1] - ab[:, None, 1] * ax[..., 0]  # (B, HW)
        inside &= (c >= -eps) | (score[:, n, None] == 0)
    return inside.view(B, 1, *size).float()


def similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (scale, rotation, translation; no reflection) taking src to dst points,
    (B, N, 2) each -> (B, 2, 3). In complex numbers: dst - mean = z (src - mean), z = <s, d> / <s, s>."""
    src, dst = src.double(), dst.double()
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - ms, dst - md
    n = (s * s).sum((1, 2)).clamp_min(1e-12)
    a = (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]).sum(1) / n
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / n
    R = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (B, 2, 2)
    t = md[:, 0] - (R @ ms[:, 0, :, None])[..., 0]
    return torch.cat([R, t[..., None]], -1)


def lower_face_mask(lmk: torch.Tensor, lmk_r: torch.Tensor, size: tuple[int, int], sigma_frac: float = 0.04,
                    margin: float = JAW_MARGIN) -> torch.Tensor:
    """G, the region the generator may rewrite, from what it may know: the head pose of the target and
    its references' jaws (docs/design/method.md Sec. 3, item 6, revised).

    Each reference's jaw hull points (jaw 2..14, p33) are mapped to the target's head pose by the
    similarity that fits its pose points (eyes, nose) onto the target's; the filled convex hull of all
    of them, widened by `margin` of its extent away from p33 (a mouth opened wider than in any
    reference), blurred with sigma = sigma_frac * W. The target's own mouth and jaw never enter: the
    true opening must not reach the composite in training, nor the source video's speech at inference.

    lmk (B, 68, 2) target landmarks, lmk_r (B, R, 68, 2) references', in crop pixels -> (B, 1, H, W) in
    [0, 1] (0.5 on the hull boundary).
    """
    lmk, lmk_r = torch.as_tensor(lmk), torch.as_tensor(lmk_r)
    B, R = lmk_r.shape[:2]
    pose = list(POSE_POINTS)
    M = similarity(lmk_r[:, :, pose].reshape(B * R, -1, 2),  # reference pose -> target pose, (B R, 2, 3)
                   lmk[:, None, pose].expand(B, R, -1, 2).reshape(B * R, -1, 2))
    jaw = lmk_r[:, :, list(HULL_POINTS)].reshape(B * R, -1, 2).double()
    mapped = (jaw @ M[:, :, :2].transpose(1, 2) + M[:, None, :, 2]).reshape(B, R, -1, 2)
    top = mapped[:, :, -1:]  # p33, the hull's fixed top
    mapped = (top + (mapped - top) * (1 + margin)).reshape(B, -1, 2)
    hull = fill_convex_hull(mapped, size)
    return gaussian_blur(hull, sigma_frac * size[1]).clamp_(0.0, 1.0)


def composite(i_gen: torch.Tensor, context: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """I_comp = G * I_gen + (1 - G) * context (the unmasked target frame): (B, 3, H, W), float32 so the
    context keeps its precision under bf16 autocast."""
    g = g.float()
    return g * i_gen.float() + (1.0 - g) * context.float()


# ----------------------------------------------------------------------------------------------------
# Landmark sketch L_r
# ----------------------------------------------------------------------------------------------------


def sketch_segments() -> list[tuple[int, int]]:
    """Index pairs of every line segment of the sketch (35 segments, no lip or lower-jaw points)."""
    segs = []
    for first, last, closed in SKETCH_PATHS:
        segs += [(i, i + 1) for i in range(first, last)]
        if closed:
            segs.append((last, first))
    return segs


def landmark_sketch(lmk: torch.Tensor, size: tuple[int, int], thickness: float = 2.0) -> torch.Tensor:
    """L_r: anti-aliased polylines of the pose landmarks, max over segments: (B, 68, 2) -> (B, 1, H, W)
    in [0, 1]. `thickness` is the line width in px of the 416 x 320 face; at a working size (H, W) the
    line is thickness * W / 320 px wide, so the sketch is the same drawing at every coarse-to-fine
    scale (a fixed pixel width would make it 4 times thicker, relative to the face, at 104 x 80).
    Coverage of a pixel at distance d from the segment, for a line of width w: the overlap of the
    line's cross-section [d - w/2, d + w/2] with the pixel [-1/2, 1/2], min(w, w/2 + 1/2 - d) in [0, 1]."""
    w = thickness * size[1] / FULL_SIZE[1]
    lmk = torch.as_tensor(lmk).float()
    B = lmk.shape[0]
    x = _pixel_centres(size, lmk.device)[None]  # (1, HW, 2)
    out = torch.zeros(B, x.shape[1], device=lmk.device)
    for i, j in sketch_segments():
        a, ab = lmk[:, i, None], (lmk[:, j] - lmk[:, i])[:, None]  # (B, 1, 2)
        t = ((x - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)  # (B, HW)
        nearest = a + t.clamp(0, 1)[..., None] * ab  # (B, HW, 2)
        dist = (x - nearest).norm(dim=-1)  # (B, HW)
        out = torch.maximum(out, torch.clamp(torch.clamp(w / 2 + 0.5 - dist, max=w), 0, 1))
    return out.view(B, 1, *size)
