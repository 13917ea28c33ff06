"""Scan stage: list a dataset's videos, probe them, split deterministically, assign shards.

The clip list and the shards are known before any job runs (Snakemake needs them to build the DAG):
they come from the folder listing (or, for the generated demo set, from its parameters), never from
probing, and the split is drawn from the full sorted list with a seeded RNG, so a clip that later
fails a stage never changes which other clips are test clips.

A clip's sound is the video's own audio stream unless a sound file sits beside it under the same name
(`talk.mp4` + `talk.wav`, any of AUDIO_EXTENSIONS), or the dataset's `manifest` CSV pairs them
(columns video, audio; the folder's other videos are listed as usual). A separate sound file of another
length is fitted by the resample stage.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from g4g.io.video import probe
from g4g.params import DatasetParams, SplitParams
from g4g.rejects import ClipError, Rejects
from g4g.utils import sha256_file

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus")


class Source(NamedTuple):
    """The raw files of one clip: the video, and its sound when that is a separate file."""
    video: str
    audio: str | None = None

MANIFEST_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("path", pa.string()), ("split", pa.string()), ("shard", pa.string()),
    ("ok", pa.bool_()), ("reason", pa.string()), ("duration", pa.float64()), ("fps", pa.float64()),
    ("n_frames", pa.int32()), ("width", pa.int32()), ("height", pa.int32()), ("rotation", pa.int16()),
    ("variable_rate", pa.bool_()), ("codec", pa.string()), ("has_audio", pa.bool_()),
    ("audio_path", pa.string()),  # a separate sound file; "" when the sound is the video's own stream
    ("size_bytes", pa.int64()), ("checksum", pa.string()),
])


def clip_id_for(rel: str) -> str:
    """A filesystem- and wildcard-safe id from a path relative to the dataset root."""
    stem = os.path.splitext(rel)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.replace(os.sep, "__"))


def dataset_clips(ds: DatasetParams) -> dict[str, Source]:
    """clip_id -> Source, sorted by id. The demo set's names come from its parameters."""
    root = Path(ds.root)
    if ds.generate == "demo":
        return {f"demo_{i:03d}": Source(str(root / f"demo_{i:03d}.mp4")) for i in range(ds.n_clips)}
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist: put the raw videos there "
                                f"(or point params.yaml datasets.<name>.root at them)")
    pairs = _folder_pairs(root)
    if ds.manifest:  # it pairs the videos it names with their sound; the rest of the folder stays as scanned
        listed = _manifest_pairs(root, Path(ds.manifest))
        named = {video.resolve() for video, _ in listed}
        pairs = listed + [(video, audio) for video, audio in pairs if video.resolve() not in named]
    clips: dict[str, Source] = {}
    for video, audio in pairs:
        cid = clip_id_for(str(video.relative_to(root)) if video.is_relative_to(root) else video.name)
        if cid in clips:
            raise ValueError(f"two videos map to clip id {cid!r}: {clips[cid].video} and {video}")
        clips[cid] = Source(str(video), str(audio) if audio else None)
    return dict(sorted(clips.items()))


def _folder_pairs(root: Path) -> list[tuple[Path, Path | None]]:
    """Every video under root, with the sound file beside it that has its name, if there is one."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    sounds = {(p.parent, p.stem): p for p in reversed(files) if p.suffix.lower() in AUDIO_EXTENSIONS}
    return [(p, sounds.get((p.parent, p.stem))) for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]


def _manifest_pairs(root: Path, manifest: Path) -> list[tuple[Path, Path | None]]:
    """The (video, audio) rows of a CSV, paths relative to root; every file listed must exist."""
    import csv

    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "video" not in rows[0]:
        raise ValueError(f"{manifest}: expected a header line `video,audio`, got {list(rows[0])}")
    pairs = []
    for i, row in enumerate(rows, start=2):
        video = root / row["video"].strip()
        audio = root / row["audio"].strip() if (row.get("audio") or "").strip() else None
        for p in (video, audio):
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"{manifest}, line {i}: {p} does not exist")
        pairs.append((video, audio))
    return pairs


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
        want = 20 if split.n_test is None else split.n_test
        n = min(want, max(len(ids) - 1, 0))  # at least one clip is left to train on
        if n < want:
            log.warning("test split: %d clip(s) listed, so %d test clip(s) instead of the protocol's %d", len(ids),
                        n, want)
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
    for cid, (path, audio) in clips.items():
        row = {"clip_id": cid, "path": path, "split": splits[cid], "shard": shard_of[cid], "ok": True,
               "reason": "", "audio_path": audio or ""}
        try:
            info = probe(path)
            row.update(duration=info.duration, fps=info.fps, n_frames=info.n_frames, width=info.width,
                       height=info.height, rotation=info.rotation, variable_rate=info.variable_rate,
                       codec=info.codec, has_audio=info.has_audio or audio is not None)
            row["size_bytes"] = os.path.getsize(path)
            row["checksum"] = sha256_file(path) if ds.checksum == "full" else quick_checksum(path)
        except ClipError as e:
            row.update(ok=False, reason=str(e))
            rejects.add(cid, str(e), path)
        except Exception as e:  # one bad clip never aborts the scan
            row.update(ok=False, reason=f"unexpected {type(e).__name__}: {e}")
            rejects.add(cid, row["reason"], path)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), rejects
