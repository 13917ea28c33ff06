"""The G4G training loop (paper Sec. 3.3; docs/design/method.md Sec. 5): stages, losses, LS-GAN, DDP, bf16, resume.

Stages run coarse-to-fine and reuse the weights (every module is resolution independent): frame stages
(single targets; frame D only) first, then the clip stage (5 consecutive targets; temporal D and the
frozen sync expert join). Each step: one generator update on the total of Eq. 24, then one update of
the discriminators on real targets against the detached I_out. To resume, run the same command again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from g4g.losses import VGGPerceptual
from g4g.models.g4g import variant_config
from g4g.models.loading import expert_digest, load_sync_expert
from g4g.params import ModelParams, TrainParams
from g4g.tracking import data_hash, dvc_md5, flatten, git_info, read_losses
from g4g.train import checkpoint as ck
from g4g.train import distributed as dist
from g4g.train.data import G4GSamples, device_batch, long_enough, make_loader, min_clip_frames, read_clips
from g4g.train.plots import sample_grid, save_png, training_curves
from g4g.train.quality import held_out_clips, masked_psnr
from g4g.train.run import TrainingRun, fingerprint
from g4g.train.step import build_nets, train_step
from g4g.utils import sha256_file, write_json
from g4g.weights import WeightsError, get

log = logging.getLogger(__name__)

PERCEPTUAL_OFF = "off (no VGG weights)"
COLUMNS = ["step", "stage", "scale", "total", "L_v", "L_p", "L_gan", "L_gan_frame", "L_gan_temporal", "L_r",
           "L_con", "L_nce", "L_sync", "D_total", "D_frame", "D_temporal", "tau", "style_spread", "lr"]


class StageSchedule:
    """lr factor per global step: the stage's lr / train.lr, falling linearly to 0 over the last `decay`
    fraction of each stage (DINet: constant, then linear decay)."""

    def __init__(self, train: TrainParams):
        self.bounds = np.cumsum([0] + [s.steps for s in train.stages]).tolist()
        self.scale = [(s.lr if s.lr is not None else train.lr) / train.lr for s in train.stages]
        self.decay = train.lr_decay

    def __call__(self, step: int) -> float:
        i = min(int(np.searchsorted(self.bounds, step, side="right")) - 1, len(self.bounds) - 2)
        frac = (step - self.bounds[i]) / max(1, self.bounds[i + 1] - self.bounds[i])
        f = 1.0 if self.decay <= 0 or frac < 1 - self.decay else max(0.0, (1 - frac) / self.decay)
        return self.scale[i] * f


@dataclasses.dataclass(frozen=True)
class Job:
    """What one training run is about: the settings its end-of-run report and final model need."""
    variant: str
    cfg: object                 # G4GConfig of the variant at the last stage's scale
    train: TrainParams
    clips_parquet: str
    out: str
    seed: int
    tags: dict
    d: dist.Dist


def check_mouth_size(train: TrainParams, expert_mouth: int, syncnet: str) -> None:
    """The sync expert judges the clip stage's mouths at the size it was trained on (Sec. 3.2): a clip
    stage at another mouth size would feed it rescaled mouths it never saw. Refuse at start-up."""
    for i, st in enumerate(train.stages):
        if st.mode == "clip" and st.scale != expert_mouth:
            raise ValueError(f"the clip stage train.stages[{i}] works at mouth size {st.scale}, but the sync "
                             f"expert {syncnet} was trained at sync.mouth_size {expert_mouth}: set them equal")


def perceptual_term(allow_missing: bool):
    """(VGGPerceptual or None, status). Missing VGG-19 weights stop the run (WeightsError naming the file)
    unless params.yaml `train.allow_no_perceptual` is true: then L_p is left out and the run says so."""

    try:
        return VGGPerceptual(pretrained=True), f"on ({get('vgg19').path.name})"
    except WeightsError as e:
        if not allow_missing or get("vgg19").path.exists():  # a corrupt file is never waved through
            raise WeightsError(f"{e}\n  (or set train.allow_no_perceptual: true in params.yaml to train "
                               f"without the perceptual loss, labelled as such)") from None
        log.warning("perceptual: %s: training WITHOUT the perceptual loss L_p (%s is missing; "
                    "train.allow_no_perceptual is true)", PERCEPTUAL_OFF, get("vgg19").path)
        return None, PERCEPTUAL_OFF


def training_loop(
    clips_parquet:  str,                   # results/{dataset}/clips.parquet: train split trains, test split checks
    run_dir:        str,                   # run folder: config.yaml, losses.csv, timings.csv, checkpoints/, ...
    out:            str,                   # final generator, results/models/{dataset}/{variant}/model.pt
    variant:        str = "full",          # full | wo_alignment | wo_supervision | wo_fusion (Table 2)
    model:          ModelParams = ModelParams(),  # params.yaml `model` (size registry name, width)
    train:          TrainParams = TrainParams(),  # params.yaml `train`: stages, optimiser, loss weights, I/O
    syncnet:        str | None = None,     # trained sync expert: required by clip stages (sync loss)
    seed:           int = 0,               # base seed; rank r seeds torch with seed + r
    tracking:       dict | None = None,    # params.yaml `tracking`: mlflow on/off, uri, experiment
    config:         dict | None = None,    # the resolved params to write to config.yaml
    tags:           dict | None = None,    # extra MLflow tags (dataset, Snakemake rule)
    device:         str | None = None,     # default: cuda:LOCAL_RANK when available, else cpu
    stop_at:        int | None = None,     # stop with a checkpoint after this global step (tests, time slices)
) -> dict:
    """Train one G4G variant; returns the final metrics. To resume, run the same command again."""

    d = dist.init(device)
    ck.seed_everything(seed + d.rank)
    weights = train.weights
    perceptual, perc_status = perceptual_term(train.allow_no_perceptual)
    clip_stages = any(s.mode == "clip" for s in train.stages)
    if clip_stages and not syncnet:
        raise ValueError("clip stages need the trained sync expert (--syncnet results/models/{dataset}/syncnet.pt)")
    clips = read_clips(clips_parquet, "train", min_clip_frames(1, train.min_ref_gap), "G4G training")
    dh = data_hash(clips_parquet, [c.frames_path for c in clips] + [c.mels_path for c in clips])
    sync_sha = sha256_file(syncnet)[:16] if clip_stages else None  # provenance: this very file
    expert, expert_state = load_sync_expert(syncnet, d.device) if clip_stages else (None, None)
    if clip_stages:
        check_mouth_size(train, int(expert_state["params"].get("mouth_size", 256)), syncnet)
    # the run's identity: the expert's weights, not its file (which carries the commit it was published at)
    fp = fingerprint(variant, model, train, seed, dh, expert_digest(expert_state) if clip_stages else None,
                     perc_status)
    # what the model file records: the same for the same run wherever and whenever it ran; the commit
    # (which varies) goes only to config.yaml and MLflow, so model.pt keeps its bytes across commits
    tags = {"data_hash": dh, "fingerprint": fp, "variant": variant, "perceptual": perc_status,
            "syncnet_sha256": sync_sha or "none", "model": "g4g", **(tags or {})}
    provenance = {**git_info(), **tags, "dvc_data_md5": dvc_md5(clips_parquet),
                  "dvc_syncnet_md5": dvc_md5(syncnet) if clip_stages else "none"}
    cfg = variant_config(model, variant, train.stages[-1].scale)
    resolved = {**(config or {}), "model": dataclasses.asdict(model), "train": dataclasses.asdict(train),
                "variant": variant, "g4g_config": dataclasses.asdict(cfg), "provenance": provenance}
    run = TrainingRun(run_dir, f"g4g-{variant}", resolved, fp, d, COLUMNS, provenance, flatten(resolved), tracking,
                      train.keep_checkpoints, train.log_every)
    job = Job(variant, cfg, train, clips_parquet, out, seed, tags, d)

    n = build_nets(cfg, train.lr, train.betas, weights, d.device, clip_stages, expert,
                   perceptual.to(d.device) if perceptual is not None else None, amp=d.cuda and train.amp)
    sched_g = torch.optim.lr_scheduler.LambdaLR(n.opt_g, StageSchedule(train))
    sched_d = torch.optim.lr_scheduler.LambdaLR(n.opt_d, StageSchedule(train))
    # the discriminators' schedule follows the global step even while they are idle (a stage without
    # the GAN), so torch's "scheduler stepped before optimizer" warning is expected there, not a bug
    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before",
                            category=UserWarning)
    parts = {"G": n.G, "D_frame": n.D_f, "D_temporal": n.D_t, "opt_g": n.opt_g, "opt_d": n.opt_d,
             "sched_g": sched_g, "sched_d": sched_d}
    state, step = run.resume(), 0
    if state is not None:
        for key, obj in parts.items():
            if obj is not None:
                obj.load_state_dict(state[key])
        ck.set_rng_state(state["rng"])
        step = state["step"]
    run.start(state)
    cl = d.cuda and train.channels_last
    for m in (n.G, n.D_f, n.D_t, n.expert, n.perceptual):
        if m is not None and cl:
            m.to(memory_format=torch.channels_last)
    n.G_ddp, n.D_f_ddp = dist.wrap(n.G, d), dist.wrap(n.D_f, d)
    n.D_t_ddp = dist.wrap(n.D_t, d) if n.D_t is not None else None
    checkpoint_state = lambda: {**{k: v.state_dict() for k, v in parts.items() if v is not None},  # noqa: E731
                                "sampler": {"next_step": step, "world": d.world}, "variant": variant}

    begin, b, o = 0, None, None
    with ck.Preemption() as pre, run.rows_kept():
        for si, stage in enumerate(train.stages):
            end, begin = begin + stage.steps, begin
            if step >= end:
                begin = end
                continue
            T = 5 if stage.mode == "clip" else 1
            scfg = dataclasses.replace(cfg, scale=stage.scale)
            usable = long_enough(clips, min_clip_frames(T, train.min_ref_gap), f"stage {si + 1} ({stage.mode})")
            ds = G4GSamples(usable, scfg, T, seed, stream=si, crop_scale=train.crop_scale,
                            min_ref_gap=train.min_ref_gap,
                            cache_frames=train.frame_cache)
            loader = make_loader(ds, stage.batch, step - begin, stage.steps, train.workers, train.prefetch,
                                 d.rank, d.world, pin_memory=d.cuda)
            log.info("stage %d/%d: %s samples at mouth %d px (face %dx%d), batch %d, steps %d..%d", si + 1,
                     len(train.stages), stage.mode, stage.scale, *scfg.face_size, stage.batch, begin, end)
            t_last = time.time()
            for batch in loader:
                t_data = time.time() - t_last
                b = device_batch(batch, d.device, cl)
                g, dl, o = train_step(n, b, T, gan=stage.gan and weights.lambda_gan > 0)
                sched_g.step()
                sched_d.step()
                step += 1
                dt = time.time() - t_last  # host time: on CUDA a step's share of the queued work
                terms = {**g, **{("D_total" if k == "total" else k): v for k, v in dl.items()}}
                if n.G.contrast is not None:
                    terms["tau"] = n.G.contrast.tau
                if o.get("l_r") is not None:
                    terms["style_spread"] = n.G.align.style_spread(o["l_r"])
                run.log(step, terms, {"stage": si, "scale": stage.scale, "lr": n.opt_g.param_groups[0]["lr"]},
                        {"data_s": t_data, "step_s": dt, "samples_s": len(b["I_t"]) * d.world / dt})
                if d.main and train.sample_every and step % train.sample_every == 0:
                    _save_samples(run, b, o, step)
                stop = step == stop_at or dist.stop_agreed(pre.requested, d, step, train.log_every)
                if run.end_step(step, train.checkpoint_every, train.total_steps, stop, pre, checkpoint_state,
                                force=step == end):  # a checkpoint closes every stage
                    return {"step": step}
                t_last = time.time()
            begin = end
    metrics = _finish(job, run, n.G, step, b, o)
    dist.barrier(d)
    dist.shutdown(d)
    return metrics


def _save_samples(run, b: dict, o: dict, step: int) -> Path:

    path = save_png(run.dir / "samples" / f"step-{step:08d}.png", sample_grid(b, o))
    run.artifact(path, "samples")
    return path


def _finish(job: Job, run: TrainingRun, G, step: int, b: dict | None, o: dict | None) -> dict:
    """Rank 0: held-out quality check, final model, metrics.json, curve and sample PNGs, artefacts.

    b, o: the last training batch and its outputs (None when a rerun found the training complete).
    """
    train, d = job.train, job.d
    metrics: dict = {"step": step, "perceptual": job.tags["perceptual"], "variant": job.variant}
    if not d.main:
        return metrics
    cols = read_losses(run.dir / "losses.csv")
    for k in ("total", "L_v", "L_p", "L_gan", "L_r", "L_con", "L_nce", "L_sync", "D_total"):
        vals = [v for v in cols.get(k, [])[-max(1, train.log_every):] if v == v]
        if vals:
            metrics[f"final_{k}"] = float(np.mean(vals))
    held = held_out_clips(job.clips_parquet, train.eval_clips)
    if held:
        metrics.update(masked_psnr(G, held, job.cfg, train.eval_frames, job.seed, d.device,
                                   amp=d.cuda and train.amp))
    final = {"generator": G.state_dict(), "config": dataclasses.asdict(job.cfg), "variant": job.variant,
             "meta": job.tags, "metrics": metrics}
    ck.save_checkpoint(job.out, final)
    run.tag("dvc_checkpoint_md5", dvc_md5(job.out))  # what dvc.lock will record for it
    write_json(run.dir / "metrics.json", metrics)
    curve = training_curves(run.dir / "losses.csv", run.dir / "curve.png",
                            f"G4G {job.variant} ({job.tags['perceptual']})")
    if b is None:  # a rerun after the last step: draw the grid from one fresh batch
        samples = G4GSamples(held or read_clips(job.clips_parquet), job.cfg, 1, job.seed, stream=99, crop_scale=None)
        b = next(iter(make_loader(samples, 4, 0, 1)))
        b = G.prepare(device_batch(b, d.device))
        with torch.no_grad():
            o = G.eval()(b)
    grid = save_png(run.dir / "samples.png", sample_grid(b, o))
    run.metrics(metrics, step)
    for path, sub in ((run.dir / "metrics.json", None), (run.dir / "losses.csv", None),
                      (run.dir / "timings.csv", None), (curve, None), (grid, None), (job.out, "model")):
        run.artifact(path, sub)
    log.info("G4G %s: %s", job.variant,
             {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})
    run.close()
    return metrics
