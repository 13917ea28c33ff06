"""Mel spectrograms and audio windows (METHOD.md Sec. 1): Wav2Lip's front end, on purpose.

n_fft 800, win 800, hop 200 at 16 kHz (80 mel frames per second, 3.2 per video frame), 80 bands from
55 to 7600 Hz, pre-emphasis 0.97, 20 log10 amplitude floored at 1e-5 minus a 20 dB reference, then
clipped-normalised from [-100, 0] dB to [-4, 4].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import lfilter


@dataclass(frozen=True)
class MelParams:
    sample_rate: int = 16000
    n_fft: int = 800
    win_length: int = 800
    hop_length: int = 200
    n_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    max_abs_value: float = 4.0
    fps: float = 25.0
    window_frames: int = 16  # mel frames per audio window A (0.2 s = 5 video frames)

    @property
    def mel_fps(self) -> float:
        return self.sample_rate / self.hop_length  # 80


@lru_cache(maxsize=4)
def _mel_basis(p: MelParams) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax)


def melspectrogram(audio: np.ndarray, p: MelParams = MelParams()) -> np.ndarray:
    """(n_mels, n_frames) float32 in [-max_abs, max_abs]; n_frames = 1 + len(audio) // hop."""
    import librosa

    y = lfilter([1, -p.preemphasis], [1], np.asarray(audio, dtype=np.float32))
    spec = np.abs(librosa.stft(y=y, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.win_length))
    mel = _mel_basis(p) @ spec
    db = 20 * np.log10(np.maximum(1e-5, mel)) - p.ref_level_db
    m = p.max_abs_value
    out = np.clip(2 * m * (db - p.min_level_db) / -p.min_level_db - m, -m, m)
    return out.astype(np.float32)


def window_start(t: int | np.ndarray, p: MelParams = MelParams()) -> np.ndarray:
    """First mel index of the audio window for video frame t: round(80 (t - 2) / 25).

    The window covers video frames t-2..t+2 (centred on t). Note np.round rounds half to even;
    80/25 = 3.2 so the products are never exactly .5 for integer t and the rule is unambiguous.
    """
    return np.round(p.mel_fps * (np.asarray(t) - 2) / p.fps).astype(np.int64)


def audio_window(mel: np.ndarray, t: int, p: MelParams = MelParams()) -> np.ndarray:
    """A = mel[:, s : s + 16] for frame t, edges padded by replicating the first/last mel frame."""
    s = int(window_start(t, p))
    idx = np.clip(np.arange(s, s + p.window_frames), 0, mel.shape[1] - 1)
    return mel[:, idx]  # (80, 16)


def audio_windows(mel: np.ndarray, frames: np.ndarray, p: MelParams = MelParams()) -> np.ndarray:
    """Batched audio_window: (len(frames), 80, 16)."""
    s = window_start(np.asarray(frames), p)[:, None] + np.arange(p.window_frames)[None, :]
    return np.transpose(mel[:, np.clip(s, 0, mel.shape[1] - 1)], (1, 0, 2))
