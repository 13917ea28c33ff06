"""Building blocks shared by every network: conv-norm-act, residual blocks, down and up sampling.

Normalisation is GroupNorm by default (batch-size independent: the clip stage trains on batch 3 of
5 correlated frames, where BatchNorm statistics are poor). The sync expert, trained on large batches
like Wav2Lip's, may use BatchNorm; discriminators drop the norm on their first layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------------------
# Channel and norm helpers
# ----------------------------------------------------------------------------------------------------


def scaled(c: int, width: float) -> int:
    """Channels `c` at paper scale times the width multiplier, rounded to a multiple of 8 (>= 8)."""
    return max(8, int(round(c * width / 8)) * 8)


def make_norm(kind: str, c: int) -> nn.Module:
    """'group' (GroupNorm with gcd(32, c) groups), 'batch', 'instance' or 'none'."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, c), c)
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "instance":
        return nn.InstanceNorm2d(c, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'")


def make_act(kind: str) -> nn.Module:
    """'relu', 'lrelu' (slope 0.2), or 'none'."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation '{kind}'")


# ----------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation; 'same' padding for odd kernels unless `padding` is given."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | None = None,
                 norm: str = "group", act: str = "relu"):
        if padding is None:
            padding = (k // 2) if isinstance(k, int) else (k[0] // 2, k[1] // 2)
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, padding, bias=(norm == "none")),
            make_norm(norm, cout),
            make_act(act),
        )


class ResBlock(nn.Module):
    """x + conv-norm-act-conv-norm(x), then the activation (plain residual block, 3x3 convs)."""

    def __init__(self, c: int, norm: str = "group", act: str = "relu"):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(c, c, 3, norm=norm, act=act),
            ConvNormAct(c, c, 3, norm=norm, act="none"),
        )
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.act(x + self.body(x))


class Down(ConvNormAct):
    """Stride-2 3x3 conv-norm-act: halves H and W (ceil for odd sizes)."""

    def __init__(self, cin: int, cout: int, norm: str = "group", act: str = "relu"):
        super().__init__(cin, cout, 3, stride=2, norm=norm, act=act)


class Up(nn.Module):
    """Nearest x2 upsampling then 3x3 conv-norm-act (no transposed conv: avoids checkerboards).

    `size` in forward overrides the x2 target (used to match a skip connection of odd size).
    """

    def __init__(self, cin: int, cout: int, norm: str = "group", act: str = "relu"):
        super().__init__()
        self.conv = ConvNormAct(cin, cout, 3, norm=norm, act=act)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        else:
            x = F.interpolate(x, size=size, mode="nearest")  # (B, C, *size)
        return self.conv(x)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
