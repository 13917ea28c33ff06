"""95 % confidence intervals of the table cells, from a bootstrap over test clips.

A method's value of a metric is the mean over its test clips of the clip values (g4g.evaluate.score), so its
uncertainty is that of a mean over the few clips a protocol scores (HDTF: 20 videos). Percentile bootstrap:
RESAMPLES draws of the clips with replacement, the interval between the 2.5th and 97.5th percentiles of the
resampled means. A method's difference from G4G is bootstrapped paired: the same draw of the clips both
scored, so what the two share (a hard clip is hard for both) cancels; an interval that excludes 0 is a
difference the test set resolves.

Not bootstrapped: FID, a distance between two pooled sets of activations with no per-clip value (its cell
has no interval); a cell from fewer than 2 clips. The draws are seeded (SEED), so the intervals are the
same bytes on every run; RESAMPLES, LEVEL and SEED are part of the frozen protocol.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from g4g.utils import atomic_path

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
REFERENCE = "g4g"  # the method every other is compared with in the tables
COLUMNS = ("dataset", "method", "metric", "value", "ci_low", "ci_high", "n_clips", "diff", "diff_low", "diff_high",
           "n_paired")


def clip_values(summary: dict, metric: str) -> dict[str, float]:
    """{clip_id: value} of `metric` over the clips a method summary scored."""
    return {c["clip_id"]: float(c[metric]) for c in summary.get("clips", []) if isinstance(c.get(metric), (int, float))}


def pooled_interval(sums: np.ndarray, counts: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                    seed: int = SEED) -> tuple[float, float] | None:
    """Percentile interval of a pooled mean when its units (clips; a study's raters) are drawn with
    replacement: unit i holds counts[i] values summing to sums[i]. None for fewer than 2 units."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    if len(sums) < 2:
        return None
    draws = np.random.default_rng(seed).integers(0, len(sums), (resamples, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_interval(values: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = SEED) -> tuple[float, float] | None:
    """Percentile interval of the mean of `values` (one per clip), or None for fewer than 2 clips."""
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).all():  # an inf PSNR (identical frames): the mean is inf
        return None
    return pooled_interval(values, np.ones_like(values), resamples, level, seed)


def interval_rows(summaries: list[dict], metrics: tuple[str, ...], reference: str = REFERENCE) -> list[dict]:
    """One row per (dataset, method, metric) with per-clip values: the value, its interval, and the paired
    difference from the `reference` method of the same dataset (when both scored common clips)."""
    by = {(s["dataset"], s["method"]): s for s in summaries}
    rows = []
    for (dataset, method), s in by.items():
        ref = by.get((dataset, reference))
        for metric in metrics:
            vals = clip_values(s, metric)
            if not vals:
                continue
            ids = sorted(vals)
            ci = bootstrap_interval(np.array([vals[i] for i in ids]))
            row = {"dataset": dataset, "method": method, "metric": metric,
                   "value": float(np.mean([vals[i] for i in ids])), "ci_low": ci[0] if ci else None,
                   "ci_high": ci[1] if ci else None, "n_clips": len(ids)}
            other = clip_values(ref, metric) if ref is not None and method != reference else {}
            shared = sorted(set(vals) & set(other))
            if shared:
                d = np.array([vals[i] - other[i] for i in shared])
                dci = bootstrap_interval(d)
                row.update({"diff": float(d.mean()), "diff_low": dci[0] if dci else None,
                            "diff_high": dci[1] if dci else None, "n_paired": len(shared)})
            rows.append(row)
    return rows


def lookup(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["dataset"], r["method"], r["metric"]): r for r in rows}


def write_rows(rows: list[dict], columns: list[str] | tuple[str, ...], path: str | Path,
               header: list[str] | None = None) -> None:
    """Rows as CSV (atomically): floats with 6 significant digits, None empty."""
    def cell(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header or columns)
        for r in rows:
            w.writerow([cell(r.get(c)) for c in columns])


def write_intervals(rows: list[dict], path: str | Path, reference: str = REFERENCE) -> None:
    """The rows as CSV; the difference column is named after the reference (`diff_vs_g4g`)."""
    write_rows(rows, COLUMNS, path, [f"diff_vs_{reference}" if c == "diff" else c for c in COLUMNS])
