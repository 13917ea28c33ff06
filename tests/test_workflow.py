"""The Snakemake workflow: lint, the preparation stages, reruns after a changed parameter, and what a run of
the whole demo DAG publishes. That a second run in another folder publishes the same bytes is
tests/test_slurm_dag.py's test_demo_dag_through_the_slurm_profile (the same DAG through SLURM)."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, copy_run, dvc_outputs, snakemake

pytestmark = pytest.mark.slow


def test_lint_is_clean():
    r = snakemake(ROOT, "--lint")
    assert r.returncode == 0, r.stdout + r.stderr


def test_prepare_target_end_to_end(tiny_dag):
    """The preparation stages of the shared tiny DAG run: every clip ready, one shard per two clips, a
    contact sheet, a log per job, nothing half-written left behind, and nothing to do on a second run."""
    summary = json.loads((tiny_dag / "results/demo/prepared.json").read_text())
    assert summary["clips_listed"] == 4 and summary["clips_ready"] == 4
    assert summary["ready_by_split"]["test"] == 1
    clips = pq.read_table(tiny_dag / "results/demo/clips.parquet").to_pylist()
    assert {c["shard"] for c in clips} == {"s0000", "s0001"}
    assert (tiny_dag / "results/demo/contact_sheet.png").stat().st_size > 10_000
    for rule in ["scan", "resample/s0000", "faces/s0001", "faces/s0000", "mels/s0001", "prepare"]:
        assert (tiny_dag / f"logs/demo/{rule}.log").exists(), rule
    assert not list((tiny_dag / "results").rglob(".tmp-*"))
    r = snakemake(tiny_dag, "--cores", "2", "-n")
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]


def test_changed_param_reruns_only_dependent_jobs(tiny_dag, tmp_path):
    """A changed crop parameter re-runs the faces stage and what follows, not resampling or mels
    (params flow via params:)."""
    wd = copy_run(tiny_dag, tmp_path / "wd")
    p = yaml.safe_load((wd / "params.yaml").read_text())
    p["crop"]["quality"] = 90
    (wd / "params.yaml").write_text(yaml.safe_dump(p))
    r = snakemake(wd, "results/demo/prepared.json", "--cores", "2", "-n", "--rerun-triggers", "params")
    out = r.stdout + r.stderr
    stats = out.split("Job stats")[-1].split("total")[0]
    assert "faces" in stats and "prepare" in stats, out[-2000:]
    assert "resample" not in stats and "mels" not in stats, stats


def test_published_files_hold_only_what_the_computation_determines(tiny_dag):
    """Issue 8: model files, tables, metrics and loss logs hold what the computation determines (so a second run
    publishes the same bytes, see test_slurm_dag.py); timings and provenance are kept beside them."""
    outputs = dvc_outputs("demo", ["full"])
    assert "results/models/demo/full/model.pt" in outputs and "results/table1.csv" in outputs
    assert all((tiny_dag / out).exists() for out in outputs), [o for o in outputs if not (tiny_dag / o).exists()]
    assert "step_s" not in (tiny_dag / "results/models/demo/full/losses.csv").read_text()
    assert "step_s" in (tiny_dag / "results/models/demo/full/timings.csv").read_text()
    assert "git_commit" in (tiny_dag / "results/models/demo/full/config.yaml").read_text()
    # the digests users compare (`g4g fingerprints`; `dvc repro` does not write the rule's CSV): header, then
    # clips.parquet, shards, the expert, one variant, videos, summary, three tables
    printed = subprocess.run([sys.executable, "-m", "g4g", "fingerprints"], cwd=tiny_dag, capture_output=True,
                             text=True, timeout=120).stdout
    assert len(printed.splitlines()) == 1 + 9, printed
    assert len((tiny_dag / "results/demo/fingerprints.csv").read_text().splitlines()) == 1 + 9
    # the cross-driven table: the full model and the baselines driven by silence, and the row saying why there is
    # no cross-driven render of a single test clip (two clips: tests/test_infer.py, tests/test_evaluate.py)
    import csv

    rows = {r["method"]: r for r in csv.DictReader(open(tiny_dag / "results/table_cross.csv"))}
    assert set(rows) == {"g4g", "ground_truth", "mean_face"}, rows
    for method, r in rows.items():
        assert r["n videos"] == "0" and r["Leakage"] and "needs two test clips" in r["notes"], (method, r)
    index = pq.read_table(tiny_dag / "results/videos/demo/g4g.index.parquet").to_pylist()
    assert [(r["setting"], r["status"]) for r in index] == [("reconstruction", "ok"), ("cross", "rejected"),
                                                           ("silent", "ok")]
    assert "at least two test clips" in index[1]["reason"]
