"""The cluster path: the SLURM profile rendered and checked, with stand-ins and with a local SLURM
(tools/slurm-local); the demo DAG through it is tests/test_slurm_dag.py, preempted training
tests/test_slurm_preemption.py, torchrun DDP without SLURM tests/test_ddp.py.

The SLURM tests start a single-node SLURM with the project's own script (conftest.py `slurm`: root installs
slurm-wlm and munge with apt-get when absent) and skip, with the reason, where it cannot start.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SLURM_PROFILE, SLURM_SITE, TOOL_ENV, slurm_jobs, snakemake, tiny_pipeline

pytestmark = pytest.mark.slow


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
        with open(SLURM_PROFILE / "config.yaml") as f:
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
                       cwd=ROOT, timeout=120, env=TOOL_ENV)  # its python3 is the venv's, as under `make`
    assert r.returncode == 1 and r.stderr.strip() == (
        "gpu-check: no CUDA device: torch.cuda.is_available() is False"), r.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------
# A real SLURM (conftest.py `slurm`); the demo DAG and the preempted training through it are
# tests/test_slurm_dag.py and tests/test_slurm_preemption.py (their own modules: xdist runs them side by side)
# ----------------------------------------------------------------------------------------------------


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
        env = {**os.environ, **slurm, **SLURM_SITE, var: value,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                            "--workflow-profile", str(SLURM_PROFILE), "results/demo/manifest.parquet"],
                           capture_output=True, text=True, env=env, cwd=wd, timeout=300)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode != 0 and var in last and all(w in last for w in words), r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) <= 2, r.stderr[-2000:]  # no usage text before it
    assert not slurm_jobs(env, wd)


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
                        "--workflow-profile", str(SLURM_PROFILE), "results/demo/manifest.parquet"],
                       capture_output=True, text=True, env=env, cwd=wd, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "SLURM is not installed here (no sbatch on PATH)" in r.stderr.splitlines()[-1]
    # and nothing else but Snakemake's own "Using workflow specific profile" line: no 120 lines of usage text
    # before it (issue 23 item 8)
    assert len(r.stderr.strip().splitlines()) <= 2 and "usage:" not in r.stderr, r.stderr[-3000:]
    assert "tools/slurm-local up" in r.stderr.splitlines()[-1]
