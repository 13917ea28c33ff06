"""The demo DAG through profiles/slurm on a local SLURM (conftest.py `slurm`), compared byte for byte with the
plain local run of the same configuration (issue 11 items 1-3). Its own module, so that pytest-xdist runs it
beside the other SLURM tests: it mostly waits on the scheduler."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from conftest import (
    ROOT,
    SLURM_PROFILE,
    SLURM_SITE,
    TOOL_ENV,
    differing_outputs,
    dvc_outputs,
    slurm_jobs,
    tiny_dag_run,
    tiny_pipeline,
)

pytestmark = pytest.mark.slow


def test_demo_dag_through_the_slurm_profile(slurm, tmp_path_factory, tmp_path):
    """The demo DAG from raw clips to table1 with --workflow-profile profiles/slurm and only the site
    variables; every rule but the Snakefile's localrules runs in an sbatch job, alone or in one of the
    profile's groups (SLURM's own job list says so), and every output DVC tracks is the same bytes as the
    plain local run of the same configuration (tiny_dag, asked for once this run is done, so that the two
    overlap). torchrun DDP inside SLURM jobs is tests/test_slurm_preemption.py's (2 ranks there)."""
    wd = tiny_pipeline(tmp_path)
    env = {**slurm, **SLURM_SITE, "G4G_SLURM_GPUS": "1"}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
                        "--workflow-profile", str(SLURM_PROFILE),  # what `all` asks for, without its local job
                        "results/table1.csv", "results/demo/contact_sheet.png", "results/demo/fingerprints.csv"],
                       capture_output=True, text=True, env={**TOOL_ENV, **env}, cwd=wd, timeout=1140)
    t_slurm = time.time() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    submitted = [ln for ln in log.splitlines() if "has been submitted with SLURM jobid" in ln]
    stats = log.split("Job stats:")[1].split("\n\n")[0]  # Snakemake's table: rule, number of jobs
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+) +(\d+)$", stats, re.MULTILINE)}
    local = re.findall(r"^localrule (\w+):", log, re.MULTILINE)  # the Snakefile's localrules
    assert sorted(local) == ["contact_sheet", "prepare", "tables"], local
    # the profile's groups: a shard's resample and mels are one sbatch job, and so are a method's infer (or
    # reference_videos) and its evaluate; the ground truth's evaluate is a group of one
    group_logs = [re.search(r"slurm_logs/(group_\w+)/", ln) for ln in submitted]
    groups = sorted(m.group(1) for m in group_logs if m)
    methods = counts["infer"] + counts["reference_videos"]  # the ground truth is scored without a video made
    assert groups == sorted(["group_shard_mels_resample"] * counts["resample"] +
                            ["group_method_evaluate_infer"] * counts["infer"] +
                            ["group_method_evaluate_reference_videos"] * counts["reference_videos"] +
                            ["group_method_evaluate"] * (counts["evaluate"] - methods)), groups
    # SLURM's own record: every other job ran in the workflow's folder
    ours = slurm_jobs({**TOOL_ENV, **env}, wd)
    n_jobs = counts["total"] - len(local) - counts["mels"] - methods  # one sbatch job per group
    assert len(submitted) == n_jobs == len(ours) and all(state == "COMPLETED" for _, state in ours), (
        len(submitted), n_jobs, ours)
    # two runs in two clean folders publish the same bytes (issue 8): checkpoints included (their archive name
    # does not follow the temporary file's), and an absolute path leaking into an output would show here
    tiny_dag = tiny_dag_run(tmp_path_factory)
    differ, compared = differing_outputs(tiny_dag, wd, dvc_outputs("demo", ["full"]))
    assert not differ and compared > 15, f"SLURM run and local run differ: {differ}"
    prints = [subprocess.run([sys.executable, "-m", "g4g", "fingerprints"], cwd=d, capture_output=True, text=True,
                             timeout=120).stdout for d in (tiny_dag, wd)]
    assert prints[0] == prints[1] and len(prints[0].splitlines()) == 1 + 9, prints
    print(f"\nthe demo DAG through SLURM: {counts['total']} Snakemake jobs in {n_jobs} sbatch jobs, {t_slurm:.0f} s")
