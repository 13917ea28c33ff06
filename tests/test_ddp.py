"""torchrun DDP on CPU ranks (gloo), without SLURM: 2 ranks at batch b/2 equal 1 rank at batch b, a two-rank
run resumes exactly, a rank that dies ends the job with its error. Through SLURM: tests/test_slurm_preemption.py.
Its own module, so that pytest-xdist runs it beside the SLURM tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------------------------------
# DDP: 2 ranks at batch b/2 = 1 rank at batch b; a rank that dies ends the job
# ----------------------------------------------------------------------------------------------------


def _train_cmd(clips: Path, out: Path, ranks: int, batch: int, steps: int, nce: float = 0.0) -> list[str]:
    """`g4g train` on the synthetic set, frame stage only, through torchrun when ranks > 1 (as the rule).
    w/o supervision: one mask scale, so the masked L1 (a ratio of sums over the batch) splits exactly over
    ranks; InfoNCE off (its negatives are the rank's own batch, which 2 ranks split)."""
    job = ["train", "--dataset", "demo", "--variant", "wo_supervision", "--clips", str(clips),
           "--out", str(out / "model.pt"), "--run-dir", str(out), "--device", "cpu", "--threads", "1",
           "--model.width", "0.125", "--train.workers", "0", "--tracking.mlflow", "false",
           "--train.stages", f'[{{"mode": "frame", "scale": 64, "steps": {steps}, "batch": {batch}, "gan": true}}]',
           "--train.weights", f'{{"w_nce": {nce}}}', "--train.log_every", "1", "--train.checkpoint_every", "1000",
           "--train.sample_every", "0", "--train.eval_clips", "1", "--train.eval_frames", "2"]
    if ranks == 1:
        return [sys.executable, "-m", "g4g", *job]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
            "-m", "g4g", "--", *job]


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def synth_clips(tmp_path_factory) -> Path:
    from g4g.train.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("ddp"), 40, 4, 1)


def test_two_ranks_at_half_batch_equal_one_rank(synth_clips, tmp_path):
    """Issue 11 item 3: each rank draws its half of the global batch from the same index stream, GroupNorm
    is per sample and DDP averages the ranks' gradients, so one step of 2 ranks at batch 1 gives the
    weights of 1 rank at batch 2, up to float order. Float order is not nothing under Adam: its first step
    moves a weight by lr * g / (|g| + eps), +-lr for any gradient above eps, so a weight whose gradient is
    at rounding level (convolutions pick other kernels for another batch size) may step the other way.
    Tolerance, measured: at most 0.5 % of the weights differ by more than 1e-6, none by more than 2 lr;
    a run on another global batch differs in 16 % (later steps compound the flips, so one step is
    compared; the demo's lr is 1e-3)."""
    lr, runs = 1e-3, {}
    for name, ranks, batch in (("one", 1, 2), ("two", 2, 1), ("other_batch", 1, 1)):
        r = _run(_train_cmd(synth_clips, tmp_path / name, ranks=ranks, batch=batch, steps=1))
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = torch.load(tmp_path / name / "model.pt", weights_only=False)["generator"]
    keys = [k for k, v in runs["one"].items() if v.is_floating_point() and not k.startswith("contrast.queue")]

    def diff(name):
        return torch.cat([(runs["one"][k] - runs[name][k]).abs().flatten() for k in keys])

    two, other = diff("two"), diff("other_batch")
    assert (two > 1e-6).float().mean() < 0.005 and two.max() <= 2 * lr + 1e-6, ((two > 1e-6).float().mean(), two.max())
    assert (other > 1e-6).float().mean() > 0.05  # the comparison can fail
    # rank 0 alone logs: one header and one row per step, not one per rank
    assert len((tmp_path / "two" / "losses.csv").read_text().splitlines()) == 1 + 1


def test_two_rank_training_resumes_exactly(synth_clips, tmp_path):
    """Stopped at step 2 and resumed, 2 ranks end with the weights of an uninterrupted run, InfoNCE on:
    every rank enqueues the gathered keys of the global batch, so rank 0's queue in the checkpoint is
    every rank's (before, rank 1 resumed with rank 0's queue and its InfoNCE negatives changed)."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    r = _run(_train_cmd(synth_clips, whole, ranks=2, batch=2, steps=4, nce=1.0))
    assert r.returncode == 0, r.stderr[-3000:]
    first = _run(_train_cmd(synth_clips, cut, ranks=2, batch=2, steps=4, nce=1.0) + ["--stop-at", "2"])
    assert first.returncode == 0 and not (cut / "model.pt").exists(), first.stderr[-3000:]
    second = _run(_train_cmd(synth_clips, cut, ranks=2, batch=2, steps=4, nce=1.0))
    assert second.returncode == 0 and "resuming" in second.stderr, second.stderr[-3000:]
    a = torch.load(whole / "model.pt", weights_only=False)["generator"]
    b = torch.load(cut / "model.pt", weights_only=False)["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert (whole / "losses.csv").read_text() == (cut / "losses.csv").read_text()


def _rank_pids(parent: int) -> dict[int, int]:
    """{LOCAL_RANK: pid} of the worker processes below `parent` (read from /proc)."""
    out, todo = {}, [parent]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").exists() else []
            todo += [int(k) for k in kids]
        try:
            env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
        except OSError:
            continue
        if "LOCAL_RANK" in env and pid != parent:
            out[int(env["LOCAL_RANK"])] = pid
    return out


def test_a_rank_that_dies_ends_the_job_with_its_error(synth_clips, tmp_path):
    """A node or rank that dies (kill -9 of rank 1, mid-training) must end the whole job with that rank's
    failure, not leave rank 0 waiting in an all-reduce."""
    out = tmp_path / "crash"
    p = subprocess.Popen(_train_cmd(synth_clips, out, ranks=2, batch=1, steps=10_000), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "losses.csv").exists():
            time.sleep(0.5)
        time.sleep(2)  # a few steps in
        ranks = _rank_pids(p.pid)
        assert 1 in ranks, (ranks, p.poll())
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.time()
        _, err = p.communicate(timeout=120)
        assert p.returncode != 0 and time.time() - t0 < 120
        assert "local_rank: 1" in err or "local_rank : 1" in err or "Signal 9" in err, err[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
