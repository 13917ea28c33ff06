"""Checkpoints that survive being killed, resume that is exact, and preemption signals.

A checkpoint is one torch.save'd dict written to a temporary file and renamed into place
(g4g.utils.atomic_path), so a write killed half-way leaves the previous checkpoint intact. The latest
readable `ckpt-<step>.pt` is resumed; older ones beyond `keep` are pruned. The dict holds the model,
optimiser and scheduler states, the step, the RNG states (torch, CUDA, numpy, python) and whatever
the loop adds (the loader's next index is a function of the step, see g4g.train.data).
"""

from __future__ import annotations

import logging
import random
import re
import signal
from pathlib import Path

import numpy as np
import torch

from g4g.utils import atomic_path

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")

# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """torch.save `state` to `path` atomically, as the same bytes for the same state.

    torch.save names the zip archive's root folder after the file it is given; given the temporary
    file's random name, identical weights came out as different bytes (and every hash downstream
    changed). Through an open file object the root is always `archive`. The zip entries carry no
    timestamps, so the bytes depend on the state alone.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
    return path


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every ckpt-*.pt in folder, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def load_latest(folder: str | Path, map_location="cpu") -> dict | None:
    """The newest checkpoint that loads (an unreadable one is reported and skipped), or None."""
    for _step, path in reversed(list_checkpoints(folder)):
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as e:  # a damaged file must not block resuming from an older one
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, e)
            continue
        state["_path"] = str(path)
        return state
    return None


def prune(folder: str | Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints."""
    for _, path in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# RNG states
# ----------------------------------------------------------------------------------------------------


def rng_state() -> dict:
    s = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------
# Preemption (SLURM sends SIGTERM at the time limit, SIGUSR1 ahead of it with --signal)
# ----------------------------------------------------------------------------------------------------


class Preemption:
    """Context manager: SIGTERM / SIGUSR1 set `requested` instead of killing; the loop then saves and exits.

    A second SIGTERM while one is pending falls back to the default action (immediate exit).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handler(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.signum = signum
        log.warning("received %s: saving a checkpoint and stopping (several ranks: within train.log_every steps)",
                    signal.Signals(signum).name)

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self.handler)
            except ValueError:  # not the main thread (e.g. a test runner thread): signals stay default
                pass
        return self

    def __exit__(self, *exc):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        return False

    @property
    def exit_code(self) -> int:
        """128 + signal number: the job reads as killed by that signal, so a scheduler retries it."""
        return 128 + (self.signum or 0)


class Preempted(SystemExit):
    """Raised after the preemption checkpoint is saved; its code is 128 + the signal number."""
