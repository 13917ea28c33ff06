# Helpers shared by the workflow files (dataset and shard lists, parameter passing). Logic lives in g4g/
import json
import shlex
from pathlib import Path

from g4g.data.scan import assign_shards, dataset_clips
from g4g.train.params import resolve

DATASET = config["dataset"]
ENV = "../../environment.yml"  # per-rule conda env (used with --sdm conda; else the active env)


def ds_cfg(name):
    """The dataset's params.yaml entry plus the global seed (what `g4g scan` receives)."""
    d = dict(config["datasets"][name])
    d.setdefault("seed", config["seed"])
    d["name"] = name
    return d


def dataset_videos(name):
    return list(dataset_clips(ds_cfg(name)).values())


def shards(name):
    d = ds_cfg(name)
    return sorted(assign_shards(list(dataset_clips(d)), d["shard_size"]))


def as_json(d):
    """A params section as one shell-quoted JSON word for `g4g ... --params`."""
    return shlex.quote(json.dumps(d, sort_keys=True))


def stage_params():
    v, a = config["video"], config["audio"]
    return {"fps": v["fps"], "min_frames": v["min_frames"], "sample_rate": a["sample_rate"],
            "silence_dbfs": a["silence_dbfs"], "reject_silent": a["reject_silent"]}


def per_shard(pattern):
    """Input function: `pattern` expanded over every shard of the wildcard's dataset."""
    return lambda w: expand(pattern, dataset=w.dataset, shard=shards(w.dataset))


# ---- training helpers ----
VARIANTS = config["variants"]


def train_cfg(dataset, *sections):
    """params.yaml sections for a dataset, its `overrides` merged (g4g.train.params.resolve), as JSON."""
    r = resolve(config, dataset)
    return as_json({k: r[k] for k in sections if k in r})


def launcher(resources):
    """`g4g`, or torchrun over the job's GPUs when it has several (DDP; rank 0 logs and saves). The GPU
    count is `gpu`, or N of a `gres` "gpu:N" / "gpu:model:N" (the SLURM profile may use either)."""
    gpus = int(resources.get("gpu", 0) or 0)
    gres = [g.split(":") for g in str(resources.get("gres", "") or "").split(",") if g.strip().startswith("gpu")]
    if not gpus and gres and gres[0][-1].isdigit():
        gpus = int(gres[0][-1])
    return f"torchrun --standalone --nproc_per_node {gpus} -m g4g" if gpus > 1 else "g4g"
