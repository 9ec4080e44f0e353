"""The store's guarantees, one test each (issue 20): no duplicate possible (one layout per result set,
positions checked at each commit, folder walks without loops, `merge --repair`); every part verified
by its manifest (a truncated or rewritten file of any table is named and recomputed; `merge --verify`);
damaged settings.json named; and the messages of the store's failures.

A tiny random model (one convolution, 8 channels) and tiny images keep each sweep at a fraction of
a second; interleavings use the `_before_commit` hook, as tests/test_faults.py does.
"""
from __future__ import annotations

import collections
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from factories import assert_same_results
from zoomstudy import cli
from zoomstudy.data import CsvSource, SyntheticSource
from zoomstudy.data.folders import ImageFolderSource
from zoomstudy.sweep import store
from zoomstudy.sweep.engine import sweep_to_store
from zoomstudy.sweep.store import IncompleteResults, LayoutMismatch, ResultSet, ShardBusy
from zoomstudy.views import ViewGrid

GRID = ViewGrid(scales=(24, 40), grid=2, crop=24)  # 8 views per image (+10 TTA crops)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, 1000)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="session")
def tiny_model():
    from zoomstudy.data.labels import get_label_space
    from zoomstudy.models.loading import LoadedModel

    return LoadedModel(module=_Tiny().eval(), name="tiny", source="test", weights_id="tiny-seed0",
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=(3, 24, 24),
                       interpolation="bicubic", crop_pct=0.875, label_space=get_label_space("imagenet1k"),
                       device=torch.device("cpu"), architecture="test:tiny")


def src(n=6):
    return SyntheticSource(n, size=((30, 50), (30, 50)), seed=3)


def run(model, out, n=6, **kw):
    kw.setdefault("chunk_images", 2)
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    return sweep_to_store(model, src(n), GRID, out, **kw)


@pytest.fixture(scope="session")
def reference(tiny_model, tmp_path_factory):
    """The uninterrupted, unsharded run."""
    return run(tiny_model, tmp_path_factory.mktemp("reference"))


def one_line(e) -> str:
    msg = str(e.value if hasattr(e, "value") else e)
    assert "\n" not in msg and msg.strip(), msg
    return msg


# ================================================================================================
# 1. duplicates made impossible
# ================================================================================================
@pytest.mark.parametrize("first,second", [(None, (0, 2)), ((0, 2), None), ((1, 2), (0, 3))])
def test_a_sweep_of_another_layout_is_refused_in_one_line(tiny_model, tmp_path, first, second):
    """The measured failure: an unsharded run and a --shard 0/2 run computed 6 images twice."""
    rs = run(tiny_model, tmp_path, shard=first)
    before = sorted(os.listdir(rs.path / "parts"))
    with pytest.raises(LayoutMismatch) as e:
        run(tiny_model, tmp_path, shard=second)
    msg = one_line(e)
    assert "layout.json" in msg and "--results-dir" in msg and ("without --shard" in msg or "--shard 0/" in msg)
    assert sorted(os.listdir(rs.path / "parts")) == before  # nothing written


def test_a_concurrent_sweep_of_another_layout_is_refused_while_the_first_runs(tiny_model, reference, tmp_path, hook):
    refused = []

    def other_layout(rs, part):
        with pytest.raises(LayoutMismatch) as e:
            run(tiny_model, tmp_path, shard=(0, 2))
        refused.append(one_line(e))

    hook(other_layout)
    rs = run(tiny_model, tmp_path)
    assert refused
    store.merge(rs, 1)
    assert_same_results(ResultSet(rs.path), reference)


def _copy_part(src_rs: ResultSet, part: str, dst_rs: ResultSet, new_name: str, *, manifest=True) -> None:
    for f in sorted((src_rs.path / "parts").iterdir()):
        if f.name.startswith(part + ".") and (manifest or "manifest" not in f.name):
            shutil.copyfile(f, dst_rs.path / "parts" / (new_name + f.name[len(part):]))
    if manifest:
        mf = dst_rs.path / "parts" / f"{new_name}.manifest.json"
        m = json.loads(mf.read_text())
        m["part"] = new_name
        mf.write_text(json.dumps(m))


