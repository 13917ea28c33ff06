"""The G4G training loop (paper Sec. 3.3; docs/design/method.md Sec. 5): stages, losses, LS-GAN, DDP, bf16, resume.

Stages run coarse-to-fine and reuse the weights (every module is resolution independent): frame stages
(single targets; frame D only) first, then the clip stage (5 consecutive targets; temporal D and the
frozen sync expert join). Each step: one generator update on the total of Eq. 24, then one update of
the discriminators on real targets against the detached I_out. To resume, run the same command again.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings

import numpy as np
import torch

from g4g.losses import VGGPerceptual
from g4g.models.g4g import variant_config
from g4g.models.loading import expert_digest, load_sync_expert
from g4g.params import ModelParams, Stage, TrainParams
from g4g.tracking import dvc_md5
from g4g.train import distributed as dist
from g4g.train import skeleton
from g4g.train.data import Clip, G4GSamples, device_batch, long_enough, make_loader, min_clip_frames, read_clips
from g4g.train.plots import sample_grid, save_png
from g4g.train.quality import held_out_clips, masked_psnr
from g4g.train.run import TrainingRun
from g4g.train.step import build_nets, train_step
from g4g.utils import sha256_file
from g4g.weights import WeightsError, get

log = logging.getLogger(__name__)

PERCEPTUAL_OFF = "off (no VGG weights)"
COLUMNS = ["step", "stage", "scale", "total", "L_v", "L_p", "L_gan", "L_gan_frame", "L_gan_temporal", "L_r",
           "L_con", "L_nce", "L_sync", "D_total", "D_frame", "D_temporal", "tau", "style_spread", "lr"]
FINAL_TERMS = ("total", "L_v", "L_p", "L_gan", "L_r", "L_con", "L_nce", "L_sync", "D_total")  # metrics final_*


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

    make = functools.partial(G4GTraining, variant=variant, model=model, train=train, syncnet=syncnet, seed=seed,
                             clips_parquet=clips_parquet)
    return skeleton.train(make=make, name=f"g4g-{variant}", settings=train,
                          min_frames=min_clip_frames(1, train.min_ref_gap), clips_parquet=clips_parquet,
                          run_dir=run_dir, out=out, seed=seed, tracking=tracking, config=config, tags=tags,
                          device=device, stop_at=stop_at)


class G4GTraining(skeleton.Loop):
    """G4G's part of its run (g4g.train.skeleton): generator, discriminators, their optimisers and lr
    schedules; one train_step per step; the held-out PSNR and sample grids at the end."""

    columns = COLUMNS

    def __init__(self, ranks: dist.Dist, clips: list[Clip], clips_hash: str, *, variant: str, model: ModelParams,
                 train: TrainParams, syncnet: str | None, seed: int, clips_parquet: str):
        perceptual, self.perceptual_status = perceptual_term(train.allow_no_perceptual)
        clip_stages = any(s.mode == "clip" for s in train.stages)
        if clip_stages and not syncnet:
            raise ValueError("clip stages need the trained sync expert (--syncnet results/models/{dataset}/syncnet.pt)")
        sync_sha = sha256_file(syncnet)[:16] if clip_stages else None  # provenance: this very file
        expert, expert_state = load_sync_expert(syncnet, ranks.device) if clip_stages else (None, None)
        if clip_stages:
            check_mouth_size(train, int(expert_state["params"].get("mouth_size", 256)), syncnet)
        self.ranks, self.clips, self.variant, self.train, self.seed = ranks, clips, variant, train, seed
        self.clips_parquet = clips_parquet
        self.cfg = variant_config(model, variant, train.stages[-1].scale)  # the last stage's scale

        # the run's identity: the expert's weights, not its file (which carries the commit it was published at)
        self.identity = (variant, model, train, seed, clips_hash,
                         expert_digest(expert_state) if clip_stages else None, self.perceptual_status)
        self.tags = {"variant": variant, "perceptual": self.perceptual_status, "syncnet_sha256": sync_sha or "none",
                     "model": "g4g"}
        self.provenance = {"dvc_syncnet_md5": dvc_md5(syncnet) if clip_stages else "none"}
        self.config = {"model": dataclasses.asdict(model), "train": dataclasses.asdict(train), "variant": variant,
                       "g4g_config": dataclasses.asdict(self.cfg)}
        self.title = f"G4G {variant} ({self.perceptual_status})"

        self.nets = build_nets(self.cfg, train.lr, train.betas, train.d_betas, train.weights, ranks.device,
                               clip_stages, expert, perceptual.to(ranks.device) if perceptual is not None else None,
                               amp=ranks.cuda and train.amp)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.nets.opt_g, StageSchedule(train))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.nets.opt_d, StageSchedule(train))
        # the discriminators' schedule follows the global step even while they are idle (a stage without
        # the GAN), so torch's "scheduler stepped before optimizer" warning is expected there, not a bug
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before",
                                category=UserWarning)
        self.parts = {"G": self.nets.G, "D_frame": self.nets.D_f, "D_temporal": self.nets.D_t,
                      "opt_g": self.nets.opt_g, "opt_d": self.nets.opt_d, "sched_g": self.sched_g,
                      "sched_d": self.sched_d}
        self.extra = {"variant": variant}
        self.stages = [s.steps for s in train.stages]
        self.batch: dict | None = None  # the last step's device batch and outputs: the sample grids
        self.outputs: dict | None = None

    def distribute(self, channels_last: bool) -> None:
        self.channels_last, nets = channels_last, self.nets
        for module in (nets.G, nets.D_f, nets.D_t, nets.expert, nets.perceptual):
            if module is not None and channels_last:
                module.to(memory_format=torch.channels_last)
        nets.G_ddp, nets.D_f_ddp = dist.wrap(nets.G, self.ranks), dist.wrap(nets.D_f, self.ranks)
        nets.D_t_ddp = dist.wrap(nets.D_t, self.ranks) if nets.D_t is not None else None

    def batches(self, stage: int, done: int):
        spec, train = self.train.stages[stage], self.train
        clip_len, stage_cfg = clip_length(spec), dataclasses.replace(self.cfg, scale=spec.scale)
        usable = long_enough(self.clips, min_clip_frames(clip_len, train.min_ref_gap),
                             f"stage {stage + 1} ({spec.mode})")
        samples = G4GSamples(usable, stage_cfg, clip_len, self.seed, stream=stage, crop_scale=train.crop_scale,
                             min_ref_gap=train.min_ref_gap, cache_frames=train.frame_cache)
        log.info("stage %d/%d: %s samples at mouth %d px (face %dx%d), batch %d, %d of %d steps done", stage + 1,
                 len(train.stages), spec.mode, spec.scale, *stage_cfg.face_size, spec.batch, done, spec.steps)
        return make_loader(samples, spec.batch, done, spec.steps, train.workers, train.prefetch, self.ranks.rank,
                           self.ranks.world, pin_memory=self.ranks.cuda)

    def step(self, batch: dict, stage: int) -> tuple[dict, dict, int]:
        spec, G = self.train.stages[stage], self.nets.G
        self.batch = device_batch(batch, self.ranks.device, self.channels_last)
        g_terms, d_terms, self.outputs = train_step(self.nets, self.batch, clip_length(spec),
                                                    gan=spec.gan and self.train.weights.lambda_gan > 0)
        self.sched_g.step()
        self.sched_d.step()
        terms = {**g_terms, **{("D_total" if k == "total" else k): v for k, v in d_terms.items()}}
        if G.contrast is not None:
            terms["tau"] = G.contrast.tau
        if self.outputs.get("l_r") is not None:
            terms["style_spread"] = G.align.style_spread(self.outputs["l_r"])
        fixed = {"stage": stage, "scale": spec.scale, "lr": self.nets.opt_g.param_groups[0]["lr"]}
        return terms, fixed, len(self.batch["I_t"])

    def after_step(self, run: TrainingRun, step: int) -> None:
        if self.ranks.main and self.train.sample_every and step % self.train.sample_every == 0:
            path = save_png(run.dir / "samples" / f"step-{step:08d}.png", sample_grid(self.batch, self.outputs))
            run.artifact(path, "samples")

    def report(self, run: TrainingRun, step: int) -> tuple[dict, dict]:
        """The loss terms' last values, the held-out masked PSNR (g4g.train.quality), samples.png."""
        train, G, device = self.train, self.nets.G, self.ranks.device
        metrics: dict = {"step": step, "perceptual": self.perceptual_status, "variant": self.variant}
        metrics.update({f"final_{k}": v for k, v in run.recent_means(FINAL_TERMS).items()})
        held = held_out_clips(self.clips_parquet, train.eval_clips)
        if held:
            metrics.update(masked_psnr(G, held, self.cfg, train.eval_frames, self.seed, device,
                                       amp=self.ranks.cuda and train.amp))
        batch, outputs = self.batch, self.outputs
        if batch is None:  # a rerun after the last step: draw the grid from one fresh batch
            samples = G4GSamples(held or read_clips(self.clips_parquet), self.cfg, 1, self.seed, stream=99,
                                 crop_scale=None)
            batch = G.prepare(device_batch(next(iter(make_loader(samples, 4, 0, 1))), device))
            with torch.no_grad():  # eval mode: the contrastive queues and momentum heads stay as trained
                outputs = G.eval()(batch)
        run.artifact(save_png(run.dir / "samples.png", sample_grid(batch, outputs)))
        return metrics, {"generator": G.state_dict(), "config": dataclasses.asdict(self.cfg), "variant": self.variant}


def clip_length(stage: Stage) -> int:
    """Targets per sample: a clip stage's 5 consecutive frames (the temporal D and the sync expert see
    them), a frame stage's single one."""
    return 5 if stage.mode == "clip" else 1
