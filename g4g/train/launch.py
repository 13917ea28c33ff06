"""How a training rule starts its job: `g4g`, or `torchrun` over the job's GPUs (DDP, one rank per GPU).

Used by the workflow (workflow/rules/train.smk) when it builds a job's command line; kept free of torch so
that reading the Snakefile stays fast. Training is single-node: `torchrun --standalone` runs its own
rendezvous on the job's node, and one node's 8 GPUs carry HDTF and LRS2 at the paper's batch of 3 clips
(docs/decisions.md, "Multi-node").
"""

from __future__ import annotations

import os
import signal


def gpu_count(resources) -> int:
    """The job's GPUs: `gpu`, or N of a `gres` "gpu:N" / "gpu:model:N" (the SLURM profile uses gres)."""
    gpus = int(resources.get("gpu", 0) or 0)
    gres = [g.split(":") for g in str(resources.get("gres", "") or "").split(",") if g.strip().startswith("gpu")]
    if not gpus and gres and gres[0][-1].isdigit():
        gpus = int(gres[0][-1])
    return gpus


def launcher(resources) -> str:
    """The command that precedes the subcommand and its options: `g4g`, or with several GPUs
    `torchrun --standalone --nproc_per_node N -m g4g --`. The `--` ends torchrun's own options: its parser
    would otherwise take the job's `--log` for an abbreviation of its --log-dir / --logs-specs
    ("ambiguous option") and stop every multi-GPU job before it starts."""
    gpus = gpu_count(resources)
    return f"torchrun --standalone --nproc_per_node {gpus} -m g4g --" if gpus > 1 else "g4g"


def let_preemption_reach_training() -> None:
    """Inside a SLURM job, ignore SIGUSR1 in this process (the job's Snakemake) and, by inheritance, in the
    shell and the torchrun it starts; the training ranks install their own handler (checkpoint.Preemption).

    SLURM's `--signal=USR1@N` signals every process of the job step, not only the training. Snakemake and
    torchrun have no handler for SIGUSR1 and die of it; the step then ends while the ranks are still writing
    their preemption checkpoint, and a cluster that tracks steps by cgroup kills them mid-write."""
    if os.environ.get("SLURM_JOB_ID"):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
