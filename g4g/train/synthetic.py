"""A tiny synthetic talking-face set in the prepared-data format, for tests and benchmarks (no video, no
landmark detector): a drawn face on a textured background that moves a little, whose mouth opening
follows a band of the mel spectrogram, with matching 68 landmarks, written as frame and mel shards and
a clips.parquet index exactly like `g4g prepare` writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from g4g.data.prepare import CLIPS_SCHEMA
from g4g.data.shards import FrameShardWriter, encode_image, mel_row, write_mels, write_table


def landmarks(openness: float) -> np.ndarray:
    """A 68-point face in crop pixels (p29 on the anchor row 128, p33 on column 160)."""
    th = np.pi - np.pi * np.arange(17) / 16
    jaw = np.stack([160 + 130 * np.cos(th), 170 + 210 * np.sin(th)], 1)
    brows = np.stack([np.r_[np.linspace(60, 140, 5), np.linspace(180, 260, 5)], np.full(10, 90.0)], 1)
    bridge = np.stack([np.full(4, 160.0), [70, 100, 128, 160]], 1)
    base = np.stack([np.linspace(140, 180, 5), np.full(5, 195.0)], 1)
    a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eyes = np.concatenate([np.stack([c + 20 * np.cos(a), 120 + 8 * np.sin(a)], 1) for c in (110, 210)])
    h = 8 + 50 * openness
    b = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    c = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    outer = np.stack([160 + 50 * np.cos(b), 280 + h * np.sin(b)], 1)
    inner = np.stack([160 + 35 * np.cos(c), 280 + 0.7 * h * np.sin(c)], 1)
    return np.concatenate([jaw, brows, bridge, base, eyes, outer, inner]).astype(np.float32)


def draw_face(openness: float, shift: tuple[int, int], tint: np.ndarray) -> np.ndarray:
    """(416, 320, 3) uint8 RGB: textured background shifted by `shift`, face, eyes, nose, mouth."""
    import cv2

    rng = np.random.default_rng(7)
    tex = cv2.resize(rng.uniform(60, 200, (14, 11, 3)).astype(np.uint8), (320 + 32, 416 + 32))
    img = np.ascontiguousarray(tex[16 + shift[1]:16 + shift[1] + 416, 16 + shift[0]:16 + shift[0] + 320])
    cv2.ellipse(img, (160, 230), (130, 190), 0, 0, 360, tuple(int(c) for c in tint), -1)
    for x in (110, 210):
        cv2.ellipse(img, (x, 120), (20, 8), 0, 0, 360, (40, 30, 30), -1)
    cv2.line(img, (160, 100), (160, 190), (120, 80, 70), 3)
    cv2.ellipse(img, (160, 280), (50, int(8 + 50 * openness)), 0, 0, 360, (50, 10, 20), -1)
    return img


LEVELS, HOLD = (0.0, 0.35, 0.7, 1.0), 2  # mouth openings, drawn at random every HOLD frames


def write_synthetic(root: str | Path, n_frames: int = 40, n_train: int = 4, n_test: int = 2, seed: int = 0) -> Path:
    """Write the set under root (two shards) and return the path of its clips.parquet. The mouth opening
    takes one of LEVELS, drawn at random every HOLD frames."""
    import pyarrow as pa


    root, rng, rows = Path(root), np.random.default_rng(seed), []
    n, total = n_frames, n_train + n_test
    for s, ids in enumerate([range(0, total // 2), range(total // 2, total)]):
        frames, mels = root / f"s{s:04d}.frames.parquet", root / f"s{s:04d}.mels.parquet"
        mel_rows = []
        with FrameShardWriter(frames, {"crop": {"scale": 1.05}}) as w:
            for i in ids:
                o = np.repeat(rng.choice(LEVELS, n // HOLD + 1), HOLD)[:n]  # mouth opening per frame
                tint, shifts = rng.integers(120, 230, 3), rng.integers(-6, 7, (n, 2))
                lmk = np.stack([landmarks(o[t]) for t in range(n)]).reshape(n, 136)
                w.write_clip({
                    "clip_id": [f"c{i}"] * n, "frame": np.arange(n, dtype=np.int32),
                    "src_frame": np.arange(n, dtype=np.int32), "landmarks": list(lmk), "landmarks_raw": list(lmk),
                    "crop_landmarks": list(lmk), "detected": np.ones(n, bool), "interpolated": np.zeros(n, bool),
                    "n_faces": np.ones(n, np.int8), "box_outside": np.zeros(n, bool),
                    "damaged": np.zeros(n, bool),
                    "affine": list(np.tile(np.float32([1, 0, 0, 0, 1, 0]), (n, 1))),
                    "image": [encode_image(draw_face(o[t], tuple(shifts[t]), tint), "jpeg", 95) for t in range(n)]})
                n_mel = int(3.2 * n) + 1  # 80 mel frames per second at 25 fps
                mel = -3.0 + 0.2 * rng.standard_normal((80, n_mel))
                mel[5:40] += 6.0 * o[np.minimum((np.arange(n_mel) / 3.2).astype(int), n - 1)]
                mel_rows.append(mel_row(f"c{i}", n, mel.astype(np.float32), -20.0))
                rows.append({"clip_id": f"c{i}", "split": "train" if i < n_train else "test", "shard": f"s{s:04d}",
                             "n_frames": n, "frames_path": str(frames), "mels_path": str(mels)})
        write_mels(mels, mel_rows)
    write_table(root / "clips.parquet", pa.Table.from_pylist(rows, schema=CLIPS_SCHEMA))
    return root / "clips.parquet"
