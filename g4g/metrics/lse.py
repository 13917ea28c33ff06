"""LSE-D and LSE-C (Prajwal et al. 2020) with the syncnet_python algorithm (docs/design/method.md Sec. 9).

For a clip of T frames at 25 fps and its 16 kHz audio, window i covers video frames i..i+4 and the
audio of the same 0.2 s. Both are embedded, and for every shift j = 0..2v (v = 15) the distance between
lip window i and audio window i + j - v is taken, an audio window outside the clip being a zero vector
(syncnet_python's calc_pdist zero-pads the audio *embeddings*). Per shift, the mean over windows:
    LSE-D = min_j mean_dist[j],  LSE-C = median_j mean_dist[j] - LSE-D,  offset = v - argmin_j.

Sign of the offset (syncnet_python's): lip window i matches audio window i - offset best. offset = +k:
the sound comes k frames *before* the lips show it (audio leads); offset = -k: the audio is delayed
by k frames. A clip in sync has offset 0.

The embedding network is pluggable (`SyncEmbedder`): the official SyncNet (syncnet.py) is one; the
project's own sync expert may be another, reported under a different column name ("LSE-C (own
SyncNet)") and with a `WeightsInfo.surrogate(...)` label.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from g4g.metrics.weights_info import WeightsInfo
from g4g.utils import true_fp32

VIDEO_FPS = 25
AUDIO_SR = 16000
SAMPLES_PER_FRAME = AUDIO_SR // VIDEO_FPS  # 640
WINDOW = 5   # video frames per sync window
VSHIFT = 15  # offsets searched: -15..+15 frames


class SyncEmbedder(ABC):
    """A network that embeds 5-frame lip windows and the matching audio windows into one space.

    Subclasses turn a whole clip into network inputs once (`prepare_*`), slice batches of windows by
    their first frame (`*_batch`) and embed them (`forward_lip`, `forward_aud`, as syncnet_python's S).
    """

    info: WeightsInfo
    device: torch.device
    window: int = WINDOW

    @abstractmethod
    def prepare_video(self, frames: np.ndarray) -> Any:
        """uint8 (T, H, W, 3) RGB face crops of the whole clip -> what `video_batch` slices."""

    @abstractmethod
    def video_batch(self, video: Any, starts: Sequence[int]) -> torch.Tensor:
        """Network input for the windows covering frames s..s+4, one per start s."""

    @abstractmethod
    def prepare_audio(self, audio: np.ndarray) -> Any:
        """float32 16 kHz mono audio in [-1, 1] of the whole clip -> features (MFCC, mel, ...)."""

    @abstractmethod
    def audio_batch(self, feats: Any, starts: Sequence[int]) -> torch.Tensor:
        """Network input for the audio of the windows starting at video frames `starts`."""

    @abstractmethod
    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, D) lip embeddings."""

    @abstractmethod
    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, D) audio embeddings."""

    def num_windows(self, n_frames: int, n_samples: int) -> int:
        """syncnet_python: min(T, floor(samples / 640)) - 5 windows (it leaves the last full one out)."""
        return max(0, min(n_frames, n_samples // SAMPLES_PER_FRAME) - WINDOW)


@dataclass
class LSEResult:
    lse_d: float            # min over offsets of the mean distance
    lse_c: float            # median - min of the mean distances
    offset: int             # best offset in frames, syncnet_python's sign (see module docstring)
    n_windows: int
    offsets: np.ndarray     # (2v+1,) offset of each column: v, v-1, ..., -v
    mean_dists: np.ndarray  # (2v+1,) mean distance per offset
    window_dists: np.ndarray = field(repr=False)  # (n_windows,) distances at the best offset
    weights: str = ""

    def as_dict(self) -> dict:
        return {"lse_d": self.lse_d, "lse_c": self.lse_c, "lse_offset": self.offset,
                "lse_windows": self.n_windows, "lse_weights": self.weights}


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, desc=desc, leave=False)


@torch.no_grad()
def embed_clip(model: SyncEmbedder, frames: np.ndarray, audio: np.ndarray, batch_size: int = 20,
               progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of every window of one clip: two (N, D) float32 CPU tensors."""
    n = model.num_windows(len(frames), len(audio))
    if n < 1:
        raise ValueError(f"clip too short for LSE: {len(frames)} frames, {len(audio)} audio samples "
                         f"(need more than {WINDOW} frames of both)")
    video, feats = model.prepare_video(frames), model.prepare_audio(audio)
    lip, aud = [], []
    for i in _progress(range(0, n, batch_size), progress, "LSE"):
        starts = list(range(i, min(n, i + batch_size)))
        with true_fp32():
            lip.append(model.forward_lip(model.video_batch(video, starts)).float().cpu())
            aud.append(model.forward_aud(model.audio_batch(feats, starts)).float().cpu())
    return torch.cat(lip), torch.cat(aud)


def offset_distances(lip: torch.Tensor, aud: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(N, 2v+1): column j = distance of lip window i to audio window i + j - v (zeros outside).

    torch's pairwise_distance (eps 1e-6 inside the norm), exactly as calc_pdist uses it.
    """
    n = len(lip)
    aud_p = F.pad(aud, (0, 0, vshift, vshift))
    return torch.stack([F.pairwise_distance(lip, aud_p[j:j + n]) for j in range(2 * vshift + 1)], 1)


def lse_from_embeddings(lip: torch.Tensor, aud: torch.Tensor, vshift: int = VSHIFT,
                        weights: str = "") -> LSEResult:
    """LSE-D, LSE-C and the offset from per-window embeddings (syncnet_python's evaluate)."""
    dists = offset_distances(lip.float(), aud.float(), vshift)
    mdist = dists.mean(0)
    minidx = int(torch.argmin(mdist))  # first minimum, as torch.min
    minval = mdist[minidx]
    conf = torch.median(mdist) - minval  # torch.median: the lower middle value for an even count
    return LSEResult(lse_d=float(minval), lse_c=float(conf), offset=vshift - minidx, n_windows=len(lip),
                     offsets=vshift - np.arange(2 * vshift + 1), mean_dists=mdist.numpy(),
                     window_dists=dists[:, minidx].numpy(), weights=weights)


def lse(model: SyncEmbedder, frames: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT,
        batch_size: int = 20, progress: bool = False) -> LSEResult:
    """LSE of one clip: uint8 (T, H, W, 3) RGB face crops at 25 fps and float32 16 kHz mono audio."""
    lip, aud = embed_clip(model, frames, audio, batch_size, progress)
    return lse_from_embeddings(lip, aud, vshift, weights=str(model.info))
