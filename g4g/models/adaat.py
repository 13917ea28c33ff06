"""Adaptive spatial transformation (paper Sec. 3.2/3.4, Eq. 18; DINet's AdaAT).

Every channel c of the reference feature map is warped by its own affine transform, predicted from the
driving code p = cat(v, a):
    s_c = 2 sigmoid(.)   theta_c = pi tanh(.)   (tx_c, ty_c) = tanh(.)
    A_c = s_c R(theta_c),   output_c(q) = input_c(A_c q + t_c)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from g4g.models.blocks import ResBlock

# ----------------------------------------------------------------------------------------------------
# Per-channel affine warp (Eq. 18)
# ----------------------------------------------------------------------------------------------------


def sampling_grid(theta: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """F.affine_grid(theta, [N, 1, H, W], align_corners=False) in elementwise float32: theta (N, 2, 3) ->
    (N, H, W, 2) sampling coordinates (x, y) of each output pixel centre."""
    dev = theta.device
    xs = (2 * torch.arange(W, device=dev, dtype=torch.float32) + 1) / W - 1  # (W,) pixel centres
    ys = (2 * torch.arange(H, device=dev, dtype=torch.float32) + 1) / H - 1  # (H,)
    t = theta.float()[:, :, :, None, None]  # (N, 2, 3, 1, 1)
    xy = t[:, :, 0] * xs[None, None, None, :] + t[:, :, 1] * ys[None, None, :, None] + t[:, :, 2]  # (N, 2, H, W)
    return xy.permute(0, 2, 3, 1)


def affine_warp(feat: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor,
                ty: torch.Tensor, aspect_correct: bool = True) -> torch.Tensor:
    """Warp each channel of feat (B, C, H, W) with its own similarity transform; params are (B, C).

    Conventions (documented because DINet mixed them):
    - The transform maps OUTPUT coordinates to INPUT sampling coordinates (spatial-transformer
      convention): output(q) = input(s R(theta) q + t). A marker at input position p therefore
      appears at q = R(-theta) (p - t) / s.
    - Coordinates are normalised to [-1, 1] with `align_corners=False`: -1 and +1 are the outer edges
      of the border pixels, pixel j has centre (2j + 1) / W - 1, and the origin is the map centre. This
      makes a translation a fixed fraction of the map at every resolution, so weights carry over across
      the coarse-to-fine scales (64 -> 128 -> 256), and identity parameters sample every pixel at its
      own centre (the input back, up to float rounding of the grid: 2e-5 of a pixel at 104 x 80).
    - `aspect_correct`: the rotation is a true rotation in pixel space (A = s D^-1 R D with
      D = diag(W/2, H/2)); without it, a rotation in normalised coordinates shears non-square maps.
    - The grid is true float32 (also under bf16 autocast, and with TF32 on): it is built by elementwise
      arithmetic (`sampling_grid`), not by F.affine_grid, a batched matmul that CUDA runs in TF32 (a
      10-bit mantissa: errors of 1e-3 of the map) when TF32 is on for the convolutions and Linear layers
      (g4g.train.distributed.init). grid_sample (bilinear, zero padding outside) runs in float32 too.
    """
    B, C, H, W = feat.shape
    with torch.autocast(device_type=feat.device.type, enabled=False):
        s, th = scale.float().reshape(B * C), angle.float().reshape(B * C)
        cos, sin = torch.cos(th), torch.sin(th)
        ar = H / W if aspect_correct else 1.0
        row0 = torch.stack([s * cos, -s * sin * ar, tx.float().reshape(B * C)], dim=1)  # (BC, 3)
        row1 = torch.stack([s * sin / ar, s * cos, ty.float().reshape(B * C)], dim=1)  # (BC, 3)
        grid = sampling_grid(torch.stack([row0, row1], dim=1), H, W)  # (BC, H, W, 2)
        x = feat.float().reshape(B * C, 1, H, W)  # (BC, 1, H, W)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.reshape(B, C, H, W).to(feat.dtype)
    if feat.is_contiguous(memory_format=torch.channels_last) and not feat.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class AdaAT(nn.Module):
    """Predict per-channel (scale, angle, tx, ty) from p (B, p_dim) and warp a (B, C, H, W) map.

    The heads start at zero, so the module starts as the identity (s = 1, theta = 0, t = 0).
    """

    def __init__(self, c: int, p_dim: int, hidden: int = 256, aspect_correct: bool = True):
        super().__init__()
        self.c, self.aspect_correct = c, aspect_correct
        self.mlp = nn.Sequential(nn.Linear(p_dim, hidden), nn.ReLU(inplace=True))
        self.heads = nn.Linear(hidden, 4 * c)  # scale, angle, tx, ty logits per channel
        nn.init.zeros_(self.heads.weight)
        nn.init.zeros_(self.heads.bias)

    def params(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'scale', 'angle', 'tx', 'ty'}: each (B, C), float32."""
        raw = self.heads(self.mlp(p)).float()  # (B, 4C)
        s, th, tx, ty = raw.chunk(4, dim=1)  # 4 x (B, C)
        return {"scale": 2.0 * torch.sigmoid(s), "angle": math.pi * torch.tanh(th),  # Eq. 18
                "tx": torch.tanh(tx), "ty": torch.tanh(ty)}

    def forward(self, feat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        k = self.params(p)
        return affine_warp(feat, k["scale"], k["angle"], k["tx"], k["ty"], self.aspect_correct)


# ----------------------------------------------------------------------------------------------------
# The deformation stage: F_ref -> res blocks -> AdaAT -> res blocks -> F_def
# ----------------------------------------------------------------------------------------------------


class AdaptiveSpatialTransform(nn.Module):
    """F_ref -> n_pre residual blocks -> AdaAT(p) -> n_post residual blocks -> F_def (Sec. 3.2)."""

    def __init__(self, c: int, p_dim: int, hidden: int = 256, n_pre: int = 4, n_post: int = 4,
                 norm: str = "group", aspect_correct: bool = True):
        super().__init__()
        self.pre = nn.Sequential(*[ResBlock(c, norm) for _ in range(n_pre)])
        self.adaat = AdaAT(c, p_dim, hidden, aspect_correct)
        self.post = nn.Sequential(*[ResBlock(c, norm) for _ in range(n_post)])

    def forward(self, f_ref: torch.Tensor, p: torch.Tensor, repeat: int = 1) -> tuple[torch.Tensor, dict]:
        """(F_def (B, C, h, w), AdaAT params dict of (B, C)); f_ref (B / repeat, C, h, w) holds one map per
        `repeat` consecutive frames that share their references (the pre-warp blocks run once for them)."""
        k = self.adaat.params(p)
        x = self.pre(f_ref).repeat_interleave(repeat, dim=0)  # (B, C, h, w)
        x = affine_warp(x, k["scale"], k["angle"], k["tx"], k["ty"], self.adaat.aspect_correct)
        return self.post(x), k
