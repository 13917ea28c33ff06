"""`g4g runs`: the MLflow runs behind the measured rows of a table, so that a cell leads to its runs.

For each (dataset, method) a table measured, and each seed replicate behind its spread over seeds
(g4g.evaluate.seeds): the evaluation run that made the row (the `mlflow_run_id` its summary,
results/metrics/<dataset>/<method>.json, recorded; the latest run tagged with the dataset and method where
the summary has none), the training run of the checkpoint it scored (tag `training_run_id`), the git
commit each ran at, and the DVC hashes they recorded: of the prepared data they read (clips.parquet)
and of the checkpoint. A checkpoint hash equal to the one in dvc.lock says the run scored the very file
the lock records; another says the table and the lock have drifted apart.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from g4g.evaluate.seeds import seeds_path
from g4g.params import replicate_method
from g4g.tracking import tracking_uri

COLUMNS = ("dataset", "method", "evaluation_run", "evaluated_at_commit", "checkpoint", "checkpoint_md5",
           "checkpoint_in_dvc_lock", "data_md5", "training_run", "trained_at_commit")


def lock_hashes(lock: str | Path) -> dict[str, str]:
    """{path: md5} of every out dvc.lock records."""
    if not Path(lock).is_file():
        return {}
    stages = (yaml.safe_load(Path(lock).read_text()) or {}).get("stages", {})
    return {o["path"]: str(o.get("md5", "")) for s in stages.values() for o in s.get("outs", [])}


def measured(table: str | Path) -> list[tuple[str, str]]:
    """(dataset, method) of each measured row of `table`, each followed by its seed replicates (the seeds
    its tableN_seeds.csv lists after the row's own)."""
    with open(table, newline="") as f:
        rows = [(r["dataset"], r["method"]) for r in csv.DictReader(f) if r["source"] == "this run"]
    replicates: dict[tuple[str, str], list[str]] = {}
    if seeds_path(table).is_file():
        with open(seeds_path(table), newline="") as f:
            for r in csv.DictReader(f):
                replicates.setdefault((r["dataset"], r["method"]), []).extend(
                    replicate_method(r["method"], int(s)) for s in r["seeds"].split()[1:])
    return [(d, m) for d, method in rows for m in dict.fromkeys([method, *replicates.get((d, method), [])])]


def summary_run(metrics_dir: Path, dataset: str, method: str) -> str | None:
    path = metrics_dir / dataset / f"{method}.json"
    return json.loads(path.read_text()).get("mlflow_run_id") if path.is_file() else None


def table_runs(table: str | Path, uri: str | None = None, experiment: str = "G4G",
               lock: str | Path = "dvc.lock", metrics_dir: str | Path = "results/metrics") -> list[dict]:
    """One row per measured (dataset, method) of `table` (COLUMNS; "" where no run was found)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise FileNotFoundError(f"no MLflow experiment {experiment!r} at {tracking_uri(uri)}: the runs of this "
                                "table were logged elsewhere (MLFLOW_TRACKING_URI, params.yaml tracking.uri) "
                                "or not at all")
    in_lock = lock_hashes(lock)
    rows = []
    for dataset, method in measured(table):
        row = dict.fromkeys(COLUMNS, "") | {"dataset": dataset, "method": method}
        rid = summary_run(Path(metrics_dir), dataset, method)
        found = [client.get_run(rid)] if rid else client.search_runs(
            [exp.experiment_id], f"tags.kind = 'evaluation' and tags.dataset = '{dataset}' and tags.method = "
            f"'{method}'", order_by=["attributes.start_time DESC"], max_results=1)
        if found:
            t = found[0].data.tags
            md5 = t.get("dvc_checkpoint_md5", "none")
            ckpt = t.get("checkpoint", "none")
            row.update(evaluation_run=found[0].info.run_id, evaluated_at_commit=t.get("git_commit", ""),
                       checkpoint=ckpt, checkpoint_md5=md5, data_md5=t.get("dvc_data_md5", ""),
                       checkpoint_in_dvc_lock="" if md5 == "none" or ckpt not in in_lock else
                       ("yes" if in_lock[ckpt] == md5 else "no: dvc.lock has " + in_lock[ckpt]))
            train_id = t.get("training_run_id", "none")
            if train_id != "none":
                row["training_run"] = train_id
                try:
                    row["trained_at_commit"] = client.get_run(train_id).data.tags.get("git_commit", "")
                except MlflowException:  # logged to another store, or deleted
                    row["trained_at_commit"] = "(run not found here)"
        rows.append(row)
    return rows


def format_runs(rows: list[dict]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS} if rows else {}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)] if rows else ["no measured rows"]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines)
