"""`g4g evaluate` and `g4g tables` (hooked into g4g/cli.py through `register`).

    g4g evaluate --dataset D --method M ...   score one method's videos on the test clips (rule `evaluate`)
    g4g tables ...                            table1/table2 CSV + Markdown, DVC metrics and plots, charts

--params is one JSON object: {'evaluate': {EvalParams fields}, 'mel': {...}}. MLflow settings come from
--tracking, else the project's params.yaml `tracking` section (as for training: not a rule parameter).
"""

from __future__ import annotations

import argparse
import json
import logging

from g4g.infer.commands import job_args, set_threads

log = logging.getLogger("g4g")


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return job_args(p, "JSON object: {'evaluate': {...}, 'mel': {...}}")


def cmd_evaluate(a) -> None:
    from g4g.config import section
    from g4g.data.mels import MelParams
    from g4g.evaluate.protocol import EvalParams
    from g4g.evaluate.score import evaluate_method

    d = json.loads(a.params)
    set_threads(a.threads)
    known = EvalParams.__dataclass_fields__
    p = section(EvalParams, {k: v for k, v in (d.get("evaluate") or {}).items() if k in known})
    mel = section(MelParams, d.get("mel") or {})
    evaluate_method(a.dataset, a.method, a.clips, a.resampled, a.videos, a.frames_out, a.summary, a.strip, p,
                    syncnet=a.syncnet, index=a.index, tracking=_tracking(a.tracking), checkpoint=a.checkpoint,
                    mel=mel)


def _tracking(text: str | None) -> dict:
    """--tracking JSON, else the project's params.yaml `tracking` section."""
    import yaml

    from g4g.config import ROOT

    if text:
        return json.loads(text)
    path = ROOT / "params.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("tracking") or {} if path.exists() else {}


def cmd_tables(a) -> None:
    from g4g.evaluate.tables import run_tables

    run_tables(a.summaries, a.datasets, a.table1_methods, a.table2_methods, a.table1, a.table2,
               a.metrics_dir, a.figures_dir)
    print(a.table1)


def cmd_show_table(a) -> None:
    from g4g.evaluate.tables import format_table

    print("\n\n".join(format_table(t, a.source) for t in a.tables))


def register(sub) -> None:
    """Add the evaluation subcommands to g4g's argparse subparsers."""
    p = _common(sub.add_parser("evaluate", help="score one method's test videos against the ground truth"))
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True, help="table name of the method; ground_truth scores the sources")
    p.add_argument("--clips", required=True, help="results/{dataset}/clips.parquet")
    p.add_argument("--resampled", nargs="+", required=True, help="results/{dataset}/resampled/*.parquet")
    p.add_argument("--videos", help="folder of {clip}.mp4 (not for ground_truth)")
    p.add_argument("--index", help="the infer index of the videos (reasons of clips not rendered)")
    p.add_argument("--syncnet", help="own sync expert (LSE surrogate, when params allow it)")
    p.add_argument("--checkpoint", help="the model that made the videos (links the MLflow runs)")
    p.add_argument("--frames-out", required=True, help="folder of per-frame Parquet files, one per clip")
    p.add_argument("--summary", required=True, help="method summary JSON")
    p.add_argument("--strip", help="PNG strip ground truth | generated | difference")
    p.add_argument("--tracking", help="JSON of the tracking section (default: params.yaml `tracking`)")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("show-table", help="print results/table1.csv or table2.csv as aligned text")
    p.add_argument("tables", nargs="+", help="table CSVs")
    p.add_argument("--source", help="only rows of this source (e.g. 'this run')")
    p.set_defaults(fn=cmd_show_table)

    p = _common(sub.add_parser("tables", help="table1/table2 (CSV + Markdown), DVC metrics, charts"))
    p.add_argument("--summaries", nargs="+", required=True, help="method summary JSONs")
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--table1-methods", nargs="+", required=True)
    p.add_argument("--table2-methods", nargs="+", required=True)
    p.add_argument("--table1", required=True)
    p.add_argument("--table2", required=True)
    p.add_argument("--metrics-dir", default="results/metrics")
    p.add_argument("--figures-dir", default="results/figures")
    p.set_defaults(fn=cmd_tables)
