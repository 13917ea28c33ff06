"""The training sections of params.yaml, resolved for one dataset, as typed dataclasses.

`resolve(config, dataset)` returns the top-level sections (model, train, sync, tracking, variants ...) with
the dataset's `overrides` mapping (params.yaml `datasets.<name>.overrides`) merged over them: mappings
are merged key by key, recursively; any other value (numbers, strings, lists such as `stages`) is
replaced whole. Real datasets carry no overrides and train at paper scale; the demo set overrides the
model size and the step counts so that it trains in minutes on a CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from g4g.config import section

# Ablations of Table 2 (METHOD.md Sec. 8) as G4GConfig field overrides.
VARIANTS: dict[str, dict] = {
    "full": {},
    "wo_alignment": {"alignment": False},  # plain res blocks, lambda_v = 0, no InfoNCE (sync loss stays)
    "wo_supervision": {"multiscale_supervision": False},  # one mask scale, single-scale losses
    "wo_fusion": {"fusion": False},  # no blend net: I_out = I_comp
}

TRAIN_SECTIONS = ("model", "train", "sync", "tracking", "variants", "seed")


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of `base` with `over` merged in: dicts recursively, everything else replaced."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolve(config: dict, dataset: str) -> dict:
    """params.yaml sections for `dataset`: the top-level sections with datasets.<dataset>.overrides merged."""
    if dataset not in config.get("datasets", {}):
        raise KeyError(f"dataset {dataset!r} is not defined in params.yaml datasets: {sorted(config['datasets'])}")
    base = {k: copy.deepcopy(config[k]) for k in TRAIN_SECTIONS if k in config}
    return deep_merge(base, config["datasets"][dataset].get("overrides") or {})


# ----------------------------------------------------------------------------------------------------
# Typed sections
# ----------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    mode: str = "frame"  # frame: single targets, no temporal D, no sync loss | clip: 5 consecutive targets
    scale: int = 256     # mouth size of the stage: 64, 128 or 256 (face 104x80, 208x160, 416x320)
    steps: int = 1000    # optimiser steps of the stage
    batch: int = 3       # samples per step and rank (a clip sample holds 5 frames)
    gan: bool = True     # adversarial terms (frame D; temporal D in clip stages) on in this stage
    lr: float | None = None  # learning rate of the stage (default: train.lr)

    def __post_init__(self):
        if self.mode not in ("frame", "clip"):
            raise ValueError(f"stage mode must be 'frame' or 'clip', got {self.mode!r}")


def paper_stages() -> list[dict]:
    """Coarse-to-fine (DINet): frame stages at mouth 64, 128, 256, then the clip stage at 256."""
    return [dict(mode="frame", scale=64, steps=100_000, batch=24),
            dict(mode="frame", scale=128, steps=100_000, batch=12),
            dict(mode="frame", scale=256, steps=100_000, batch=6),
            dict(mode="clip", scale=256, steps=50_000, batch=3)]


@dataclass
class ModelParams:
    size: str = "paper"          # g4g.models.g4g.MODEL_SIZES entry (width; its scale is replaced per stage)
    width: float | None = None   # override of the size's channel multiplier
    norm: str = "group"

    def g4g_config(self, variant: str, scale: int):
        from g4g.models.g4g import model_config

        if variant not in VARIANTS:
            raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        kw = dict(VARIANTS[variant], scale=scale, norm=self.norm)
        if self.width is not None:
            kw["width"] = self.width
        return model_config(self.size, **kw)


@dataclass
class TrainParams:
    stages: list = field(default_factory=paper_stages)
    lr: float = 1e-4                      # Adam (METHOD.md Sec. 5), generator and discriminators
    betas: tuple = (0.5, 0.999)
    lr_decay: float = 0.0                 # last fraction of each stage over which lr falls linearly to 0
    weights: dict = field(default_factory=dict)  # g4g.losses.LossWeights fields (paper weights by default)
    allow_no_perceptual: bool = False     # without resources/weights VGG-19: train without L_p (labelled)
    crop_scale: tuple = (1.05, 1.15)      # s ~ U[a, b) relative to the stored s = 1.05 crops (zoom-out)
    min_ref_gap: int = 5                  # references at least this many frames from every target
    n_hard_negatives: int = 2             # shifted audio windows per target (InfoNCE hard negatives)
    workers: int = 4                      # DataLoader worker processes per rank
    prefetch: int = 4                     # batches prefetched per worker
    frame_cache: int = 0                  # decoded frames kept per process (LRU; useful for small sets)
    amp: bool = True                      # bf16 autocast on CUDA
    channels_last: bool = True            # on CUDA
    checkpoint_every: int = 2000
    keep_checkpoints: int = 2
    sample_every: int = 2000              # sample grids (MLflow artefacts)
    log_every: int = 50                   # loss rows: CSV every step, MLflow log_batch every log_every
    eval_clips: int = 0                   # held-out clips for the final quality check (0 = all)
    eval_frames: int = 64                 # frames per held-out clip for the quality check

    def __post_init__(self):
        self.stages = [s if isinstance(s, Stage) else section(Stage, s) for s in self.stages]
        self.betas, self.crop_scale = tuple(self.betas), tuple(self.crop_scale)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


@dataclass
class SyncParams:
    steps: int = 50_000
    batch: int = 64                       # Wav2Lip trains its expert with large batches (METHOD.md Sec. 6)
    lr: float = 1e-4
    betas: tuple = (0.5, 0.999)
    width: float = 1.0                    # channel multiplier of the expert
    norm: str = "batch"
    mouth_size: int = 256                 # mouths are cut at the generator's mouth size, then resized to 128
    min_shift: int = 5                    # off-sync windows are at least this many frames away
    crop_scale: tuple = (1.05, 1.15)
    workers: int = 4
    prefetch: int = 4
    frame_cache: int = 0
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 2000
    keep_checkpoints: int = 2
    log_every: int = 50
    eval_clips: int = 0
    eval_windows: int = 64                # centre frames per held-out clip for the accuracy check
    bn_recalibrate: int = 20              # batches of fresh training samples that re-estimate the BatchNorm
                                          # statistics of the final weights (precise BN; 0 = keep the EMA)

    def __post_init__(self):
        self.betas, self.crop_scale = tuple(self.betas), tuple(self.crop_scale)


RUNTIME_KEYS = {"workers", "prefetch", "frame_cache", "amp", "channels_last", "checkpoint_every",
                "keep_checkpoints", "sample_every", "log_every", "eval_clips", "eval_frames", "eval_windows"}


def fingerprint(*parts) -> str:
    """Short hash of what defines a training run (runtime-only knobs excluded): its checkpoint folder."""
    def clean(x):
        if dataclasses.is_dataclass(x):
            x = dataclasses.asdict(x)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k not in RUNTIME_KEYS}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    text = json.dumps([clean(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {'a.b.c': 'value'} (MLflow params)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str) if isinstance(v, (list, tuple)) else str(v)
    return out
