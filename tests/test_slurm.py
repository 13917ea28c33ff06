"""The cluster path, run for real: the SLURM profile and a local SLURM (tools/slurm-local); torchrun DDP
without SLURM is tests/test_ddp.py.

The SLURM tests start a single-node SLURM with the project's own script (root installs slurm-wlm and munge
with apt-get when absent) and skip, with the reason, where it cannot start.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, TOOL_ENV, copy_run, differing_outputs, dvc_outputs, snakemake, tiny_pipeline

pytestmark = pytest.mark.slow
SLURM_LOCAL = ROOT / "tools" / "slurm-local"
PROFILE = ROOT / "profiles" / "slurm"
# what this machine must change in profiles/slurm (README "On a SLURM cluster"): it has no accounting
# daemon (squeue, not sacct), 2 CPUs and 24 GiB; the test polls often to stay short
SITE = {"G4G_SLURM_STATUS": "squeue", "G4G_SLURM_GPU_CPUS": "2", "G4G_SLURM_GPU_MEM_MB": "8000",
        "G4G_SLURM_CPU_MEM_MB": "2000", "G4G_SLURM_POLL_S": "2"}


def fake_slurm_bin(tmp: Path, accounting: str = "accounting_storage/slurmdbd") -> Path:
    """A folder with stand-ins for `sbatch`, `scontrol` (whose config names `accounting`) and `sinfo` (three
    partitions of large nodes), so the profile can be rendered the same way on a machine with or without
    SLURM."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    (tmp / "scontrol").write_text(f"#!/bin/sh\necho 'AccountingStorageType   = {accounting}'\n")
    (tmp / "sinfo").write_text("#!/bin/sh\nprintf 'cpu 512000 64\\ngpu 1024000 128\\na100 1024000 128\\n'\n")
    for f in ("sbatch", "scontrol", "sinfo"):
        (tmp / f).chmod(0o755)
    return tmp


