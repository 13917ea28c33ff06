"""The output timeline: which 25 fps video frame each output frame shows, and the reference frames.

When the driving audio is longer than the video, the video plays forward, then backward, then forward
again (ping-pong), so there is never a jump cut; the turning frames are shown once. When it is shorter,
the video is trimmed. The output has as many frames as the audio lasts at 25 fps.
"""

from __future__ import annotations

import numpy as np


def n_output_frames(n_samples: int, sample_rate: int = 16000, fps: float = 25.0) -> int:
    """Frames of an output that lasts as long as the audio (rounded to the nearest frame, at least 1)."""
    return max(1, int(round(n_samples / sample_rate * fps)))


def pingpong_index(n_video: int, n_out: int) -> np.ndarray:
    """(n_out,) video frame shown at each output frame: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...

    The period is 2 (n - 1); a one-frame video shows its frame throughout. n_out <= n_video trims.
    """
    if n_video < 1:
        raise ValueError("the video has no frames")
    k = np.arange(n_out, dtype=np.int64)
    if n_video == 1:
        return np.zeros(n_out, dtype=np.int64)
    period = 2 * (n_video - 1)
    m = k % period
    return np.where(m < n_video, m, period - m)


def reference_frames(n_video: int, n_refs: int = 5) -> np.ndarray:
    """n_refs frames spread evenly over the video (first to last), repeated when the video is shorter."""
    return np.round(np.linspace(0, n_video - 1, n_refs)).astype(np.int64)

