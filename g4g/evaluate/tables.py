"""results/table1.csv and table2.csv (+ Markdown), the DVC metrics JSON, plot data and bar charts.

Table 1: one row per (dataset, method) measured here (our model, the reference rows, external methods)
followed by the paper's published rows, `source` telling them apart. Table 2: the ablation variants,
with the paper's Table 2. Columns: the metrics (an empty cell is a metric not computed; the row's notes
say why), the number of videos and frames scored, and the weights each metric used. Beside each table,
tableN_intervals.csv holds every measured cell's 95 % bootstrap interval over the test clips and its paired
difference from G4G (g4g.evaluate.intervals); the Markdown tables and the charts show them too. With
params.yaml `extra_seeds`, tableN_seeds.csv holds each variant's mean and standard deviation over the
training seeds (g4g.evaluate.seeds); the Markdown shows them under the table and the DVC metrics JSON
carries them.

The cross-driven table (table_cross): every measured method with each test clip driven by another test clip's audio
(g4g.params SETTINGS): the measures that read the audio, against the driving audio, and the leakage,
the mouth's movement when silence drives the clip; the ground truth's row is its own video under the same
driving audio, the level of a mouth that ignores it. Intervals and paired differences as for tables 1 and 2.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from g4g.evaluate import paper
from g4g.evaluate.charts import bar_chart, row_label, slug
from g4g.evaluate.intervals import REFERENCE, interval_rows, lookup, write_intervals
from g4g.evaluate.registry import better, metric_columns
from g4g.evaluate.seeds import seeds_path, spread_rows, write_spread
from g4g.params import split_replicate
from g4g.utils import atomic_path, write_json, write_text

LEAKAGE = "Leakage"  # the silent setting's "Mouth movement" (g4g.evaluate.registry.MouthMotion)
VARIANT_LABELS = {"g4g": "full", "g4g_wo_alignment": "w/o alignment", "g4g_wo_supervision": "w/o supervision",
                  "g4g_wo_fusion": "w/o fusion"}


def table1_columns() -> tuple[str, ...]:
    """Who was scored, every registered metric (g4g.evaluate.registry), how much was scored and how."""
    return ("dataset", "method", "source", *metric_columns(), "n videos", "n frames", "weights used", "notes")


def table2_columns() -> tuple[str, ...]:
    return ("dataset", "method", "variant", *table1_columns()[2:])


def cross_measures() -> tuple[str, ...]:
    """The cross-driven table's measures: the registry's columns that need no paired ground truth, and the leakage."""
    driven = ("FID", "LSE-D", "LSE-C", "Mouth-audio agreement", "Silent-mouth ratio", "Mouth movement",
              "LSE-D (landmark crop)", "LSE-C (landmark crop)", "LSE-D (own SyncNet)", "LSE-C (own SyncNet)")
    return (*(c for c in metric_columns() if c in driven), LEAKAGE)


def cross_columns() -> tuple[str, ...]:
    return ("dataset", "method", "source", *cross_measures(), "n videos", "n frames", "notes")


def _measure(col: str) -> bool:
    return col in metric_columns() or col == LEAKAGE


def driven_summary(s: dict) -> dict | None:
    """A method summary's cross-driven and silent settings as one summary (per clip: the cross-driven values and
    the leakage), or None when it has neither (an older summary)."""
    settings = s.get("settings") or {}
    cross, silent = settings.get("cross") or {}, settings.get("silent") or {}
    if not cross and not silent:
        return None
    clips = {c["clip_id"]: dict(c) for c in cross.get("clips", [])}
    for c in silent.get("clips", []):
        if "Mouth movement" in c:
            clips.setdefault(c["clip_id"], {"clip_id": c["clip_id"]})[LEAKAGE] = c["Mouth movement"]
    metrics = dict(cross.get("metrics", {}))
    if "Mouth movement" in silent.get("metrics", {}):
        metrics[LEAKAGE] = silent["metrics"]["Mouth movement"]
    notes = [f"cross-driven: {n}" for n in cross.get("notes", [])] + [f"silent: {n}" for n in silent.get("notes", [])]
    return {"dataset": s["dataset"], "method": s["method"], "metrics": metrics, "n_videos": cross.get("n_videos", 0),
            "n_frames": cross.get("n_frames", 0), "notes": notes, "clips": [clips[k] for k in sorted(clips)]}


def measured_row(s: dict) -> dict:
    """A method summary (results/metrics/{dataset}/{method}.json) as a table row."""
    weights = "; ".join(f"{k}: {v}" for k, v in s.get("weights", {}).items())
    return {"dataset": s["dataset"], "method": s["method"], "source": "this run",
            "variant": VARIANT_LABELS.get(s["method"], ""), "metrics": s.get("metrics", {}),
            "n videos": s.get("n_videos", 0), "n frames": s.get("n_frames", 0), "weights used": weights,
            "notes": "; ".join(s.get("notes", []))}


def _published(row: dict) -> dict:
    return {**row, "n videos": "", "n frames": "", "weights used": "", "notes": paper.NOTE}


def make_tables(summaries: list[dict], datasets: list[str], table1: list[str], table2: list[str]
                ) -> tuple[list[dict], list[dict]]:
    """Rows of Table 1 and Table 2: measured rows in (dataset, method) order, then the paper's rows."""
    by = {(s["dataset"], s["method"]): s for s in summaries}
    rows1 = [measured_row(by[(d, m)]) for d in datasets for m in table1 if (d, m) in by]
    rows2 = [measured_row(by[(d, m)]) for d in datasets for m in table2 if (d, m) in by]
    return rows1 + [_published(r) for r in paper.table1_rows()], rows2 + [_published(r) for r in paper.table2_rows()]


