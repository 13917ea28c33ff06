"""LS-GAN discriminators (paper Sec. 3.3, L_GAN, Eq. 21): a frame D on RGB, a temporal D on 5 frames.

Both are PatchGAN-style: 4x4 convs, stride 2 then 1, LeakyReLU 0.2, no norm on the first layer,
and a 1-channel patch map of raw scores (least-squares targets 1 real, 0 fake; no sigmoid).
"""

from __future__ import annotations

import torch
from torch import nn

from g4g.models.blocks import ConvNormAct, scaled

# ----------------------------------------------------------------------------------------------------
# PatchGAN
# ----------------------------------------------------------------------------------------------------


class PatchDiscriminator(nn.Module):
    """in_ch -> n_layers stride-2 4x4 convs (64, 128, 256 ... x width) -> 4x4 s1 -> 4x4 s1 -> 1 channel.

    Receptive field 70 px with n_layers = 3 (the pix2pix PatchGAN).
    """

    def __init__(self, in_ch: int = 3, width: float = 1.0, n_layers: int = 3, norm: str = "group"):
        super().__init__()
        chans = [scaled(64 * 2 ** min(i, 3), width) for i in range(n_layers + 1)]
        layers = [ConvNormAct(in_ch, chans[0], 4, stride=2, padding=1, norm="none", act="lrelu")]
        for i in range(1, n_layers):
            layers.append(ConvNormAct(chans[i - 1], chans[i], 4, stride=2, padding=1, norm=norm, act="lrelu"))
        layers.append(ConvNormAct(chans[n_layers - 1], chans[n_layers], 4, stride=1, padding=1, norm=norm,
                                  act="lrelu"))
        layers.append(nn.Conv2d(chans[n_layers], 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_ch, H, W) -> (B, 1, h, w)
        return self.net(x)


class FrameDiscriminator(PatchDiscriminator):
    """D on single RGB faces (B, 3, H, W)."""

    def __init__(self, width: float = 1.0, n_layers: int = 3, norm: str = "group"):
        super().__init__(3, width, n_layers, norm)


class TemporalDiscriminator(PatchDiscriminator):
    """D on T consecutive faces stacked on channels: (B, T, 3, H, W) or (B, 3T, H, W), T = 5 (15 ch)."""

    def __init__(self, n_frames: int = 5, width: float = 1.0, n_layers: int = 3, norm: str = "group"):
        super().__init__(3 * n_frames, width, n_layers, norm)
        self.n_frames = n_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            x = x.flatten(1, 2)  # (B, 3T, H, W), frame-major channel order
        return super().forward(x)


def stack_clips(x: torch.Tensor, n_frames: int = 5) -> torch.Tensor:
    """Frames laid out clip-major (B*T, C, H, W) -> (B, T*C, H, W) for the temporal D / sync expert."""
    bt, c, h, w = x.shape
    return x.reshape(bt // n_frames, n_frames * c, h, w)
