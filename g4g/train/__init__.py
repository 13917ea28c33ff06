"""Training of the sync expert and of G4G (PIPELINE.md Sec. 2 steps 6-7).

    params.py      resolved params.yaml sections (dataset overrides merged), variants, fingerprints
    data.py        samplers over the Parquet shards: frame / clip samples, sync pairs, the loader
    checkpoint.py  atomic checkpoints, resume, RNG states, preemption signals
    tracking.py    MLflow (lazy, optional) + CSV loss log, git / data tags
    sync.py        the sync expert's training loop (Sec. 6)
    loop.py        the G4G training loop (Sec. 5): stages, losses, GAN, DDP, bf16
    quality.py     held-out checks: sync accuracy, masked-region PSNR against naive references
    plots.py       sample grids and training curves
    commands.py    the `g4g train-sync` / `g4g train` subcommands
"""
