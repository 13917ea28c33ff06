"""DVC in a clone of the shared tiny demo project (tests/conftest.py, `pushed`): a dataset's videos as a
dependency of `prepare` (issue 10 item 1), an experiment with a changed setting (item 3), seed replicates
(item 4). Its own module, so that pytest-xdist runs it beside tests/test_dvc_remote.py."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from conftest import run_tool as run

pytestmark = pytest.mark.slow
TABLES = ("results/table1.csv", "results/table2.csv")


def test_a_video_added_to_a_dataset_makes_prepare_run_again(pushed):
    """Issue 10 item 1: the selected dataset's raw videos (resources/datasets/<dataset>) are a dependency of
    `prepare`. A small dataset of two of the demo's clips, versioned with `dvc add`, is prepared; a third
    video added makes `dvc status` name `prepare` and `dvc repro` prepare it; a video removed is reported
    too; another dataset's folder is not."""
    import pyarrow.parquet as pq

    e = pushed["base"] / "e"
    run(pushed["base"], "git", "clone", "-q", str(pushed["a"]), str(e))
    run(e, "dvc", "pull")
    raw, tiny = e / "resources/datasets/demo", e / "resources/datasets/tiny"
    tiny.mkdir()
    for i in (0, 1):
        shutil.copy2(raw / f"demo_{i:03d}.mp4", tiny)
    run(e, "dvc", "add", "resources/datasets/tiny")
    params = yaml.safe_load((e / "params.yaml").read_text())
    params["dataset"] = "tiny"
    params["datasets"]["tiny"] = {"root": "resources/datasets/tiny", "split": {"protocol": "count", "n_test": 1}}
    (e / "params.yaml").write_text(yaml.safe_dump(params))
    run(e, "dvc", "repro", "prepare")
    ids = lambda: sorted(pq.read_table(e / "results/tiny/manifest.parquet").column("clip_id").to_pylist())
    assert ids() == ["demo_000", "demo_001"]
    assert "up to date" in run(e, "dvc", "status", "prepare").stdout

    shutil.copy2(raw / "demo_002.mp4", tiny)  # a new video
    status = run(e, "dvc", "status", "prepare").stdout
    assert "prepare:" in status and "modified:           resources/datasets/tiny" in status, status
    out = run(e, "dvc", "repro", "prepare").stdout
    assert "Running stage 'prepare'" in out and ids() == ["demo_000", "demo_001", "demo_002"]
    (tiny / "demo_000.mp4").unlink()  # a video removed
    assert "modified:           resources/datasets/tiny" in run(e, "dvc", "status", "prepare").stdout
    shutil.copy2(raw / "demo_000.mp4", tiny)  # back as it was: up to date again
    assert "up to date" in run(e, "dvc", "status", "prepare").stdout
    (e / "resources/datasets/other").mkdir()  # another dataset's folder is not this dataset's prepare's business
    shutil.copy2(raw / "demo_003.mp4", e / "resources/datasets/other")
    assert "up to date" in run(e, "dvc", "status", "prepare").stdout


