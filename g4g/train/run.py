"""Bookkeeping shared by the two training loops: folders, resume, config.yaml, logs, checkpoints.

A run lives in one folder (results/models/{dataset}/{variant} or .../syncnet):
    config.yaml                the resolved config + provenance (written at start, before any step)
    losses.csv                 one row per step: the losses and the learning rate, nothing that depends on
                               the machine's speed, so the file (a DVC plot) is the same bytes whenever the
                               losses are (flushed every `log_every` steps)
    timings.csv                one row per step: data wait, step time, samples/s (also in MLflow)
    checkpoints/<fingerprint>/ ckpt-<step>.pt, the newest `keep`, and both logs as of the newest checkpoint;
                               resuming needs the same fingerprint
Both loops keep each step's losses on the device (LossBuffer) and read them back every `log_every` steps,
at every checkpoint and stop, and when a step raises.
A resumed run restores its logs from the checkpoint folder's copies (then drops the rows after the resumed
step), because Snakemake deletes a job's declared outputs, losses.csv among them, before it re-runs the
job, and the run folder's logs may belong to another fingerprint. One copy per checkpoint, not per line.
The fingerprint hashes everything that defines the run (config without runtime knobs, data hash), so a
rerun of the same command resumes and a changed config starts afresh in its own folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from g4g.params import RUNTIME_KEYS
from g4g.tracking import LossLog, Tracker, read_losses
from g4g.train import checkpoint as ck
from g4g.train.distributed import Dist
from g4g.utils import atomic_path, write_text

log = logging.getLogger(__name__)

TIMING_COLUMNS = ["step", "data_s", "step_s", "samples_s"]


class TrainingRun:
    def __init__(self, run_dir: str | Path, name: str, config: dict, fingerprint: str, dist: Dist,
                 columns: list[str], tags: dict[str, str], params: dict[str, str], tracking: dict | None = None,
                 keep: int = 2, log_every: int = 50):
        self.dir, self.name, self.config, self.fp, self.dist = Path(run_dir), name, config, fingerprint, dist
        self.ckpt_dir = self.dir / "checkpoints" / fingerprint
        self.columns, self.tags, self.params, self.keep, self.log_every = columns, tags, params, keep, log_every
        self.tracking = tracking or {}
        self.tracker: Tracker | None = None
        self.losses: LossLog | None = None
        self.timings: LossLog | None = None
        self.run_id: str | None = None
        self.pending = LossBuffer()  # steps not yet written (see log)
        self._t0 = time.time()

    # -- start / resume -------------------------------------------------------------------------------

    def resume(self) -> dict | None:
        """The latest checkpoint of this fingerprint (every rank reads it), or None for a fresh start."""
        state = ck.load_latest(self.ckpt_dir)
        if state is not None:
            log.info("resuming %s from %s (step %d)", self.name, state["_path"], state["step"])
        elif (self.dir / "checkpoints").is_dir() and any((self.dir / "checkpoints").iterdir()):
            log.info("no checkpoint for this configuration (fingerprint %s); starting afresh", self.fp)
        return state

    def start(self, state: dict | None) -> None:
        """Write config.yaml, open the CSV (cut back to the resumed step) and the MLflow run (rank 0)."""
        if not self.dist.main:
            return
        step = state["step"] if state else None
        self.dir.mkdir(parents=True, exist_ok=True)

        write_text(self.dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        logs = {}
        for name, columns in (("losses.csv", self.columns), ("timings.csv", TIMING_COLUMNS)):
            if step is not None and (self.ckpt_dir / name).exists():
                self._copy_log(self.ckpt_dir / name, self.dir / name)
            logs[name] = LossLog(self.dir / name, columns, resume_step=step if step is not None else -1)
        self.losses, self.timings = logs["losses.csv"], logs["timings.csv"]
        self.tracker = Tracker(self.tracking.get("mlflow", True), self.tracking.get("uri"),
                               self.tracking.get("experiment", "G4G"))
        self.run_id = self.tracker.start(self.name, self.params, self.tags, run_id=(state or {}).get("mlflow_run_id"))
        if self.tracker.active:
            self.tracker.artifact(self.dir / "config.yaml")

    # -- per step ---------------------------------------------------------------------------------------

    def log(self, step: int, terms: dict, fixed: dict, timing: dict) -> None:
        """One step: its loss terms (0-dim tensors, left on the device), plain values such as the stage and
        lr (`fixed`), both to losses.csv, and its wall-clock figures (`timing`, to timings.csv). Rows reach
        the files and MLflow every `log_every` steps, at each checkpoint and at the end (`drain`)."""
        if not self.dist.main:
            return
        self.pending.add(step, terms, fixed, timing)
        if step % self.log_every == 0:
            self.drain()

    def drain(self) -> None:
        """Write every buffered step (one device-to-host transfer) and flush the files; also the loops'
        last act when a step raises, so the rows before a crash are kept."""
        rows = self.pending.drain() if self.dist.main else []
        if not rows:
            return
        for step, row, timing in rows:
            self.losses.write({"step": step, **row})
            self.timings.write({"step": step, **timing})
            self.tracker.log_metrics(step, {k: v for k, v in {**row, **timing}.items() if isinstance(v, (int, float))})
        self._flush()
        step, row, timing = rows[-1]
        msg = " ".join(f"{k}={v:.4g}" for k, v in {**row, **timing}.items() if isinstance(v, float))
        log.info("%s step %d %s (%.0f s)", self.name, step, msg, time.time() - self._t0)

    @contextlib.contextmanager
    def rows_kept(self):
        """The loops' steps run inside: when one raises (out of memory, a data error), the buffered rows
        before it are still written."""
        try:
            yield
        except BaseException:
            self.drain()
            raise

    def _flush(self) -> None:
        self.losses.flush()
        self.timings.flush()
        self.tracker.flush()

    def save(self, step: int, state: dict) -> None:
        """Checkpoint at `step` (rank 0): atomically, then prune; also flushes the logs."""
        if not self.dist.main:
            return
        self.drain()
        self._flush()
        for lg in (self.losses, self.timings):
            lg.copy_to(self.ckpt_dir / lg.path.name)
        state = {**state, "step": step, "fingerprint": self.fp, "mlflow_run_id": self.run_id,
                 "rng": ck.rng_state(), "meta": self.tags}
        path = ck.save_checkpoint(ck.checkpoint_path(self.ckpt_dir, step), state)
        ck.prune(self.ckpt_dir, self.keep)
        log.info("checkpoint %s", path)

    def end_step(self, step: int, every: int, total: int, stop: bool, pre: ck.Preemption, state,
                 force: bool = False) -> bool:
        """The end of a training step (g4g.train.skeleton.train): checkpoint (`state()`) every `every` steps,
        at step `total`, when `force`d and when stopping. Returns True when the loop must return now
        (stopped before `total`); after a preemption request, raises ck.Preempted once saved."""
        if step % every == 0 or step == total or stop or force:
            self.save(step, state())
        if stop and step < total:
            self.close("KILLED" if pre.requested else "FINISHED")
            if pre.requested:
                raise ck.Preempted(pre.exit_code)
            return True
        return False

    @staticmethod
    def _copy_log(src: Path, dst: Path) -> None:
        import shutil


        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)

    # -- end ----------------------------------------------------------------------------------------------

    def recent_means(self, columns) -> dict[str, float]:
        """Each loss column's mean over the last `log_every` steps of losses.csv, its empty cells skipped
        (a column without values is left out): the end-of-training figures of the loss terms."""
        logged = read_losses(self.dir / "losses.csv")
        means = {}
        for k in columns:
            values = [v for v in logged.get(k, [])[-max(1, self.log_every):] if v == v]
            if values:
                means[k] = float(np.mean(values))
        return means

    def artifact(self, path: str | Path, subdir: str | None = None) -> None:
        if self.dist.main and self.tracker is not None:
            self.tracker.artifact(path, subdir)

    def tag(self, key: str, value: str) -> None:
        if self.dist.main and self.tracker is not None:
            self.tracker.tag(key, value)

    def metrics(self, values: dict, step: int) -> None:
        """The numeric entries of `values` (but the step itself) as MLflow metrics at `step`."""
        if self.dist.main and self.tracker is not None:
            self.tracker.log_metrics(step, {k: float(v) for k, v in values.items()
                                            if isinstance(v, (int, float)) and k != "step"})
            self.tracker.flush()

    def close(self, status: str = "FINISHED") -> None:
        if self.dist.main:
            self.drain()
            for lg in (self.losses, self.timings):
                if lg is not None:
                    lg.close()
            if self.tracker is not None:
                self.tracker.end(status)


class LossBuffer:
    """Each step's loss terms, kept on the device and read back in one transfer every few steps: a float()
    per term and step would make the host wait for the device a dozen times per step.

    add(step, terms, fixed, timing): terms are 0-dim tensors (losses, tau), `fixed` plain numbers (stage,
    lr), `timing` the step's wall-clock figures; drain() -> [(step, row, timing)] of everything added since
    the last drain, the terms as floats in `row` beside `fixed`.
    """

    def __init__(self):
        self._steps: list[tuple[int, list[str], torch.Tensor, dict, dict]] = []

    def add(self, step: int, terms: dict[str, torch.Tensor], fixed: dict, timing: dict | None = None) -> None:
        names = list(terms)
        values = torch.stack([terms[k].detach().float().reshape(()) for k in names])  # (n,), on the device
        self._steps.append((step, names, values, fixed, timing or {}))

    def drain(self) -> list[tuple[int, dict, dict]]:
        if not self._steps:
            return []
        flat = torch.cat([v for _, _, v, _, _ in self._steps]).cpu().tolist()  # the one host-device sync
        rows, i = [], 0
        for step, names, _, fixed, timing in self._steps:
            rows.append((step, {**fixed, **dict(zip(names, flat[i:i + len(names)]))}, timing))
            i += len(names)
        self._steps.clear()
        return rows


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
