"""torchrun / DDP helpers: one process per GPU, rank 0 alone logs and saves.

Launched plainly (no WORLD_SIZE in the environment) everything runs in one process. Under torchrun the
environment gives RANK, LOCAL_RANK and WORLD_SIZE; NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from g4g.utils import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def init(device: str | None = None) -> Dist:
    """Initialise the process group when launched by torchrun; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # TF32 (10-bit mantissa) for the fp32 matmuls and convolutions that autocast leaves in fp32: the
        # Linear layers (projection heads, InfoNCE similarities, AdaIN and AdaAT heads) and any conv run
        # outside bf16. It is finer than the bf16 of everything else. Not for the AdaAT sampling grid,
        # which is built elementwise in true fp32 (g4g.models.adaat.sampling_grid) and is never a matmul.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when `flag` is true on any (so all ranks stop at the same step)."""
    if d.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def stop_agreed(requested: bool, d: Dist, step: int, every: int) -> bool:
    """Whether every rank stops after `step` because one of them was asked to (a preemption signal). One
    process answers at once; ranks agree every `every` steps only (the all-reduce and its host read are a
    device sync), so a signal is acted on within `every` steps: keep SLURM's --signal lead above that."""
    if d.world == 1:
        return requested
    return step % every == 0 and any_rank(requested, d)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def wrap(module: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DDP around a module with trainable parameters when world > 1."""
    if d.world == 1 or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    # buffers are not broadcast from rank 0 at every forward: the InfoNCE queues are updated on every
    # rank with the same gathered keys (g4g.models.contrastive), so they stay equal without it (DDP still
    # copies rank 0's buffers to every rank once, when it wraps the module)
    return DDP(module, device_ids=[d.device.index] if d.cuda else None, forward_sync_buffers=False)


def shutdown(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
