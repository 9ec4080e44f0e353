"""The one placement rule (models/placement.py): shard and device from RANK / WORLD_SIZE / LOCAL_RANK
and --device, decided the same way by every command. Run on CPU with the variables set, including
two real processes; GPUs are a number given to the function (cuda_count), never needed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from zoomstudy.models.placement import env_shard, placement

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}


def test_torchrun_rank_gets_its_own_gpu_and_shard():
    p = placement(env=TORCHRUN, cuda_count=2)
    assert p.device == torch.device("cuda:1") and p.shard == (1, 2)
    assert p.describe() == "rank 1 of 2 (local 1) on cuda:1, shard 1/2"
    # "cuda" without an index means this process's GPU, not GPU 0
    assert placement("cuda", env=TORCHRUN, cuda_count=2).device == torch.device("cuda:1")
    # two machines of 4 processes, 4 GPUs each: global rank 6 is local rank 2
    p = placement(env={"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2"}, cuda_count=4)
    assert p.device == torch.device("cuda:2") and p.shard == (6, 8)
    # more processes than GPUs on a machine share them round-robin; RANK alone (SLURM-like) too
    assert placement(env={"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3"}, cuda_count=2).device.index == 1
    assert placement(env={"RANK": "3", "WORLD_SIZE": "4"}, cuda_count=2).device.index == 1


def test_explicit_choices_win():
    assert placement("cuda:0", env=TORCHRUN, cuda_count=2).device == torch.device("cuda:0")
    p = placement("cpu", (0, 4), env=TORCHRUN, cuda_count=2)
    assert p.device == torch.device("cpu") and p.shard == (0, 4)
    alone = placement(env={}, cuda_count=0)
    assert alone.device == torch.device("cpu") and alone.shard is None and alone.world_size == 1
    assert placement(env={}, cuda_count=1).device == torch.device("cuda:0")


def test_bad_placements_are_one_line_errors():
    with pytest.raises(ValueError, match="CUDA is not available"):
        placement("cuda", env={}, cuda_count=0)
    with pytest.raises(ValueError, match="only 2 GPU"):
        placement("cuda:5", env={}, cuda_count=2)
    with pytest.raises(ValueError, match="inconsistent"):
        placement(env={"RANK": "2", "WORLD_SIZE": "2"}, cuda_count=2)
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        env_shard({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="bad device"):
        placement("gpu", env={}, cuda_count=0)


_CHILD = """
import json, sys
from zoomstudy.models.placement import placement
from zoomstudy.models.loading import resolve_device
from zoomstudy.sweep.engine import parse_shard
p = placement(cuda_count=2)
print(json.dumps({"device": str(p.device), "shard": p.shard, "parse_shard": parse_shard(None),
                  "resolve_device_cpu": str(resolve_device("cpu"))}))
"""


def test_two_processes_place_rank_i_on_cuda_i():
    """Two processes started as torchrun starts them (its environment variables): each decides alone,
    rank i -> cuda:i and shard i/2, and the sweep's parse_shard agrees with the placement."""
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True))
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [o["device"] for o in outs] == ["cuda:0", "cuda:1"]
    assert [o["shard"] for o in outs] == [[0, 2], [1, 2]] == [o["parse_shard"] for o in outs]
    assert all(o["resolve_device_cpu"] == "cpu" for o in outs)


def test_cli_commands_use_the_placement(monkeypatch, tmp_path):
    """`zoomstudy sweep` under a 2-process launch: rank 1 sweeps shard 1/2 (on this CPU machine, its
    device is the CPU); the run record names the shard the placement chose."""
    from zoomstudy import cli
    from zoomstudy.sweep.store import find_results

    for k, v in TORCHRUN.items():
        monkeypatch.setenv(k, v)
    rc = cli.main(["sweep", "--model", "torchvision:squeezenet1_0", "--no-pretrained", "--dataset", "synthetic:4",
                   "--scales", "64,96", "--crop", "64", "--results-dir", str(tmp_path), "--workers", "0",
                   "--device", "cpu", "--no-tta", "--quiet"])
    assert rc == 0
    (rs,) = find_results(tmp_path)
    assert sorted(rs.images()["image_id"]) == ["synthetic/000001", "synthetic/000003"]  # positions 1 and 3
    # a device that this machine cannot give is refused in one line, exit 2, before anything loads
    if not torch.cuda.is_available():
        assert cli.main(["sweep", "--model", "torchvision:squeezenet1_0", "--dataset", "synthetic:4",
                         "--device", "cuda", "--results-dir", str(tmp_path)]) == 2