def render_profile(env: dict | None = None) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (YTE), under the given environment variables."""
    import yte

    old = dict(os.environ)
    try:
        os.environ.update(env or {})
        with open(PROFILE / "config.yaml") as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(old)


# ----------------------------------------------------------------------------------------------------
# The profile and the training launcher, without SLURM
# ----------------------------------------------------------------------------------------------------


def test_profile_names_only_rules_that_exist(tmp_path):
    r = snakemake(ROOT, "--list-rules")
    assert r.returncode == 0, r.stderr[-2000:]
    rules = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    path = f"{fake_slurm_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}"
    named = set(render_profile({"PATH": path})["set-resources"])
    assert named and named <= rules, f"profiles/slurm sets resources for unknown rules: {named - rules}"
    gpu = {r for r in rules if r.startswith("train")}  # every training rule gets a GPU job
    assert gpu == {"train_sync", "train", "train_seed"} and gpu <= named


def test_profile_takes_site_settings_from_the_environment(tmp_path):
    path = f"{fake_slurm_bin(tmp_path / 'acct')}{os.pathsep}{os.environ['PATH']}"
    default = render_profile({"PATH": path})
    assert default["default-resources"]["slurm_partition"] == "cpu"
    assert "slurm_account" not in default["default-resources"]
    assert default["slurm-status-command"] == "sacct" and default["set-resources"]["train"]["gres"] == "gpu:1"
    site = render_profile({"PATH": path, "G4G_SLURM_GPU_PARTITION": "a100", "G4G_SLURM_ACCOUNT": "lab42",
                           "G4G_SLURM_GPUS": "4", "G4G_SLURM_STATUS": "squeue", "G4G_SLURM_GPU_MEM_MB": "100000"})
    train = site["set-resources"]["train"]
    assert train["slurm_partition"] == "a100" and train["gres"] == "gpu:4" and train["mem_mb"] == 100000
    assert site["set-resources"]["train_sync"]["mem_mb"] == 50000
    assert site["set-resources"]["train_seed"] == train  # a seed replicate is a training job like train
    assert site["default-resources"]["slurm_account"] == "lab42" and site["slurm-status-command"] == "squeue"
    # a cluster without accounting: sacct would know no job and Snakemake would wait forever (issue 11)
    bare = f"{fake_slurm_bin(tmp_path / 'none', 'accounting_storage/none')}{os.pathsep}{os.environ['PATH']}"
    assert render_profile({"PATH": bare})["slurm-status-command"] == "squeue"


def test_multi_gpu_training_command_survives_torchrun_parser():
    """Issue 11: with 2 GPUs the train rule ran `torchrun ... -m g4g train ... --log ...`, and torchrun's
    own parser stopped at `--log` ("ambiguous option: --log could match --log-dir, ..."). Parse the
    command the rules build (g4g.train.launch, as train.smk joins it) as torchrun does."""
    from torch.distributed.run import get_args_parser

    from g4g.train.launch import gpu_count, launcher

    assert launcher({"gpu": 1}) == "g4g" and launcher({"gpu": 0, "gres": "gpu:1"}) == "g4g"
    assert gpu_count({"gpu": 0, "gres": "gpu:a100:4"}) == 4 and gpu_count({"gres": "gpu:2,tmpdisk:10"}) == 2
    for resources in ({"gpu": 2}, {"gpu": 0, "gres": "gpu:2"}):
        job = ("train --dataset demo --variant full --clips results/demo/clips.parquet --out m.pt --rule train "
               "--threads 2 --log logs/demo/train/full.log")
        argv = shlex.split(f"{launcher(resources)} {job}")
        args = get_args_parser().parse_args(argv[1:])  # exits (SystemExit 2) on an ambiguous option
        assert args.module and args.training_script == "g4g" and args.nproc_per_node == "2"
        assert args.training_script_args == shlex.split(job)
    with pytest.raises(SystemExit):  # what the rule built before: torchrun's parser refuses it
        get_args_parser().parse_args(shlex.split(f"--standalone --nproc_per_node 2 -m g4g {job}"))


def test_gpu_check_wheels_are_pinned_and_it_needs_cuda(tmp_path):
    """tools/gpu-check (issue 11 item 6): every distribution it carries as a wheel is pinned in
    requirements.lock (so the CUDA machine runs the versions CI tests), and without CUDA it stops with one
    line instead of reporting CPU figures as GPU ones."""
    script = 'eval "$(sed -n "/^DISTS=/,/)$/p" tools/gpu-check)"; printf "%s\\n" "${DISTS[@]}"'
    names = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT).stdout.split()
    assert len(names) > 20, names

    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    lock = {norm(ln.split("==")[0]) for ln in (ROOT / "requirements.lock").read_text().splitlines() if "==" in ln}
    assert {norm(n) for n in names} <= lock, sorted({norm(n) for n in names} - lock)
    if torch.cuda.is_available():
        return
    r = subprocess.run([str(ROOT / "tools" / "gpu-check"), "run", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == (
        "gpu-check: no CUDA device: torch.cuda.is_available() is False"), r.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------
# A real SLURM: the demo DAG through profiles/slurm
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm():
    """A running local SLURM (tools/slurm-local up); stopped afterwards when this fixture started it."""
    status = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True, text=True)
    started = status.returncode != 0
    if started:
        up = subprocess.run([str(SLURM_LOCAL), "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            pytest.skip(f"no local SLURM: tools/slurm-local up failed: {up.stderr.strip()[-500:]}")
    conf = subprocess.run([str(SLURM_LOCAL), "env"], capture_output=True, text=True).stdout.split("=", 1)[1]
    yield {"SLURM_CONF": conf.strip()}
    if started:
        subprocess.run([str(SLURM_LOCAL), "down"], capture_output=True, text=True)


def test_demo_dag_through_the_slurm_profile(slurm, tiny_dag, tmp_path):
    """Issue 11 items 1-3: the demo DAG from raw clips to table1 with --workflow-profile profiles/slurm and
    only the site variables; every rule but the Snakefile's localrules is an sbatch job (SLURM's own job list
    says so), and every output
    DVC tracks is the same bytes as the plain local run of the same configuration (tiny_dag). torchrun DDP
    inside SLURM jobs is test_preempted_training_resumes_through_slurm's (2 ranks there)."""
    wd = tiny_pipeline(tmp_path)
    env = {**slurm, **SITE, "G4G_SLURM_GPUS": "1"}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                        "--workflow-profile", str(PROFILE),  # what `all` asks for, without its local job
                        "results/table1.csv", "results/demo/contact_sheet.png", "results/demo/fingerprints.csv"],
                       capture_output=True, text=True, env={**TOOL_ENV, **env}, cwd=wd, timeout=1140)
    t_slurm = time.time() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    submitted = [ln for ln in log.splitlines() if "has been submitted with SLURM jobid" in ln]
    n_jobs = int(next(ln for ln in log.splitlines() if ln.startswith("total")).split()[1])
    local = re.findall(r"^localrule (\w+):", log, re.MULTILINE)  # the Snakefile's localrules
    assert sorted(local) == ["contact_sheet", "prepare", "tables"], local
    # SLURM's own record: every other job ran in the workflow's folder (squeue keeps finished jobs MinJobAge s)
    ours = _slurm_jobs({**TOOL_ENV, **env}, wd)
    assert len(submitted) == n_jobs - len(local) == len(ours) and all(state == "COMPLETED" for _, state in ours), (
        len(submitted), n_jobs, ours)
    # two runs in two clean folders publish the same bytes (issue 8): checkpoints included (their archive name
    # does not follow the temporary file's), and an absolute path leaking into an output would show here
    differ, compared = differing_outputs(tiny_dag, wd, dvc_outputs("demo", ["full"]))
    assert not differ and compared > 15, f"SLURM run and local run differ: {differ}"
    prints = [subprocess.run([sys.executable, "-m", "g4g", "fingerprints"], cwd=d, capture_output=True, text=True,
                             timeout=120).stdout for d in (tiny_dag, wd)]
    assert prints[0] == prints[1] and len(prints[0].splitlines()) == 1 + 8, prints
    print(f"\nthe demo DAG through SLURM: {n_jobs} jobs in {t_slurm:.0f} s")


