"""The one skeleton of both training loops (G4G's training_loop, the sync expert's train_sync).

`train` owns everything a run does besides its optimisation step: seeding, the training clips and their
hash, the run's identity (fingerprint, tags, provenance, config.yaml), resume, DDP, preemption, stages,
checkpoints, the final model and its artefacts, the closing barrier. A loop hands it a `Loop`, which holds
its networks and optimisers under their checkpoint keys, its step and its end-of-training report.

The order below is part of the results: the loop's networks draw their first weights from the RNG seeded
here, and a resumed run restores the RNG after they are built.
"""

from __future__ import annotations

import abc
import itertools
import logging
import time
from collections.abc import Callable, Iterable

from g4g.params import SyncParams, TrainParams
from g4g.tracking import data_hash, dvc_md5, flatten, git_info
from g4g.train import checkpoint as ck
from g4g.train import distributed as dist
from g4g.train.data import Clip, read_clips
from g4g.train.plots import training_curves
from g4g.train.run import TrainingRun, fingerprint
from g4g.utils import write_json

log = logging.getLogger(__name__)


class Loop(abc.ABC):
    """A loop's own part of a run, made by `train` after seeding. A subclass sets these attributes:

    columns     losses.csv's columns
    identity    what the checkpoint folder's name hashes (g4g.train.run.fingerprint): the same parts in the
                same order, or existing runs no longer resume
    tags        the loop's MLflow tags; the final model records them, after data_hash and fingerprint
    provenance  more provenance for config.yaml and MLflow, after the training clips' DVC md5
    config      config.yaml's sections beside those the caller passes
    parts       checkpoint key -> module, optimiser or scheduler (None: not in this run); a checkpoint keeps
                them under these keys, so the keys of existing checkpoints must stay
    extra       fixed checkpoint entries beside the parts
    stages      the steps of each stage, run in order; a checkpoint closes every stage
    title       curve.png's title
    plotted     the losses.csv columns curve.png draws (None: all)
    """

    columns: list[str]
    identity: tuple
    tags: dict
    provenance: dict
    config: dict
    parts: dict
    extra: dict
    stages: list[int]
    title: str
    plotted: tuple[str, ...] | None = None

    @abc.abstractmethod
    def distribute(self, channels_last: bool) -> None:
        """Once, after resume and before the first step: the memory layout (channels-last when on) and the
        DDP wrappers around the resumed weights."""

    @abc.abstractmethod
    def batches(self, stage: int, done: int) -> Iterable[dict]:
        """The loader of stage `stage` from its step `done` on: the samples a run that never stopped draws."""

    @abc.abstractmethod
    def step(self, batch: dict, stage: int) -> tuple[dict, dict, int]:
        """One optimisation step on a loader batch: (its loss terms as 0-dim device tensors, plain values for
        losses.csv such as the learning rate, the samples it trained on in this rank)."""

    def after_step(self, run: TrainingRun, step: int) -> None:  # noqa: B027 - optional, so not abstract
        """Every rank, after step `step` is logged: what the loop adds (G4G: sample grids); by default nothing."""

    @abc.abstractmethod
    def report(self, run: TrainingRun, step: int) -> tuple[dict, dict]:
        """Rank 0 after the last step: (the final metrics, the final model's entries besides its meta and
        metrics). Extra artefacts go to `run` here."""


