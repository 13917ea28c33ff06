"""The official SyncNet (Chung & Zisserman 2016; joonson/syncnet_python, syncnet_v2.model) for LSE.

Architecture written to syncnet_python's `S` layer for layer; module names and Sequential indices are
kept so the published state dict (`netcnnaud.0.weight`, ..., `netfclip.3.bias`) loads key for key.
Inputs as syncnet_python feeds them:
- lips: (B, 3, 5, 224, 224) float, BGR channel order (cv2), raw 0..255 values, no normalisation;
- audio: (B, 1, 13, 20) MFCC (python_speech_features defaults) of int16-scaled 16 kHz audio, 100 Hz,
  the window of video frame s being MFCC steps 4s..4s+19.

Which face crop is the caller's: the LSE-D/LSE-C columns pass syncnet_python's own 224 x 224 track crops
(g4g.metrics.lse_framing), which are only flipped to BGR here; the landmark-crop columns pass the project's
416 x 320 crops (docs/design/method.md Sec. 1), padded to a square by edge replication (`square='pad'`)
and resized to 224 x 224 with cv2's default bilinear filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from g4g.metrics.lse import SyncEmbedder
from g4g.metrics.weights_info import WeightsInfo
from g4g.utils import resolve_device
from g4g.weights import WeightsError

# ---------------------------------------------------------------------------------------------------
# MFCC front end: python_speech_features.mfcc(signal, 16000) with its defaults, re-implemented
# ---------------------------------------------------------------------------------------------------


def _hz2mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel2hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, sr: int = 16000, low: float = 0.0,
                   high: float | None = None) -> np.ndarray:
    """(nfilt, nfft//2+1) triangles on FFT bins floor((nfft+1) f / sr) of mel-spaced edges."""
    high = sr / 2 if high is None else high
    edges = np.floor((nfft + 1) * _mel2hz(np.linspace(_hz2mel(low), _hz2mel(high), nfilt + 2)) / sr)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    i = np.arange(nfft // 2 + 1)[None, :]
    up = np.where((i >= lo) & (i < mid), (i - lo) / np.maximum(mid - lo, 1), 0.0)
    down = np.where((i >= mid) & (i < hi), (hi - i) / np.maximum(hi - mid, 1), 0.0)
    return up + down


def mfcc(signal: np.ndarray, sr: int = 16000, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """(N, numcep) MFCC, python_speech_features 0.6 definition: pre-emphasis, rectangular 25 ms
    frames every 10 ms (zero-padded tail), |rfft|^2 / nfft, 26 mel bands, log, orthonormal DCT-II,
    sinusoidal lifter 22, c0 replaced by the log frame energy."""
    from scipy.fft import dct

    x = np.asarray(signal, np.float64).ravel()
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    flen, fstep = int(math.floor(winlen * sr + 0.5)), int(math.floor(winstep * sr + 0.5))
    n = 1 if len(x) <= flen else 1 + math.ceil((len(x) - flen) / fstep)
    x = np.concatenate([x, np.zeros((n - 1) * fstep + flen - len(x))])
    frames = np.lib.stride_tricks.sliding_window_view(x, flen)[::fstep][:n]
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = pspec.sum(1)
    energy[energy == 0] = eps
    feat = pspec @ mel_filterbank(nfilt, nfft, sr).T
    feat[feat == 0] = eps
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    cep *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    cep[:, 0] = np.log(energy)
    return cep


# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------


def _cbr(conv: nn.Module, bn: nn.Module) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)]


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, dim))


