# Helpers shared by the workflow files (dataset and shard lists, parameter passing). Logic lives in g4g/
import json
import shlex
from pathlib import Path

from g4g.data.scan import assign_shards, dataset_clips
from g4g.evaluate.wiring import warn_stale_runs
from g4g.params import as_dict, resolve
from g4g.train.launch import launcher, let_preemption_reach_training

let_preemption_reach_training()  # in a SLURM job: USR1 is for the training ranks, not this Snakemake
DATASET = config["dataset"]
ENV = "../../environment.yml"  # per-rule conda env (used with --sdm conda; else the active env)
# params.yaml resolved per dataset (overrides merged, then validated: a misspelt key stops here, named)
PARAMS = {name: resolve(config, name) for name in config["datasets"]}
warn_stale_runs(PARAMS[DATASET])  # a leftover run folder would make DVC's evaluate stage out of date


def settings(dataset, *names, with_dataset=False, **values):
    """The named params.yaml sections of `dataset` (overrides merged), then `values` (e.g. a replicate's
    seed), as one shell-quoted JSON word for `g4g ... --params`: a rule's params, so a changed value re-runs
    exactly the jobs it touches."""
    p = PARAMS[dataset]
    d = {name: as_dict(getattr(p, name)) for name in names} | values
    if with_dataset:  # the dataset's own entry (scan, demo-data), without its overrides (already merged)
        d.update(dataset=dataset, datasets={dataset: {**as_dict(p.ds), "overrides": {}}})
    return shlex.quote(json.dumps(d, sort_keys=True))


def dataset_videos(name):
    """Every raw file of a dataset (videos and separate sound files): the scan rule's inputs."""
    return [f for src in dataset_clips(PARAMS[name].ds).values() for f in src if f]


def shards(name):
    return sorted(assign_shards(list(dataset_clips(PARAMS[name].ds)), PARAMS[name].ds.shard_size))


def per_shard(pattern):
    """Input function: `pattern` expanded over every shard of the wildcard's dataset."""
    return lambda w: expand(pattern, dataset=w.dataset, shard=shards(w.dataset))


# ---- training helpers ----
VARIANTS = config["variants"]


def run_outputs(folder, model):
    """The files a `g4g train` run leaves in its folder (model.pt, metrics.json and losses.csv are DVC outs)."""
    labels = {"dataset": "{dataset}", "model": model}
    return dict(
        model=f"{folder}/model.pt", metrics=f"{folder}/metrics.json", losses=f"{folder}/losses.csv",
        config=f"{folder}/config.yaml",
        curve=report(f"{folder}/curve.png", caption="../report/training.rst", category="Training",
                     labels={**labels, "figure": "training curve"}),
        samples=report(f"{folder}/samples.png", caption="../report/samples.rst", category="Training",
                       labels={**labels, "figure": "samples"}),
    )
