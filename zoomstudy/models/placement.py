"""Where this process runs: its shard of the data and its device, decided once, for every command.

Under `torchrun --nproc_per_node N` each process is told RANK (its place among all processes),
WORLD_SIZE (how many there are) and LOCAL_RANK (its place on this machine). Two things follow, and
both must follow from the same variables, or eight processes all land on GPU 0 (the bug this module
removes: the sweep took its shard from RANK but its device from a bare "cuda"):

* the shard: (RANK, WORLD_SIZE) when WORLD_SIZE > 1 and no explicit shard is given;
* the device: cuda:LOCAL_RANK (modulo the visible GPUs) when CUDA is asked for or available and the
  device names no index; an explicit "cuda:3" or "cpu" is kept as given.

This follows torchvision's references/classification/utils.py `init_distributed_mode` (RANK /
WORLD_SIZE / LOCAL_RANK, then `torch.cuda.set_device(gpu)`), without initialising a process group:
the sweep's shards never talk to each other, they write disjoint parts of one result set.
`torch.cuda.set_device` is called for the chosen GPU, so that libraries which allocate on "the
current device" (cuDNN workspaces, open_clip, `torch.cuda.synchronize()`) use this process's GPU too.

It lives with the models (the lowest stage that knows devices), so that `resolve_device`, the
sweep's `parse_shard`, the CLI commands and the notebooks all call it, and none decides alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch


@dataclass(frozen=True)
class Placement:
    """This process's share and device. shard: (index, count), or None for the whole dataset."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    shard: tuple[int, int] | None

    def describe(self) -> str:
        """One line for logs: 'rank 1 of 2 (local 1) on cuda:1, shard 1/2'."""
        shard = "all images" if self.shard is None else f"shard {self.shard[0]}/{self.shard[1]}"
        return f"rank {self.rank} of {self.world_size} (local {self.local_rank}) on {self.device}, {shard}"


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or str(value).strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer (set by torchrun), got {value!r}") from None


def env_shard(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) under a multi-process launch (WORLD_SIZE > 1), else None; checks only the
    variables (no device is touched, so argument validation can call it before anything loads)."""
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent (need 0 <= RANK < WORLD_SIZE)")
    return (rank, world) if world > 1 else None


def placement(device: str | torch.device | None = None, shard: tuple[int, int] | None = None, *,
              env: Mapping[str, str] | None = None, cuda_count: int | None = None,
              set_device: bool = True) -> Placement:
    """Decide this process's shard and device from RANK, WORLD_SIZE, LOCAL_RANK and `device`.

    device: None (CUDA when available, else CPU), "cuda" (this process's GPU), "cuda:K" (kept), "cpu".
    shard: an explicit (i, n) wins over the torchrun rank. env: the environment (default os.environ).
    cuda_count: the number of visible GPUs (default torch's; given in tests to decide without GPUs:
    then CUDA counts as available when cuda_count > 0 and set_device is skipped unless real GPUs are
    there). Raises ValueError (one line) for a device that cannot be had or inconsistent variables.
    """
    env = os.environ if env is None else env
    rank, world = env_shard(env) or (_env_int(env, "RANK", 0), 1)
    # SLURM-style launches set only RANK: the rank on this machine is then the rank modulo the GPUs
    local = _env_int(env, "LOCAL_RANK", -1)
    real_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    count = real_count if cuda_count is None else int(cuda_count)
    if local < 0:
        local = rank % count if count else 0
    if device is None:
        dev = torch.device("cuda" if count else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"bad device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not count:
            raise ValueError(f"device {str(device or 'cuda')!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local % count)
        elif dev.index >= count:
            raise ValueError(f"device {dev} requested but only {count} GPU(s) are visible")
        if set_device and real_count and dev.index < real_count:
            torch.cuda.set_device(dev)
    if shard is None:
        shard = env_shard(env)
    return Placement(rank=rank, world_size=world, local_rank=local, device=dev, shard=shard)
