"""Workflow glue for infer.smk, evaluate.smk and tables.smk: method lists and what each job receives.

Kept in the package (not in the .smk files) so the rule files hold rules only and stay lint-clean.
"""

from __future__ import annotations

from g4g.params import VARIANT_OF_METHOD, VARIANTS, Params


def methods(p: Params) -> dict[str, list[str]]:
    """Method names: model (one per trained variant), baseline videos, external, and the table rows
    (table 1: every trained variant, the references and the external methods; table 2: the variants)."""
    model = [VARIANTS[v].method for v in p.variants]
    refs = list(p.evaluate.references)
    external = list(p.evaluate.external_methods)
    return {"model": model, "baselines": [r for r in refs if r != "ground_truth"], "external": external,
            "evaluated": model + refs + external,
            "table1": model + refs + external, "table2": model,
            "datasets": list(p.evaluate.table_datasets or [p.dataset])}


def evaluate_inputs(p: Params, method: str, data: dict, videos: str, index: str, model: str,
                    syncnet: str) -> dict:
    """Inputs of one evaluate job of dataset `p.dataset`: `data` (clips, resampled, frames) plus the videos
    to score (none for ground_truth), their index and model, and the sync expert when surrogates are
    allowed. `videos`, `index`, `model`, `syncnet` are the producing rules' output patterns."""
    m = methods(p)
    d = dict(data)
    if method in m["model"] + m["baselines"]:
        d["videos"] = videos.format(dataset=p.dataset, method=method)
        d["index"] = index.format(dataset=p.dataset, method=method)
    elif method in m["external"]:
        d["videos"] = p.evaluate.external_methods[method]
    if method in m["model"]:
        d["checkpoint"] = model.format(dataset=p.dataset, variant=VARIANT_OF_METHOD[method])
    if p.evaluate.allow_surrogates:
        d["syncnet"] = syncnet.format(dataset=p.dataset)
    return d


def optional_flags(input) -> str:
    """--videos / --index / --checkpoint / --syncnet for the inputs a method has."""
    return " ".join(f"--{k} {input[k]}" for k in ("videos", "index", "checkpoint", "syncnet") if k in input.keys())
