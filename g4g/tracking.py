"""Experiment tracking, the one module that talks to MLflow: a per-step CSV that always exists, MLflow
when it can be imported; training runs and evaluation runs (linked to the training of their checkpoint).

MLflow (docs/design/pipeline.md Sec. 4): one run per training, resumed with the same run id after a restart;
params = the resolved, flattened config; tags = git commit and dirty flag, data hash, Snakemake rule,
variant, perceptual on/off; metrics sent in batches (log_batch); sample grids, curves and the final
checkpoint as artefacts. Default tracking URI: sqlite:///mlflow.db (in the project root, where the
workflow runs); MLFLOW_TRACKING_URI or params.yaml `tracking.uri` override it. Without mlflow installed
(GPU machines carry few packages) the run logs to the CSV only. A tracking failure is reported and never
stops the training.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path

from g4g.params import ROOT
from g4g.utils import atomic_path, file_digest, metric_key

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------------------------


def git_info(root: Path = ROOT) -> dict[str, str]:
    """{'git_commit', 'git_dirty'} of the project (read-only git calls; 'unknown' outside a repo)."""
    def run(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        head = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        if head.returncode:
            raise OSError(head.stderr)
        return {"git_commit": head.stdout.strip(), "git_dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def data_hash(clips_parquet: str | Path, shard_paths: list[str]) -> str:
    """Quick hash of the prepared data: clips.parquet in full, each shard by name, size and its
    first and last MiB (the Parquet footer, with the row-group statistics, is at the end)."""
    h = hashlib.sha256(Path(clips_parquet).read_bytes())
    for p in sorted(set(shard_paths)):
        size = os.path.getsize(p)
        h.update(f"{Path(p).name}:{size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read())
    return h.hexdigest()[:16]


def tracking_uri(configured: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else params.yaml tracking.uri, else mlflow.db in the working directory (the
    project root, where Snakemake and DVC run)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or "sqlite:///mlflow.db"


def dvc_md5(path: str | Path) -> str:
    """The hash DVC records for a file in dvc.lock (the md5 of its bytes): an MLflow tag with it leads to
    the dvc.lock entry, and so the commit, of the very data or checkpoint a run read."""
    return file_digest(path, "md5")


# ----------------------------------------------------------------------------------------------------
# CSV loss log
# ----------------------------------------------------------------------------------------------------


class LossLog:
    """Append rows to a CSV; on resume, rows after the resumed step are dropped (they will be redone)."""

    def __init__(self, path: str | Path, columns: list[str], resume_step: int | None = None):
        self.path, self.columns = Path(path), list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict] = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self._f = open(self.path, "w+", newline="")  # readable: see copy_to
        self._w = csv.DictWriter(self._f, self.columns, extrasaction="ignore")
        self._w.writeheader()
        self._w.writerows(kept)
        self._f.flush()

    def write(self, row: dict) -> None:
        self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def flush(self) -> None:
        self._f.flush()

    def copy_to(self, dst: str | Path) -> None:
        """Write every row so far to `dst`, atomically, read through the open file and not through its path:
        Snakemake deletes a failed job's outputs, this file among them, while a preempted run may still be
        saving its checkpoint (measured under scancel: the copy by path failed, the save was lost)."""
        self._f.flush()
        end = self._f.tell()
        self._f.seek(0)
        with atomic_path(dst) as tmp, open(tmp, "w", newline="") as out:
            out.write(self._f.read())
        self._f.seek(end)

    def close(self) -> None:
        self._f.close()


def read_losses(path: str | Path) -> dict[str, list[float]]:
    """Columns of a loss CSV as float lists (empty cells -> nan)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = rows[0].keys() if rows else []
    out = {}
    for c in cols:
        try:
            out[c] = [float(r[c]) if r[c] not in ("", None) else float("nan") for r in rows]
        except ValueError:
            continue  # text columns (mode)
    return out


# ----------------------------------------------------------------------------------------------------
# MLflow
# ----------------------------------------------------------------------------------------------------


