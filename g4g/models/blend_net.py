"""Blend net (paper Sec. 3.2, fusion): a small U-Net that fuses and amends the composite into I_out.

Input cat(I_comp, I_gen, G) (7 ch), output a sigmoid RGB face. It predicts the image itself, not a
residual over I_comp.
"""

from __future__ import annotations

import torch
from torch import nn

from g4g.models.blocks import ConvNormAct, Down, Up

# ----------------------------------------------------------------------------------------------------
# U-Net
# ----------------------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-norm-act layers."""

    def __init__(self, cin: int, cout: int, norm: str = "group"):
        super().__init__(ConvNormAct(cin, cout, 3, norm=norm), ConvNormAct(cout, cout, 3, norm=norm))


class BlendNet(nn.Module):
    """4-level U-Net (base, 2 base, 4 base, 8 base channels at strides 1, 2, 4, 8) -> sigmoid RGB."""

    def __init__(self, base: int = 32, in_ch: int = 7, levels: int = 4, norm: str = "group"):
        super().__init__()
        chans = [base * 2 ** i for i in range(levels)]  # e.g. 32, 64, 128, 256
        self.inc = DoubleConv(in_ch, chans[0], norm)
        self.downs = nn.ModuleList(
            nn.Sequential(Down(c, c2, norm=norm), ConvNormAct(c2, c2, 3, norm=norm))
            for c, c2 in zip(chans[:-1], chans[1:]))
        rev = list(reversed(range(levels - 1)))
        self.ups = nn.ModuleList(Up(chans[i + 1], chans[i], norm=norm) for i in rev)
        self.fuse = nn.ModuleList(DoubleConv(2 * chans[i], chans[i], norm) for i in rev)
        self.out = nn.Conv2d(chans[0], 3, 1)

    def forward(self, i_comp: torch.Tensor, i_gen: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), (B, 3, H, W), (B, 1, H, W) -> I_out (B, 3, H, W) in [0, 1]."""
        x = self.inc(torch.cat([i_comp, i_gen, g.to(i_comp.dtype)], dim=1))  # (B, base, H, W)
        skips = [x]
        for down in self.downs:
            x = down(x)  # (B, 2^l base, H / 2^l, W / 2^l)
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        for up, fuse in zip(self.ups, self.fuse):
            skip = skips.pop()
            x = fuse(torch.cat([up(x, skip.shape[-2:]), skip], dim=1))  # (B, C_l, H_l, W_l)
        return torch.sigmoid(self.out(x).float())  # float32 output under autocast too