class SyncNetV2(nn.Module):
    """syncnet_python's S: audio (B, 1, 13, 20) and lips (B, 3, 5, 224, 224) -> (B, 1024) each."""

    def __init__(self, dim: int = 1024):
        super().__init__()
        c2, b2, c3, b3 = nn.Conv2d, nn.BatchNorm2d, nn.Conv3d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(                                      # (B, 1, 13, 20)
            *_cbr(c2(1, 64, 3, padding=1), b2(64)), nn.MaxPool2d(1, 1),
            *_cbr(c2(64, 192, 3, padding=1), b2(192)), nn.MaxPool2d(3, stride=(1, 2)),   # 11 x 9
            *_cbr(c2(192, 384, 3, padding=1), b2(384)),
            *_cbr(c2(384, 256, 3, padding=1), b2(256)),
            *_cbr(c2(256, 256, 3, padding=1), b2(256)), nn.MaxPool2d(3, stride=2),       # 5 x 4
            *_cbr(c2(256, 512, (5, 4)), b2(512)),                                        # 1 x 1
        )
        self.netfcaud = _head(dim)
        self.netfclip = _head(dim)
        self.netcnnlip = nn.Sequential(                                      # (B, 3, 5, 224, 224)
            *_cbr(c3(3, 96, (5, 7, 7), stride=(1, 2, 2)), b3(96)),                       # 1 x 109
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),                                   # 54
            *_cbr(c3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), b3(256)),  # 26
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),                # 13
            *_cbr(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), b3(256)),
            *_cbr(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), b3(256)),
            *_cbr(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), b3(256)),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),                                   # 6
            *_cbr(c3(256, 512, (1, 6, 6)), b3(512)),                                     # 1
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet_v2(net: SyncNetV2, path) -> None:
    """Load the published state dict; tolerate only its lack of BatchNorm `num_batches_tracked`."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k.removeprefix("__S__.").removeprefix("module."): v for k, v in sd.items()}
    own = net.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(f"{path} is not a syncnet_v2 state dict: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}, wrong shapes {wrong[:4]}")
    net.load_state_dict(sd, strict=False)


# ---------------------------------------------------------------------------------------------------
# The official SyncNet as an LSE embedder
# ---------------------------------------------------------------------------------------------------


def to_syncnet_frames(frames: np.ndarray, size: int = 224, square: str = "pad") -> np.ndarray:
    """uint8 (T, H, W, 3) RGB face crops -> uint8 (T, size, size, 3) BGR, as syncnet_python reads them."""
    import cv2

    t, h, w, _ = frames.shape
    if square == "pad" and h != w:
        d = abs(h - w)
        pad = ((0, 0), (0, 0), (d // 2, d - d // 2)) if h > w else ((0, 0), (d // 2, d - d // 2), (0, 0))
        frames = np.pad(frames, pad + ((0, 0),), mode="edge")
    out = np.empty((t, size, size, 3), np.uint8)
    for i, f in enumerate(frames):
        out[i] = f if f.shape[:2] == (size, size) else cv2.resize(f, (size, size))
    return np.ascontiguousarray(out[..., ::-1])


class OfficialSyncNet(SyncEmbedder):
    """syncnet_v2 behind the `SyncEmbedder` interface. `pretrained=False`: random init, tests only."""

    def __init__(self, pretrained: bool = True, device: str | torch.device | None = None,
                 square: str = "pad"):
        self.info = WeightsInfo.from_manifest("syncnet_v2") if pretrained else WeightsInfo.random_init()
        net = SyncNetV2()
        if pretrained:
            load_syncnet_v2(net, self.info.files[0][0])
        self.device = resolve_device(device)
        self.net = net.eval().to(self.device)
        self.square = square

    def prepare_video(self, frames: np.ndarray) -> np.ndarray:
        return to_syncnet_frames(frames, square=self.square)

    def video_batch(self, video: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
        idx = np.asarray(starts)[:, None] + np.arange(self.window)            # (B, 5)
        x = torch.from_numpy(video[idx]).to(self.device)                       # (B, 5, 224, 224, 3)
        return x.permute(0, 4, 1, 2, 3).float()                                # (B, 3, 5, 224, 224)

    def prepare_audio(self, audio: np.ndarray) -> torch.Tensor:
        """(13, N) MFCC of the int16-scaled samples (syncnet_python reads the wav as int16)."""
        return torch.from_numpy(mfcc(np.asarray(audio, np.float64) * 32768.0).T.astype(np.float32))

    def audio_batch(self, feats: torch.Tensor, starts: Sequence[int]) -> torch.Tensor:
        x = torch.stack([feats[:, 4 * s:4 * s + 20] for s in starts])          # (B, 13, 20)
        return x[:, None].to(self.device)                                      # (B, 1, 13, 20)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_lip(x)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_aud(x)
