"""`g4g score`: score folders of generated videos against a folder of ground-truth videos, with no trained
model and no prepared dataset (issue 12 item 2).

The ground-truth folder becomes a dataset of its own whose every clip is a test clip. It is prepared by the
workflow's own rules (scan, resample, faces, mels, prepare) in a cache folder keyed by the folder's path,
and each generated folder is an external method scored by the workflow's `evaluate` rule: the code and the
protocol of Table 1, nothing re-implemented. A second call with the same ground truth finds the preparation
done and only scores. Videos pair by file name: ground truth `talk.mp4` with `talk.<any container>` in each
method's folder (a ground-truth file in a subfolder, `a/talk.mp4`, pairs with `a__talk.*`); rate, size and
container are free (the evaluation resamples to 25 fps and rescales the crop transforms). A ground-truth
name is made id-safe first (g4g.data.scan.clip_id_for: `my talk.mp4` is clip `my_talk`), and the method's
video must carry that id.

Nothing is dropped silently: every ground-truth clip gets one row per method in clips.csv, scored or not,
with the reason (the ground truth could not be prepared, the method has no video for it, its video is
unreadable, ...), and methods.csv counts them beside the means.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from g4g.data.scan import VIDEO_EXTENSIONS, dataset_clips
from g4g.evaluate.intervals import interval_rows, write_intervals, write_rows
from g4g.evaluate.registry import metric_columns
from g4g.evaluate.score import GROUND_TRUTH
from g4g.params import PARAMS_PATH, ROOT, DatasetParams, load
from g4g.rejects import read_rejects
from g4g.utils import write_text

log = logging.getLogger(__name__)

DATASET = "score"  # the ground-truth folder's dataset name inside its cache


def parse_methods(specs: list[str]) -> dict[str, str]:
    """--method NAME=FOLDER options as {name: folder}; a name that could not be a table row or a file name
    (or is given twice, or is reserved) is refused with the option quoted."""
    methods = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not folder:
            raise ValueError(f"--method {spec!r}: write NAME=FOLDER, NAME of letters, digits, '_', '.', '-'")
        if name in methods or name in (GROUND_TRUTH, "summary"):
            raise ValueError(f"--method {spec!r}: the name {name!r} is " +
                             ("given twice" if name in methods else "reserved"))
        methods[name] = folder
    return methods


def cache_for(gt: Path, cache_root: Path) -> Path:
    """The cache folder of one ground-truth folder (keyed by its absolute path): its preparation is reused
    by every later call; Snakemake redoes it when the folder's videos change."""
    return cache_root / hashlib.sha256(str(gt.resolve()).encode()).hexdigest()[:12]


def write_workdir(gt: Path, methods: dict[str, Path], cache: Path) -> list[str]:
    """params.yaml (the project's, with the ground truth as dataset `score`, all of it test clips, and the
    methods as external methods) and the test list in `cache`; returns the ground-truth clip ids."""
    ids = sorted(dataset_clips(DatasetParams(root=str(gt.resolve()))))
    if not ids:
        raise FileNotFoundError(f"no video files in {gt}")
    cache.mkdir(parents=True, exist_ok=True)
    write_text(cache / "test_list.txt", "\n".join(ids) + "\n")
    params = load(PARAMS_PATH)
    params["dataset"] = DATASET
    params["datasets"][DATASET] = {"root": str(gt.resolve()), "overrides": {},
                                   "split": {"protocol": "list", "test_list": str(cache / "test_list.txt")}}
    params["evaluate"].update(external_methods={m: str(d.resolve()) for m, d in methods.items()},
                              references=[GROUND_TRUTH], table_datasets=[])
    params["tracking"] = {**params["tracking"], "mlflow": False}
    write_text(cache / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    return ids


def run_workflow(cache: Path, methods: list[str], cores: int) -> None:
    """The workflow's preparation and evaluate rules for the ground truth and each method, in `cache`."""
    targets = [f"results/metrics/{DATASET}/{m}.json" for m in [GROUND_TRUTH, *methods]]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(ROOT / "Snakefile"), "-d", str(cache),
           "--cores", str(cores), "--keep-going", "--forcerun", "evaluate"]  # the videos may have changed
    log.info("preparing the ground truth (cached in %s) and scoring %s", cache, ", ".join(methods))
    if subprocess.run(cmd, env=env, cwd=cache).returncode != 0:
        raise SystemExit(f"g4g score: the workflow failed in {cache}; its logs/ folder and .snakemake/log/ say why")


