"""Short digests of the artefacts a reproduction is judged by (rule `fingerprints`, `g4g fingerprints`).

Two groups that ran the same commit compare a dozen hex digits per artefact instead of exchanging files:
the prepared data, the sync expert, each variant's generator, the rendered videos and the tables. Per
artefact, `sha256` digests the file's bytes (a folder: each file's relative path and digest, in sorted
order), and for a network `weights` digests its tensors alone, which stays equal where another torch
release writes the same weights as other bytes. Both are shortened to 12 hex digits (48 bits) for
reading aloud; the CSV keeps them whole.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from g4g.models.loading import weights_digest
from g4g.params import VARIANTS
from g4g.utils import atomic_path, sha256_file

SHORT = 12
COLUMNS = ("artefact", "kind", "sha256", "weights")


def artefacts(dataset: str, variants: list[str] | tuple[str, ...] = tuple(VARIANTS)) -> list[tuple[str, str]]:
    """(path, kind) of what `dvc repro` publishes for one dataset, in pipeline order (as dvc.yaml's outs)."""
    return [(f"results/{dataset}/clips.parquet", "data"), (f"results/{dataset}/shards", "data"),
            (f"results/models/{dataset}/syncnet.pt", "weights"),
            *[(f"results/models/{dataset}/{v}/model.pt", "weights") for v in variants],
            (f"results/videos/{dataset}", "videos"), (f"results/metrics/{dataset}/summary.json", "table"),
            ("results/table1.csv", "table"), ("results/table2.csv", "table"), ("results/table_cross.csv", "table")]


def folder_sha256(path: Path) -> str:
    """One digest of a folder's files: their paths relative to it and their sha256, in sorted order."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def fingerprint(path: str | Path, kind: str) -> dict:
    """{'artefact', 'kind', 'sha256', 'weights'} of one file or folder ('' where it does not apply)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not built yet (run the pipeline first: `snakemake --cores all`)")
    digest = folder_sha256(p) if p.is_dir() else sha256_file(p)
    return {"artefact": str(path), "kind": kind, "sha256": digest,
            "weights": weights_digest(p) if kind == "weights" else ""}


def fingerprints(items: list[tuple[str, str]]) -> list[dict]:
    return [fingerprint(path, kind) for path, kind in items]


def write_csv(rows: list[dict], out: str | Path) -> None:
    import csv

    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)


def format_rows(rows: list[dict]) -> str:
    """Aligned text, digests shortened to SHORT hex digits."""
    width = max(len(r["artefact"]) for r in rows)
    lines = [f"{'artefact':<{width}}  {'sha256':<{SHORT}}  weights"]
    lines += [f"{r['artefact']:<{width}}  {r['sha256'][:SHORT]}  {r['weights'][:SHORT]}" for r in rows]
    return "\n".join(lines)
