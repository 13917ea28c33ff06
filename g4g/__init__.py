"""G4G: reference open implementation of arXiv 2402.18122 (audio-driven talking-face generation).

Package map, lowest layer first (each imports only the ones above it; tests/test_layers.py):
    utils.py, rejects.py   atomic writes, logging, hashing; the rejects record and ClipError
    params.py              params.yaml: one typed dataclass per section, the schema, the resolver
    weights.py             the manifest of external pretrained weights (status, fetch, checksums)
    tracking.py            MLflow (optional) and the CSV loss log; the only module that talks to MLflow
    io/        video/audio decoding, encoding, probing (PyAV + the imageio-ffmpeg binary)
    data/      one module per preparation rule (scan, resample, faces, mels, prepare, contact_sheet)
    models/    the G4G network, discriminators, sync expert, loading trained networks
    losses.py  the training losses (Eq. 19-24)
    metrics/   PSNR, SSIM, MSE, LPIPS, FID, LSE-D/LSE-C
    train/     training loops, data loader, checkpoints
    infer/     lip-sync any video with any audio; the test set in the reconstruction setting
    evaluate/  the frozen evaluation protocol and the tables
    bench/     benchmarks (printed, never asserted)
    cli.py     the `g4g` command line (each phase's subcommands are in its commands.py)
"""

__version__ = "0.1.0"
