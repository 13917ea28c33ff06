"""Which weights a metric used, in a form tables and logs can print (docs/design/method.md Sec. 9, last bullet).

Every metric object carries a `WeightsInfo`: the manifest entry and the sha256 of the file it actually
loaded, or a label saying that it ran on a random-init network (tests only) or on a surrogate.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from g4g import weights
from g4g.utils import sha256_file

RANDOM_INIT = "random-init (test only)"


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached per (path, size, mtime) so repeated metric objects hash once."""
    st = Path(path).stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class WeightsInfo:
    """`label` is what a table prints; `files` lists (path, sha256) of every file loaded."""

    label: str
    files: tuple[tuple[str, str], ...] = field(default=())

    @property
    def sha256(self) -> str | None:
        """Digest of the main (first) file; None for random-init networks."""
        return self.files[0][1] if self.files and self.label != RANDOM_INIT else None

    def with_file(self, path: str | os.PathLike) -> WeightsInfo:
        """The same info with one more loaded file (e.g. LPIPS' linear calibration layers)."""
        return WeightsInfo(self.label, self.files + ((str(path), file_sha256(path)),))

    def as_dict(self) -> dict:
        return {"weights": self.label, "sha256": self.sha256,
                "files": [{"path": p, "sha256": h} for p, h in self.files]}

    def __str__(self) -> str:
        return f"{self.label} (sha256 {self.sha256[:12]}...)" if self.sha256 else self.label

    # ----- constructors -----
    @classmethod
    def from_manifest(cls, name: str) -> WeightsInfo:
        """Verified file of manifest entry `name` (WeightsError with instructions when missing)."""
        path = weights.require(name)
        return cls(weights.get(name).filename, ((str(path), file_sha256(path)),))

    @classmethod
    def random_init(cls) -> WeightsInfo:
        return cls(RANDOM_INIT)

    @classmethod
    def surrogate(cls, description: str, path: str | os.PathLike | None = None) -> WeightsInfo:
        """A stand-in network (e.g. the project's own sync expert); tables must use another column name."""
        files = ((str(path), file_sha256(path)),) if path is not None else ()
        return cls(f"surrogate: {description}", files)
