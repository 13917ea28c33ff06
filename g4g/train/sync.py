"""The sync expert (docs/design/method.md Sec. 6): its samples, its training loop, and loading it frozen for G4G.

A Wav2Lip-style SyncNet trained on the project's own crops: 5 consecutive mouth squares against the mel
window of the centre frame, in sync (label 1) or shifted by >= 5 frames within the clip (label 0), 50/50,
BCE on the cosine. To resume, run the same command again.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch

from g4g.models.loading import build_expert
from g4g.models.sync_expert import sync_bce
from g4g.params import SyncParams
from g4g.tracking import data_hash, dvc_md5, flatten, git_info, read_losses
from g4g.train import checkpoint as ck
from g4g.train import distributed as dist
from g4g.train.data import SyncSamples, make_loader, min_clip_frames, read_clips
from g4g.train.plots import training_curves
from g4g.train.quality import held_out_clips, sync_accuracy
from g4g.train.run import TrainingRun, fingerprint
from g4g.utils import write_json

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# Samples: 5 mouth squares + an in-sync or off-sync audio window
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
# The frozen expert for G4G training
# ----------------------------------------------------------------------------------------------------


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

    d = dist.init(device)
    ck.seed_everything(seed + d.rank)
    clips = read_clips(clips_parquet, "train", min_clip_frames(1, p.min_shift), "sync expert")
    dh = data_hash(clips_parquet, [c.frames_path for c in clips] + [c.mels_path for c in clips])
    fp = fingerprint(p, seed, dh, "sync")
    tags = {"data_hash": dh, "fingerprint": fp, "model": "sync_expert", **(tags or {})}  # as in training_loop
    provenance = {**git_info(), **tags, "dvc_data_md5": dvc_md5(clips_parquet)}
    cfg = {**(config or {}), "sync": dataclasses.asdict(p)}  # the effective values, defaults filled in
    run = TrainingRun(run_dir, "sync_expert", {**cfg, "provenance": provenance}, fp, d,
                      ["step", "loss", "acc", "cos_in", "cos_off", "lr"], provenance,
                      flatten(cfg), tracking, p.keep_checkpoints, p.log_every)

    expert = build_expert(p).to(d.device)
    opt = torch.optim.Adam(expert.parameters(), lr=p.lr, betas=p.betas)
    state, step = run.resume(), 0
    if state is not None:
        expert.load_state_dict(state["expert"])
        opt.load_state_dict(state["opt"])
        ck.set_rng_state(state["rng"])
        step = state["step"]
    run.start(state)
    fmt = torch.channels_last if (d.cuda and p.channels_last) else torch.contiguous_format
    expert = expert.to(memory_format=fmt)
    model = dist.wrap(expert, d)
    ds = SyncSamples(clips, p.mouth_size, seed, min_shift=p.min_shift, crop_scale=p.crop_scale,
                     cache_frames=p.frame_cache)
    loader = make_loader(ds, p.batch, step, p.steps, p.workers, p.prefetch, d.rank, d.world, pin_memory=d.cuda)
    ckpt = lambda: {"expert": expert.state_dict(), "opt": opt.state_dict(), "params": dataclasses.asdict(p),
                    "sampler": {"next_step": step, "batch": p.batch, "world": d.world}}  # noqa: E731
    t_last = time.time()
    with ck.Preemption() as pre, run.rows_kept():
        for batch in loader:
            t_data = time.time() - t_last
            mouths = (batch["mouths"].to(d.device, non_blocking=True).float() / 255.0).contiguous(memory_format=fmt)
            label = batch["label"].to(d.device)
            with torch.autocast(device_type=d.device.type, dtype=torch.bfloat16, enabled=d.cuda and p.amp):
                cos = model(mouths, batch["A"].to(d.device, non_blocking=True))
            loss = sync_bce(cos, label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            cos, pos = cos.detach().float(), label.float()
            terms = {"loss": loss, "acc": ((cos > 0.5).float() == pos).float().mean(),
                     "cos_in": (cos * pos).sum() / pos.sum(),  # 0 / 0 = NaN without such pairs
                     "cos_off": (cos * (1 - pos)).sum() / (1 - pos).sum()}
            dt = time.time() - t_last
            run.log(step, terms, {"lr": p.lr}, {"data_s": t_data, "step_s": dt, "samples_s": len(label) * d.world / dt})
            stop = step == stop_at or dist.stop_agreed(pre.requested, d, step, p.log_every)
            if run.end_step(step, p.checkpoint_every, p.steps, stop, pre, ckpt):
                return {"step": step}
            t_last = time.time()

    metrics = {"step": step}
    if d.main:
        calib = copy.copy(ds)  # same clips, augmentation and decoded-frame cache ...
        calib.stream = 1  # ... on a sample stream of its own
        metrics["bn_recalibration_samples"] = recalibrate_batchnorm(expert, calib, p.bn_recalibrate, p.batch,
                                                                    d.device, fmt, d.cuda and p.amp)
        held = held_out_clips(clips_parquet, p.eval_clips)
        if held:
            metrics.update(sync_accuracy(expert, held, p.mouth_size, p.eval_windows, p.min_shift, seed, d.device))

        tail = read_losses(run.dir / "losses.csv")
        for k in ("loss", "acc"):
            vals = [v for v in tail.get(k, [])[-max(1, p.log_every):] if v == v]
            metrics[f"train_{k}"] = float(np.mean(vals)) if vals else float("nan")
        final = {"expert": expert.state_dict(), "params": dataclasses.asdict(p), "meta": tags, "metrics": metrics}
        ck.save_checkpoint(out, final)
        run.tag("dvc_checkpoint_md5", dvc_md5(out))  # what dvc.lock will record for it
        write_json(run.dir / "metrics.json", metrics)

        curve = training_curves(run.dir / "losses.csv", run.dir / "curve.png", "sync expert",
                                keys=("loss", "acc", "cos_in", "cos_off"))
        run.artifact(curve)
        run.metrics(metrics, step)
        run.artifact(run.dir / "metrics.json")
        run.artifact(run.dir / "losses.csv")
        run.artifact(run.dir / "timings.csv")
        run.artifact(out, "model")
        log.info("sync expert: %s", metrics)
    run.close()
    dist.barrier(d)
    dist.shutdown(d)
    return metrics
