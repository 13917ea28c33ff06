"""CUDA against the CPU (issue 11 item 6). Skipped without a CUDA device; `tools/gpu-check` runs them on one
(`pytest -m cuda`). The metric networks take identical random weights on both devices (the pretrained
files cannot be downloaded everywhere): what is compared is the arithmetic, which the evaluation runs in
true fp32 on every device (g4g.utils.true_fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_metrics import noisy

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def _pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.random.default_rng(seed).integers(0, 256, (n, 416, 320, 3), dtype=np.uint8)
    return noisy(gt, 10, seed), gt


def _twins(cls, **kw):
    """The metric network on the CPU and on CUDA, with the same random weights."""
    cpu, gpu = cls(pretrained=False, device="cpu", **kw), cls(pretrained=False, device="cuda", **kw)
    gpu.net.load_state_dict(cpu.net.state_dict())
    return cpu, gpu


def test_image_metrics_cuda_matches_cpu():
    from g4g.metrics.image import image_metrics

    gen, gt = _pair(4, 2)
    cpu, gpu = image_metrics(gen, gt, "cpu"), image_metrics(gen, gt, "cuda")
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-9)


def test_lpips_cuda_matches_cpu():
    from g4g.metrics.lpips_metric import LPIPSMetric

    gen, gt = _pair(6, 3)
    cpu, gpu = _twins(LPIPSMetric)
    np.testing.assert_allclose(gpu.frames(gen, gt, 4), cpu.frames(gen, gt, 4), rtol=1e-4, atol=1e-6)


def test_fid_activations_cuda_match_cpu():
    from g4g.metrics.fid import FIDInception

    gen, _ = _pair(6, 4)
    cpu, gpu = _twins(FIDInception)
    np.testing.assert_allclose(gpu.activations(gen, 4), cpu.activations(gen, 4), rtol=1e-3, atol=1e-5)


def test_lse_cuda_matches_cpu():
    from g4g.metrics.lse import lse
    from g4g.metrics.syncnet import OfficialSyncNet

    gen, _ = _pair(40, 5)
    audio = (0.1 * np.random.default_rng(5).standard_normal(40 * 640 + 640)).astype(np.float32)
    cpu, gpu = _twins(OfficialSyncNet)
    a, b = lse(cpu, gen, audio), lse(gpu, gen, audio)
    assert a.offset == b.offset and a.n_windows == b.n_windows
    np.testing.assert_allclose(b.mean_dists, a.mean_dists, rtol=1e-4)


def test_sampling_grid_stays_fp32_under_tf32():
    """With TF32 on (as the training runs), the elementwise grid stays within fp32 of a float64 grid;
    F.affine_grid, a batched matmul, may not."""
    from g4g.models.adaat import sampling_grid

    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        th = torch.randn(4096, 2, 3, device="cuda") * 3
        ref = torch.nn.functional.affine_grid(th.double(), [4096, 1, 104, 80], align_corners=False)
        assert (sampling_grid(th, 104, 80).double() - ref).abs().max() < 1e-5
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
