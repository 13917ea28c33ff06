"""Encoders of G4G (paper Sec. 3.1, Eq. 1-4): source E_s, reference E_r, landmark E_l, audio E_a.

E_s, E_r and E_l share one layout (7x7 conv -> two stride-2 downs, stride 4 overall); E_l is then
globally pooled into the landmark code l_r. E_a is a Wav2Lip-style 2-D conv stack over the
1 x 80 x 16 mel window that ends in a 1 x 1 map.
"""

from __future__ import annotations

import torch
from torch import nn

from g4g.models.blocks import ConvNormAct, Down, ResBlock

# ----------------------------------------------------------------------------------------------------
# Visual encoders (Eq. 1-3)
# ----------------------------------------------------------------------------------------------------


class VisualEncoder(nn.Module):
    """cin -> 7x7 conv c1 -> down c2 -> down c3: a stride-4 feature map (E_s, E_r, E_l body)."""

    def __init__(self, cin: int, chans: tuple[int, int, int] = (64, 128, 256), norm: str = "group"):
        super().__init__()
        c1, c2, c3 = chans
        self.net = nn.Sequential(
            ConvNormAct(cin, c1, 7, norm=norm),  # (B, c1, H, W)
            Down(c1, c2, norm=norm),  # (B, c2, H/2, W/2)
            Down(c2, c3, norm=norm),  # (B, c3, H/4, W/4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) -> (B, c3, H/4, W/4)
        return self.net(x)


class LandmarkEncoder(VisualEncoder):
    """E_l (Eq. 3): the landmark sketch L_r -> visual encoder -> global average pool -> l_r."""

    def __init__(self, chans: tuple[int, int, int] = (64, 128, 256), norm: str = "group"):
        super().__init__(1, chans, norm)

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, c3)
        return super().forward(sketch).mean(dim=(2, 3))


class CodeHead(nn.Module):
    """Strided conv stack + global average pool: a spatial map -> a pooled code (v of Sec. 3.1)."""

    def __init__(self, c: int, n_down: int = 2, norm: str = "group"):
        super().__init__()
        self.net = nn.Sequential(*[Down(c, c, norm=norm) for _ in range(n_down)])
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, C)
        return self.proj(self.net(x).mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------------
# Audio encoder (Eq. 4)
# ----------------------------------------------------------------------------------------------------


class AudioEncoder(nn.Module):
    """E_a: mel window (B, 1, 80, 16) -> code (B, out_dim), Wav2Lip-style 2-D conv stack.

    Spatial trace (mel x time): 80x16 -> s(3,1) 27x16 -> s3 9x6 -> s(3,2) 3x3 -> 3x3 valid conv 1x1.
    `final_act` adds a ReLU on the code (the sync expert needs non-negative embeddings so that the
    cosine lies in [0, 1] and can be fed to BCE, as in Wav2Lip).
    """

    def __init__(self, out_dim: int = 256, chans: tuple[int, int, int, int] = (32, 64, 128, 256),
                 norm: str = "group", final_act: bool = False):
        super().__init__()
        c1, c2, c3, c4 = chans
        self.net = nn.Sequential(
            ConvNormAct(1, c1, 3, norm=norm),  # (B, c1, 80, 16)
            ResBlock(c1, norm), ResBlock(c1, norm),
            ConvNormAct(c1, c2, 3, stride=(3, 1), padding=1, norm=norm),  # (B, c2, 27, 16)
            ResBlock(c2, norm), ResBlock(c2, norm),
            ConvNormAct(c2, c3, 3, stride=3, padding=1, norm=norm),  # (B, c3, 9, 6)
            ResBlock(c3, norm), ResBlock(c3, norm),
            ConvNormAct(c3, c4, 3, stride=(3, 2), padding=1, norm=norm),  # (B, c4, 3, 3)
            ResBlock(c4, norm),
            ConvNormAct(c4, out_dim, 3, padding=0, norm="none"),  # (B, out_dim, 1, 1): no norm at 1x1
            nn.Conv2d(out_dim, out_dim, 1),  # (B, out_dim, 1, 1)
        )
        self.final_act = nn.ReLU() if final_act else nn.Identity()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, 1, 80, 16) -> (B, out_dim)
        return self.final_act(self.net(mel).mean(dim=(2, 3)))
