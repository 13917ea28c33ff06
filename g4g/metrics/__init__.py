"""Evaluation metrics (docs/design/method.md Sec. 9): PSNR, SSIM, MSE, LPIPS, FID, LSE-D / LSE-C.

Modules (networks and heavy packages load only when a metric object is built):
    image          PSNR, SSIM (Wang et al. 2004, Gaussian window), MSE, per frame, batched torch
    lpips_metric   LPIPSMetric: AlexNet LPIPS from the verified manifest file
    fid            FIDInception, ActivationStats (poolable), frechet_distance
    syncnet        the official SyncNet v2 architecture, its loader and MFCC front end (OfficialSyncNet)
    lse            the SyncEmbedder interface and the syncnet_python LSE-D / LSE-C algorithm
    weights_info   WeightsInfo: which file and sha256 each metric used

`score_video_pair` is what the evaluation stage calls per (method, clip).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from g4g.metrics.image import image_metrics
from g4g.metrics.lse import lse
from g4g.metrics.weights_info import RANDOM_INIT, WeightsInfo

if TYPE_CHECKING:  # only for annotations; importing them here would load torch-heavy modules eagerly
    from g4g.metrics.fid import FIDInception
    from g4g.metrics.lpips_metric import LPIPSMetric
    from g4g.metrics.lse import SyncEmbedder

__all__ = ["RANDOM_INIT", "WeightsInfo", "score_video_pair"]


def score_video_pair(gen: np.ndarray, gt: np.ndarray, audio: np.ndarray | None = None, *,
                     lpips: LPIPSMetric | None = None,
                     fid: FIDInception | None = None,
                     sync: SyncEmbedder | None = None,
                     batch_size: int = 16,
                     device=None,
                     progress: bool = False) -> dict:
    """Per-frame metrics of one generated clip against its ground truth (reconstruction setting).

    gen, gt: uint8 (T, H, W, 3) RGB face crops, frame-aligned (the 416 x 320 crops of docs/design/method.md).
    audio: float32 16 kHz mono driving audio, needed for LSE (scored on `gen` only).
    lpips / fid / sync: metric objects built once by the caller; each one left None is skipped.

    Returns {"per_frame": {name: (T,) array}, "mean": {name: float}, "weights": {metric: label dict},
    "n_frames": T} plus, with `fid`, "fid_activations": {"gen": (T, D), "gt": (T, D)} for the caller to
    pool over all clips (fid.ActivationStats) and, with `sync`, "lse": the full LSEResult.
    PSNR is +inf on identical frames (as skimage); its per-video mean is then +inf as well.
    """
    import torch


    if gen.shape != gt.shape or gen.ndim != 4 or gen.dtype != np.uint8 or gt.dtype != np.uint8:
        raise ValueError(f"expected two uint8 (T, H, W, 3) arrays of one shape, got "
                         f"{gen.shape} {gen.dtype} and {gt.shape} {gt.dtype}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = range(0, len(gen), batch_size)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc="frame metrics", leave=False)

    per: dict[str, list[np.ndarray]] = {"psnr": [], "ssim": [], "mse": []}
    if lpips is not None:
        per["lpips"] = []
    for i in steps:
        g, t = gen[i:i + batch_size], gt[i:i + batch_size]
        for name, v in image_metrics(g, t, device=device).items():
            per[name].append(v)
        if lpips is not None:
            per["lpips"].append(lpips.frames(g, t, batch_size=batch_size))

    per_frame = {k: np.concatenate(v).astype(np.float64) if v else np.zeros(0) for k, v in per.items()}
    out = {"n_frames": len(gen), "per_frame": per_frame,
           "mean": {k: float(np.mean(v)) if len(v) else float("nan") for k, v in per_frame.items()},
           "weights": {}}
    if lpips is not None:
        out["weights"]["lpips"] = lpips.info.as_dict()
    if fid is not None:
        out["fid_activations"] = {"gen": fid.activations(gen, batch_size), "gt": fid.activations(gt, batch_size)}
        out["weights"]["fid"] = fid.info.as_dict()
    if sync is not None:
        if audio is None:
            raise ValueError("LSE needs the driving audio")

        res = lse(sync, gen, audio, batch_size=batch_size, progress=progress)
        out["lse"] = res
        out["mean"].update({"lse_d": res.lse_d, "lse_c": res.lse_c, "lse_offset": float(res.offset)})
        out["weights"]["lse"] = sync.info.as_dict()
    return out
