"""The project's own sync expert as an LSE embedder: a labelled surrogate for the official SyncNet.

Used only when params.yaml `evaluate.allow_surrogates` is true, and always reported under its own
column names ("LSE-D (own SyncNet)", "LSE-C (own SyncNet)"), never as LSE-D / LSE-C: the numbers live
on another scale (unit-norm embeddings, distances in [0, 2]) and the expert was trained on this
project's own data.

Inputs mirror what the expert was trained on (g4g.train.sync.SyncSamples): each 416 x 320 face crop is
resized (INTER_AREA) to the face size of the expert's mouth size, its 1.0-scale mouth square is cut and
resized to 128 x 128; a window stacks 5 consecutive mouths (15 ch). The audio of the window starting at
video frame s is the mel window A of its centre frame s + 2, which covers frames s..s+4 (docs/design/method.md Sec. 1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from g4g.data.mels import audio_windows, melspectrogram
from g4g.metrics.lse import SyncEmbedder
from g4g.metrics.weights_info import WeightsInfo
from g4g.models.composite import face_size
from g4g.models.loading import load_sync_expert
from g4g.models.sync_expert import EXPERT_SIZE, mouth_square
from g4g.params import MelParams
from g4g.utils import resolve_device


class OwnSyncNet(SyncEmbedder):
    """results/models/{dataset}/syncnet.pt behind the SyncEmbedder interface (LSE surrogate)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = None,
                 mel: MelParams = MelParams()):

        self.device = resolve_device(device)
        self.expert, state = load_sync_expert(path, self.device)
        self.mouth_size = int(state["params"].get("mouth_size", 256))
        self.face_size = face_size(self.mouth_size)  # (H, W) the expert's mouths were cut from
        self.mel_p = mel
        self.info = WeightsInfo.surrogate(f"own SyncNet {path}", path)

    def mouths(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (T, 416, 320, 3) face crops -> (T, 3, 128, 128) float mouth squares in [0, 1]."""

        H, W = self.face_size
        m = [mouth_square(f if f.shape[:2] == (H, W) else cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA))
             for f in frames]
        x = torch.from_numpy(np.stack(m)).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, m, m)
        if x.shape[-1] != EXPERT_SIZE:  # as expert_input: bilinear, antialiased when shrinking
            x = F.interpolate(x, size=(EXPERT_SIZE, EXPERT_SIZE), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > EXPERT_SIZE)
        return x

    def prepare_video(self, frames: np.ndarray) -> torch.Tensor:
        return self.mouths(frames)

    def video_batch(self, video: torch.Tensor, starts: Sequence[int]) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(starts)[:, None] + np.arange(self.window))  # (B, 5)
        return video[idx].flatten(1, 2).to(self.device)  # (B, 15, 128, 128), frame-major

    def prepare_audio(self, audio: np.ndarray) -> np.ndarray:
        return melspectrogram(np.asarray(audio, np.float32), self.mel_p)  # (80, N)

    def audio_batch(self, feats: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
        a = audio_windows(feats, np.asarray(starts) + self.window // 2, self.mel_p)  # (B, 80, 16)
        return torch.from_numpy(a)[:, None].to(self.device)  # (B, 1, 80, 16)

    @torch.no_grad()
    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.expert.visual(x).float(), dim=1)  # (B, emb)

    @torch.no_grad()
    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.expert.audio(x).float(), dim=1)  # (B, emb)
