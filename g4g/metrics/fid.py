"""FID (Heusel et al. 2017) with pytorch-fid's InceptionV3 (docs/design/method.md Sec. 9).

Activations (the 2048-d final average pool by default) are pooled over all frames of all videos of a
method, then FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

pytorch-fid downloads its TF-ported Inception weights through torch hub; we swap its loader for one
that reads the verified manifest file `require('inception_fid')` so nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

from g4g.metrics.weights_info import WeightsInfo
from g4g.utils import resolve_device, true_fp32


@contextlib.contextmanager
def _local_inception_weights(state_dict: dict | None):
    """While building pytorch-fid's InceptionV3: load `state_dict` instead of downloading, or, when
    it is None, keep torchvision's random initialisation (tests only)."""
    import pytorch_fid.inception as pfi

    orig_loader, orig_builder = pfi.load_state_dict_from_url, pfi._inception_v3

    def loader(url, *args, **kwargs):
        return state_dict

    def builder(*args, **kwargs):
        net = orig_builder(*args, **kwargs)
        if state_dict is None:
            net.load_state_dict = lambda *a, **k: None  # nothing to load: random init
        return net

    pfi.load_state_dict_from_url, pfi._inception_v3 = loader, builder
    try:
        yield pfi
    finally:
        pfi.load_state_dict_from_url, pfi._inception_v3 = orig_loader, orig_builder


class FIDInception:
    """pytorch-fid's InceptionV3 feature extractor. dims: 2048 (FID), or 64/192/768 (cheaper blocks)."""

    def __init__(self, pretrained: bool = True, dims: int = 2048, device: str | torch.device | None = None):
        self.info = WeightsInfo.from_manifest("inception_fid") if pretrained else WeightsInfo.random_init()
        state = (torch.load(self.info.files[0][0], map_location="cpu", weights_only=True)
                 if pretrained else None)
        with _local_inception_weights(state) as pfi:
            block = pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
            net = pfi.InceptionV3([block], resize_input=True, normalize_input=True)
        self.dims = dims
        self.device = resolve_device(device)
        self.net = net.eval().to(self.device)

    @torch.no_grad()
    def activations(self, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB frames -> (N, dims) float64 activations (bilinear resize to 299 inside)."""
        out = []
        for i in range(0, len(frames), batch_size):
            x = torch.as_tensor(frames[i:i + batch_size]).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 255.0  # pytorch-fid expects [0, 1]
            with true_fp32():
                a = self.net(x)[0]
            if a.shape[-2:] != (1, 1):  # blocks 0-2: spatial maps, averaged as pytorch-fid does
                a = torch.nn.functional.adaptive_avg_pool2d(a, (1, 1))
            out.append(a.flatten(1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dims))


@dataclass
class ActivationStats:
    """Count, mean and centred scatter of activations, so FID can pool frames over many videos.

    Batches are combined with Chan et al.'s parallel update (no large raw sums, no cancellation).
    """

    dims: int
    n: int = 0
    mean: np.ndarray = field(default=None)
    m2: np.ndarray = field(default=None)  # sum of (a - mean)(a - mean)^T

    def __post_init__(self):
        self.dims, self.n = int(self.dims), int(self.n)
        self.mean = np.zeros(self.dims) if self.mean is None else np.asarray(self.mean, np.float64)
        self.m2 = np.zeros((self.dims, self.dims)) if self.m2 is None else np.asarray(self.m2, np.float64)

    def merge(self, other: ActivationStats) -> ActivationStats:
        n = self.n + other.n
        if n == 0:
            return ActivationStats(self.dims)
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return ActivationStats(self.dims, n, mean, m2)

    def update(self, acts: np.ndarray) -> ActivationStats:
        a = np.asarray(acts, np.float64).reshape(-1, self.dims)
        if len(a):
            mu = a.mean(0)
            c = a - mu
            merged = self.merge(ActivationStats(self.dims, len(a), mu, c.T @ c))
            self.n, self.mean, self.m2 = merged.n, merged.mean, merged.m2
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (np.cov's N-1, as pytorch-fid)."""
        if self.n < 2:
            raise ValueError(f"FID needs at least 2 frames per set, got {self.n}")
        return self.mean, self.m2 / (self.n - 1)

    def to_dict(self) -> dict:
        """Arrays for np.savez; ActivationStats(**np.load(f)) restores it."""
        return {"dims": self.dims, "n": self.n, "mean": self.mean, "m2": self.m2}


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr((S1 S2)^(1/2)) is computed as the sum of sqrt eigenvalues of the symmetric PSD matrix
    S1^(1/2) S2 S1^(1/2) (same non-zero spectrum as S1 S2), which stays real and stable for the
    rank-deficient covariances of small frame sets where scipy.linalg.sqrtm needs an eps fix.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_stats(a: ActivationStats, b: ActivationStats) -> float:
    return frechet_distance(*a.mean_cov(), *b.mean_cov())


class PooledFID:
    """FID between two sets of frames fed batch by batch: a method's frames over all its videos, and their
    ground truth. Each batch updates the pooled statistics at once, so no set is ever held whole."""

    def __init__(self, net: FIDInception, batch_size: int = 32):
        self.net, self.batch = net, batch_size
        self.gen, self.gt = ActivationStats(net.dims), ActivationStats(net.dims)

    def feed(self, gen: np.ndarray, gt: np.ndarray) -> None:
        """uint8 (N, H, W, 3) RGB frames of each set."""
        self.gen.update(self.net.activations(gen, self.batch))
        self.gt.update(self.net.activations(gt, self.batch))

    def summary(self) -> float | None:
        """FID of all frames fed; None while a set has fewer than the 2 frames a covariance needs."""
        return fid_from_stats(self.gen, self.gt) if min(self.gen.n, self.gt.n) >= 2 else None

