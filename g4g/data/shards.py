"""Parquet shards: the on-disk format of prepared data (schema documented in docs/data-format.md).

Frame shards (`{shard}.frames.parquet`): one row per 25 fps frame, one row group per clip (a long clip
is split into consecutive row groups of at most `row_group_frames` rows so that random access never
reads more than that), the crop stored as encoded JPEG/PNG bytes. Mel shards (`{shard}.mels.parquet`):
one row per clip with the (80, n) float32 mel spectrogram as bytes.

`FrameReader` gives random access to (clip, frame): it reads the clip/frame columns once to build an
index, then only the row group that holds a requested frame (LRU-cached), never the whole shard.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from g4g.utils import atomic_path

FORMAT_VERSION = 1

FRAME_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("frame", pa.int32()),  # 25 fps frame index within the clip
    ("src_frame", pa.int32()),  # source frame (presentation order) shown at this 25 fps frame
    ("landmarks", pa.list_(pa.float32(), 136)),  # 68 x 2 smoothed, in source pixels (x, y)
    ("landmarks_raw", pa.list_(pa.float32(), 136)),  # raw detection, NaN where it failed
    ("crop_landmarks", pa.list_(pa.float32(), 136)),  # the smoothed landmarks in crop pixels
    ("detected", pa.bool_()),
    ("interpolated", pa.bool_()),
    ("n_faces", pa.int8()),  # faces seen on a detection frame, -1 when no detection ran
    ("affine", pa.list_(pa.float32(), 6)),  # 2x3 source -> crop, row-major
    ("box_outside", pa.bool_()),  # the crop box left the frame (edge-replicated)
    ("damaged", pa.bool_()),  # the source frame did not decode: the next one that did stands in
    ("image", pa.binary()),  # encoded crop (JPEG or PNG), RGB
])

MEL_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("n_frames", pa.int32()),  # 25 fps video frames of the clip
    ("n_mels", pa.int16()),
    ("n_mel_frames", pa.int32()),
    ("mel", pa.binary()),  # float32 (n_mels, n_mel_frames) C-order
    ("audio_dbfs", pa.float32()),
])


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------

def encode_image(rgb: np.ndarray, codec: str = "jpeg", quality: int = 95) -> bytes:
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if codec == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif codec == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise ValueError(f"unknown image codec {codec!r} (jpeg|png)")
    if not ok:
        raise RuntimeError("image encoding failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------

class FrameShardWriter:
    """Append clips to a frame shard; the file appears under its final name only on close()."""

    def __init__(self, path: str | os.PathLike, metadata: dict | None = None, row_group_frames: int = 250):
        self.path = Path(path)
        self.row_group_frames = row_group_frames
        meta = {"g4g_format": str(FORMAT_VERSION), "g4g": json.dumps(metadata or {}, sort_keys=True)}
        self._schema = FRAME_SCHEMA.with_metadata(meta)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd",
                                        use_dictionary=["clip_id"], write_statistics=["clip_id", "frame"])
        self.clips = 0

    def write_clip(self, columns: dict) -> None:
        table = pa.Table.from_pydict(columns, schema=self._schema)
        for start in range(0, table.num_rows, self.row_group_frames):
            self._writer.write_table(table.slice(start, self.row_group_frames),
                                     row_group_size=self.row_group_frames)
        self.clips += 1

    @contextlib.contextmanager
    def clip(self) -> Iterator:
        """Write one clip in row-group chunks (`write(columns)` per chunk) with bounded memory.

        The chunks go to a spool file next to the shard and are appended to the shard only when the
        whole clip succeeded, so a clip that fails half-way leaves no rows behind.
        """
        fd, spool = tempfile.mkstemp(prefix=f".spool-{self.path.name}-", suffix=".parquet", dir=self.path.parent)
        os.close(fd)
        w = pq.ParquetWriter(spool, self._schema, compression="none")
        try:
            yield lambda cols: w.write_table(pa.Table.from_pydict(cols, schema=self._schema))
            w.close()
            pf = pq.ParquetFile(spool)
            for rg in range(pf.num_row_groups):
                self._writer.write_table(pf.read_row_group(rg), row_group_size=self.row_group_frames)
            self.clips += 1
        finally:
            w.close()
            os.unlink(spool)

    def close(self, ok: bool = True) -> None:
        self._writer.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
        return False


def write_mels(path: str | os.PathLike, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=MEL_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def mel_row(clip_id: str, n_frames: int, mel: np.ndarray, audio_dbfs: float) -> dict:
    mel = np.ascontiguousarray(mel, dtype=np.float32)
    return {"clip_id": clip_id, "n_frames": int(n_frames), "n_mels": mel.shape[0],
            "n_mel_frames": mel.shape[1], "mel": mel.tobytes(), "audio_dbfs": float(audio_dbfs)}


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

@dataclass
class _ClipIndex:
    row_groups: list[int]  # row groups holding the clip, in frame order
    starts: list[int]  # first frame of each row group
    n_frames: int


class FrameReader:
    """Random access to (clip, frame) of a frame shard without loading the shard whole."""

    META_COLUMNS = ["clip_id", "frame"]

    def __init__(self, path: str | os.PathLike, cache_row_groups: int = 4):
        self.path = Path(path)
        self._pf = pq.ParquetFile(self.path)
        self.metadata = json.loads((self._pf.schema_arrow.metadata or {}).get(b"g4g", b"{}"))
        self._index: dict[str, _ClipIndex] = {}
        for rg in range(self._pf.num_row_groups):
            t = self._pf.read_row_group(rg, columns=self.META_COLUMNS)
            clip = t.column("clip_id")[0].as_py()
            first = t.column("frame")[0].as_py()
            ci = self._index.setdefault(clip, _ClipIndex([], [], 0))
            ci.row_groups.append(rg)
            ci.starts.append(first)
            ci.n_frames += t.num_rows
        self._cache: OrderedDict[tuple[int, tuple[str, ...]], pa.Table] = OrderedDict()
        self._cache_size = cache_row_groups

    @property
    def clip_ids(self) -> list[str]:
        return list(self._index)

    def n_frames(self, clip_id: str) -> int:
        return self._index[clip_id].n_frames

    def _row_group(self, rg: int, columns: Sequence[str]) -> pa.Table:
        key = (rg, tuple(columns))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        t = self._pf.read_row_group(rg, columns=list(columns))
        self._cache[key] = t
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return t

    def _locate(self, clip_id: str, frame: int) -> tuple[int, int]:
        ci = self._index[clip_id]
        if not 0 <= frame < ci.n_frames:
            raise IndexError(f"{clip_id}: frame {frame} out of range [0, {ci.n_frames})")
        i = int(np.searchsorted(ci.starts, frame, side="right") - 1)
        return ci.row_groups[i], frame - ci.starts[i]

    def get(self, clip_id: str, frame: int, columns: Iterable[str] | None = None) -> dict:
        """One frame as a dict; 'image' is decoded to (416, 320, 3) uint8 RGB, lists to arrays."""
        cols = tuple(columns) if columns is not None else tuple(FRAME_SCHEMA.names)
        rg, row = self._locate(clip_id, frame)
        t = self._row_group(rg, cols)
        out = {}
        for name in cols:
            v = t.column(name)[row].as_py()
            out[name] = _convert(name, v)
        return out

    def clip_columns(self, clip_id: str, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """Whole-clip arrays of non-image columns (landmarks as (T, 68, 2), affine as (T, 2, 3))."""
        parts = [self._pf.read_row_group(rg, columns=list(columns)) for rg in self._index[clip_id].row_groups]
        t = pa.concat_tables(parts)
        return {name: column_array(name, t.column(name)) for name in columns}

    def images(self, clip_id: str, frames: Sequence[int]) -> np.ndarray:
        return np.stack([self.get(clip_id, f, ["image"])["image"] for f in frames])


def _convert(name: str, v):
    if name == "image":
        return decode_image(v)
    if name in ("landmarks", "landmarks_raw", "crop_landmarks"):
        return np.asarray(v, dtype=np.float32).reshape(68, 2)
    if name == "affine":
        return np.asarray(v, dtype=np.float32).reshape(2, 3)
    return v


def column_array(name: str, col: pa.ChunkedArray) -> np.ndarray:
    if name in ("landmarks", "landmarks_raw", "crop_landmarks", "affine"):
        flat = col.combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        return flat.reshape(len(col), *((68, 2) if name != "affine" else (2, 3)))
    return col.to_numpy(zero_copy_only=False)


class MelReader:
    def __init__(self, path: str | os.PathLike):
        t = pq.read_table(path)
        self._rows = {r["clip_id"]: r for r in t.to_pylist()}

    @property
    def clip_ids(self) -> list[str]:
        return list(self._rows)

    def mel(self, clip_id: str) -> np.ndarray:
        r = self._rows[clip_id]
        return np.frombuffer(r["mel"], dtype=np.float32).reshape(r["n_mels"], r["n_mel_frames"])

    def info(self, clip_id: str) -> dict:
        return {k: v for k, v in self._rows[clip_id].items() if k != "mel"}