def test_a_commit_leaves_out_positions_committed_meanwhile(tiny_model, reference, tmp_path, hook):
    """Whatever lets another process commit the same positions (a lock on another mount, a copy by
    hand), the writer checks under the commit lock and never commits a position twice."""
    seen = {}

    def commit_same_positions(rs, part):
        first = reference.complete_parts()[0]  # positions 0, 1: those of the part being written now
        _copy_part(reference, first, rs, "part-000099-0000beef")
        seen["part"] = part

    hook(commit_same_positions)
    # the writer's part 0 holds positions 0, 1, which part-000099 committed meanwhile
    rs = run(tiny_model, tmp_path)
    rs = ResultSet(rs.path)
    assert sorted(rs.images()["position"]) == list(range(6))
    assert not rs._file(seen["part"], "images").exists()  # nothing left to commit: no part at all
    store.merge(rs, 1)
    assert_same_results(rs, reference)


def _legacy_mixed(model, reference, tmp_path) -> ResultSet:
    """A store of the old version: an unsharded run and shard 0/2 both computed images 0, 2, 4."""
    sharded = run(model, tmp_path / "sharded", shard=(0, 2))
    mixed = ResultSet(tmp_path / "mixed" / reference.path.name)
    shutil.copytree(reference.path, mixed.path)
    for part in sharded.complete_parts():
        _copy_part(sharded, part, mixed, part, manifest=False)
    for f in list((mixed.path / "parts").glob("*.manifest.json")) + [mixed.path / "layout.json"]:
        f.unlink()
    return ResultSet(mixed.path)


