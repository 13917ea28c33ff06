"""Workflow glue for infer.smk, evaluate.smk and tables.smk: method lists and what each job receives.

Kept in the package (not in the .smk files) so the rule files hold rules only and stay lint-clean.
"""

from __future__ import annotations

import logging
from pathlib import Path

from g4g.params import SETTINGS, VARIANT_OF_METHOD, VARIANTS, Params, replicate_method, split_replicate


def methods(p: Params) -> dict[str, list[str]]:
    """Method names: model (one per trained variant), replicates (each variant under each of `extra_seeds`,
    g4g.params.replicate_method), baseline videos, external, and the table rows (table 1: every trained variant, the
    references and the external methods; table 2: the variants)."""
    model = [VARIANTS[v].method for v in p.variants]
    replicates = [replicate_method(m, s) for m in model for s in p.extra_seeds]
    refs = list(p.evaluate.references)
    external = list(p.evaluate.external_methods)
    return {"model": model, "replicates": replicates, "baselines": [r for r in refs if r != "ground_truth"],
            "external": external, "evaluated": model + replicates + refs + external,
            "table1": model + refs + external, "table2": model,
            "datasets": list(p.evaluate.table_datasets or [p.dataset])}


def render_settings(method: str) -> list[str]:
    """How the infer job of `method` drives the test clips (g4g.params.SETTINGS): the full model in every setting
    (the cross-driven table is Table 1's), the ablations and seed replicates in the reconstruction setting only
    (Table 2 and the seed spread are reconstruction tables, and each driven setting is one more render)."""
    return list(SETTINGS) if method == VARIANTS["full"].method else ["reconstruction"]


def checkpoint(p: Params, method: str, models: tuple[str, str]) -> str:
    """The model file that renders `method` (a variant or a seed replicate of one); `models` are the output
    patterns of rules train and train_seed."""
    base, seed = split_replicate(method)
    variant = VARIANT_OF_METHOD[base]
    return models[0].format(dataset=p.dataset, variant=variant) if seed is None else \
        models[1].format(dataset=p.dataset, variant=variant, seed=seed)


def evaluate_inputs(p: Params, method: str, data: dict, videos: str, index: str, models: tuple[str, str],
                    syncnet: str) -> dict:
    """Inputs of one evaluate job of dataset `p.dataset`: `data` (clips, resampled, frames) plus the videos
    to score (none for ground_truth), their index and model, and the sync expert when surrogates are
    allowed. `videos`, `index`, `models` (train, train_seed), `syncnet` are the producing rules' output
    patterns."""
    m = methods(p)
    d = dict(data)
    rendered = m["model"] + m["replicates"]
    if method in rendered + m["baselines"]:
        d["videos"] = videos.format(dataset=p.dataset, method=method)
        d["index"] = index.format(dataset=p.dataset, method=method)
    elif method in m["external"]:
        d["videos"] = p.evaluate.external_methods[method]
    if method in rendered:
        d["checkpoint"] = checkpoint(p, method, models)
    if p.evaluate.allow_surrogates:
        d["syncnet"] = syncnet.format(dataset=p.dataset)
    return d


def optional_flags(input) -> str:
    """--videos / --index / --checkpoint / --syncnet for the inputs a method has."""
    return " ".join(f"--{k} {input[k]}" for k in ("videos", "index", "checkpoint", "syncnet") if k in input.keys())


def stale_runs(p: Params, models_dir: str | Path = "results/models") -> list[str]:
    """Run folders of `p.dataset` holding a model, metrics or losses that no configured training writes: a
    variant no longer in `variants`, a seed no longer in `extra_seeds`. dvc.yaml's evaluate stage hashes
    every such file under the dataset's folder (.dvcignore), so one left behind makes that stage out of
    date, and enters dvc.lock with it where a clone that pulls will not have it."""
    root = Path(models_dir) / p.dataset
    runs = {root / "syncnet"} | {root / v for v in p.variants} | {root / f"seed{s}" / v for s in p.extra_seeds
                                                                  for v in p.variants}
    found = {f.parent for name in ("model.pt", "metrics.json", "losses.csv") for f in root.glob(f"**/{name}")
             if "checkpoints" not in f.relative_to(root).parts}
    return sorted(str(d) for d in found - runs)


def warn_stale_runs(p: Params, models_dir: str | Path = "results/models") -> None:
    for d in stale_runs(p, models_dir):
        logging.getLogger("g4g").warning(
            "%s is not a run of this configuration (params.yaml variants, extra_seeds): DVC's evaluate stage hashes "
            "every model under %s, so it makes that stage out of date and would enter dvc.lock. Remove it (the DVC "
            "cache keeps what DVC tracked), or list its variant or seed again", d, Path(d).parent)
