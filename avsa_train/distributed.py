"""DDP plumbing for ``torchrun``: process group set-up (gloo on CPU, nccl on GPU), model wrapping, reductions.

Under ``torchrun`` the environment carries ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without it everything
runs in one process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> DistInfo:
    """Initialise the default process group when launched by ``torchrun`` with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local)


def device_for(name: str, info_local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA device is available")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', info_local_rank))}"
        torch.cuda.set_device(torch.device(name))
    return torch.device(name)


def wrap(model: nn.Module, info: DistInfo, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel`` when distributed (gradients are averaged over ranks), else the model.

    ``find_unused_parameters``: some parameters get no gradient in a step (AVC leaves the prediction heads
    unused).
    """
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def gather(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def local_world_size() -> int:
    """Processes of this job on this node (``LOCAL_WORLD_SIZE`` under torchrun, else 1)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_over_ranks(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks (for logging)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def any_of(flags: list[bool], info: DistInfo, device: torch.device) -> list[bool]:
    """Each flag true on any rank (one small all-reduce), so that every rank takes the same branch (a stop
    signal, a checkpoint due): a collective must be entered by all ranks or none."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def cleanup(info: DistInfo, ok: bool = True) -> None:
    """Tear the process group down. ``ok``: every rank got here normally, so wait for all of them first (a
    rank that closes its Gloo connections while a peer is still using them makes that peer abort)."""
    if info.enabled and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()
