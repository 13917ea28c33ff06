"""Training of the sync expert and of G4G (docs/design/pipeline.md Sec. 2 steps 6-7).

    data.py        samplers over the Parquet shards: frame / clip samples, sync pairs, the loader
    checkpoint.py  atomic checkpoints, resume, RNG states, preemption signals
    run.py         one training run: its fingerprint, checkpoints, loss log and MLflow run (g4g.tracking)
    skeleton.py    the one skeleton both loops run: seeding, identity, resume, DDP, preemption, stages, final artefacts
    sync.py        the sync expert's training loop (Sec. 6)
    loop.py        the G4G training loop (Sec. 5): stages, losses, GAN, DDP, bf16
    quality.py     held-out checks: sync accuracy, masked-region PSNR against naive references
    plots.py       sample grids and training curves
    commands.py    the `g4g train-sync` / `g4g train` subcommands
    launch.py      how a training job starts: g4g, or torchrun DDP over the job's GPUs
"""
