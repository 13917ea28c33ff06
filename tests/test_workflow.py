"""The Snakemake workflow: lint, dry run, and the preparation target end to end on a small demo set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import dvc_path, dvc_stages

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


# ----------------------------------------------------------------------------------------------------
# Reproduction: two runs in two clean folders publish the same bytes
# ----------------------------------------------------------------------------------------------------


def dvc_outputs(dataset: str, variants: list[str]) -> list[str]:
    """Every path dvc.yaml declares as an out, metric or plot, for one dataset and the given variants."""
    params = {**yaml.safe_load((ROOT / "params.yaml").read_text()), "dataset": dataset, "variants": variants}
    return [dvc_path(next(iter(entry)) if isinstance(entry, dict) else entry, params, item)
            for _, body, item in dvc_stages(params) for kind in ("outs", "metrics", "plots")
            for entry in body.get(kind, [])]


def tiny_pipeline(wd: Path) -> Path:
    """The demo DAG at its smallest: 4 clips of ~1.4 s, a few training steps, one variant, no MLflow."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    demo = params["datasets"]["demo"]
    demo.update(n_clips=4, min_seconds=1.2, max_seconds=1.6, shard_size=2, split={"protocol": "count", "n_test": 1})
    demo["overrides"]["train"].update(stages=[{"mode": "frame", "scale": 64, "steps": 3, "batch": 2, "gan": False},
                                              {"mode": "clip", "scale": 64, "steps": 2, "batch": 1}],
                                      checkpoint_every=2, sample_every=0, log_every=1, eval_frames=4)
    demo["overrides"]["sync"].update(steps=4, batch=4, checkpoint_every=2, log_every=1, eval_windows=4,
                                     bn_recalibrate=2)
    params.update(variants=["full"], tracking={"mlflow": False})
    (wd / "params.yaml").write_text(yaml.safe_dump(params))
    return wd


def test_two_runs_publish_identical_bytes(tmp_path):
    """Issue 8: the whole demo DAG, run in two clean folders, gives every DVC-tracked output byte for byte
    (checkpoints included: their archive name no longer follows the temporary file's) and the same
    fingerprints."""
    runs = []
    for name in ("a", "b_elsewhere"):  # two paths: an absolute path leaking into an output shows up
        (tmp_path / name).mkdir()
        runs.append(tiny_pipeline(tmp_path / name))
    for wd in runs:
        r = snakemake(wd, "--cores", "2")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    outputs = dvc_outputs("demo", ["full"])
    assert "results/models/demo/full/model.pt" in outputs and "results/table1.csv" in outputs
    compared = 0
    for out in outputs:
        a, b = runs[0] / out, runs[1] / out
        assert a.exists() and b.exists(), out
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() else [Path()]
        if a.is_dir():
            assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()), out
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{out}/{f} differs between two runs"
            compared += 1
    assert compared > 15, compared
    # timings and provenance are kept, apart from what DVC hashes
    assert "step_s" not in (runs[0] / "results/models/demo/full/losses.csv").read_text()
    assert "step_s" in (runs[0] / "results/models/demo/full/timings.csv").read_text()
    assert "git_commit" in (runs[0] / "results/models/demo/full/config.yaml").read_text()
    prints = [(wd / "results/demo/fingerprints.csv").read_text() for wd in runs]
    # header; clips.parquet, shards, the expert, one variant, videos, summary, two tables
    assert prints[0] == prints[1] and len(prints[0].splitlines()) == 1 + 8
