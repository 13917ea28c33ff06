"""G4G: reference open implementation of arXiv 2402.18122 (audio-driven talking-face generation).

Package map (mirrors the pipeline stages, see docs/ and ../shared/design/PIPELINE.md):
    io/        video/audio decoding, encoding, probing (PyAV + the imageio-ffmpeg binary)
    data/      demo dataset, scan/split, resample, landmarks, crops, mels, Parquet shards, inspect
    models/    the G4G network, discriminators, sync expert (torch + numpy only)
    train/     training loops, data loader, checkpoints, tracking
    infer/     lip-sync any video with any audio
    metrics/   PSNR, SSIM, MSE, LPIPS, FID, LSE-D/LSE-C
    weights.py the manifest of external pretrained weights (status, fetch, checksums)
"""

__version__ = "0.1.0"