def test_an_experiment_with_a_changed_setting_is_listed_and_compared(pushed):
    """Issue 10 item 3: `dvc exp run -S` on one training stage of the tiny demo; `dvc exp show` lists it with
    its params and metrics; `dvc metrics diff` and `dvc plots diff` compare it with the commit. The setting is
    one of the `train` section that the demo does not override (a loss weight), so only `train@full` runs:
    the README's example, the demo's own rate, sits in `datasets.demo.overrides`, which every stage reads,
    and runs `demo_data`, `prepare` and `train_sync` again first (to the same bytes; 390 s of the suite)."""
    import json

    f = pushed["base"] / "f"
    run(pushed["base"], "git", "clone", "-q", str(pushed["a"]), str(f))
    run(f, "dvc", "pull")
    out = run(f, "dvc", "exp", "run", "-n", "recon2x", "-S", "train.weights.lambda_r=2.0", "train@full").stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"train@full"}, out[-2000:]
    shown = json.loads(run(f, "dvc", "exp", "show", "--json").stdout)
    exps = {e["name"]: e for row in shown for e in (row.get("experiments") or []) for e in e["revs"]}
    assert exps["recon2x"]["data"]["params"]["params.yaml"]["data"]["train"]["weights"]["lambda_r"] == 2.0
    assert "results/models/demo/full/metrics.json" in exps["recon2x"]["data"]["metrics"]
    diff = json.loads(run(f, "dvc", "metrics", "diff", "HEAD", "recon2x", "--json").stdout)
    changed = diff["results/models/demo/full/metrics.json"]
    assert changed and all(v["old"] != v["new"] for v in changed.values()), changed
    run(f, "dvc", "plots", "diff", "HEAD", "recon2x", "-o", "plots", "--targets",
        "results/models/demo/full/losses.csv")
    html = (f / "plots" / "index.html").read_text()
    assert "recon2x" in html and "results/models/demo/full/losses.csv" in html


def test_seed_replicates_are_stages_and_give_the_spread(pushed):
    """Issue 10 item 4: `extra_seeds: [1]` adds the stage train_seed@full-1. `dvc exp run -S` trains it and
    the evaluate stage, which depends on every model of the dataset, scores it, in a clone that pulled:
    neither re-prepares the data nor retrains the sync expert. table1.csv keeps the row of seed 0 byte for
    byte; table1_seeds.csv, table1.md and the DVC metrics hold the spread over seeds 0 and 1; a second
    `dvc status` finds nothing to do."""
    import csv
    import json

    g = pushed["base"] / "g"
    run(pushed["base"], "git", "clone", "-q", str(pushed["a"]), str(g))
    run(g, "dvc", "pull")
    assert "train_seed@" not in run(g, "dvc", "stage", "list", "--name-only").stdout  # none by default
    out = run(g, "dvc", "exp", "run", "-n", "seeds", "-S", "extra_seeds=[1]").stdout  # as the README shows
    assert yaml.safe_load((g / "params.yaml").read_text())["extra_seeds"] == [1]
    assert "train_seed@full-1" in run(g, "dvc", "stage", "list", "--name-only").stdout.split()
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"train_seed@full-1", "evaluate"}, out[-3000:]
    # --allowed-rules: inside those stages Snakemake did not redo earlier stages' work (this clone pulled,
    # so their intermediates and Snakemake's records are missing); evaluate re-made the resampled audio only
    assert sorted(p.name for p in (g / "logs/demo/train").rglob("*.log")) == ["full.log"], out[-3000:]
    assert (g / "logs/demo/train/seed1/full.log").exists() and not (g / "logs/demo/faces").exists()
    assert "Data and pipelines are up to date" in run(g, "dvc", "status").stdout
    for t in TABLES:
        assert (g / t).read_bytes() == (pushed["a"] / t).read_bytes(), t
    replicate = g / "results/models/demo/seed1/full/model.pt"
    assert replicate.read_bytes() != (g / "results/models/demo/full/model.pt").read_bytes()
    rows = {r["metric"]: r for r in csv.DictReader(open(g / "results/table1_seeds.csv")) if r["method"] == "g4g"}
    psnr = rows["PSNR"]
    assert psnr["seeds"] == "0 1" and psnr["n_seeds"] == "2" and float(psnr["sd"]) > 0, psnr
    summary = json.loads((g / "results/metrics/demo/g4g@seed1.json").read_text())
    assert psnr["values"].split()[1] == f"{summary['metrics']['PSNR']:.6g}"
    assert "| demo | g4g | 0 1 |" in (g / "results/table1.md").read_text()
    assert json.loads((g / "results/metrics/demo/summary.json").read_text())["g4g"]["seeds"]["psnr"]["n"] == 2
