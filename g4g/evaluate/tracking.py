"""One MLflow run per (dataset, method) evaluation, linked to the training run of the checkpoint.

The link is the tag `training_run_id`: the checkpoint's own record of its MLflow run when it has one,
otherwise the run whose tags carry the checkpoint's fingerprint and variant (the training loop tags
every run with them). Uses g4g.train.tracking.Tracker, so a missing or failing MLflow only costs the
tracking, never the evaluation.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)


def metric_key(column: str) -> str:
    """MLflow-safe name of a table column: 'LSE-C (own SyncNet)' -> 'lse_c_own_syncnet'."""
    return re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")


def training_run_id(checkpoint: str | None, tracker) -> str | None:
    """MLflow run id of the training that wrote `checkpoint` (None when it cannot be told)."""
    if not checkpoint or not Path(checkpoint).exists():
        return None
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    meta = state.get("meta") or {}
    rid = state.get("mlflow_run_id") or meta.get("mlflow_run_id")
    if rid or tracker.client is None or not meta.get("fingerprint"):
        return rid
    try:
        exps = [e.experiment_id for e in tracker.client.search_experiments()]
        flt = f"tags.fingerprint = '{meta['fingerprint']}'"
        if meta.get("variant"):
            flt += f" and tags.variant = '{meta['variant']}'"
        runs = tracker.client.search_runs(exps, flt, order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None
    except Exception as e:  # noqa: BLE001 - the link is a convenience
        log.warning("could not look up the training run of %s (%s)", checkpoint, e)
        return None


def log_evaluation(summary: dict, tracking: dict | None, checkpoint: str | None, artifacts: list[str]) -> dict:
    """Log the method's values, weights and notes; returns {'mlflow_run_id', 'training_run_id'}."""
    from g4g.train.params import flatten
    from g4g.train.tracking import Tracker, git_info

    tracking = tracking or {}
    tr = Tracker(tracking.get("mlflow", True), tracking.get("uri"), tracking.get("experiment", "G4G"))
    train_id = training_run_id(checkpoint, tr)
    tags = {**git_info(), "kind": "evaluation", "dataset": summary["dataset"], "method": summary["method"],
            "snakemake_rule": "evaluate", "training_run_id": train_id or "none", "checkpoint": checkpoint or "none",
            **{f"weights.{metric_key(k)}": v for k, v in summary["weights"].items()}}
    params = flatten({"evaluate": summary["params"], "dataset": summary["dataset"], "method": summary["method"]})
    run_id = tr.start(f"eval-{summary['dataset']}-{summary['method']}", params, tags)
    if run_id is not None:
        values = {metric_key(k): v for k, v in summary["metrics"].items() if v == v and abs(v) != float("inf")}
        tr.log_metrics(0, {**values, "n_videos": summary["n_videos"], "n_frames": summary["n_frames"]})
        if summary["notes"]:
            tr.tag("notes", " | ".join(summary["notes"])[:5000])
        for a in artifacts:
            if a and Path(a).exists():
                tr.artifact(a)
        tr.end()
    return {"mlflow_run_id": run_id, "training_run_id": train_id}
