"""Figures for the report: per-metric bar charts (this run next to the paper) and frame strips."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from g4g.utils import atomic_path, metric_key


def slug(metric: str) -> str:
    """File name of a metric's chart and plot CSV: its MLflow name ('LSE-C (own SyncNet)' -> 'lse_c_own_syncnet')."""
    return metric_key(metric)


def row_label(row: dict) -> str:
    if row["source"] == "paper":
        return f"{row.get('label', row['method'])} (paper, {row['dataset'].upper()})"
    return f"{row['method']} ({row['dataset']})"


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def bar_chart(rows: list[dict], metric: str, path: str | Path, better: str, ci: dict | None = None,
              seeds: dict | None = None) -> Path:
    """Horizontal bars of `metric` for every row that has it: this run in colour, the paper in grey; a
    measured bar with a 95 % interval in `ci` ({(dataset, method, metric): row}) gets it as an error bar,
    and one with values under several training seeds in `seeds` ({(dataset, method): [value, ...]}) a dot
    for each (g4g.evaluate.seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have = [r for r in rows if r["metrics"].get(metric) is not None and np.isfinite(r["metrics"][metric])]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(have), 3) + 1.2), dpi=100)
    if have:
        y = np.arange(len(have))
        vals = [r["metrics"][metric] for r in have]
        colours = ["#9e9e9e" if r["source"] == "paper" else "#1f77b4" for r in have]
        ax.barh(y, vals, color=colours)
        bounds = [(ci or {}).get((r.get("dataset"), r.get("method"), metric), {}) if r["source"] != "paper" else {}
                  for r in have]
        err = [(i, vals[i] - b["ci_low"], b["ci_high"] - vals[i]) for i, b in enumerate(bounds)
               if b.get("ci_low") is not None]
        if err:
            idx, lo, hi = zip(*err)
            ax.errorbar([vals[i] for i in idx], y[list(idx)], xerr=[lo, hi], fmt="none", ecolor="black",
                        capsize=3, lw=1)
        dots = [(v, yi) for yi, r in zip(y, have) if r["source"] != "paper"
                for v in (seeds or {}).get((r.get("dataset"), r.get("method")), [])]
        if dots:
            ax.scatter(*zip(*dots), s=14, color="#ff7f0e", zorder=3, label="each training seed")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_yticks(y, [row_label(r) for r in have], fontsize=8)
        ax.invert_yaxis()
        for yi, v in zip(y, vals):
            ax.text(v, yi, f" {v:.4g}", va="center", fontsize=7)
    else:
        ax.text(0.5, 0.5, f"no {metric} values (see the notes column of the table)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title(f"{metric} ({better}; grey: published in the paper; bars: 95 % interval)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def frame_strip(strip: tuple[str, list] | None, path: str | Path, title: str, scale: float = 0.5) -> Path:
    """PNG with one row per frame: ground-truth crop | the method's crop | 3 x |difference|."""
    import cv2

    if not strip:
        img = np.full((120, 640, 3), 255, np.uint8)
        cv2.putText(img, f"{title}: no clip scored", (10, 64), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    else:
        clip_id, pairs = strip
        lines = []
        for gt, gen in pairs:
            diff = np.clip(3.0 * np.abs(gen.astype(np.float32) - gt.astype(np.float32)), 0, 255).astype(np.uint8)
            row = np.concatenate([gt, gen, diff], axis=1)
            lines.append(cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        body = np.concatenate(lines, axis=0)
        head = np.full((30, body.shape[1], 3), 255, np.uint8)
        w = body.shape[1] // 3
        for i, name in enumerate(("ground truth", "generated", "3 x |difference|")):
            cv2.putText(head, name, (i * w + 4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        foot = np.full((24, body.shape[1], 3), 255, np.uint8)
        cv2.putText(foot, f"{title}, clip {clip_id}", (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        img = np.concatenate([head, body, foot], axis=0)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), img[..., ::-1])
    return Path(path)
