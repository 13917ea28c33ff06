"""Figures of a training run: sample grids (what the generator sees and makes) and loss curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from g4g.tracking import read_losses
from g4g.utils import atomic_path

GRID_COLUMNS = ("source", "masked input", "references", "generated", "composite", "final", "ground truth")


def _img(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, H, W) in [0, 1] -> (H, W, 3) uint8."""
    x = x.detach().float().clamp(0, 1).cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def sample_grid(batch: dict, out: dict, rows: int = 4) -> np.ndarray:
    """One row per frame: source | masked input | 5 references (half size, two rows) | I_gen | I_comp |
    I_out | ground truth, with a header naming the columns. In reconstruction the source is the target."""
    import cv2

    n = min(rows, len(batch["I_t"]))
    H, W = batch["I_t"].shape[-2:]
    per_set = len(batch["I_t"]) // len(batch["I_r"])  # frames sharing one reference set (a clip)
    lines = []
    for i in range(n):
        refs = batch["I_r"][i // per_set].reshape(-1, 3, H, W)
        small = [cv2.resize(_img(r), (W // 2, H // 2), interpolation=cv2.INTER_AREA) for r in refs]
        small += [np.zeros_like(small[0])] * (6 - len(small))
        ref_tile = np.concatenate([np.concatenate(small[:3], 1), np.concatenate(small[3:6], 1)], 0)
        ref_tile = cv2.resize(ref_tile, (3 * (W // 2), H))
        cells = [_img(batch["I_t"][i]), _img(out["I_s"][i]), ref_tile, _img(out["I_gen"][i]),
                 _img(out["I_comp"][i]), _img(out["I_out"][i]), _img(batch["I_t"][i])]
        lines.append(np.concatenate(cells, 1))
    grid = np.concatenate(lines, 0)
    scale = max(1, math.ceil(320 / H))  # small demo faces are enlarged so the grid is readable
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    x = 0
    for name, w in zip(GRID_COLUMNS, (W, W, 3 * (W // 2), W, W, W, W)):
        cv2.putText(header, name, (x + 4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += w * scale
    return np.concatenate([header, grid], 0)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    import cv2

    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), rgb[..., ::-1])
    return Path(path)


def training_curves(losses_csv: str | Path, path: str | Path, title: str = "",
                    keys: tuple[str, ...] | None = None, smooth: int = 20) -> Path:
    """PNG of the loss columns of a losses.csv (moving average over `smooth` steps; log scale when the
    terms span decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    cols = read_losses(losses_csv)
    step = np.asarray(cols.pop("step", []))
    skip = {"stage", "scale", "lr", "tau"}
    keys = keys or tuple(k for k, v in cols.items() if k not in skip and np.isfinite(v).any())
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    lo, hi = np.inf, 0.0
    for k in keys:
        y = np.asarray(cols.get(k, []), dtype=float)
        ok = np.isfinite(y)
        if ok.sum() == 0:
            continue
        ys, xs = y[ok], step[ok]
        if smooth > 1 and len(ys) > smooth:
            ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
            xs = xs[smooth - 1:]
        ax.plot(xs, ys, label=k, lw=1.2)
        lo, hi = min(lo, float(np.min(ys))), max(hi, float(np.max(ys)))
    if lo > 0 and hi / lo > 30:  # terms spanning decades: log scale
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"value (moving average over {smooth} steps)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)
