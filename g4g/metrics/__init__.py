"""Evaluation metrics (docs/design/method.md Sec. 9): PSNR, SSIM, MSE, LPIPS, FID, LSE-D / LSE-C.

Modules (networks and heavy packages load only when a metric object is built):
    image          PSNR, SSIM (Wang et al. 2004, Gaussian window), MSE, per frame, batched torch
    lpips_metric   LPIPSMetric: AlexNet LPIPS from the verified manifest file
    fid            FIDInception, ActivationStats (poolable), PooledFID, frechet_distance
    syncnet        the official SyncNet v2 architecture, its loader and MFCC front end (OfficialSyncNet)
    lse            the SyncEmbedder interface and the syncnet_python LSE-D / LSE-C algorithm
    weights_info   WeightsInfo: which file and sha256 each metric used

The evaluation stage puts each behind one accumulator interface (g4g.evaluate.registry).
"""

from g4g.metrics.weights_info import RANDOM_INIT, WeightsInfo

__all__ = ["RANDOM_INIT", "WeightsInfo"]