def train(
    *,
    make:           Callable[[dist.Dist, list[Clip], str], Loop],  # the loop's part: (ranks, train clips, data hash)
    name:           str,                   # the run's name in the log and MLflow
    settings:       TrainParams | SyncParams,  # checkpoint_every, keep_checkpoints, log_every, channels_last
    min_frames:     int,                   # training clips shorter than this are skipped
    clips_parquet:  str,                   # results/{dataset}/clips.parquet: train split trains, test split checks
    run_dir:        str,                   # run folder: config.yaml, losses.csv, timings.csv, checkpoints/, ...
    out:            str,                   # the final model file
    seed:           int,                   # base seed; rank r seeds torch with seed + r
    tracking:       dict | None,           # params.yaml `tracking`: mlflow on/off, uri, experiment
    config:         dict | None,           # the caller's resolved params for config.yaml
    tags:           dict | None,           # extra MLflow tags (dataset, Snakemake rule)
    device:         str | None,            # default: cuda:LOCAL_RANK when available, else cpu
    stop_at:        int | None,            # stop with a checkpoint after this global step (tests, time slices)
) -> dict:
    """Run a training from its start or its latest checkpoint to its end; returns the final metrics, or
    {"step": step} when stopped early (stop_at, or a preemption signal: then ck.Preempted is raised)."""

    # Seed, then let the loop build its networks from the seeded RNG.
    ranks = dist.init(device)
    ck.seed_everything(seed + ranks.rank)
    clips = read_clips(clips_parquet, "train", min_frames, name)
    clips_hash = data_hash(clips_parquet, [c.frames_path for c in clips] + [c.mels_path for c in clips])
    loop = make(ranks, clips, clips_hash)

    # The run's identity. `meta` is what the final model records: the same for the same run wherever and
    # whenever it ran; the commit (which varies) goes only to config.yaml and MLflow, so the model file
    # keeps its bytes across commits. MLflow's params are the config; its tags, the provenance.
    run_fp = fingerprint(*loop.identity)
    meta = {"data_hash": clips_hash, "fingerprint": run_fp, **loop.tags, **(tags or {})}
    provenance = {**git_info(), **meta, "dvc_data_md5": dvc_md5(clips_parquet), **loop.provenance}
    resolved = {**(config or {}), **loop.config}
    run = TrainingRun(run_dir, name, {**resolved, "provenance": provenance}, run_fp, ranks, loop.columns,
                      provenance, flatten(resolved), tracking, settings.keep_checkpoints, settings.log_every)

    # Resume from this fingerprint's latest checkpoint: the parts, then the RNG as it was after that step.
    state, step = run.resume(), 0
    if state is not None:
        for key, part in loop.parts.items():
            if part is not None:
                part.load_state_dict(state[key])
        ck.set_rng_state(state["rng"])
        step = state["step"]
    run.start(state)
    loop.distribute(ranks.cuda and settings.channels_last)

    def checkpoint() -> dict:  # run.save adds the step, RNG states and provenance
        return {**{key: part.state_dict() for key, part in loop.parts.items() if part is not None}, **loop.extra,
                "sampler": {"next_step": step, "world": ranks.world}}

    # The stages from the resumed step on. Every step ends in run.end_step: a checkpoint every
    # checkpoint_every steps, at each stage's end and on a stop; all ranks stop at the same step.
    total = sum(loop.stages)
    ends = list(itertools.accumulate(loop.stages))
    with ck.Preemption() as preemption, run.rows_kept():
        for stage, (begin, end) in enumerate(zip([0, *ends], ends)):
            if step >= end:
                continue
            batches = loop.batches(stage, step - begin)
            t_last = time.time()
            for batch in batches:
                t_data = time.time() - t_last
                terms, fixed, samples = loop.step(batch, stage)
                step += 1
                dt = time.time() - t_last  # host time: on CUDA a step's share of the queued work
                run.log(step, terms, fixed, {"data_s": t_data, "step_s": dt, "samples_s": samples * ranks.world / dt})
                loop.after_step(run, step)
                stop = step == stop_at or dist.stop_agreed(preemption.requested, ranks, step, settings.log_every)
                if run.end_step(step, settings.checkpoint_every, total, stop, preemption, checkpoint,
                                force=step == end):
                    return {"step": step}
                t_last = time.time()

    # The end (rank 0): the loop's report, the final model, metrics.json, curve.png, all to MLflow too.
    metrics = {"step": step}
    if ranks.main:
        metrics, model = loop.report(run, step)
        ck.save_checkpoint(out, {**model, "meta": meta, "metrics": metrics})
        run.tag("dvc_checkpoint_md5", dvc_md5(out))  # what dvc.lock will record for it
        write_json(run.dir / "metrics.json", metrics)
        curve = training_curves(run.dir / "losses.csv", run.dir / "curve.png", loop.title, loop.plotted)
        run.metrics(metrics, step)
        for path in (run.dir / "metrics.json", run.dir / "losses.csv", run.dir / "timings.csv", curve):
            run.artifact(path)
        run.artifact(out, "model")
        log.info("%s: %s", name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})
    run.close()
    dist.barrier(ranks)
    dist.shutdown(ranks)
    return metrics
