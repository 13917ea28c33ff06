"""Training preempted under SLURM (issue 11 item 4): SIGUSR1 before the time limit, scancel, a dead node; each
resubmitted job resumes, and the weights equal an uninterrupted run's. Its own module, so that pytest-xdist runs
it beside the other SLURM tests: it mostly waits on the scheduler."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import ROOT, SLURM_PROFILE, SLURM_SITE, TOOL_ENV, copy_run, slurm_jobs, snakemake

pytestmark = pytest.mark.slow


def _wait_for(what, timeout: float = 300, proc: subprocess.Popen | None = None):
    """Poll `what()` until it returns something true; fail after `timeout` s or if `proc` ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (got := what()):
            return got
        assert proc is None or proc.poll() is None, "snakemake ended early"
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what.__doc__}")


def test_preempted_training_resumes_through_slurm(slurm, tiny_dag, tmp_path):
    """Issue 11 item 4, as SLURM does it: the train job (2 GPUs in the profile, so torchrun DDP on 2 CPU
    ranks) gets SIGUSR1 (scancel --signal=USR1, what --signal=USR1@N sends before the time limit): the
    ranks save a checkpoint at the step they agree on, the job fails, Snakemake resubmits it (retries) and
    the new job resumes from that step. The second job is cancelled (scancel: SIGTERM): the same. The third
    is killed without warning (SIGKILL to every process of its step, a dead node): the fourth resumes from
    the last periodic checkpoint. Weights and loss history equal those
    of an uninterrupted run. SLURM signals every process of the step: Snakemake and torchrun must let the
    signal through (g4g.train.launch.let_preemption_reach_training) instead of dying of it."""
    # what the training reads (prepared clips, the sync expert) comes from the shared tiny run; the training
    # itself is longer here, so that three interruptions fit in it
    wd = copy_run(tiny_dag, tmp_path / "slurm")
    target = "results/models/demo/full/model.pt"
    shutil.rmtree(wd / "results/models/demo/full")
    (wd / "logs/demo/train/full.log").unlink()
    params = yaml.safe_load((wd / "params.yaml").read_text())
    params["datasets"]["demo"]["overrides"]["train"].update(
        stages=[{"mode": "frame", "scale": 64, "steps": 60, "batch": 2, "gan": False}], checkpoint_every=5)
    # half the demo's channels: a quarter of its step's work (the ranks' training was the suite's largest
    # CPU item after the in-process tests, 240 CPU-s); what is proven does not depend on the width
    params["datasets"]["demo"]["overrides"]["model"]["width"] = 0.125
    (wd / "params.yaml").write_text(yaml.safe_dump(params))
    local = copy_run(wd, tmp_path / "local")
    env = {**TOOL_ENV, **slurm, **SLURM_SITE, "G4G_SLURM_GPUS": "2"}
    train_log = wd / "logs" / "demo" / "train" / "full.log"

    def step_reached(n: int, job: str):
        def reached():
            """the running train job past step n"""
            running = slurm_jobs(env, wd, "running")
            text = train_log.read_text() if train_log.exists() else ""
            steps = [int(m) for m in re.findall(r" step (\d+) lr=", text)]
            return running and running[-1][0] != job and steps and steps[-1] >= n and running[-1][0]
        return reached

    p = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                          "--workflow-profile", str(SLURM_PROFILE), target],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=wd)
    try:
        first = _wait_for(step_reached(10, ""), proc=p)
        subprocess.run(["scancel", "--signal=USR1", first], check=True, env=env)
        second = _wait_for(step_reached(25, first), proc=p)
        subprocess.run(["scancel", second], check=True, env=env)  # SIGTERM, then SIGKILL after KillWait
        third = _wait_for(step_reached(40, second), proc=p)
        step = subprocess.run(["scontrol", "listpids", third], capture_output=True, text=True, env=env)
        pids = [int(ln.split()[0]) for ln in step.stdout.splitlines()[1:] if ln.split()[2] == "0"]
        assert len(pids) >= 4, step.stdout  # Snakemake, torchrun, 2 ranks
        for pid in pids:  # every process of the job step dies at once, as on a node that fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out[-4000:]
    jobs = slurm_jobs(env, wd)
    assert [j for j, _ in jobs[:3]] == [first, second, third], jobs
    assert [s for _, s in jobs] == ["FAILED", "CANCELLED", "FAILED", "COMPLETED"], jobs
    logs = {j: (wd / ".snakemake" / "slurm_logs" / "rule_train" / "demo_full" / f"{j}.log").read_text()
            for j in (first, second, third)}  # the plugin keeps the logs of jobs that did not complete
    resume = r"resuming g4g-full from \S+ \(step (\d+)\)"
    saved = {}
    for job, sig in ((first, "SIGUSR1"), (second, "SIGTERM")):
        # both ranks saved at the step they agreed on, and the job step's Snakemake outlived the signal
        # (it reports the training's exit status; without the fix srun reports "task 0: User defined signal 1")
        assert logs[job].count(f"received {sig}") >= 2, logs[job][-3000:]  # torchrun forwards SIGTERM too
        saved[sig] = int(re.findall(r"ckpt-(\d+)\.pt", logs[job])[-1])
        assert "User defined signal" not in logs[job] and "Error in rule train" in logs[job], logs[job][-3000:]
    # each job resumed where the one before saved; the last (job 3 died without a word) from job 3's last
    # periodic checkpoint, a multiple of 5 (its log is the rule's log: Snakemake empties that before each
    # attempt)
    assert {int(m) for m in re.findall(resume, logs[second])} == {saved["SIGUSR1"]}, logs[second][-3000:]
    assert {int(m) for m in re.findall(resume, logs[third])} == {saved["SIGTERM"]}, logs[third][-3000:]
    resumed = [int(m) for m in re.findall(resume, train_log.read_text())]
    assert len(resumed) == 1 and resumed[0] > saved["SIGTERM"] and resumed[0] % 5 == 0, resumed
    r = snakemake(local, "--cores", "2", target, "--set-resources", "train:gpu=2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a = torch.load(local / target, weights_only=False)["generator"]
    b = torch.load(wd / target, weights_only=False)["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    losses = "results/models/demo/full/losses.csv"
    assert (local / losses).read_text() == (wd / losses).read_text()
    print(f"\nsaved at steps {saved}; after kill -9 resumed at step {resumed[0]}; SLURM jobs {jobs}")
