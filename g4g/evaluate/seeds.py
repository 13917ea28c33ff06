"""Training-seed replicates (params.yaml `extra_seeds`) and the spread of the table cells over seeds.

A replicate is a G4G variant trained again under another seed (the same split, the same frozen sync
expert), rendered and scored exactly like the table's run. Its method name is the variant's with
`@seed<N>` (g4g.params.replicate_method; results/metrics/<dataset>/g4g@seed1.json), so inference and
evaluation treat it as one more method. A table cell stays the value of the table's run (seed `seed`),
with its interval over the test clips (g4g.evaluate.intervals); the spread beside it is the mean and the
sample standard deviation over the seeds, the table's run and its replicates. The two answer different
questions: the interval, how much another draw of test clips moves the number; the spread, how much
another training run does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from g4g.evaluate.intervals import write_rows
from g4g.params import split_replicate

COLUMNS = ("dataset", "method", "metric", "n_seeds", "seeds", "mean", "sd", "min", "max", "values")


def seeds_path(table: str | Path) -> Path:
    """results/table1.csv -> results/table1_seeds.csv"""
    table = Path(table)
    return table.with_name(f"{table.stem}_seeds.csv")


def spread_rows(summaries: list[dict], table_seed: dict[str, int], metrics: tuple[str, ...]) -> list[dict]:
    """One row per (dataset, method, metric) that the table's run (seed `table_seed[dataset]`) and at least
    one replicate measured: the table's run first, then the replicates by seed. A metric the table's run
    lacks has no row (its spread would not be about the number in the table). The standard deviation is
    the sample one (n - 1): the seeds are a sample of the runs the recipe can give."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for s in summaries:
        method, seed = split_replicate(s["method"])
        key = table_seed[s["dataset"]] if seed is None else seed
        if key in runs.get((s["dataset"], method), {}):
            raise ValueError(f"{s['dataset']} / {method}: two runs under seed {key} (a replicate of the table's "
                             f"own seed?): give the tables each seed once")
        runs.setdefault((s["dataset"], method), {})[key] = s
    rows = []
    for (dataset, method), by_seed in runs.items():
        order = [table_seed[dataset]] + sorted(set(by_seed) - {table_seed[dataset]})
        if len(by_seed) < 2 or order[0] not in by_seed:  # no replicates, or replicates without the table's run
            continue
        for metric in metrics:
            got = [(k, by_seed[k]["metrics"].get(metric)) for k in order]
            got = [(k, float(v)) for k, v in got if isinstance(v, (int, float)) and math.isfinite(v)]
            if len(got) < 2 or got[0][0] != order[0]:
                continue
            v = np.array([x for _, x in got])
            rows.append({"dataset": dataset, "method": method, "metric": metric, "n_seeds": len(got),
                         "seeds": [k for k, _ in got], "mean": float(v.mean()), "sd": float(v.std(ddof=1)),
                         "min": float(v.min()), "max": float(v.max()), "values": v.tolist()})
    return rows


def write_spread(rows: list[dict], path: str | Path) -> None:
    """The rows as CSV; seeds and values as space-separated lists (6 significant digits)."""
    write_rows([{**r, "seeds": " ".join(map(str, r["seeds"])), "values": " ".join(f"{x:.6g}" for x in r["values"])}
                for r in rows], COLUMNS, path)
