"""The Snakemake workflow: lint, the preparation stages, reruns after a changed parameter, and two runs of the
whole demo DAG (plain Snakemake and `dvc repro`, in two folders) publishing the same bytes."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, copy_run, differing_outputs, dvc_outputs, snakemake

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


# ----------------------------------------------------------------------------------------------------
# Reproduction: two runs in two clean folders publish the same bytes
# ----------------------------------------------------------------------------------------------------


def test_two_runs_publish_identical_bytes(tiny_dag, tiny_dvc_project):
    """Issue 8: the whole demo DAG, run in two clean folders (plain Snakemake in one, `dvc repro` in a git
    repository in the other), gives every DVC-tracked output byte for byte (checkpoints included: their
    archive name no longer follows the temporary file's; an absolute path leaking into an output shows up)
    and the same fingerprints."""
    outputs = dvc_outputs("demo", ["full"])
    assert "results/models/demo/full/model.pt" in outputs and "results/table1.csv" in outputs
    differ, compared = differing_outputs(tiny_dag, tiny_dvc_project, outputs)
    assert not differ, f"differ between two runs: {differ}"
    assert compared > 15, compared
    # timings and provenance are kept, apart from what DVC hashes
    assert "step_s" not in (tiny_dag / "results/models/demo/full/losses.csv").read_text()
    assert "step_s" in (tiny_dag / "results/models/demo/full/timings.csv").read_text()
    assert "git_commit" in (tiny_dag / "results/models/demo/full/config.yaml").read_text()
    # the digests users compare (`g4g fingerprints`; `dvc repro` does not write the rule's CSV): header, then
    # clips.parquet, shards, the expert, one variant, videos, summary, two tables
    prints = [subprocess.run([sys.executable, "-m", "g4g", "fingerprints"], cwd=wd, capture_output=True, text=True,
                             timeout=120).stdout for wd in (tiny_dag, tiny_dvc_project)]
    assert prints[0] == prints[1] and len(prints[0].splitlines()) == 1 + 8, prints
    assert len((tiny_dag / "results/demo/fingerprints.csv").read_text().splitlines()) == 1 + 8
