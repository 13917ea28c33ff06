"""Small shared helpers: atomic writes, logging, hashing, seeding, the device choice."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# hidden files an unfinished write of <name> leaves beside it: atomic_path's, and the frame shards' spools
TEMP_PREFIXES = (".tmp-", ".spool-")

log = logging.getLogger(__name__)


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO,
                  append: bool = False) -> None:
    """Log to stderr and, when given, to a file (Snakemake rules pass their `log:` path); `append` for the
    resumable commands, whose log then keeps the attempts before a resume. Under torchrun only rank 0
    writes the file (each rank opening it would truncate the others' lines); every rank logs to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file and int(os.environ.get("RANK", "0")) == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a" if append else "w"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


def umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for a moment, for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc (not Linux): the classic read-by-setting
    os.umask(mask)
    return mask


def clear_leftovers(path: Path) -> None:
    """Delete the hidden temporary files that an interrupted earlier write of `path` left beside it.

    They are this output's own (their names start with a TEMP_PREFIXES entry and `path`'s name): one
    job writes one output at a time, so whatever is there belongs to a write that was killed.
    """
    stale = [Path(p) for prefix in TEMP_PREFIXES
             for p in glob.glob(os.path.join(glob.escape(str(path.parent)), f"{prefix}{glob.escape(path.name)}-*"))]
    size = 0
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            size += p.stat().st_size
            p.unlink()
    if stale:
        log.info("removed %d leftover file(s) of an interrupted write of %s (%.1f MB)", len(stale), path, size / 1e6)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A killed job leaves at most a hidden `.tmp-*` file, never a truncated `path` that a rerun would
    trust, and the next write of `path` removes that file first. The temporary name keeps the real
    suffix so tools that sniff extensions (ffmpeg) work. The published file gets the permissions a plain
    open() would give (0666 less the umask), not the 0600 of a temporary file: on a shared cluster
    account the group can read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(path)
    sfx = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", suffix=sfx, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder `<tmp>/<prefix><pid>-*`, removed when the block ends. Folders of the same prefix
    whose process is gone (killed with -9, so its block never ended) are removed first; the pid in the
    name tells them from a running process's, whose folder is never touched."""
    import shutil

    for old in glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), f"{glob.escape(prefix)}*-*")):
        pid = os.path.basename(old)[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed %s, left by process %s, which ended without removing it", old, pid)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield Path(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (hashlib reads it in blocks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path)


def stable_seed(*parts: Any) -> int:
    """A 32-bit seed derived from arbitrary parts (e.g. base seed + clip id), stable across runs."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


@contextlib.contextmanager
def true_fp32() -> Iterator[None]:
    """fp32 convolutions and matmuls without TF32 inside (torch runs cuDNN convolutions in TF32 by default
    on Ampere and later): the metric networks give the same numbers on a GPU as on the CPU, a frozen
    protocol's promise. The training keeps TF32 (g4g.train.distributed.init)."""
    import torch

    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def resolve_device(name: str | torch.device | None = "auto", index: int = 0) -> torch.device:
    """The torch device a setting names: "auto" or None is cuda:index when CUDA is there, else the CPU."""
    import torch  # here, not at the top: the data stages and the CLI's --help run without loading torch

    if name is None or name == "auto":
        return torch.device(f"cuda:{index}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def metric_key(column: str) -> str:
    """Name of a table column in MLflow and in file names: 'LSE-C (own SyncNet)' -> 'lse_c_own_syncnet'."""
    return re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