class Tracker:
    """MLflow run wrapper; every method is a no-op when MLflow is disabled, missing or failing."""

    def __init__(self, enabled: bool = True, uri: str | None = None, experiment: str = "G4G"):
        self.client, self.run_id = None, None
        self._pending: list = []
        if not enabled:
            log.info("MLflow tracking disabled in params; logging to CSV only")
            return
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            log.info("mlflow is not importable here; logging to CSV only")
            return
        self.uri, self.experiment = tracking_uri(uri), experiment
        if self.uri.startswith("sqlite:") and os.environ.get("SLURM_JOB_ID"):
            log.warning("MLflow writes %s from a SLURM job: many jobs writing one SQLite file on a shared file "
                        "system can corrupt it; start a tracking server (tools/mlflow-server up, then eval "
                        "\"$(tools/mlflow-server env)\" before snakemake)", self.uri)
        try:
            self.client = self._connect(MlflowClient)
        except Exception as e:
            self._fail("connect", e)

    def _connect(self, client_class):
        """The client; for a SQLite file, made under a lock beside it: the first client creates the tables,
        and jobs that start together would otherwise race through the schema migration (all but one fail)."""
        if not self.uri.startswith("sqlite:///"):
            return client_class(self.uri)
        import fcntl

        db = Path(self.uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return client_class(self.uri)

    def _fail(self, what: str, e: Exception) -> None:
        log.warning("MLflow %s failed (%s: %s); continuing with CSV logging only", what, type(e).__name__, e)
        self.client = None

    @property
    def active(self) -> bool:
        return self.client is not None and self.run_id is not None

    def start(self, name: str, params: dict[str, str], tags: dict[str, str], run_id: str | None = None) -> str | None:
        """Open (or reopen, after a resume) the run; log params and tags. Returns the run id."""
        if self.client is None:
            return None
        try:
            from mlflow.entities import Param, RunTag

            if run_id is None:
                exp_id = self._experiment_id()
                run_id = self.client.create_run(exp_id, run_name=name).info.run_id
                ps = [Param(k, v[:6000]) for k, v in params.items()]
                for i in range(0, len(ps), 100):
                    self.client.log_batch(run_id, params=ps[i:i + 100])
            else:
                self.client.update_run(run_id, status="RUNNING")
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
            self.run_id = run_id
        except Exception as e:
            self._fail("start", e)
        return self.run_id

    def _experiment_id(self) -> str:
        """The experiment's id, creating it if needed; when many jobs start at once, another may create it
        between the lookup and the creation, and its experiment is then used."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=(
                Path.cwd() / "mlartifacts").as_uri() if self.uri.startswith("sqlite:") else None)
        except MlflowException:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in values.items() if v == v]

    def flush(self) -> None:
        if not self.active or not self._pending:
            return
        try:
            for i in range(0, len(self._pending), 1000):
                self.client.log_batch(self.run_id, metrics=self._pending[i:i + 1000])
        except Exception as e:
            self._fail("log_batch", e)
        self._pending = []

    def artifact(self, path: str | Path, subdir: str | None = None) -> None:
        if self.active:
            try:
                self.client.log_artifact(self.run_id, str(path), subdir)
            except Exception as e:
                self._fail("log_artifact", e)

    def tag(self, key: str, value: str) -> None:
        if self.active:
            try:
                self.client.set_tag(self.run_id, key, value)
            except Exception as e:
                self._fail("set_tag", e)

    def end(self, status: str = "FINISHED") -> None:
        if self.active:
            self.flush()
            try:
                self.client.set_terminated(self.run_id, status)
            except Exception as e:
                self._fail("end", e)


# ----------------------------------------------------------------------------------------------------
# Params and evaluation runs
# ----------------------------------------------------------------------------------------------------


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {'a.b.c': 'value'} (MLflow params)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str) if isinstance(v, (list, tuple)) else str(v)
    return out


def training_run_id(checkpoint: str | None, tracker) -> str | None:
    """MLflow run id of the training that wrote `checkpoint` (None when it cannot be told)."""
    if not checkpoint or not Path(checkpoint).exists():
        return None
    import torch  # heavy: only evaluations that link a checkpoint need it

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
    except Exception as e:  # the link is a convenience
        log.warning("could not look up the training run of %s (%s)", checkpoint, e)
        return None


def log_evaluation(summary: dict, tracking: dict | None, checkpoint: str | None, artifacts: list[str],
                   clips_parquet: str | None = None) -> dict:
    """Log the method's values, weights and notes; returns {'mlflow_run_id', 'training_run_id'}."""
    tracking = tracking or {}
    tr = Tracker(tracking.get("mlflow", True), tracking.get("uri"), tracking.get("experiment", "G4G"))
    train_id = training_run_id(checkpoint, tr)
    has_ckpt = bool(checkpoint) and Path(checkpoint).exists()
    tags = {**git_info(), "kind": "evaluation", "dataset": summary["dataset"], "method": summary["method"],
            "snakemake_rule": "evaluate", "training_run_id": train_id or "none", "checkpoint": checkpoint or "none",
            "dvc_checkpoint_md5": dvc_md5(checkpoint) if has_ckpt else "none",
            "dvc_data_md5": dvc_md5(clips_parquet) if clips_parquet and Path(clips_parquet).exists() else "none",
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
