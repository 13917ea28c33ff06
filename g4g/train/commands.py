"""`g4g train-sync` and `g4g train`: the command-line face of the two training loops.

    g4g train-sync --dataset demo --out results/models/demo/syncnet.pt
    g4g train --dataset demo --variant full --syncnet results/models/demo/syncnet.pt \\
              --out results/models/demo/full/model.pt

Settings: params.yaml resolved for --dataset (its `overrides` merged), the sections given as JSON with
--params (what the rules pass), then `--sync.KEY` / `--train.KEY` / `--model.KEY` options (`--help` lists
them). Rerunning a command resumes its run.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from g4g.params import VARIANTS, add_options, as_dict, from_args

log = logging.getLogger("g4g")


def _tags(a) -> dict:
    return {"dataset": a.dataset, "snakemake_rule": a.rule or "none"}


def _runtime(a, workers: int) -> None:
    """Process settings that must precede the torch import: with DataLoader workers, OpenMP threads that
    spin-wait between parallel regions starve the workers on small machines (measured on 2 cores: 0.5 s
    instead of 10 ms per batch), so they sleep instead (OMP_WAIT_POLICY=PASSIVE, unless set). Without
    workers the spinning is kept: it makes CPU compute about 1.7x faster. Then --threads."""
    if workers > 0 and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if a.threads:
        import torch

        # the job's CPUs are shared by its ranks: with each of 2 ranks taking both CPUs of a 2-CPU job, 40
        # steps took 62.6 s instead of 11.5 s (start-up included; OpenMP threads spin-wait on each other)
        torch.set_num_threads(max(1, a.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def cmd_train_sync(a) -> None:
    p = from_args(a)
    _runtime(a, p.sync.workers)
    from g4g.train.sync import train_sync  # after _runtime: it imports torch

    run_dir = a.run_dir or str(Path(a.out).with_suffix(""))
    config = {"dataset": p.dataset, "seed": p.seed, "sync": as_dict(p.sync)}
    train_sync(a.clips or f"results/{a.dataset}/clips.parquet", run_dir, a.out, p.sync, seed=p.seed,
               tracking=as_dict(p.tracking), config=config, tags=_tags(a), device=a.device, stop_at=a.stop_at)


def cmd_train(a) -> None:
    p = from_args(a)
    _runtime(a, p.train.workers)
    from g4g.train.loop import training_loop  # after _runtime: it imports torch

    run_dir = a.run_dir or str(Path(a.out).parent)
    config = {"dataset": p.dataset, "seed": p.seed, "model": as_dict(p.model), "train": as_dict(p.train)}
    training_loop(a.clips or f"results/{a.dataset}/clips.parquet", run_dir, a.out, a.variant, p.model, p.train,
                  syncnet=a.syncnet, seed=p.seed, tracking=as_dict(p.tracking), config=config, tags=_tags(a),
                  device=a.device, stop_at=a.stop_at)


def _job(p, *sections: str):
    p.add_argument("--dataset", required=True, help="dataset name in params.yaml (selects its overrides)")
    p.add_argument("--clips", help="clip index (default: results/{dataset}/clips.parquet)")
    p.add_argument("--out", required=True, help="final checkpoint to write")
    p.add_argument("--run-dir", help="run folder (checkpoints, losses.csv, config.yaml, metrics.json)")
    p.add_argument("--rule", help="Snakemake rule name (recorded as an MLflow tag)")
    p.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    p.add_argument("--stop-at", type=int, help="stop with a checkpoint after this step (resume later)")
    p.add_argument("--threads", type=int, help="torch CPU threads of the job, shared by its torchrun ranks "
                   "(default: torch's own choice)")
    add_options(p, "seed", *sections, "tracking")
    p.set_defaults(log_append=True)  # a resumed run's --log keeps the attempts before it
    return p


def register(add) -> None:
    """Define the train-sync and train subcommands; `add(name)` makes a subcommand's parser (g4g.cli)."""
    _job(add("train-sync"), "sync").set_defaults(fn=cmd_train_sync)
    p = _job(add("train"), "model", "train")
    p.add_argument("--variant", default="full", choices=list(VARIANTS), help="the G4G variant (Table 2)")
    p.add_argument("--syncnet", help="trained sync expert (needed by clip stages)")
    p.set_defaults(fn=cmd_train)
