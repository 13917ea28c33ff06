"""Scan stage: list a dataset's videos, probe them, split deterministically, assign shards.

The clip list and the shards are known before any job runs (Snakemake needs them to build the DAG):
they come from the folder listing (or, for the generated demo set, from its parameters), never from
probing, and the split is drawn from the full sorted list with a seeded RNG, so a clip that later
fails a stage never changes which other clips are test clips.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from g4g.io.video import probe
from g4g.params import DatasetParams, SplitParams
from g4g.rejects import ClipError, Rejects
from g4g.utils import sha256_file

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv")

MANIFEST_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("path", pa.string()), ("split", pa.string()), ("shard", pa.string()),
    ("ok", pa.bool_()), ("reason", pa.string()), ("duration", pa.float64()), ("fps", pa.float64()),
    ("n_frames", pa.int32()), ("width", pa.int32()), ("height", pa.int32()), ("rotation", pa.int16()),
    ("variable_rate", pa.bool_()), ("codec", pa.string()), ("has_audio", pa.bool_()),
    ("size_bytes", pa.int64()), ("checksum", pa.string()),
])


def clip_id_for(rel: str) -> str:
    """A filesystem- and wildcard-safe id from a path relative to the dataset root."""
    stem = os.path.splitext(rel)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.replace(os.sep, "__"))


def dataset_clips(ds: DatasetParams) -> dict[str, str]:
    """clip_id -> video path, sorted by id. The demo set's names come from its parameters."""
    root = Path(ds.root)
    if ds.generate == "demo":
        return {f"demo_{i:03d}": str(root / f"demo_{i:03d}.mp4") for i in range(ds.n_clips)}
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist: put the raw videos there "
                                f"(or point params.yaml datasets.<name>.root at them)")
    clips = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."):
            cid = clip_id_for(str(p.relative_to(root)))
            if cid in clips:
                raise ValueError(f"two videos map to clip id {cid!r}: {clips[cid]} and {p}")
            clips[cid] = str(p)
    return dict(sorted(clips.items()))


def assign_shards(clip_ids: list[str], shard_size: int) -> dict[str, list[str]]:
    ids = sorted(clip_ids)
    return {f"s{i // shard_size:04d}": ids[i:i + shard_size] for i in range(0, len(ids), shard_size)}


def split_clips(clip_ids: list[str], split: SplitParams, seed: int) -> dict[str, str]:
    """clip_id -> 'train' | 'val' | 'test', deterministic from the seed and the sorted id list.

    protocols: 'hdtf' (n_test random test videos, paper: 20), 'lrs2' (8:2 train/held-out split of
    which n_test are sampled as test videos, paper: 45; the rest of the held-out part is 'val'),
    'count' (n_test random test videos), 'list' (ids listed one per line in split.test_list).
    """
    ids = sorted(clip_ids)
    rng = np.random.default_rng(seed)
    proto = split.protocol
    out = {c: "train" for c in ids}
    if proto in ("hdtf", "count"):
        n = min(20 if split.n_test is None else split.n_test, max(len(ids) - 1, 0))
        for c in rng.choice(ids, size=n, replace=False) if n else []:
            out[c] = "test"
    elif proto == "lrs2":
        fraction = 0.2 if split.test_fraction is None else split.test_fraction
        held = rng.permutation(ids)[: int(round(len(ids) * fraction))]
        n = min(45 if split.n_test is None else split.n_test, len(held))
        test = set(rng.choice(held, size=n, replace=False)) if n else set()
        for c in held:
            out[c] = "test" if c in test else "val"
    elif proto == "list":
        listed = {ln.strip() for ln in Path(split.test_list).read_text().splitlines() if ln.strip()}
        listed = {clip_id_for(x) if os.sep in x or "." in x else x for x in listed}
        unknown = listed - set(ids)
        if unknown:
            log.warning("%d test ids in %s are not in the dataset (e.g. %s)", len(unknown),
                        split.test_list, sorted(unknown)[0])
        for c in listed & set(ids):
            out[c] = "test"
    else:
        raise ValueError(f"unknown split protocol {proto!r}")
    return out


def quick_checksum(path: str, block: int = 1 << 22) -> str:
    """sha256 of size + first and last 4 MiB: detects changed or swapped files at any dataset size."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > 2 * block:
            f.seek(-block, os.SEEK_END)
            h.update(f.read(block))
    return "q:" + h.hexdigest()


def scan(ds: DatasetParams, seed: int) -> tuple[pa.Table, Rejects]:
    clips = dataset_clips(ds)
    splits = split_clips(list(clips), ds.split, seed)
    shard_of = {c: s for s, ids in assign_shards(list(clips), ds.shard_size).items() for c in ids}
    rejects = Rejects("scan")
    rows = []
    for cid, path in clips.items():
        row = {"clip_id": cid, "path": path, "split": splits[cid], "shard": shard_of[cid], "ok": True,
               "reason": ""}
        try:
            info = probe(path)
            row.update(duration=info.duration, fps=info.fps, n_frames=info.n_frames, width=info.width,
                       height=info.height, rotation=info.rotation, variable_rate=info.variable_rate,
                       codec=info.codec, has_audio=info.has_audio)
            row["size_bytes"] = os.path.getsize(path)
            row["checksum"] = sha256_file(path) if ds.checksum == "full" else quick_checksum(path)
        except ClipError as e:
            row.update(ok=False, reason=str(e))
            rejects.add(cid, str(e), path)
        except Exception as e:  # noqa: BLE001 - one bad clip never aborts the scan
            row.update(ok=False, reason=f"unexpected {type(e).__name__}: {e}")
            rejects.add(cid, row["reason"], path)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), rejects