def test_an_old_store_with_two_layouts_is_refused_then_repaired(tiny_model, reference, tmp_path, capsys):
    mixed = _legacy_mixed(tiny_model, reference, tmp_path)
    assert len(mixed.images()) == 9  # 6 images, 3 of them twice
    with pytest.raises(LayoutMismatch, match="--repair"):
        run(tiny_model, tmp_path / "mixed")
    assert cli.main(["merge", str(mixed.path), "--shards", "1"]) == 2
    err = capsys.readouterr().err
    assert "stored twice" in err and "--repair" in err
    assert cli.main(["merge", str(mixed.path), "--shards", "1", "--repair"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    removed = [line for line in err if "duplicate" in line]
    # deterministic: the first part by name keeps a position (part-* before shard0of2-*)
    assert [line.split("removed ")[1].split(" ")[0] for line in removed] == ["2", "1"], err
    assert all("from part shard0of2-" in line and "kept in part-" in line for line in removed), err
    assert any("fixed the layout: unsharded" in line for line in err)
    rs = ResultSet(mixed.path)
    assert_same_results(rs, reference)
    assert store.repair(rs, 1) == []  # repaired once: nothing left to do
    run(tiny_model, tmp_path / "mixed")  # the layout now lets the unsharded sweep resume (nothing to do)
    assert_same_results(ResultSet(mixed.path), reference)


def test_repair_splits_a_part_that_holds_duplicates_and_new_images(tiny_model, reference, tmp_path):
    """A later part holding one duplicate and one image of its own keeps its own image (moved to a new
    part), loses the duplicate; a kill between the two steps is repaired the same way next time."""
    rs = ResultSet(tmp_path / reference.path.name)
    shutil.copytree(reference.path, rs.path)
    parts = rs.complete_parts()
    _copy_part(rs, parts[0], rs, "part-000050-0000cafe")  # positions 0, 1 again
    (rs.path / "parts" / f"{parts[0]}.manifest.json").unlink()  # and part 0 loses its manifest (adopted)
    rs = ResultSet(rs.path)
    # make the later copy hold 0, 1 while the first part keeps only what its tables say: same positions
    lines = store.repair(rs, 1)
    assert len(lines) == 1 and "part-000050-0000cafe" in lines[0] and "positions [0, 1]" in lines[0]
    assert_same_results(ResultSet(rs.path), reference)


def test_a_folder_with_a_link_loop_lists_each_image_once(tmp_path):
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "sub").mkdir(parents=True)
    for i, d in enumerate(["cat", "dog", "dog/sub"]):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(root / d / f"{i}.jpg")
    os.symlink(".", root / "cat" / "again")  # the measured loop: one image stored 41 times
    os.symlink("../cat", root / "dog" / "cats")  # another class's folder, linked in
    os.symlink("0.jpg", root / "cat" / "same.jpg")  # one file under two names
    s = ImageFolderSource(root)
    ids = [r.image_id for r in s._records]
    assert ids == ["cat/0.jpg", "dog/1.jpg", "dog/sub/2.jpg"], ids


def test_an_empty_csv_folder_names_its_path_once(tmp_path, monkeypatch):
    (tmp_path / "ds" / "empty").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        CsvSource("ds/empty")
    assert "ds/empty/labels.csv" in str(e.value) and "ds/empty/ds/empty" not in str(e.value)


# ================================================================================================
# 2. every part verified
# ================================================================================================
def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("table", ["views", "groups", "errors", "images", "manifest"])
def test_a_truncated_file_of_any_table_is_named_and_recomputed(tiny_model, reference, tmp_path, table):
    """The measured failures: groups cut to half passed merge (Table 4 then raised ArrowInvalid);
    errors cut to half made every command fail with 'Parquet magic bytes not found'."""
    rs = run(tiny_model, tmp_path)
    part = rs.complete_parts()[1]
    f = rs._manifest_file(part) if table == "manifest" else rs._file(part, table)
    _truncate(f)
    rs = ResultSet(rs.path)
    with pytest.raises(IncompleteResults) as e:
        rs.predictions()
    msg = one_line(e)
    assert f.name in msg and part in msg and "rerun the sweep without --shard" in msg and "e.g. []" not in msg
    with pytest.raises(IncompleteResults):
        store.merge(rs, 1)
    assert cli.main(["merge", str(rs.path), "--shards", "1"]) == 2
    run(tiny_model, tmp_path)  # the next run deletes the damaged part and computes its images again
    rs = ResultSet(rs.path)
    store.merge(rs, 1, verify=True)
    assert_same_results(rs, reference)


def test_merge_verify_finds_a_same_size_change_and_the_next_run_recomputes_it(tiny_model, reference, tmp_path, capsys):
    rs = run(tiny_model, tmp_path)
    part = rs.complete_parts()[2]
    f = rs._file(part, "groups")
    data = bytearray(f.read_bytes())
    data[len(data) // 3] ^= 0x01  # same size: the cheap check cannot see it
    f.write_bytes(bytes(data))
    assert cli.main(["merge", str(rs.path), "--shards", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["merge", str(rs.path), "--shards", "1", "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and part in err[0] and f.name in err[0] and "sha256" in err[0], err
    assert [b.name for b in ResultSet(rs.path).broken_parts()] == [part]  # marked damaged
    run(tiny_model, tmp_path)
    rs = ResultSet(rs.path)
    store.merge(rs, 1, verify=True)
    assert_same_results(rs, reference)


def test_a_store_without_manifests_is_checked_by_footers_once_and_gets_them(tiny_model, reference, tmp_path):
    rs = run(tiny_model, tmp_path)
    for mf in (rs.path / "parts").glob("*.manifest.json"):
        mf.unlink()
    (rs.path / "layout.json").unlink()
    first = sorted(os.listdir(rs.path / "parts"))[0].split(".")[0]
    _truncate(rs._file(first, "errors"))  # and one part of it damaged since
    rs = ResultSet(rs.path)
    broken = rs.broken_parts()
    assert len(broken) == 1 and "errors file is unreadable" in broken[0].problem
    assert len(list((rs.path / "parts").glob("*.manifest.json"))) == 2  # the whole ones were adopted
    run(tiny_model, tmp_path)
    rs = ResultSet(rs.path)
    assert len(list((rs.path / "parts").glob("*.manifest.json"))) == 3
    store.merge(rs, 1, verify=True)
    assert_same_results(rs, reference)


def test_a_damaged_settings_json_is_named_and_rebuilt_by_the_next_run(tiny_model, reference, tmp_path, capsys):
    rs = run(tiny_model, tmp_path)
    (rs.path / "settings.json").write_text("garbage{")
    assert cli.main(["summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(rs.path / "settings.json") in err[0] and "rerun the sweep" in err[0], err
    assert cli.main(["merge", str(rs.path), "--shards", "1"]) == 2
    assert "settings.json" in capsys.readouterr().err
    run(tiny_model, tmp_path)  # its key hashes to the folder's name: rewritten, nothing recomputed
    rs = ResultSet(rs.path)
    assert rs.settings["key_hash"] == rs.path.name
    assert_same_results(rs, reference)


def test_a_damaged_layout_json_says_how_to_restore_it(tiny_model, tmp_path):
    rs = run(tiny_model, tmp_path, n=2)
    (rs.path / "layout.json").write_text("[")
    with pytest.raises(ValueError) as e:
        run(tiny_model, tmp_path, n=2)
    assert "layout.json" in one_line(e) and '{"shards": null}' in str(e.value)


# ================================================================================================
# 4. messages
# ================================================================================================
def test_a_store_whose_every_image_failed_says_so_in_summary(tiny_model, tmp_path, capsys):
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(2):
        (root / f"{i}.jpg").write_bytes(b"not a jpeg at all")
    (root / "labels.csv").write_text("file,label\n0.jpg,1\n1.jpg,2\n")
    sweep_to_store(tiny_model, CsvSource(root), GRID, tmp_path / "results", workers=0, progress=False)
    assert cli.main(["summary", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "every image (2) failed to decode" in err[0] and "errors.parquet" in err[0], err


def test_random_bytes_as_a_checkpoint_are_named_as_such(tmp_path):
    from zoomstudy.models.loading import read_state_dict

    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(ValueError) as e:
        read_state_dict(noise)
    msg = one_line(e)
    assert "neither a zip archive nor a pickle" in msg and "allowlist" not in msg and "global" not in msg


# ================================================================================================
# the property: kills, truncations, changes and concurrent layouts, at random
# ================================================================================================
# Whatever happens to a sweep (killed at any write, before, after or half-way through it; any file of
# any part truncated or changed; a sweep of another layout started in the middle), the next run leaves
# a result set identical to the uninterrupted run, and every refusal on the way is one line naming the
# file or layout that caused it. Never a traceback, never silent wrong numbers. Cases come from a
# seeded generator (reproducible; ZOOMSTUDY_PROPERTY_CASES and ZOOMSTUDY_PROPERTY_SEED widen or move
# the search); the tally (cases, kills, truncations, changes, concurrent layouts, outcomes) is printed
# at the end (`pytest -s`) and asserted to cover every kind.

N_CASES = int(os.environ.get("ZOOMSTUDY_PROPERTY_CASES", "14"))
SEED = int(os.environ.get("ZOOMSTUDY_PROPERTY_SEED", "20"))
LAYOUTS = (None, 2, 3)
_REAL_ATOMIC_WRITE = store.atomic_write
FILES = ("views", "groups", "errors", "images", "manifest")


class _Killed(BaseException):
    """A simulated kill -9: nothing after it runs (no `except Exception` catches it)."""


def _shards(layout):
    return [None] if layout is None else [(i, layout) for i in range(layout)]


def _kill_at(monkeypatch, k: int, mode: str, counting: dict):
    """Make the k-th atomic write of the store die: before it, after it, or torn (half its temporary
    file on disk, named as atomic_write names it, then killed)."""
    real = store.atomic_write

    def atomic_write(path, data, *, fsync=False):
        if not counting["on"]:
            return real(path, data, fsync=fsync)
        counting["n"] += 1
        if counting["n"] != k:
            return real(path, data, fsync=fsync)
        counting["fired"] = f"{mode} {Path(path).name}"
        if mode == "before":
            raise _Killed
        if mode == "torn":
            path = Path(path)
            tmp = path.with_name(f"{path.name}.{os.getpid()}-deadbeef.tmp")
            if isinstance(data, str):
                tmp.write_text(data)
            elif isinstance(data, bytes):
                tmp.write_bytes(data)
            else:
                data(tmp)
            blob = tmp.read_bytes()
            tmp.write_bytes(blob[: len(blob) // 2])
            raise _Killed
        out = real(path, data, fsync=fsync)
        raise _Killed
        return out

    monkeypatch.setattr(store, "atomic_write", atomic_write)


def _check_refusal(fn, names) -> str:
    """fn() must raise a one-line ValueError naming one of `names`; returns the message."""
    with pytest.raises(ValueError) as e:
        fn()
    msg = one_line(e)
    assert any(n in msg for n in names), (names, msg)
    return msg


def test_any_kill_truncation_or_layout_ends_identical_or_refused_in_one_line(tiny_model, reference, tmp_path,
                                                                             monkeypatch, hook):
    rng = random.Random(SEED)
    tally = collections.Counter()
    for case in range(N_CASES):
        out = tmp_path / f"case{case}"
        layout = rng.choice(LAYOUTS)
        chunk = rng.choice((1, 2, 3))
        fault = rng.choice(("kill", "kill", "truncate", "truncate", "change"))
        concurrent = rng.random() < 0.4
        tally["cases"] += 1
        tally[f"layout {layout or 'none'}"] += 1
        shards = _shards(layout)
        victim = rng.randrange(len(shards))

        if concurrent:  # another sweep starts while the victim shard is between tables and commit
            other = rng.choice([x for x in LAYOUTS] + ["same-shard"])

            def start_other(rs, part, other=other):
                counting["on"] = False
                try:
                    if other == "same-shard":
                        with pytest.raises(ShardBusy):
                            run(tiny_model, out, shard=shards[victim], chunk_images=chunk)
                        tally["concurrent: same shard refused (busy)"] += 1
                    elif other != layout:
                        msg = _check_refusal(lambda: run(tiny_model, out, shard=_shards(other)[0], chunk_images=chunk),
                                             ["layout.json"])
                        assert isinstance(msg, str)
                        tally["concurrent: other layout refused, naming layout.json"] += 1
                    else:
                        tally["concurrent: same layout (runs alongside)"] += 1
                        for s in _shards(layout):
                            if s != shards[victim]:
                                run(tiny_model, out, shard=s, chunk_images=chunk)
                finally:
                    counting["on"] = True

            hook(start_other)

        counting = {"on": True, "n": 0, "fired": None}
        if fault == "kill":
            k, mode = rng.randint(1, 14), rng.choice(("before", "after", "torn"))
            _kill_at(monkeypatch, k, mode, counting)
            try:
                for s in shards[: victim + 1]:
                    run(tiny_model, out, shard=s, chunk_images=chunk)
            except _Killed:
                tally["kills"] += 1
                tally[f"kill {mode}"] += 1
            else:
                tally["kill points past the end (no kill)"] += 1
            monkeypatch.setattr(store, "atomic_write", _REAL_ATOMIC_WRITE)
        else:
            for s in shards:
                run(tiny_model, out, shard=s, chunk_images=chunk)
            rs = ResultSet(next(out.iterdir()))
            part = rng.choice(rs.complete_parts())
            table = rng.choice(FILES)
            f = rs._manifest_file(part) if table == "manifest" else rs._file(part, table)
            data = bytearray(f.read_bytes())
            if fault == "truncate":
                f.write_bytes(bytes(data[: rng.randrange(len(data))]))
                tally["truncations"] += 1
                tally[f"truncated {table}"] += 1
                # reading refuses, naming the file: never a raw pyarrow message, never silent numbers
                _check_refusal(lambda: ResultSet(rs.path).predictions(), [f.name])
                tally["refused in one line naming the file (read)"] += 1
            else:  # same size, other content: the cheap check cannot see it; --verify does
                if table == "manifest":
                    m = json.loads(data)
                    m["tables"]["groups"]["sha256"] = "0" * 64
                    text = json.dumps(m).encode()
                    data = bytearray(text if len(text) == len(data) else data)
                    f.write_bytes(bytes(data))
                else:
                    i = rng.randrange(len(data))
                    data[i] ^= 0x40
                    f.write_bytes(bytes(data))
                tally["changes (same size)"] += 1
                try:
                    store.merge(ResultSet(rs.path), layout or 1, verify=True)
                    tally["change verified harmless (the manifest's own bytes)"] += 1
                except ValueError as e:
                    msg = one_line(e)
                    assert part in msg, msg
                    tally["refused in one line naming the file (verify)"] += 1
        hook(lambda rs, part: None, times=0)  # the concurrent start runs once, in the faulty run only

        # the next run: every shard of the layout, as a user would rerun them
        for s in shards:
            run(tiny_model, out, shard=s, chunk_images=chunk)
        rs = ResultSet(next(p for p in out.iterdir() if (p / "settings.json").exists()))
        store.merge(rs, layout or 1, verify=True)
        assert_same_results(rs, reference)
        assert not [n for n in os.listdir(rs.path / "parts") if n.endswith(".tmp")]
        assert all(i.status == "complete" for i in rs.scan().values())
        tally["identical to the uninterrupted run after the next run"] += 1

    report = json.dumps(dict(sorted(tally.items())), indent=1)
    print(f"\nstore property (seed {SEED}): {report}")
    assert tally["identical to the uninterrupted run after the next run"] == N_CASES
    if N_CASES >= 12:
        assert tally["kills"] and tally["truncations"] and any(k.startswith("concurrent") for k in tally)


# ================================================================================================
# 5. compaction: a finished set in a few large parts
# ================================================================================================
def _files(rs: ResultSet) -> list[str]:
    return sorted(os.listdir(rs.path / "parts"))


def test_compact_rewrites_small_parts_as_large_ones_that_read_the_same(tiny_model, reference, tmp_path, capsys):
    rs = run(tiny_model, tmp_path, n=6, chunk_images=1)  # six parts of one image
    assert len(rs.complete_parts()) == 6
    assert cli.main(["merge", str(rs.path), "--shards", "1", "--compact"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compacted 6 parts (6 images)" in err[0], err
    rs = ResultSet(rs.path)
    assert len(rs.complete_parts()) == 1 and len(_files(rs)) == 5  # four tables and the manifest
    manifest = json.loads(rs._manifest_file(rs.complete_parts()[0]).read_text())
    assert len(manifest["replaces"]) == 6
    assert_same_results(rs, reference)
    store.merge(rs, 1, verify=True)
    assert rs.compact() == []  # one part already: nothing to do
    run(tiny_model, tmp_path, n=6, chunk_images=1)  # a resume finds every image done
    assert len(ResultSet(rs.path).complete_parts()) == 1
    assert_same_results(ResultSet(rs.path), reference)


def test_compact_keeps_the_layout_and_batches_by_images_per_part(tiny_model, reference, tmp_path):
    for i in range(2):
        rs = run(tiny_model, tmp_path, n=6, chunk_images=1, shard=(i, 2))
    lines = rs.compact(images_per_part=2)
    # each shard (3 images in 3 parts) separately: 2 + 1 images, the part of 1 stays as it was
    assert len(lines) == 2 and all("compacted 2 parts (2 images)" in line for line in lines), lines
    rs = ResultSet(rs.path)
    assert sorted(p.split("-")[0] for p in rs.complete_parts()) == ["shard0of2"] * 2 + ["shard1of2"] * 2
    store.merge(rs, 2, verify=True)
    assert_same_results(rs, reference)
    run(tiny_model, tmp_path, n=6, chunk_images=1, shard=(1, 2))  # still the set's layout: resumes, nothing to do
    with pytest.raises(LayoutMismatch):
        run(tiny_model, tmp_path, n=6, chunk_images=1)


def test_a_compaction_killed_before_it_deletes_the_old_parts_reads_the_same_and_is_finished_later(
        tiny_model, reference, tmp_path, monkeypatch):
    rs = run(tiny_model, tmp_path, n=6, chunk_images=2)
    old = rs.complete_parts()

    def killed(self, info):
        raise KeyboardInterrupt  # a kill right after the compacted part's commit

    monkeypatch.setattr(ResultSet, "_delete", killed)
    with pytest.raises(KeyboardInterrupt):
        rs.compact()
    monkeypatch.undo()
    rs = ResultSet(rs.path)
    assert set(old) <= {f.split(".")[0] for f in _files(rs)}  # the old parts are still on disk ...
    assert len(rs.complete_parts()) == 1 and not set(old) & set(rs.complete_parts())  # ... and superseded
    assert_same_results(rs, reference)
    store.merge(rs, 1, verify=True)
    run(tiny_model, tmp_path, n=6, chunk_images=2)  # the next run deletes them
    rs = ResultSet(rs.path)
    assert {f.split(".")[0] for f in _files(rs)} == set(rs.complete_parts())
    assert_same_results(rs, reference)


def test_compact_refuses_while_a_sweep_holds_a_shard(tiny_model, tmp_path):
    rs = run(tiny_model, tmp_path, n=6, chunk_images=2)
    with rs.shard_lock("part"):
        with pytest.raises(ShardBusy):
            ResultSet(rs.path).compact()
    assert len(ResultSet(rs.path).complete_parts()) == 3


def test_the_store_scale_benchmark_runs_and_compacts(tmp_path):
    """benchmarks/store_scale.py (the 50k-image figures of the README) on 40 images: it builds the set
    with the engine's part writer, measures summary, compacts a copy and measures it again."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "store_scale.py"
    r = subprocess.run([sys.executable, str(bench), "--images", "40", "--dir", str(tmp_path / "s"), "--steps", "summary",
                        "--compact"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(bench.parents[1])})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert sum(line.strip().startswith("summary") for line in lines) == 2, r.stdout
    assert any(line.strip().startswith("compact") for line in lines), r.stdout
    assert "failed" not in r.stdout and "rc " not in r.stdout, r.stdout
    assert any(line.startswith("compacted: 5 files") for line in lines), r.stdout  # 2 parts of 32 -> 1 part
