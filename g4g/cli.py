"""The `g4g` command line. Snakemake rules call these subcommands; each maps to one package function.

Tunables arrive as a JSON object (`--params '{"detect_every": 5}'`) built by the rules from
params.yaml, so a changed value re-runs exactly the jobs it touches.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from g4g.utils import setup_logging

log = logging.getLogger("g4g")
PHASE_COMMANDS = ("g4g.train.commands", "g4g.infer.commands", "g4g.evaluate.commands")


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--log", help="also write the log to this file")
    p.add_argument("--params", default="{}", help="JSON object of this stage's parameters")
    return p


def cmd_demo_data(a) -> None:
    from g4g.data.demo import generate_demo

    kw = json.loads(a.params)
    paths = generate_demo(a.out, progress=True, **kw)
    log.info("wrote %d demo clips to %s", len(paths), a.out)


def cmd_scan(a) -> None:
    from g4g.data.scan import scan
    from g4g.data.shards import write_table

    ds = json.loads(a.params)
    table, rejects = scan(ds, seed=ds.get("seed", 0), shard_size=ds["shard_size"],
                          checksum=ds.get("checksum", "quick"))
    write_table(a.out, table)
    rejects.write(a.rejects)
    log.info("scan: %d clips listed, %d rejected", table.num_rows, len(rejects.rows))


def cmd_resample(a) -> None:
    from g4g.config import section
    from g4g.data.prepare import StageParams, run_resample

    run_resample(a.manifest, a.shard, a.out, a.rejects, section(StageParams, a.params))


def cmd_landmarks(a) -> None:
    from g4g.config import section
    from g4g.data.landmarks import LandmarkParams
    from g4g.data.prepare import run_landmarks

    run_landmarks(a.resampled, a.out, a.rejects, section(LandmarkParams, a.params))


def _crop_params(d: dict):
    from g4g.config import section
    from g4g.data.crops import CropParams
    from g4g.data.prepare import CropStageParams

    d = dict(d)
    geo = section(CropParams, {k: d.pop(k) for k in list(d) if k in CropParams.__dataclass_fields__})
    return section(CropStageParams, {**d, "geometry": geo})


def cmd_crops(a) -> None:
    from g4g.data.prepare import run_crops

    run_crops(a.resampled, a.landmarks, a.out, a.rejects, _crop_params(json.loads(a.params)))


def cmd_faces(a) -> None:
    from g4g.config import section
    from g4g.data.landmarks import LandmarkParams
    from g4g.data.prepare import run_faces

    d = json.loads(a.params)
    run_faces(a.resampled, a.out, a.rejects, section(LandmarkParams, d.get("landmarks") or {}),
              _crop_params(d.get("crop") or {}))


def cmd_mels(a) -> None:
    from g4g.config import section
    from g4g.data.mels import MelParams
    from g4g.data.prepare import StageParams, run_mels

    d = json.loads(a.params)
    run_mels(a.resampled, a.out, a.rejects, section(MelParams, d.get("mel", {})),
             section(StageParams, d.get("stage", {})))


def cmd_prepare_summary(a) -> None:
    from g4g.data.prepare import run_summary

    s = run_summary(a.manifest, a.frames, a.mels, a.rejects_in, a.clips, a.rejects, a.summary)
    log.info("prepared: %s", json.dumps(s))


def cmd_inspect(a) -> None:
    from g4g.data.inspect import contact_sheet

    path = contact_sheet(a.frames, a.mels, a.out, clip_id=a.clip, n=a.n, resampled=a.resampled)
    print(path)


def cmd_weights(a) -> None:
    from g4g import weights

    if a.action == "status":
        rows = weights.status()
        for r in rows:
            state = ("ok" if r["verified"] else "CHECKSUM MISMATCH") if r["present"] else "missing"
            print(f"{r['name']:<14} {state:<18} {r['file']}  [{r['stage']}]")
        return
    names = a.names or list(weights.MANIFEST)
    failed = []
    for n in names:
        try:
            print(f"{n}: {weights.fetch(n)}")
        except weights.WeightsError as e:
            failed.append(n)
            print(f"{n}: FAILED\n{e}", file=sys.stderr)
    if failed:
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="g4g", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = _common(sub.add_parser("demo-data", help="generate the embedded demo dataset"))
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_demo_data)

    p = _common(sub.add_parser("scan", help="list, probe and split a dataset -> manifest.parquet"))
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(fn=cmd_scan)

    def shard_stage(name: str, help: str, fn, *inputs: str) -> None:
        """A per-shard stage: its inputs, then --out and --rejects."""
        p = _common(sub.add_parser(name, help=help))
        for arg in (*inputs, "out", "rejects"):
            p.add_argument(f"--{arg}", required=True)
        p.set_defaults(fn=fn)

    shard_stage("resample", "25 fps frame map + 16 kHz mono audio for one shard", cmd_resample, "manifest", "shard")
    shard_stage("faces", "landmarks + 416x320 face crops in one decode pass -> frame shard", cmd_faces,
                "resampled")
    shard_stage("landmarks", "68-point landmarks per 25 fps frame for one shard (standalone; the workflow "
                "runs `faces`)", cmd_landmarks, "resampled")
    shard_stage("crops", "416x320 face crops from a landmarks table -> frame shard (two-pass; the workflow "
                "runs `faces`)", cmd_crops, "resampled", "landmarks")
    shard_stage("mels", "mel spectrograms for one shard", cmd_mels, "resampled")

    p = _common(sub.add_parser("prepare-summary", help="merge rejects, index the ready clips"))
    p.add_argument("--manifest", required=True)
    p.add_argument("--frames", nargs="+", required=True)
    p.add_argument("--mels", nargs="+", required=True)
    p.add_argument("--rejects-in", nargs="*", default=[])
    p.add_argument("--clips", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--summary", required=True)
    p.set_defaults(fn=cmd_prepare_summary)

    p = _common(sub.add_parser("inspect", help="contact sheet PNG of one clip of a shard"))
    p.add_argument("--frames", required=True)
    p.add_argument("--mels", required=True)
    p.add_argument("--clip", help="clip id (default: the first in the shard)")
    p.add_argument("-n", type=int, default=6, help="frames on the sheet")
    p.add_argument("--resampled", help="resampled table of the shard: also show source frames")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_inspect)

    # later phases register their own subcommands (train-sync, train, lipsync, infer, evaluate, tables)
    for module in PHASE_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):  # phase not installed; anything else is a bug
                continue
            raise
        mod.register(sub)

    p = sub.add_parser("weights", help="pretrained weights: status | fetch [names]")
    p.add_argument("action", choices=["status", "fetch"])
    p.add_argument("names", nargs="*")
    p.set_defaults(fn=cmd_weights, log=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    setup_logging(getattr(a, "log", None))
    from g4g.rejects import ClipError
    from g4g.weights import WeightsError

    try:
        a.fn(a)
    except (WeightsError, ClipError, FileNotFoundError, KeyError, ValueError) as e:
        log.error("%s", e)
        return 2
    return 0
