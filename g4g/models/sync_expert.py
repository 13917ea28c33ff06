"""Lip-sync expert (docs/design/method.md Sec. 6; sync part of L_con, Eq. 23): a Wav2Lip-style SyncNet on our crops.

Visual input: the mouth squares of 5 consecutive frames resized to 128 x 128 and stacked frame-major
(15 ch, RGB in [0, 1]). Audio input: the mel window A (1 x 80 x 16) of the centre frame, which covers
exactly those 5 frames. Both encoders end in a ReLU, so the L2-normalised embeddings are non-negative
and their cosine lies in [0, 1]: it is used directly as the in-sync probability of a BCE (as Wav2Lip).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from g4g.data.crops import CROP_H, MOUTH_BOX
from g4g.models.blocks import ConvNormAct, ResBlock, scaled
from g4g.models.composite import crop_mouth
from g4g.models.encoders import AudioEncoder

EXPERT_SIZE = 128  # mouth square side seen by the expert
N_FRAMES = 5

# ----------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------


class MouthEncoder(nn.Module):
    """(B, 15, 128, 128) -> (B, emb): strides 2 down to 4 x 4, a 4x4 valid conv, 1x1 conv + ReLU."""

    def __init__(self, emb: int = 512, width: float = 1.0, norm: str = "batch",
                 in_ch: int = 3 * N_FRAMES):
        super().__init__()
        c = [scaled(x, width) for x in (32, 64, 128, 256, 512)]
        self.net = nn.Sequential(
            ConvNormAct(in_ch, c[0], 7, norm=norm),  # (B, c0, 128, 128)
            ConvNormAct(c[0], c[1], 3, stride=2, norm=norm), ResBlock(c[1], norm), ResBlock(c[1], norm),  # 64
            ConvNormAct(c[1], c[2], 3, stride=2, norm=norm), ResBlock(c[2], norm), ResBlock(c[2], norm),  # 32
            ConvNormAct(c[2], c[3], 3, stride=2, norm=norm), ResBlock(c[3], norm), ResBlock(c[3], norm),  # 16
            ConvNormAct(c[3], c[4], 3, stride=2, norm=norm), ResBlock(c[4], norm),  # (B, c4, 8, 8)
            ConvNormAct(c[4], c[4], 3, stride=2, norm=norm),  # (B, c4, 4, 4)
            ConvNormAct(c[4], emb, 4, padding=0, norm="none"),  # (B, emb, 1, 1)
            nn.Conv2d(emb, emb, 1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))  # (B, emb)


class SyncExpert(nn.Module):
    """SyncNet: embeddings of mouth clips and mel windows, cosine similarity in [0, 1]."""

    def __init__(self, width: float = 1.0, emb: int = 512, norm: str = "batch"):
        super().__init__()
        emb = scaled(emb, width)
        self.visual = MouthEncoder(emb, width, norm)
        audio_chans = tuple(scaled(x, width) for x in (32, 64, 128, 256))
        self.audio = AudioEncoder(emb, audio_chans, norm, final_act=True)

    def embed(self, mouths: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised (B, emb) embeddings of mouths (B, 15, 128, 128) and mel (B, 1, 80, 16)."""
        v = F.normalize(self.visual(expert_input(mouths)).float(), dim=1)
        a = F.normalize(self.audio(mel).float(), dim=1)
        return v, a

    def forward(self, mouths: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (B,) of the two embeddings."""
        v, a = self.embed(mouths, mel)
        return (v * a).sum(dim=1)


# ----------------------------------------------------------------------------------------------------
# Inputs and losses
# ----------------------------------------------------------------------------------------------------


def expert_input(mouths: torch.Tensor, size: int = EXPERT_SIZE) -> torch.Tensor:
    """Mouth clips (B, T, 3, h, w) or (B, 3T, h, w) -> (B, 3T, size, size), bilinearly resized."""
    if mouths.dim() == 5:
        mouths = mouths.flatten(1, 2)  # frame-major channels
    if mouths.shape[-2:] != (size, size):
        mouths = F.interpolate(mouths, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=mouths.shape[-1] > size)
    return mouths


def faces_to_mouths(faces: torch.Tensor) -> torch.Tensor:
    """Face crops of a clip (B, T, 3, H, W) -> the expert's input (B, 3T, 128, 128)."""
    return expert_input(crop_mouth(faces))


def sync_bce(cos: torch.Tensor, label: torch.Tensor | float) -> torch.Tensor:
    """BCE(cos, label) in float32 outside autocast (BCE is unsafe under autocast)."""
    with torch.autocast(device_type=cos.device.type, enabled=False):
        p = cos.float().clamp(1e-6, 1 - 1e-6)
        y = torch.as_tensor(label, dtype=torch.float32, device=p.device).expand_as(p)
        return F.binary_cross_entropy(p, y)


def sync_loss(expert: SyncExpert, mouth_frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Generator's sync term of L_con (Eq. 23): BCE(cos(sync_v(mouths), sync_a(A)), 1) with a frozen expert.

    mouth_frames: (B, 5, 3, h, w) or (B, 15, h, w) generated mouth squares in [0, 1];
    mel: (B, 1, 80, 16), the window of the centre frame. Keep the expert in eval mode and frozen.
    """
    return sync_bce(expert(mouth_frames, mel), 1.0)


def mouth_square(face: np.ndarray) -> np.ndarray:
    """The 1.0-scale mouth box of a face at any working size (rows 128..384, cols 32..288 at 416 x 320)."""
    k = face.shape[0] / CROP_H
    t, b, l, r = (round(v * k) for v in MOUTH_BOX)
    return face[t:b, l:r]
