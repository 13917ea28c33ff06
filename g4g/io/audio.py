"""Audio IO: any container or format in, 16 kHz mono float32 out (via the ffmpeg binary)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from g4g.io.video import ffmpeg_exe
from g4g.rejects import ClipError
from g4g.utils import atomic_path

SAMPLE_RATE = 16000


# ffmpeg's last words on a damaged file, and what they mean to a user
FFMPEG_REASONS = (
    ("moov atom not found", "its index (the MP4 'moov' atom) is missing: cut short while being written (truncated?)"),
    ("Invalid data found when processing input", "invalid data: not a media file, or corrupt or cut short "
                                                 "(truncated?)"),
    ("Error number -1145393733", "invalid data: corrupt or cut short (truncated?)"),  # AVERROR_INVALIDDATA
    ("Error opening output files: Invalid argument", "the audio stream's parameters cannot be read: corrupt or "
                                                     "cut short (truncated?)"),
)


def ffmpeg_reason(err: str) -> str:
    """What ffmpeg's error output says, in words a user can act on (FFMPEG_REASONS), with its own text."""
    last = re.sub(r"^(\[[^\]]*\]\s*)+", "", err.strip().splitlines()[-1]) if err.strip() else "no message"
    meaning = next((m for key, m in FFMPEG_REASONS if key in err), None)
    return f"{meaning} (ffmpeg: {last})" if meaning else f"ffmpeg: {last}"


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any file to mono float32 in [-1, 1] at `sr` Hz."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        raise ClipError(f"{p}: audio source missing or empty")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(p), "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(sr), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        if "matches no streams" in err or "Stream map" in err:
            raise ClipError(f"{p}: no audio stream")
        why = ffmpeg_reason(err) if err else f"ffmpeg: exit status {proc.returncode}"
        if proc.stdout:  # it decoded for a while, then met corrupt or missing data
            raise ClipError(f"{p}: the audio stops decoding after {len(proc.stdout) / 2 / sr:.2f} s "
                            f"(corrupt data, or the file is truncated?; {why})")
        raise ClipError(f"{p}: the audio does not decode, expected a sound file or a video with sound ({why})")
    pcm = np.frombuffer(proc.stdout, dtype="<i2")
    if pcm.size == 0:
        raise ClipError(f"{p}: audio stream decodes to no samples")
    return (pcm.astype(np.float32) / 32768.0)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, np.asarray(audio, dtype=np.float32), sr, subtype="PCM_16", format="WAV")


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence is reported as -120)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * np.log10(max(rms, 1e-6))
