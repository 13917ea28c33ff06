"""The sync expert's training loop (docs/design/method.md Sec. 6) and the precise BN at its end.

A Wav2Lip-style SyncNet trained on the project's own crops: 5 consecutive mouth squares against the mel
window of the centre frame, in sync (label 1) or shifted by >= 5 frames within the clip (label 0), 50/50,
BCE on the cosine (the samples: g4g.train.data.SyncSamples; loading it frozen for G4G: g4g.models.loading).
To resume, run the same command again.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging

import torch

from g4g.models.loading import build_expert
from g4g.models.sync_expert import sync_bce
from g4g.params import SyncParams
from g4g.train import distributed as dist
from g4g.train import skeleton
from g4g.train.data import Clip, SyncSamples, make_loader, min_clip_frames
from g4g.train.quality import held_out_clips, sync_accuracy
from g4g.train.run import TrainingRun

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# Precise BN at the end of training
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def recalibrate_batchnorm(expert: torch.nn.Module, ds: SyncSamples, batches: int, batch: int, device,
                          memory_format=torch.contiguous_format, amp: bool = False) -> int:
    """Precise BN: replace the running mean/var of every BatchNorm layer by their plain average over
    `batches` training batches (samples ds[0 ..]) forwarded through the final weights in train mode.

    The running statistics of training are an EMA (momentum 0.1) over weights that kept changing; after a
    short schedule they lag the final weights and the eval-mode expert falls to chance while the same
    weights separate in-sync pairs with batch statistics. Returns the number of samples used (0: no BN).
    """
    from torch.utils.data import default_collate

    bns = [m for m in expert.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return 0
    was_training, momenta = expert.training, [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
    expert.train()
    for i in range(batches):
        b = default_collate([ds[i * batch + j] for j in range(batch)])
        mouths = (b["mouths"].to(device).float() / 255.0).contiguous(memory_format=memory_format)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            expert(mouths, b["A"].to(device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    expert.train(was_training)
    return batches * batch


# ----------------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------------


def train_sync(
    clips_parquet:  str,                  # results/{dataset}/clips.parquet: train split trains, test split checks
    run_dir:        str,                  # run folder: config.yaml, losses.csv, checkpoints/, metrics.json
    out:            str,                  # the final expert, results/models/{dataset}/syncnet.pt
    p:              SyncParams = SyncParams(),  # params.yaml `sync` (resolved for the dataset)
    seed:           int = 0,              # base seed; rank r uses seed + r for torch, the data stream is shared
    tracking:       dict | None = None,   # params.yaml `tracking`: mlflow on/off, uri, experiment
    config:         dict | None = None,   # the resolved params to write to config.yaml (default: p)
    tags:           dict | None = None,   # extra MLflow tags (dataset, rule)
    device:         str | None = None,    # default: cuda:LOCAL_RANK when available, else cpu
    stop_at:        int | None = None,    # stop with a checkpoint after this step (tests, time slices)
) -> dict:
    """Train the sync expert; returns the held-out metrics. To resume, run the same command again."""

    make = functools.partial(SyncTraining, p=p, seed=seed, clips_parquet=clips_parquet)
    return skeleton.train(make=make, name="sync_expert", settings=p, min_frames=min_clip_frames(1, p.min_shift),
                          clips_parquet=clips_parquet, run_dir=run_dir, out=out, seed=seed, tracking=tracking,
                          config=config, tags=tags, device=device, stop_at=stop_at)


class SyncTraining(skeleton.Loop):
    """The sync expert's part of its run (g4g.train.skeleton): one stage of Adam steps on the BCE of the
    cosine; at the end, precise BN and the held-out accuracy."""

    columns = ["step", "loss", "acc", "cos_in", "cos_off", "lr"]
    title, plotted = "sync expert", ("loss", "acc", "cos_in", "cos_off")

    def __init__(self, ranks: dist.Dist, clips: list[Clip], clips_hash: str, *, p: SyncParams, seed: int,
                 clips_parquet: str):
        self.ranks, self.p, self.seed, self.clips_parquet = ranks, p, seed, clips_parquet
        self.identity = (p, seed, clips_hash, "sync")
        self.tags, self.provenance = {"model": "sync_expert"}, {}
        self.config = {"sync": dataclasses.asdict(p)}  # the effective values, defaults filled in
        self.expert = build_expert(p).to(ranks.device)
        self.opt = torch.optim.Adam(self.expert.parameters(), lr=p.lr, betas=p.betas)
        self.parts, self.extra = {"expert": self.expert, "opt": self.opt}, {"params": dataclasses.asdict(p)}
        self.stages = [p.steps]
        self.samples = SyncSamples(clips, p.mouth_size, seed, min_shift=p.min_shift, crop_scale=p.crop_scale,
                                   cache_frames=p.frame_cache)

    def distribute(self, channels_last: bool) -> None:
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = dist.wrap(self.expert.to(memory_format=self.memory_format), self.ranks)

    def batches(self, stage: int, done: int):
        return make_loader(self.samples, self.p.batch, done, self.p.steps, self.p.workers, self.p.prefetch,
                           self.ranks.rank, self.ranks.world, pin_memory=self.ranks.cuda)

    def step(self, batch: dict, stage: int) -> tuple[dict, dict, int]:
        device = self.ranks.device
        mouths = (batch["mouths"].to(device, non_blocking=True).float() / 255.0).contiguous(
            memory_format=self.memory_format)
        label = batch["label"].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.ranks.cuda and self.p.amp):
            cos = self.model(mouths, batch["A"].to(device, non_blocking=True))
        loss = sync_bce(cos, label)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        cos, pos = cos.detach().float(), label.float()
        terms = {"loss": loss, "acc": ((cos > 0.5).float() == pos).float().mean(),
                 "cos_in": (cos * pos).sum() / pos.sum(),  # 0 / 0 = NaN without such pairs
                 "cos_off": (cos * (1 - pos)).sum() / (1 - pos).sum()}
        return terms, {"lr": self.p.lr}, len(label)

    def report(self, run: TrainingRun, step: int) -> tuple[dict, dict]:
        """Precise BN on the final weights, the held-out sync accuracy (g4g.train.quality), the last losses."""
        p, device = self.p, self.ranks.device
        calib = copy.copy(self.samples)  # same clips, augmentation and decoded-frame cache ...
        calib.stream = 1  # ... on a sample stream of its own
        metrics = {"step": step, "bn_recalibration_samples": recalibrate_batchnorm(
            self.expert, calib, p.bn_recalibrate, p.batch, device, self.memory_format, self.ranks.cuda and p.amp)}
        held = held_out_clips(self.clips_parquet, p.eval_clips)
        if held:
            metrics.update(sync_accuracy(self.expert, held, p.mouth_size, p.eval_windows, p.min_shift, self.seed,
                                         device))
        recent = run.recent_means(("loss", "acc"))
        metrics.update({f"train_{k}": recent.get(k, float("nan")) for k in ("loss", "acc")})
        return metrics, {"expert": self.expert.state_dict(), "params": dataclasses.asdict(p)}
