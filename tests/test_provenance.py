"""The shared helpers every stage writes and records with: `keyed.atomic_write` (the one way a file
others may read is written) and `provenance` (the code's git commit, random weights)."""
from __future__ import annotations

import subprocess

import pytest

from conftest import REPO
from zoomstudy.provenance import git_commit, is_random_weights
from zoomstudy.keyed import atomic_write


def test_atomic_write_text_bytes_and_writer(tmp_path):
    target = tmp_path / "out.json"
    assert atomic_write(target, '{"a": 1}') == target and target.read_text() == '{"a": 1}'
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    seen = []

    def writer(tmp):
        seen.append(tmp)
        tmp.write_text("from a writer")

    atomic_write(target, writer, fsync=True)
    assert target.read_text() == "from a writer"
    assert seen[0].parent == tmp_path and seen[0].name.endswith(".tmp") and not seen[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_failure_keeps_the_old_file_and_no_leftovers(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_git_commit_of_this_checkout(tmp_path):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert git_commit(REPO) == head.stdout.strip()
    assert git_commit() == head.stdout.strip()  # default: the checkout holding the package
    assert git_commit(REPO, dirty=True).removesuffix("-dirty") == head.stdout.strip()
    assert git_commit(tmp_path) is None  # not a checkout
    assert git_commit(tmp_path, REPO) == head.stdout.strip()  # the first checkout among the folders


def test_is_random_weights():
    def settings(weights_id):
        return {"key": {"model": {"weights_id": weights_id}}}

    assert is_random_weights(settings("random")) and is_random_weights(settings("random-3f2a"))
    assert not is_random_weights(settings("IMAGENET1K_V1")) and not is_random_weights(settings(None))
    assert is_random_weights({"weights_id": "random-3f2a", "architecture": "torchvision:resnet50"})  # a model record