def clip_rows(ids: list[str], summaries: dict[str, dict], prep_rejects: dict[str, str]) -> list[dict]:
    """One row per (method, ground-truth clip): scored with its values, or not, with the reason."""
    rows, columns = [], metric_columns()
    for method, s in summaries.items():
        scored = {c["clip_id"]: c for c in s.get("clips", [])}
        unscored = {r["clip_id"]: r["reason"] for r in s.get("rejects", [])}
        for cid in ids:
            if cid in scored:
                rows.append({"method": method, "clip_id": cid, "status": "scored", "reason": "",
                             "n_frames": scored[cid]["n_frames"], **{c: scored[cid].get(c) for c in columns}})
            else:
                reason = (f"ground truth not prepared: {prep_rejects[cid]}" if cid in prep_rejects else
                          unscored.get(cid, "not scored (no reason recorded)"))
                rows.append({"method": method, "clip_id": cid, "status": "not scored", "reason": reason})
    return rows


def unpaired(folder: Path, ids: list[str]) -> list[str]:
    """Video files of a method's folder that pair with no ground-truth clip (named in its notes)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.stem not in ids)


def method_rows(ids: list[str], summaries: dict[str, dict], extra: dict[str, list[str]]) -> list[dict]:
    rows = []
    for m, s in summaries.items():
        notes = list(s.get("notes", []))
        if extra.get(m):
            notes.append(f"{len(extra[m])} videos pair with no ground truth, not scored: {', '.join(extra[m])}")
        rows.append({"method": m, "ground-truth clips": len(ids), "scored": s["n_videos"],
                     "not scored": len(ids) - s["n_videos"], "frames": s["n_frames"], **s["metrics"],
                     "notes": "; ".join(notes)})
    return rows


def score_folders(gt: str | Path, methods: dict[str, str | Path], out: str | Path,
                  cache_root: str | Path = "results/score_cache", cores: int = 1) -> list[dict]:
    """Score each method's folder against `gt`; write clips.csv, methods.csv and intervals.csv in `out`."""
    gt, out = Path(gt), Path(out)
    methods = {m: Path(d) for m, d in methods.items()}
    for m, d in methods.items():
        if not d.is_dir():
            raise FileNotFoundError(f"method {m}: no folder {d}")
    cache = cache_for(gt, Path(cache_root)).resolve()
    ids = write_workdir(gt, methods, cache)
    run_workflow(cache, list(methods), cores)
    summaries = {m: json.loads((cache / "results" / "metrics" / DATASET / f"{m}.json").read_text())
                 for m in [*methods, GROUND_TRUTH]}
    prep = {r["clip_id"]: f"{r['stage']}: {r['reason']}"
            for r in read_rejects([cache / "results" / DATASET / "rejects.parquet"]).to_pylist()}
    metrics = [c for c in metric_columns() if any(c in s["metrics"] for s in summaries.values())]
    write_rows(clip_rows(ids, summaries, prep), ["method", "clip_id", "status", "reason", "n_frames", *metrics],
               out / "clips.csv")
    rows = method_rows(ids, summaries, {m: unpaired(d, ids) for m, d in methods.items()})
    write_rows(rows, ["method", "ground-truth clips", "scored", "not scored", "frames", *metrics, "notes"],
               out / "methods.csv")
    first = next(iter(methods))
    write_intervals(interval_rows([{**s, "dataset": DATASET} for s in summaries.values()], tuple(metrics),
                                  reference=first), out / "intervals.csv", reference=first)
    return rows
