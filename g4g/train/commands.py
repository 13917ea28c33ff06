"""`g4g train-sync` and `g4g train`: the command-line face of the two training loops.

    g4g train-sync --dataset demo --out results/models/demo/syncnet.pt
    g4g train --dataset demo --variant full --syncnet results/models/demo/syncnet.pt \\
              --out results/models/demo/full/model.pt

--params is a JSON object or a path (YAML or JSON). A full params.yaml (it has `datasets`) is validated
and resolved for --dataset (its `overrides` merged, see g4g.train.params.resolve); anything else is taken
as already-resolved sections (what the Snakemake rules pass). Rerunning a command resumes its run.
Hooked into g4g/cli.py by `register(subparsers)` (`g4g train ...`, `g4g train-sync ...`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from g4g.config import ROOT

log = logging.getLogger("g4g")


def load_params(spec: str | None, dataset: str) -> dict:
    """Resolved training sections from JSON text, a YAML/JSON file, or params.yaml itself."""
    from g4g.config import validate
    from g4g.train.params import resolve

    spec = spec or str(_params_yaml())
    text = Path(spec).read_text() if not spec.lstrip().startswith("{") and Path(spec).is_file() else spec
    try:
        d = json.loads(text)  # first: YAML 1.1 would read JSON's 1e-05 as a string
    except json.JSONDecodeError:
        d = yaml.safe_load(text) or {}
    if not isinstance(d, dict):
        raise ValueError(f"--params must be a mapping (JSON object or YAML file), got {type(d).__name__}")
    return resolve(validate(d), dataset) if "datasets" in d else d


def _params_yaml() -> Path:
    """params.yaml of the working directory (where Snakemake runs), else the project's."""
    return Path("params.yaml") if Path("params.yaml").is_file() else ROOT / "params.yaml"


def _tracking(a) -> dict:
    """--tracking JSON, else params.yaml `tracking` (not a rule param: changing the URI retrains nothing)."""
    if a.tracking:
        return json.loads(a.tracking)
    path = _params_yaml()
    return (yaml.safe_load(path.read_text()) or {}).get("tracking", {}) if path.exists() else {}


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

        torch.set_num_threads(a.threads)


def cmd_train_sync(a) -> None:
    from g4g.config import section
    from g4g.train.params import SyncParams

    d = load_params(a.params, a.dataset)
    p = section(SyncParams, d.get("sync", {}))
    _runtime(a, p.workers)
    from g4g.train.sync import train_sync

    run_dir = a.run_dir or str(Path(a.out).with_suffix(""))
    config = {"dataset": a.dataset, "seed": d.get("seed", 0), "sync": d.get("sync", {})}
    train_sync(a.clips or f"results/{a.dataset}/clips.parquet", run_dir, a.out, p, seed=d.get("seed", 0),
               tracking=_tracking(a), config=config, tags=_tags(a), device=a.device, stop_at=a.stop_at)


def cmd_train(a) -> None:
    from g4g.config import section
    from g4g.train.params import ModelParams, TrainParams

    d = load_params(a.params, a.dataset)
    model, train = section(ModelParams, d.get("model", {})), section(TrainParams, d.get("train", {}))
    _runtime(a, train.workers)
    from g4g.train.loop import training_loop

    run_dir = a.run_dir or str(Path(a.out).parent)
    config = {"dataset": a.dataset, "seed": d.get("seed", 0), "model": d.get("model", {}),
              "train": d.get("train", {})}
    training_loop(a.clips or f"results/{a.dataset}/clips.parquet", run_dir, a.out, a.variant, model, train,
                  syncnet=a.syncnet, seed=d.get("seed", 0), tracking=_tracking(a), config=config, tags=_tags(a),
                  device=a.device, stop_at=a.stop_at)


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--dataset", required=True, help="dataset name in params.yaml (selects its overrides)")
    p.add_argument("--params", help="JSON object or YAML/JSON file of the resolved sections, or params.yaml "
                                    "(default: the project's params.yaml)")
    p.add_argument("--clips", help="clip index (default: results/{dataset}/clips.parquet)")
    p.add_argument("--out", required=True, help="final checkpoint to write")
    p.add_argument("--run-dir", help="run folder (checkpoints, losses.csv, config.yaml, metrics.json)")
    p.add_argument("--log", help="also write the log to this file")
    p.add_argument("--rule", help="Snakemake rule name (recorded as an MLflow tag)")
    p.add_argument("--tracking", help="JSON of the tracking section (default: params.yaml `tracking`)")
    p.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    p.add_argument("--stop-at", type=int, help="stop with a checkpoint after this step (resume later)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    return p


def register(subparsers) -> None:
    """Add the train-sync and train subcommands to the `g4g` parser."""
    p = _common(subparsers.add_parser("train-sync", help="train the lip-sync expert -> syncnet.pt"))
    p.set_defaults(fn=cmd_train_sync)
    p = _common(subparsers.add_parser("train", help="train one G4G variant -> model.pt (resumable)"))
    p.add_argument("--variant", default="full", help="full | wo_alignment | wo_supervision | wo_fusion")
    p.add_argument("--syncnet", help="trained sync expert (needed by clip stages)")
    p.set_defaults(fn=cmd_train)
