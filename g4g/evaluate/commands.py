"""`g4g evaluate`, `g4g tables`, `g4g score`, `g4g runs`, `g4g show-table` and `g4g fingerprints`.

    g4g evaluate --dataset D --method M ...   score one method's videos on the test clips (rule `evaluate`)
    g4g tables ...                            table1/2, cross-driven: CSV + Markdown, DVC metrics, charts
    g4g show-table results/table1.csv         the table as aligned text
    g4g fingerprints [--dataset D]            digests of the data, weights, videos and tables (rule `fingerprints`)
    g4g runs [--table results/table1.csv]     the MLflow runs (and DVC hashes) behind a table's measured rows

Settings: the project's params.yaml (sections evaluate, mel, tracking), the sections given as JSON with
--params (what the rules pass; not `tracking`: as for training, where runs are logged re-runs nothing),
then `--evaluate.KEY`... options. Each command imports the code it runs when it runs (`g4g show-table` loads
no torch, and a mistyped option is answered at once).
"""

from __future__ import annotations

import argparse
import logging
import os

from g4g.infer.commands import set_threads, threads_option
from g4g.params import add_options, as_dict, from_args, project_params

log = logging.getLogger("g4g")


def cmd_evaluate(a) -> None:
    from g4g.evaluate.score import evaluate_method

    p = from_args(a)
    set_threads(a.threads)
    evaluate_method(a.dataset, a.method, a.clips, a.resampled, a.videos, a.frames_out, a.summary, a.strip,
                    p.evaluate, syncnet=a.syncnet, index=a.index, tracking=as_dict(p.tracking),
                    checkpoint=a.checkpoint, mel=p.mel, seed=p.seed)


def _dataset_seed(text: str) -> tuple[str, int]:
    dataset, sep, seed = text.partition("=")
    if not sep or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"expected DATASET=SEED, got {text!r}")
    return dataset, int(seed)


def cmd_tables(a) -> None:
    from g4g.evaluate.tables import run_tables

    run_tables(a.summaries, a.datasets, a.table1_methods, a.table2_methods, a.table1, a.table2,
               a.metrics_dir, a.figures_dir, {d: project_params(d).seed for d in a.datasets} | dict(a.table_seed),
               a.table_cross)
    print(a.table1)


def cmd_score(a) -> None:
    from g4g.evaluate.folders import parse_methods, score_folders

    methods = parse_methods(a.method)
    rows = score_folders(a.gt, methods, a.out, a.cache, a.cores)
    for r in rows:
        values = "  ".join(f"{k} {r[k]:.4f}" for k in ("PSNR", "SSIM", "LPIPS", "FID", "LSE-D", "LSE-C")
                           if isinstance(r.get(k), float))
        print(f"{r['method']}: {r['scored']} of {r['ground-truth clips']} clips scored  {values}")
    print(f"per clip: {a.out}/clips.csv; per method: {a.out}/methods.csv; intervals: {a.out}/intervals.csv")
    if project_params().crop.codec == "jpeg":
        print("face-crop columns compare with the ground truth's stored JPEG crops (params.yaml crop.codec), so "
              "an exact copy scores about 42 dB there; the full-frame columns have no such ceiling")


def cmd_runs(a) -> None:
    from g4g.evaluate.runs import format_runs, table_runs

    p = from_args(a)
    print(format_runs(table_runs(a.table, a.uri or p.tracking.uri, a.experiment or p.tracking.experiment, a.lock,
                                 a.metrics_dir)))


def cmd_show_table(a) -> None:
    from g4g.evaluate.tables import format_table

    print("\n\n".join(format_table(t, a.source) for t in a.tables))


def cmd_fingerprints(a) -> None:
    from g4g.evaluate.fingerprints import artefacts, fingerprints, format_rows, write_csv

    p = from_args(a)
    rows = fingerprints(artefacts(p.dataset, a.variants or p.variants))
    if a.out:
        write_csv(rows, a.out)
    print(format_rows(rows))


def register(add) -> None:
    """Define the evaluation subcommands; `add(name)` makes a subcommand's parser (g4g.cli)."""
    p = threads_option(add("evaluate"))
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
    add_options(p, "evaluate", "mel", "tracking")
    p.set_defaults(fn=cmd_evaluate)

    p = add("fingerprints")
    p.add_argument("--dataset", help="dataset (default: params.yaml `dataset`)")
    p.add_argument("--variants", nargs="+", help="G4G variants (default: params.yaml `variants`)")
    p.add_argument("--out", help="also write the full digests to this CSV")
    p.set_defaults(fn=cmd_fingerprints)

    p = add("score")
    p.add_argument("--gt", required=True, help="folder of ground-truth videos (any container, rate and size)")
    p.add_argument("--method", required=True, action="append", metavar="NAME=FOLDER",
                   help="a method's generated videos, named as the ground truth's (any container); repeatable")
    p.add_argument("--out", default="results/score", help="where clips.csv, methods.csv, intervals.csv go")
    p.add_argument("--cache", default="results/score_cache",
                   help="prepared ground truth, one folder per ground-truth folder, reused by later calls")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="parallel jobs of the workflow")
    p.set_defaults(fn=cmd_score)

    p = add("runs")
    p.add_argument("--table", default="results/table1.csv", help="a table CSV (its measured rows)")
    p.add_argument("--uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, params.yaml tracking.uri, "
                                  "sqlite:///mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment (default: params.yaml tracking.experiment)")
    p.add_argument("--lock", default="dvc.lock", help="compare the checkpoints' hashes with this dvc.lock")
    p.add_argument("--metrics-dir", default="results/metrics", help="the method summaries with their run ids")
    add_options(p, "tracking")
    p.set_defaults(fn=cmd_runs)

    p = add("show-table")
    p.add_argument("tables", nargs="+", help="table CSVs")
    p.add_argument("--source", help="only rows of this source (e.g. 'this run')")
    p.set_defaults(fn=cmd_show_table)

    p = add("tables")
    p.add_argument("--summaries", nargs="+", required=True, help="method summary JSONs")
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--table1-methods", nargs="+", required=True)
    p.add_argument("--table2-methods", nargs="+", required=True)
    p.add_argument("--table1", required=True)
    p.add_argument("--table2", required=True)
    p.add_argument("--table-cross", help="the cross-driven table (CSV; .md and _intervals.csv beside it)")
    p.add_argument("--metrics-dir", default="results/metrics")
    p.add_argument("--figures-dir", default="results/figures")
    p.add_argument("--table-seed", nargs="*", type=_dataset_seed, default=[], metavar="DATASET=SEED",
                   help="the seed the table rows of DATASET were trained under (default: params.yaml `seed`); "
                        "summaries named METHOD@seedN are its seed replicates")
    p.set_defaults(fn=cmd_tables)
