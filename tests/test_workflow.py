"""The Snakemake workflow: lint, dry run, and the preparation target end to end on a small demo set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                           *args], capture_output=True, text=True, env=env, cwd=workdir)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["demo"].update(n_clips=4, min_seconds=1.2, max_seconds=1.6, shard_size=2,
                                      split={"protocol": "count", "n_test": 1})
    (wd / "params.yaml").write_text(yaml.safe_dump(params))
    return wd


def test_lint_is_clean():
    r = snakemake(ROOT, "--lint")
    assert r.returncode == 0, r.stdout + r.stderr


def test_prepare_target_end_to_end(small_demo):
    r = snakemake(small_demo, "--cores", "2", "results/demo/prepared.json", "results/demo/contact_sheet.png")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((small_demo / "results/demo/prepared.json").read_text())
    assert summary["clips_listed"] == 4 and summary["clips_ready"] == 4
    assert summary["ready_by_split"]["test"] == 1
    clips = pq.read_table(small_demo / "results/demo/clips.parquet").to_pylist()
    assert {c["shard"] for c in clips} == {"s0000", "s0001"}
    assert (small_demo / "results/demo/contact_sheet.png").stat().st_size > 10_000
    for rule in ["scan", "resample/s0000", "faces/s0001", "faces/s0000", "mels/s0001", "prepare"]:
        assert (small_demo / f"logs/demo/{rule}.log").exists(), rule
    # nothing half-written is left behind, and a second run has nothing to do
    assert not list((small_demo / "results").rglob(".tmp-*"))
    r = snakemake(small_demo, "--cores", "2", "-n", "results/demo/prepared.json")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_changed_param_reruns_only_dependent_jobs(small_demo):
    """A changed crop parameter re-runs the faces stage and what follows, not resampling or mels
    (params flow via params:)."""
    p = yaml.safe_load((small_demo / "params.yaml").read_text())
    p["crop"]["quality"] = 90
    (small_demo / "params.yaml").write_text(yaml.safe_dump(p))
    r = snakemake(small_demo, "results/demo/prepared.json", "--cores", "2", "-n", "--rerun-triggers", "params")
    out = r.stdout + r.stderr
    stats = out.split("Job stats")[-1].split("total")[0]
    assert "faces" in stats and "prepare" in stats, out[-2000:]
    assert "resample" not in stats and "mels" not in stats, stats
