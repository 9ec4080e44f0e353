"""The shared helpers every stage writes and records with: `keyed.atomic_write` (the one way a file
others may read is written), `keyed.split_place` (a key without where it ran) and `provenance` (the
code's git commit, random weights, the one flat record of a stored result)."""
from __future__ import annotations

import subprocess

import pytest

from conftest import REPO
from zoomstudy.provenance import flatten, git_commit, is_random_weights, stored
from zoomstudy.keyed import DATASET_PLACE, MODEL_PLACE, atomic_write, split_place


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


def test_split_place_keeps_where_out_of_what():
    model = {"architecture": "torchvision:resnet50", "weights_id": "w", "device": "cuda:0", "weights_source": "/c"}
    what, where = split_place(model, MODEL_PLACE)
    assert what == {"architecture": "torchvision:resnet50", "weights_id": "w"}
    assert where == {"device": "cuda:0", "weights_source": "/c"} and "device" in model  # the record is not changed
    assert split_place({"name": "d", "location": "/x", "csv": "/x/l.csv"}, DATASET_PLACE) == (
        {"name": "d"}, {"location": "/x", "csv": "/x/l.csv"})


def test_flatten_joins_the_key_and_where_it_ran():
    settings = {
        "key": {"zoomstudy": "0.1.0",
                "model": {"architecture": "torchvision:resnet50", "weights_id": "random-ab", "label_space": {"name": "imagenet-a"},
                          "versions": {"torch": "2"}},
                "dataset": {"name": "imagenet-hard", "kind": "hf", "rows": 300, "hub_rows": 10980, "fingerprint": "f",
                            "labels_fingerprint": "l", "revision": "main", "resolved_revision": "32bfa94"}},
        "provenance": {"model": {"device": "cpu"}, "dataset": {"location": "taesiri/imagenet-hard"}},
        "key_hash": "abc", "git_commit": "deadbeef",
    }
    assert stored(settings, "model")["device"] == "cpu" and stored(settings, "dataset")["name"] == "imagenet-hard"
    flat = flatten(settings, checkpoint="ckpt.pt")
    assert flat == {
        "architecture": "torchvision:resnet50", "weights_id": "random-ab", "checkpoint": "ckpt.pt",
        "label_space": "imagenet-a", "device": "cpu", "dataset": "imagenet-hard", "dataset_kind": "hf",
        "dataset_location": "taesiri/imagenet-hard", "dataset_revision": "32bfa94", "dataset_rows": 10980,
        "dataset_fingerprint": "f", "labels_fingerprint": "l", "key_hash": "abc", "zoomstudy": "0.1.0",
        "git_commit": "deadbeef", "versions": {"torch": "2"},
    }
    assert is_random_weights(flat)
