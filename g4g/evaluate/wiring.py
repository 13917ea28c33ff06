"""Workflow glue for infer.smk, evaluate.smk and tables.smk: method lists and what each job receives.

Kept in the package (not in the .smk files) so the rule files hold rules only and stay lint-clean.
"""

from __future__ import annotations

from g4g.infer.testset import METHOD_OF_VARIANT, VARIANT_OF_METHOD


def section_for(config: dict, dataset: str, name: str) -> dict:
    """params.yaml section `name` with the dataset's overrides of it merged in (as g4g.train.params.resolve)."""
    from g4g.train.params import deep_merge

    over = (config["datasets"][dataset].get("overrides") or {}).get(name) or {}
    return deep_merge(config.get(name) or {}, over)


def methods(config: dict) -> dict[str, list[str]]:
    """Method names: model (one per trained variant), baseline videos, external, and the table rows
    (table 1: every trained variant, the references and the external methods; table 2: the variants)."""
    model = [METHOD_OF_VARIANT[v] for v in config["variants"]]
    refs = list(config["evaluate"]["references"])
    external = list(config["evaluate"]["external_methods"])
    return {"model": model, "baselines": [r for r in refs if r != "ground_truth"], "external": external,
            "evaluated": model + refs + external,
            "table1": model + refs + external, "table2": model,
            "datasets": list(config["evaluate"]["table_datasets"] or [config["dataset"]])}


def infer_params(config: dict, dataset: str) -> dict:
    """`g4g infer` / `g4g reference-videos` --params: LipsyncParams fields, mel settings, seed."""
    infer = {k: v for k, v in section_for(config, dataset, "infer").items() if k != "threads"}
    infer["silence_dbfs"] = config["audio"]["silence_dbfs"]
    return {"infer": infer, "mel": config["mel"], "seed": config["seed"]}


def eval_params(config: dict, dataset: str) -> dict:
    """`g4g evaluate` --params: EvalParams fields (overrides merged) and the mel settings. Not the tracking
    section: as for training, changing where runs are logged re-runs nothing."""
    from g4g.evaluate.protocol import EvalParams

    e = section_for(config, dataset, "evaluate")
    return {"evaluate": {k: v for k, v in e.items() if k in EvalParams.__dataclass_fields__},
            "mel": config["mel"]}


def evaluate_inputs(config: dict, dataset: str, method: str, data: dict, videos: str, index: str, model: str,
                    syncnet: str) -> dict:
    """Inputs of one evaluate job: `data` (clips, resampled, frames) plus the videos to score (none for
    ground_truth), their index and model, and the sync expert when surrogates are allowed. `videos`,
    `index`, `model`, `syncnet` are the producing rules' output patterns."""
    m = methods(config)
    d = dict(data)
    if method in m["model"] + m["baselines"]:
        d["videos"] = videos.format(dataset=dataset, method=method)
        d["index"] = index.format(dataset=dataset, method=method)
    elif method in m["external"]:
        d["videos"] = config["evaluate"]["external_methods"][method]
    if method in m["model"]:
        d["checkpoint"] = model.format(dataset=dataset, variant=VARIANT_OF_METHOD[method])
    if section_for(config, dataset, "evaluate")["allow_surrogates"]:
        d["syncnet"] = syncnet.format(dataset=dataset)
    return d


def optional_flags(input) -> str:
    """--videos / --index / --checkpoint / --syncnet for the inputs a method has."""
    return " ".join(f"--{k} {input[k]}" for k in ("videos", "index", "checkpoint", "syncnet") if k in input.keys())
