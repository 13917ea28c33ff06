"""Decoder of G4G (paper Sec. 3.2): cat(F_s, F_def) -> the generated face I_gen."""

from __future__ import annotations

import torch
from torch import nn

from g4g.models.blocks import ConvNormAct, ResBlock, Up

# ----------------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------------


class Decoder(nn.Module):
    """cat(F_s, F_def) (2 c3) -> conv c2 -> up x2 -> res -> up x2 (c1) -> 7x7 conv -> sigmoid RGB.

    The two up-samplings undo the stride 4 of the encoders; odd sizes are matched through `out_size`.
    """

    def __init__(self, chans: tuple[int, int, int] = (64, 128, 256), norm: str = "group"):
        super().__init__()
        c1, c2, c3 = chans
        self.inp = ConvNormAct(2 * c3, c2, 3, norm=norm)  # (B, c2, H/4, W/4)
        self.up1 = Up(c2, c2, norm=norm)  # (B, c2, H/2, W/2)
        self.res = ResBlock(c2, norm)
        self.up2 = Up(c2, c1, norm=norm)  # (B, c1, H, W)
        self.out = nn.Conv2d(c1, 3, 7, padding=3)  # (B, 3, H, W)

    def forward(self, f_s: torch.Tensor, f_def: torch.Tensor,
                out_size: tuple[int, int] | None = None) -> torch.Tensor:
        x = self.inp(torch.cat([f_s, f_def], dim=1))  # (B, c2, h, w)
        half = None if out_size is None else ((out_size[0] + 1) // 2, (out_size[1] + 1) // 2)
        x = self.res(self.up1(x, half))  # (B, c2, H/2, W/2)
        x = self.up2(x, out_size)  # (B, c1, H, W)
        return torch.sigmoid(self.out(x).float())  # I_gen in [0, 1], float32, (B, 3, H, W)
