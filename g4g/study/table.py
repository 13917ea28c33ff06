"""`g4g study table`: Table 3, the mean opinion score per method and criterion, with the paper's rows.

The 95 % interval is a bootstrap over raters, not over ratings: one rater's scores are correlated (a
lenient rater is lenient on every clip), so resampling single ratings would pretend to more evidence than
the study has. Each draw takes raters with replacement, with all their ratings of the method, and the
interval is the percentiles of the pooled mean (g4g.evaluate.intervals.pooled_interval, the mechanism of
Tables 1-2 with raters as the units). With fewer than 2 raters there is no interval.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from g4g.evaluate import paper
from g4g.evaluate.intervals import RESAMPLES, SEED, pooled_interval
from g4g.evaluate.score import GROUND_TRUTH
from g4g.study.store import CRITERIA, Study
from g4g.utils import write_text

TITLES = {"visual_quality": "visual quality", "lip_sync": "lip sync", "realness": "realness"}
COLUMNS = ("method", "label", "source", *(f"{c}{s}" for c in CRITERIA for s in ("", "_low", "_high")),
           "n_raters", "n_ratings", "n_clips")


def label(method: str) -> str:
    return "ground truth (control)" if method == GROUND_TRUTH else paper.LABELS.get(method, method)


def measured_rows(ratings: list[dict]) -> list[dict]:
    """One row per rated method: MOS, interval, raters, ratings and clips."""
    rows = []
    for method in sorted({r["method"] for r in ratings}, key=lambda m: (m != GROUND_TRUTH, m)):
        mine = [r for r in ratings if r["method"] == method]
        raters = sorted({r["rater"] for r in mine})
        row = {"method": method, "label": label(method), "source": "this study", "n_raters": len(raters),
               "n_ratings": len(mine), "n_clips": len({r["clip"] for r in mine})}
        for c in CRITERIA:
            sums = np.array([sum(r[c] for r in mine if r["rater"] == k) for k in raters], np.float64)
            counts = np.array([sum(1 for r in mine if r["rater"] == k) for k in raters], np.float64)
            ci = pooled_interval(sums, counts)  # the units drawn are raters
            row[c] = float(sums.sum() / counts.sum())
            row[f"{c}_low"], row[f"{c}_high"] = ci if ci else (None, None)
        rows.append(row)
    return rows


def paper_rows() -> list[dict]:
    return [{"method": m, "label": paper.LABELS[m], "source": "paper", **dict(zip(CRITERIA, v)),
             "n_raters": paper.TABLE3_RATERS} for m, *v in paper.TABLE3]


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def write_table3(study_folder: str | Path, out: str | Path) -> list[dict]:
    """`out`.csv and `out`.md from the study's ratings; returns the measured rows."""
    study = Study(study_folder)
    ratings = study.ratings()
    rows = measured_rows(ratings)
    everything = rows + paper_rows()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: _fmt(r.get(k)) for k in COLUMNS} for r in everything)
    out = Path(out)
    write_text(out.with_suffix(".csv"), buf.getvalue())
    md = ["# Table 3: user study (mean opinion score, 1-5)", "",
          "| method | source | " + " | ".join(TITLES[c] for c in CRITERIA) + " | raters | ratings |",
          "|" + "---|" * (len(CRITERIA) + 4)]
    for r in everything:
        cells = []
        for c in CRITERIA:
            cells.append(f"{r[c]:.2f}" + (f" [{r[c + '_low']:.2f}, {r[c + '_high']:.2f}]"
                                          if r.get(c + "_low") is not None else ""))
        md.append(f"| {r['label']} | {r['source']} | " + " | ".join(cells) +
                  f" | {r['n_raters']} | {r.get('n_ratings', '')} |")
    md += ["", f"This study: {len({x['rater'] for x in ratings})} raters, clips "
           f"{', '.join(study.meta()['clips'])}; intervals: 95 % bootstrap over raters "
           f"({RESAMPLES} draws, seed {SEED}). Paper: arXiv 2402.18122 Table 3, {paper.TABLE3_RATERS} raters, "
           "4 videos per dataset, no interval published."]
    write_text(out.with_suffix(".md"), "\n".join(md) + "\n")
    return rows