def _slurm_jobs(env: dict, wd: Path, state: str = "all") -> list[tuple[str, str]]:
    """(job id, state) of the SLURM jobs that run in `wd`, oldest first."""
    q = subprocess.run(["squeue", f"--states={state}", "-h", "-o", "%i %T %Z"], capture_output=True, text=True,
                       env=env)
    return sorted(((j, s) for j, s, d in (ln.split() for ln in q.stdout.splitlines()) if d == str(wd)),
                  key=lambda js: int(js[0]))


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
    (wd / "params.yaml").write_text(yaml.safe_dump(params))
    local = copy_run(wd, tmp_path / "local")
    env = {**TOOL_ENV, **slurm, **SITE, "G4G_SLURM_GPUS": "2"}
    train_log = wd / "logs" / "demo" / "train" / "full.log"

    def step_reached(n: int, job: str):
        def reached():
            """the running train job past step n"""
            running = _slurm_jobs(env, wd, "running")
            text = train_log.read_text() if train_log.exists() else ""
            steps = [int(m) for m in re.findall(r" step (\d+) lr=", text)]
            return running and running[-1][0] != job and steps and steps[-1] >= n and running[-1][0]
        return reached

    p = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                          "--workflow-profile", str(PROFILE), target],
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
    jobs = _slurm_jobs(env, wd)
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


def test_profile_refuses_what_the_cluster_cannot_give(slurm, tmp_path):
    """A partition the cluster lacks, or more memory or CPUs than its nodes have: one line naming the
    setting and the rules it is for, before anything is submitted (sbatch's refusal came back buried in the
    plugin's report of the first job)."""
    (tmp_path / "wd").mkdir()
    wd = tiny_pipeline(tmp_path / "wd")
    for var, value, words in (("G4G_SLURM_GPU_PARTITION", "a100", ["partition 'a100'", "its partitions: cpu, gpu",
                                                                  "train_sync, train and train_seed"]),
                              ("G4G_SLURM_CPU_MEM_MB", "99999999", ["asks for more MB of memory", "partition 'cpu'",
                                                                    "every rule but"]),
                              ("G4G_SLURM_GPU_CPUS", "4096", ["asks for more CPUs", "partition 'gpu'"])):
        env = {**os.environ, **slurm, **SITE, var: value,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                            "--workflow-profile", str(PROFILE), "results/demo/manifest.parquet"],
                           capture_output=True, text=True, env=env, cwd=wd, timeout=300)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode != 0 and var in last and all(w in last for w in words), r.stderr[-2000:]
    assert not _slurm_jobs(env, wd)


def test_profile_without_slurm_says_so(tmp_path):
    """On a machine without SLURM the profile stops with one clear line, not the plugin's traceback."""
    (tmp_path / "wd").mkdir()
    wd = tiny_pipeline(tmp_path / "wd")
    tools = tmp_path / "bin"  # the few tools Snakemake needs, and no SLURM command
    tools.mkdir()
    for name in ("which", "bash", "sh", "env"):
        (tools / name).symlink_to(subprocess.run(["which", name], capture_output=True, text=True).stdout.strip())
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{Path(sys.executable).parent}"}
    env.pop("SLURM_CONF", None)
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                        "--workflow-profile", str(PROFILE), "results/demo/manifest.parquet"],
                       capture_output=True, text=True, env=env, cwd=wd, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "SLURM is not installed here (no sbatch on PATH)" in r.stderr.splitlines()[-1]
    assert "tools/slurm-local up" in r.stderr.splitlines()[-1]