def _cell(row: dict, col: str, digits: int | None = None) -> str:
    v = row["metrics"].get(col) if _measure(col) else row.get(col, "")
    if isinstance(v, float):
        if not math.isfinite(v):
            return "inf" if v > 0 else ""
        return f"{v:.{digits}f}" if digits is not None else f"{v:.6g}"
    return "" if v is None else str(v)


def intervals_path(table: str | Path) -> Path:
    """results/table1.csv -> results/table1_intervals.csv"""
    table = Path(table)
    return table.with_name(f"{table.stem}_intervals.csv")


def write_csv(rows: list[dict], columns: tuple[str, ...], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(r, c) for c in columns])


def _interval(lo, hi) -> str:
    return f" [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else ""


def write_markdown(rows: list[dict], columns: tuple[str, ...], path: str | Path, title: str,
                   ci: dict | None = None, spread: list[dict] | None = None) -> None:
    """A GitHub-Markdown table: metrics with 4 decimals and, for measured cells, their 95 % interval;
    columns empty in every row dropped. Then each method's paired difference from G4G, and its spread over
    training seeds."""
    ci, spread = ci or {}, spread or []
    keep = [c for c in columns if c in ("dataset", "method", "source") or any(_cell(r, c) for r in rows)]
    body = [f"# {title}", "", "| " + " | ".join(keep) + " |", "|" + "---|" * len(keep)]
    for r in rows:
        cells = []
        for c in keep:
            cell = _cell(r, c, 4 if _measure(c) else None)
            if cell and r["source"] == "this run" and (b := ci.get((r["dataset"], r["method"], c))) is not None:
                cell += _interval(b["ci_low"], b["ci_high"])
            cells.append(cell.replace("|", "/"))
        body.append("| " + " | ".join(cells) + " |")
    measured = {(r["dataset"], r["method"]) for r in rows if r["source"] == "this run"}
    diffs = [b for b in ci.values() if b.get("n_paired") and (b["dataset"], b["method"]) in measured]
    metrics = [c for c in keep if any(b["metric"] == c for b in diffs)]
    if metrics:
        body += ["", f"Difference from G4G ({REFERENCE}), the same test clips: mean and 95 % paired-bootstrap "
                 "interval (one that excludes 0 is resolved by this test set)", "",
                 "| dataset | method | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
        for key in dict.fromkeys((b["dataset"], b["method"]) for b in diffs):
            cells = []
            for m in metrics:
                b = ci.get((*key, m), {})
                d = b.get("diff")
                cells.append("" if d is None else f"{d:+.4f}" + _interval(b["diff_low"], b["diff_high"]))
            body.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    body += ["", "Intervals: 95 % percentile bootstrap over the test clips (g4g.evaluate.intervals); FID has none "
             "(a pooled statistic)."] if ci else []
    if any(c.startswith("LSE") for c in keep):
        body += ["", "LSE-D, LSE-C: syncnet_python's framing (S3FD face tracks, its square crop; the columns of the "
                 "published rows). LSE (landmark crop): the stored 416 x 320 face crops. docs/evaluation.md, "
                 "\"LSE: which framing\"."]
    if LEAKAGE in keep:
        body += ["", "Each test clip driven by another test clip's audio (a derangement fixed by the seed), the audio "
                 "cut or padded with silence to the clip's length; mouth-audio agreement and LSE against the driving "
                 "audio. Leakage: the sd of the inner-lip opening (crop px, r = 128 px) when silence drives the clip "
                 "(0: a still mouth; the ground truth's row: how much the real mouth moves). The ground truth's row "
                 "is its own video under the same driving audio: the level of a mouth that ignores the audio. "
                 "docs/evaluation.md, \"The cross-driven table\"."]
    if "LMD" in keep:
        body += ["", "LMD (lower is better), mouth-audio agreement (higher), silent-mouth ratio (lower): dlib's "
                 "landmarks on the face crops, no downloaded weights; the ground truth's own agreement and ratio are "
                 "the level to read them against. docs/evaluation.md, \"Lip sync without downloaded weights\"."]
    body += _spread_section(spread, [c for c in keep if _measure(c)])
    write_text(path, "\n".join(body) + "\n")


def _spread_section(spread: list[dict], metrics: list[str]) -> list[str]:
    """Markdown lines: per (dataset, method), each metric's mean ± sd over the training seeds."""
    by = {(b["dataset"], b["method"], b["metric"]): b for b in spread}
    metrics = [m for m in metrics if any(k[2] == m for k in by)]
    if not metrics:
        return []
    lines = ["", "Spread over training seeds (params.yaml `extra_seeds`): mean ± sample standard deviation over "
             "the seeds listed, the table's row being the first; the same test clips, split and sync expert", "",
             "| dataset | method | seeds | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 3)]
    for key in dict.fromkeys(k[:2] for k in by):
        seeds = max((by[(*key, m)]["seeds"] for m in metrics if (*key, m) in by), key=len)
        cells = [f"{b['mean']:.4f} ± {b['sd']:.4f}" + (f" (seeds {' '.join(map(str, b['seeds']))})"
                                                         if len(b["seeds"]) < len(seeds) else "")
                 if (b := by.get((*key, m))) else "" for m in metrics]
        lines.append(f"| {key[0]} | {key[1]} | {' '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return lines


def metrics_json(rows: list[dict], spread: list[dict] = ()) -> dict:
    """{method: {metric slug: value, n_videos, n_frames[, seeds: {slug: {mean, sd, n}}]}} of measured rows
    (what `dvc metrics show` and `dvc exp show` list)."""
    out = {}
    for r in rows:
        if r["source"] == "this run":
            vals = {slug(k): v for k, v in r["metrics"].items() if isinstance(v, (int, float)) and math.isfinite(v)}
            out[r["method"]] = {**vals, "n_videos": r["n videos"], "n_frames": r["n frames"]}
    for b in spread:
        if b["method"] in out:
            out[b["method"]].setdefault("seeds", {})[slug(b["metric"])] = {"mean": b["mean"], "sd": b["sd"],
                                                                          "n": b["n_seeds"]}
    return out


def plot_rows(rows: list[dict], metric: str) -> list[dict]:
    """Plot data of one metric (DVC bar chart): one {method, value, source} per row that has it."""

    return [{"method": row_label(r), "value": r["metrics"][metric], "source": r["source"]} for r in rows
            if isinstance(r["metrics"].get(metric), (int, float)) and math.isfinite(r["metrics"][metric])]


def run_tables(summary_paths: list[str], datasets: list[str], table1_methods: list[str], table2_methods: list[str],
               table1: str, table2: str, metrics_dir: str = "results/metrics", figures_dir: str = "results/figures",
               table_seed: dict[str, int] | None = None,
               table_cross: str | None = None) -> tuple[list[dict], list[dict]]:
    """Rule `tables`: the three tables (CSV + .md beside, intervals and seed spread CSVs), and per dataset the
    DVC metrics JSON ({metrics_dir}/{dataset}/summary.json), the plot data
    ({metrics_dir}/{dataset}/plots/{metric}.csv) and the bar charts ({figures_dir}/{dataset}/charts/{metric}.png).
    Summaries of seed replicates (g4g.evaluate.seeds) give the spread; `table_seed` is each dataset's
    `seed`, the seed of its table rows (default 0)."""
    loaded = [json.loads(Path(p).read_text()) for p in summary_paths]
    summaries = [s for s in loaded if split_replicate(s["method"])[1] is None]
    rows1, rows2 = make_tables(summaries, datasets, table1_methods, table2_methods)
    ci = lookup(interval_rows([s for s in summaries if s["dataset"] in datasets], metric_columns()))
    spread = spread_rows([s for s in loaded if s["dataset"] in datasets],
                         {d: (table_seed or {}).get(d, 0) for d in datasets}, metric_columns())
    for rows, cols, path, title in ((rows1, table1_columns(), table1, "Table 1: comparison (reconstruction setting)"),
                                    (rows2, table2_columns(), table2, "Table 2: ablation")):
        shown = {(r["dataset"], r["method"]) for r in rows if r["source"] == "this run"}
        shown_spread = [b for b in spread if (b["dataset"], b["method"]) in shown]
        write_csv(rows, cols, path)
        write_markdown(rows, cols, Path(path).with_suffix(".md"), title, ci, shown_spread)
        write_intervals([b for k, b in ci.items() if k[:2] in shown], intervals_path(path))
        write_spread(shown_spread, seeds_path(path))
    measured = list({(r["dataset"], r["method"]): r for r in rows1 + rows2 if r["source"] == "this run"}.values())
    if table_cross:
        order = {(r["dataset"], r["method"]): i for i, r in enumerate(measured)}
        driven = sorted((d for s in summaries if (s["dataset"], s["method"]) in order and (d := driven_summary(s))),
                        key=lambda d: order[(d["dataset"], d["method"])])
        rows_cross = [measured_row(d) for d in driven]
        ci_cross = lookup(interval_rows(driven, cross_measures()))
        write_csv(rows_cross, cross_columns(), table_cross)
        write_markdown(rows_cross, cross_columns(), Path(table_cross).with_suffix(".md"),
                       "Cross-driven: each test clip driven by another's audio, and by silence", ci_cross)
        write_intervals(list(ci_cross.values()), intervals_path(table_cross))
    published = [r for r in rows1 if r["source"] == "paper"] + [
        r for r in rows2 if r["source"] == "paper" and r["method"] != "g4g"]  # full = Table 1's G4G row
    for d in datasets:
        rows = [r for r in measured if r["dataset"] == d] + published
        write_json(Path(metrics_dir) / d / "summary.json", metrics_json(rows, [b for b in spread if b["dataset"] == d]))
        for metric in metric_columns():
            with atomic_path(Path(metrics_dir) / d / "plots" / f"{slug(metric)}.csv") as tmp, \
                    open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, ["method", "value", "source"])
                w.writeheader()
                w.writerows(plot_rows(rows, metric))
            bar_chart(rows, metric, Path(figures_dir) / d / "charts" / f"{slug(metric)}.png", better(metric),
                      ci, {(b["dataset"], b["method"]): b["values"] for b in spread if b["metric"] == metric})
    return rows1, rows2


def format_table(path: str | Path, source: str | None = None) -> str:
    """A table CSV as aligned text for the terminal: identity and metric columns that have a value
    (4 decimals), without the weights/notes columns; their distinct notes follow, numbered."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if source is None or r["source"] == source]
    if not rows:
        return f"{path}: no rows"
    ident = [c for c in ("dataset", "method", "variant", "source") if c in rows[0]]
    metrics = [c for c in rows[0] if _measure(c) and any(r[c] for r in rows)]

    def fmt(v: str) -> str:
        try:
            return f"{float(v):.4f}"
        except ValueError:
            return v

    notes = list(dict.fromkeys(r["notes"] for r in rows if r.get("notes")))
    table = [ident + metrics + ["notes"]]
    table += [[r[c] for c in ident] + [fmt(r[c]) for c in metrics]
              + [f"[{notes.index(r['notes']) + 1}]" if r.get("notes") else ""] for r in rows]
    width = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) if i < len(ident) else v.rjust(w) for i, (v, w) in enumerate(zip(line, width)))
             for line in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([str(path), *lines, *(f"[{i + 1}] {n}" for i, n in enumerate(notes))])
