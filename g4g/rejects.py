"""The rejects record: one row per (clip, stage) that could not be processed, with the reason.

Every stage collects its rejects in a `Rejects` and writes them next to its output (possibly an
empty table, so Snakemake has a file to track); `g4g prepare` merges them into
results/{dataset}/rejects.parquet. One bad clip never aborts a run: stages catch `ClipError` (and,
as a last resort, any Exception) per clip, record it here and go on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from g4g.utils import atomic_path

log = logging.getLogger(__name__)

SCHEMA = pa.schema([("clip_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
                    ("path", pa.string())])


class ClipError(Exception):
    """A clip cannot go through a stage; the message is the reason users read in rejects.parquet.

    `stage` names the step that failed when a driver runs several in one pass (the single-pass face
    stage reports a clip with no face under "landmarks"); None means the driver's own stage.
    """

    def __init__(self, reason: str, stage: str | None = None):
        super().__init__(reason)
        self.stage = stage


@dataclass
class Rejects:
    stage: str
    rows: list[dict] = field(default_factory=list)

    def add(self, clip_id: str, reason: str, path: str = "", stage: str | None = None) -> None:
        stage = stage or self.stage
        log.warning("REJECT clip=%s stage=%s: %s", clip_id, stage, reason)
        self.rows.append({"clip_id": clip_id, "stage": stage, "reason": reason, "path": str(path)})

    def __contains__(self, clip_id: str) -> bool:
        return any(r["clip_id"] == clip_id for r in self.rows)

    def write(self, path: str | os.PathLike) -> None:
        write_rejects(self.rows, path)


def guard(rejects: Rejects, clip_id: str, path: str, fn, *args, **kw):
    """Run `fn` for one clip; a failure becomes a rejects row (with the reason) instead of an abort."""
    try:
        return fn(*args, **kw)
    except ClipError as e:
        rejects.add(clip_id, str(e), path, stage=e.stage)
    except Exception as e:  # last resort: a bug on one clip must not sink the run
        log.exception("unexpected failure on clip %s", clip_id)
        rejects.add(clip_id, f"unexpected {type(e).__name__}: {e}", path)
    return None


def write_rejects(rows: list[dict], path: str | os.PathLike) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rejects(paths: list[str | os.PathLike]) -> pa.Table:
    tables = [pq.read_table(p, schema=SCHEMA) for p in paths if Path(p).exists()]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()
