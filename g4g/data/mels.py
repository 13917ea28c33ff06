"""Mel spectrograms and audio windows (docs/design/method.md Sec. 1): Wav2Lip's front end, on purpose.

n_fft 800, win 800, hop 200 at 16 kHz (80 mel frames per second, 3.2 per video frame), 80 bands from
55 to 7600 Hz, pre-emphasis 0.97, 20 log10 amplitude floored at 1e-5 minus a 20 dB reference, then
clipped-normalised from [-100, 0] dB to [-4, 4].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow.parquet as pq
from scipy.signal import lfilter
from tqdm import tqdm

from g4g.data.shards import mel_row, write_mels
from g4g.params import AudioParams, MelParams
from g4g.rejects import ClipError, Rejects, guard


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


def window_start(t: int | np.ndarray, p: MelParams = MelParams(), rate: float | None = None) -> np.ndarray:
    """First mel index of the audio window for video frame t: round(80 (t - 2) / 25).

    The window covers video frames t-2..t+2 (centred on t). Note np.round rounds half to even;
    80/25 = 3.2 so the products are never exactly .5 for integer t and the rule is unambiguous.
    Frames at another `rate` (a 30 fps render): the window stays what the model was trained on, 16 mel
    frames (0.2 s) placed as at 25 fps around the frame's own time t / rate, from 0.08 s before it:
    round(80 (t / rate - 2 / 25)); a 30 fps frame at the instant of a 25 fps frame gets its window.
    """
    if rate is None or rate == p.fps:
        return np.round(p.mel_fps * (np.asarray(t) - 2) / p.fps).astype(np.int64)
    return np.round(p.mel_fps * (np.asarray(t) / rate - 2 / p.fps)).astype(np.int64)


def audio_windows(mel: np.ndarray, frames: np.ndarray, p: MelParams = MelParams(),
                  rate: float | None = None) -> np.ndarray:
    """A = mel[:, s : s + 16] for each frame t (s = window_start(t)), edges padded by replicating the
    first / last mel frame: (len(frames), 80, 16). `rate`: the frames' rate, if not p.fps (window_start)."""
    s = window_start(np.asarray(frames), p, rate)[:, None] + np.arange(p.window_frames)[None, :]
    return np.transpose(mel[:, np.clip(s, 0, mel.shape[1] - 1)], (1, 0, 2))


# ---- the `mels` stage: one shard's clips -> mel shard ----------------------------------------------------

def mel_clip(row: dict, mp: MelParams, audio: AudioParams) -> dict:
    if row["audio_silent"] and audio.reject_silent:
        raise ClipError(f"audio is silent ({row['audio_dbfs']:.1f} dBFS < {audio.silence_dbfs:g}): "
                        f"nothing to learn lip sync from")
    wav = np.frombuffer(row["audio_pcm16"], dtype="<i2").astype(np.float32) / 32768.0
    return mel_row(row["clip_id"], row["n_frames"], melspectrogram(wav, mp), row["audio_dbfs"])


def run_mels(resampled: str, out: str, rejects_out: str, mp: MelParams, audio: AudioParams) -> None:
    rows = pq.read_table(resampled, columns=["clip_id", "path", "n_frames", "audio_pcm16", "audio_dbfs",
                                             "audio_silent"]).to_pylist()
    rejects = Rejects("mels")
    done = [r for row in tqdm(rows, desc="mels", unit="clip")
            if (r := guard(rejects, row["clip_id"], row["path"], mel_clip, row, mp, audio)) is not None]
    write_mels(out, done)
    rejects.write(rejects_out)
