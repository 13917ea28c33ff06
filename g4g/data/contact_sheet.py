"""Contact sheet of one prepared clip: source frames with landmarks and crop box, the crops with the
mouth box and crop-space landmarks, and the mel spectrogram with each shown frame's audio window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from g4g.data.crops import MOUTH_BOX, invert_affine
from g4g.data.mels import window_start
from g4g.data.shards import FrameReader, MelReader
from g4g.io.video import iter_frames
from g4g.params import MelParams
from g4g.utils import atomic_path


def contact_sheet(frames_path: str, mels_path: str, out: str, clip_id: str | None = None, n: int = 6,
                  resampled: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq

    fr = FrameReader(frames_path)
    if not fr.clip_ids:
        return _empty_sheet(out, f"{Path(frames_path).name}: no clip survived preparation")
    clip_id = clip_id or fr.clip_ids[0]
    T = fr.n_frames(clip_id)
    shown = np.unique(np.linspace(0, T - 1, n).round().astype(int))
    rows = [fr.get(clip_id, int(t)) for t in shown]
    mel = MelReader(mels_path).mel(clip_id) if clip_id in MelReader(mels_path).clip_ids else None

    src = None
    if resampled:

        r = [x for x in pq.read_table(resampled).to_pylist() if x["clip_id"] == clip_id][0]
        idx = np.asarray(r["index_map"])[shown]
        src = [f for _, f in iter_frames(r["path"], idx)]

    ncols = len(shown)
    nrows = 3 if src is not None else 2
    fig = plt.figure(figsize=(2.2 * ncols, 2.9 * nrows), dpi=100)
    gs = fig.add_gridspec(nrows, ncols, height_ratios=[1.3] * (nrows - 1) + [0.8])
    for j, (t, row) in enumerate(zip(shown, rows)):
        if src is not None:
            ax = fig.add_subplot(gs[0, j])
            ax.imshow(src[j])
            lm = row["landmarks"]
            ax.scatter(lm[:, 0], lm[:, 1], s=1.5, c="lime")
            corners = np.array([[0, 0], [320, 0], [320, 416], [0, 416], [0, 0]], dtype=np.float64)
            box = corners @ invert_affine(row["affine"].astype(np.float64))[:, :2].T + \
                invert_affine(row["affine"].astype(np.float64))[:, 2]
            ax.plot(box[:, 0], box[:, 1], "y-", lw=0.8)
            ax.set_title(f"t={t} src={row['src_frame']}", fontsize=7)
            ax.axis("off")
        ax = fig.add_subplot(gs[nrows - 2, j])
        ax.imshow(row["image"])
        cl = row["crop_landmarks"]
        ax.scatter(cl[:, 0], cl[:, 1], s=1.5, c="lime" if row["detected"] else "red")
        r0, r1, c0, c1 = MOUTH_BOX
        ax.add_patch(plt.Rectangle((c0, r0), c1 - c0, r1 - r0, fill=False, ec="cyan", lw=0.8))
        flags = ("det" if row["detected"] else "interp") + (" out" if row["box_outside"] else "") + \
            (" damaged" if row.get("damaged") else "")
        ax.set_title(f"crop t={t} {flags}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(gs[nrows - 1, :])
    if mel is not None:
        mp = MelParams()
        ax.imshow(mel, aspect="auto", origin="lower", cmap="magma", vmin=-4, vmax=4)
        for t in shown:
            s = int(window_start(t, mp))
            ax.axvspan(s, s + mp.window_frames, color="cyan", alpha=0.25)
        ax.set_xlabel("mel frame (80 / s); shaded: the audio window A of each shown frame")
        ax.set_ylabel("mel band")
    else:
        ax.text(0.5, 0.5, "no mel (clip rejected at the mels stage)", ha="center")
    fig.suptitle(f"{clip_id}: {T} frames at 25 fps", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)


def _empty_sheet(out: str, message: str) -> Path:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 1.5))
    fig.text(0.5, 0.5, message, ha="center", va="center")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
