"""Faults a real cluster produces: shards that restart, machines that differ, files that change, streams
split across workers, memory that must fit, and parameters that are wrong.

Interleavings of processes are reproduced deterministically: a hook between writing a part's tables
and its commit (`ResultSet._before_commit`) runs the other shard's whole start-up (lock, clean, compute)
at exactly that moment, and simulated kills stop a sweep after each file of a part. Nothing relies on
timing. The CLI cases run `zoomstudy.cli.main` in-process with the model and data loaders replaced by
ones that fail if called, so each case also proves that it was rejected before anything was loaded.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from factories import assert_same_results, jpeg_bytes
from zoomstudy import cli, study
from zoomstudy.data import CsvSource, SyntheticSource
from zoomstudy.data.source import Source
from zoomstudy.sweep import engine, store
from zoomstudy.sweep.engine import sweep_to_store, sweep_settings, views_per_forward
from zoomstudy.keyed import settings_key
from zoomstudy.sweep.store import IncompleteResults, ResultSet, ShardBusy
from zoomstudy.views import ViewGrid

TINY = ViewGrid(scales=(32, 64, 96), grid=3, crop=48)
ARCH = "torchvision:squeezenet1_0"


@pytest.fixture(scope="module")
def ckpt(squeezenet_ckpt) -> Path:
    return squeezenet_ckpt


@pytest.fixture(scope="module")
def model(squeezenet):
    return squeezenet


def _src(n=6, seed=7):
    return SyntheticSource(n, size=((40, 90), (40, 90)), seed=seed)


def _run(model, source, out, **kw):
    kw.setdefault("chunk_images", 1)
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    kw.setdefault("tta", True)
    return sweep_to_store(model, source, TINY, out, **kw)


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    """The uninterrupted, unsharded run every faulty run must equal."""
    return _run(model, _src(), tmp_path_factory.mktemp("reference"))


# ================================================================================================
# shards restarting: the interleavings, deterministically
# ================================================================================================
def test_a_shard_starting_while_another_is_between_views_and_commit_loses_nothing(model, reference, tmp_path, hook):
    """The measured loss (162 of 243 rows): shard 1 starts (and cleans) while shard 0 has written a
    part's views but not yet its images file. Shard 1 must not touch shard 0's files."""
    out = tmp_path / "r"
    seen = {}

    def start_shard1(rs, part):
        seen["part"] = part
        _run(model, _src(), out, shard=(1, 2))  # the whole of shard 1: lock, clean, compute, commit
        seen["views_still_there"] = rs._file(part, "views").exists()

    calls = hook(start_shard1)
    rs = _run(model, _src(), out, shard=(0, 2))
    assert calls and seen["views_still_there"], "shard 1 deleted shard 0's uncommitted views"
    store.merge(rs, 2)  # every position once, 27 views per image
    assert len(rs.views()) == 6 * TINY.n_views  # rows lost: 0
    assert_same_results(ResultSet(rs.path), reference)


def test_a_restarted_shard_cleans_its_own_leftovers_and_nothing_else(model, reference, tmp_path, hook):
    """Shard 1 was killed (it left an uncommitted part and a temporary file); it restarts while shard 0
    is mid-part. It deletes its own leftovers, never shard 0's in-flight files."""
    out = tmp_path / "r"
    _run(model, _src(), out, shard=(0, 2), max_images=1)  # creates the result set
    parts = next(out.iterdir()) / "parts"
    stale = ["shard1of2-000007-deadbeef.views.parquet", "shard1of2-000007-deadbeef.groups.parquet.tmp"]
    for name in stale:
        (parts / name).write_bytes(b"left by a killed process")
    survivors = {}

    def restart_shard1(rs, part):
        mine = sorted(f.name for f in parts.iterdir() if f.name.startswith(part))
        # a temporary file of shard 0's next table, being written right now
        (parts / f"{part}.images.parquet.tmp").write_bytes(b"being written")
        _run(model, _src(), out, shard=(1, 2))
        survivors["shard0"] = all((parts / f).exists() for f in mine + [f"{part}.images.parquet.tmp"])
        survivors["stale"] = [f for f in stale if (parts / f).exists()]
        (parts / f"{part}.images.parquet.tmp").unlink()

    hook(restart_shard1)
    rs = _run(model, _src(), out, shard=(0, 2))
    assert survivors == {"shard0": True, "stale": []}
    store.merge(rs, 2)
    assert_same_results(ResultSet(rs.path), reference)


def test_a_second_live_process_of_the_same_shard_is_refused(model, tmp_path, hook):
    out = tmp_path / "r"
    refused = []

    def same_shard_again(rs, part):
        with pytest.raises(ShardBusy, match="another live process"):
            _run(model, _src(), out, shard=(0, 2))
        refused.append(rs._file(part, "views").exists())

    hook(same_shard_again)
    rs = _run(model, _src(), out, shard=(0, 2))
    assert refused == [True]
    assert sorted(rs.images()["position"]) == [0, 2, 4]


def test_a_part_whose_table_vanished_before_its_commit_is_not_committed(model, reference, tmp_path, hook):
    """Whoever deletes a file between the tables and the commit (an old-version cleaner, a person), the
    part is refused, its positions stay to do, and the rerun fills them."""
    out = tmp_path / "r"
    hook(lambda rs, part: rs._file(part, "views").unlink())
    with pytest.raises(IncompleteResults, match="lost its views"):
        _run(model, _src(), out)
    rs = ResultSet(next(out.iterdir()))
    assert rs.committed_parts() == [] and rs.done_positions() == set()
    _run(model, _src(), out)
    store.merge(rs, 1)
    assert_same_results(ResultSet(rs.path), reference)


class _Killed(BaseException):
    """A simulated kill -9: nothing after it runs (BaseException: no `except Exception` catches it)."""


@pytest.mark.parametrize("kill_after", range(9))
def test_killed_at_each_file_of_a_part_resumes_to_the_uninterrupted_run(model, reference, tmp_path, monkeypatch,
                                                                        kill_after):
    """Kill points: before/after each of the 4 files of a part and half-way through one (a torn .tmp);
    the sweep is resumed by a new process (new token) and must equal the uninterrupted run."""
    import pyarrow.parquet as pq

    real = pq.write_table
    writes = []

    def write_table(table, where, *a, **k):
        writes.append(str(where))
        n = len(writes)
        if n == kill_after + 1 and kill_after % 2 == 1:  # torn: half a temporary file, then killed
            real(table, where, *a, **k)
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[: len(data) // 2])
            raise _Killed
        real(table, where, *a, **k)
        if n == kill_after + 1:
            raise _Killed

    out = tmp_path / "r"
    _run(model, _src(), out, max_images=2)  # two parts committed before the faulty one
    monkeypatch.setattr(pq, "write_table", write_table)
    with pytest.raises(_Killed):
        _run(model, _src(), out)
    monkeypatch.setattr(pq, "write_table", real)
    rs = _run(model, _src(), out)
    store.merge(rs, 1)
    assert_same_results(ResultSet(rs.path), reference)
    names = os.listdir(rs.path / "parts")
    assert not any(n.endswith(".tmp") for n in names)
    assert all(i.status == "complete" for i in rs.scan().values())


def test_done_positions_count_only_complete_parts(model, tmp_path):
    rs = _run(model, _src(3), tmp_path)
    part = rs.complete_parts()[1]
    rs._file(part, "groups").unlink()
    rs = ResultSet(rs.path)
    assert rs.done_positions() == {0, 2}
    assert [b.name for b in rs.broken_parts()] == [part]


def test_missing_views_are_a_clear_error_and_rerunning_the_shard_repairs(model, reference, tmp_path, capsys):
    """The damage format-1 cleaners did (views deleted, images committed): reading names the images
    and the fix; merge (also from the CLI) refuses; rerunning the owning shard recomputes them."""
    out = tmp_path / "r"
    _run(model, _src(), out, shard=(0, 2))
    rs = _run(model, _src(), out, shard=(1, 2))
    victim = [p for p in rs.complete_parts() if p.startswith("shard1of2")][0]
    image_id = pd.read_parquet(rs._file(victim, "images"))["image_id"][0]
    rs._file(victim, "views").unlink()
    rs = ResultSet(rs.path)
    with pytest.raises(IncompleteResults) as e:
        rs.predictions()
    msg = str(e.value)
    assert image_id in msg and victim in msg and "rerun shard 1/2" in msg and "\n" not in msg
    with pytest.raises(IncompleteResults):
        store.merge(rs, 2)
    assert cli.main(["merge", str(rs.path), "--shards", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and image_id in err[0] and "rerun shard 1/2" in err[0]
    # shard 0 leaves it alone (not its own); shard 1 repairs it
    with pytest.warns(UserWarning, match="left to their own shard"):
        _run(model, _src(), out, shard=(0, 2))
    assert ResultSet(rs.path).broken_parts()
    _run(model, _src(), out, shard=(1, 2))
    rs = ResultSet(rs.path)
    store.merge(rs, 2)
    assert_same_results(rs, reference)


def test_merge_checks_views_per_image_not_only_positions(model, tmp_path):
    """A views table with the right row count but one image's views twice and another's missing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rs = _run(model, _src(2), tmp_path, chunk_images=2)
    (part,) = rs.complete_parts()
    f = rs._file(part, "views")
    v = pq.read_table(f).to_pandas()
    ids = sorted(v["image_id"].unique())
    v.loc[v["image_id"] == ids[1], "image_id"] = ids[0]
    v.loc[v["image_id"] == ids[0], "view"] = (np.arange(2 * TINY.n_views) % TINY.n_views).astype(np.int16)
    pq.write_table(pa.Table.from_pandas(v, preserve_index=False), f)
    rs = ResultSet(rs.path)
    with pytest.raises(IncompleteResults, match="views file is .* bytes, its manifest says"):
        store.merge(rs, 1)  # the manifest sees the rewrite first
    rs._manifest_file(part).unlink()  # as a store of an earlier version, without manifests
    rs = ResultSet(rs.path)
    with pytest.raises(IncompleteResults, match=f"exactly {TINY.n_views} views"):
        store.merge(rs, 1)


# ================================================================================================
# results that meet across machines, and results that must not meet
# ================================================================================================
def _dataset(root: Path, n=3) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"{i}.jpg").write_bytes(jpeg_bytes(50 + 5 * i, 40, i))
    (root / "labels.csv").write_text("file,label\n" + "".join(f"{i}.jpg,{i}\n" for i in range(n)))
    return root


def _key(model, source, render_dtype=torch.float64):
    return settings_key(sweep_settings(model, source, TINY, normalization="imagenet", render_dtype=render_dtype, tta=True))


def test_copies_of_a_dataset_at_other_paths_and_devices_share_one_key(model, tmp_path, monkeypatch):
    a = _dataset(tmp_path / "node1" / "mnt" / "data")
    b = tmp_path / "node2" / "scratch" / "data"
    shutil.copytree(a, b)  # keeps modification times, as rsync -a, cp -p and tar do
    assert _key(model, CsvSource(a)) == _key(model, CsvSource(b))
    c = tmp_path / "node3" / "data"  # a copy that does not keep them: sha256 still shares the key
    c.mkdir(parents=True)
    for f in a.iterdir():
        (c / f.name).write_bytes(f.read_bytes())
    assert _key(model, CsvSource(a, fingerprint="sha256")) == _key(model, CsvSource(c, fingerprint="sha256"))
    # another card: the device is provenance, not key; the render dtype is key
    settings = sweep_settings(model, CsvSource(a), TINY, normalization="imagenet", render_dtype=torch.float64, tta=True)
    gpu = dict(model.provenance(), device="cuda:NVIDIA H200")
    monkeypatch.setattr(type(model), "provenance", lambda self: gpu)
    on_gpu = sweep_settings(model, CsvSource(b), TINY, normalization="imagenet", render_dtype=torch.float64, tta=True)
    assert settings_key(on_gpu) == settings_key(settings)
    assert _key(model, CsvSource(b), render_dtype=torch.float32) != settings_key(settings)
    assert on_gpu["provenance"]["model"]["device"] == "cuda:NVIDIA H200"
    assert on_gpu["provenance"]["dataset"]["location"] == str(b.resolve())
    assert "location" not in json.dumps(on_gpu["key"]) and "H200" not in json.dumps(on_gpu["key"])


def test_shards_on_two_machines_write_one_result_set(model, tmp_path):
    a = _dataset(tmp_path / "m1" / "data", n=4)
    b = tmp_path / "m2" / "data"
    shutil.copytree(a, b)
    out = tmp_path / "shared-results"
    r0 = _run(model, CsvSource(a), out, shard=(0, 2))
    r1 = _run(model, CsvSource(b), out, shard=(1, 2))
    assert r0.path == r1.path
    store.merge(r1, 2)
    runs = [json.loads(f.read_text()) for f in sorted((r0.path / "runs").glob("*.json"))]
    assert sorted(r["provenance"]["dataset"]["location"] for r in runs) == sorted([str(a.resolve()), str(b.resolve())])


def test_a_same_size_different_image_changes_the_key(model, tmp_path):
    root = _dataset(tmp_path / "d")
    before = _key(model, CsvSource(root))
    size_before = _key(model, CsvSource(root, fingerprint="size"))
    old = (root / "1.jpg").read_bytes()
    new = bytearray(old)
    new[len(new) // 2] ^= 0xFF  # another image, byte for byte the same size
    st = os.stat(root / "1.jpg")
    (root / "1.jpg").write_bytes(bytes(new))
    os.utime(root / "1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old modification time
    assert len(new) == len(old) and _key(model, CsvSource(root)) != before
    assert _key(model, CsvSource(root, fingerprint="size")) == size_before  # "size" is blind to it, by design


def test_the_quick_fingerprint_sees_edits_by_time_and_by_either_end(tmp_path):
    from zoomstudy.data.fingerprint import EDGE_BYTES, quick_token

    f = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 * EDGE_BYTES, dtype=np.uint8).tobytes())
    f.write_bytes(bytes(data))
    st = os.stat(f)
    t0 = quick_token(f)
    for where in (10, len(data) - 10):  # an end changed, time put back: seen
        d = bytearray(data)
        d[where] ^= 1
        f.write_bytes(bytes(d))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert quick_token(f) != t0
    d = bytearray(data)
    d[len(data) // 2] ^= 1  # the middle changed: seen by its new modification time...
    f.write_bytes(bytes(d))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert quick_token(f) != t0
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and missed only when that time is put back
    assert quick_token(f) == t0


# ================================================================================================
# streams: each DataLoader worker decodes only its own share
# ================================================================================================
class _CountingStream(Source):
    """A streaming source (no index) whose every decode appends its ref to a log file."""

    kind = "counting"

    def __init__(self, n: int, log: Path):
        super().__init__("counting")
        self.n, self.log = n, log
        self._inner = SyntheticSource(n, size=(48, 40), seed=3)

    def _stream(self):
        for rec in self._inner._records:
            yield rec

    def _total_rows(self):
        return self.n

    def _read(self, ref):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {ref[0]}\n")
        return self._inner._read(ref)

    def _provenance(self):
        return {"location": None, "revision": None, "fingerprint": str(self.n), "fingerprint_method": "n"}


@pytest.mark.parametrize("shard", [None, (1, 2)])
def test_stream_workers_decode_only_their_own_share(model, tmp_path, shard):
    log = tmp_path / "decodes.log"
    n = 6
    rs = _run(model, _CountingStream(n, log), tmp_path / "r", workers=2, shard=shard, tta=False)
    lines = [line.split() for line in log.read_text().splitlines()]
    decoded = sorted(int(i) for _, i in lines)
    mine = [p for p in range(n) if shard is None or p % shard[1] == shard[0]]
    assert decoded == mine  # each image decoded once, in one worker
    assert len({pid for pid, _ in lines}) == 2  # by two workers
    assert sorted(rs.images()["position"]) == mine
    # resume: nothing to do, nothing decoded; max_images stops the stream early
    log.write_text("")
    _run(model, _CountingStream(n, log), tmp_path / "r", workers=2, shard=shard, tta=False)
    assert log.read_text() == ""


def test_max_images_stops_a_stream_without_decoding_the_rest(model, tmp_path):
    log = tmp_path / "decodes.log"
    _run(model, _CountingStream(8, log), tmp_path / "r", workers=0, max_images=3, tta=False)
    assert sorted(int(line.split()[1]) for line in log.read_text().splitlines()) == [0, 1, 2]


# ================================================================================================
# memory: the budget sets the forward chunk; results do not depend on it
# ================================================================================================
def test_the_host_memory_budget_bounds_the_forward_chunk(model):
    paper = ViewGrid.paper()
    small = views_per_forward(model, paper, 512, 256)
    default = views_per_forward(model, paper, 512, 2048)
    assert 1 <= small < default <= 512
    per_view = 3 * 224 * 224 * 5 + engine.activation_bytes(model, 224)
    assert default * per_view <= 0.6 * 2048 * 2**20  # planned: within the budget
    assert views_per_forward(model, paper, 8, 2048) == 8  # batch_size stays an upper bound
    plan = engine._ChunkPlan.make(model, paper, 512, 2048)
    big = 3 * 4000 * 3000 * 9  # a 12-Mpx image and its float64 copy, alive while it is rendered
    assert 1 <= plan.for_image(big) < plan.chunk and (plan.for_image(big) * plan.per_view + big) <= plan.usable


def test_results_do_not_depend_on_the_memory_budget(model, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(engine._ChunkPlan, "make", classmethod(lambda cls, *a: cls(5)))  # chunks split images and scales
    rs = _run(model, _src(), tmp_path, chunk_images=2, max_images=3)
    ids, top1, conf = rs.predictions()
    ids_r, top1_r, conf_r = reference.predictions()
    assert ids == ids_r[:3] and np.array_equal(top1, top1_r[:3])
    np.testing.assert_allclose(conf, conf_r[:3], rtol=1e-5, atol=1e-7)


def test_views_waiting_as_uint8_equal_render_views(model):
    from zoomstudy.views import pil_to_tensor, render_views

    img = pil_to_tensor(_src(1)[0].image)
    got = []

    class Sink:
        def add_image(self, item):
            return 0

        def fit(self, image_bytes):
            assert image_bytes == img.numel() * 9  # uint8 + float64

        def add_views(self, slot, first, views):
            assert views.dtype == torch.uint8
            got.append((first, views))

    item = engine._Item(0, "x", img, (1,), None, {})
    engine._render_into(Sink(), item, TINY, torch.device("cpu"), torch.float64, tta=False)
    stacked = torch.cat([v for _, v in sorted(got, key=lambda t: t[0])])
    assert torch.equal(stacked.to(torch.float64), render_views(img, TINY, dtype=torch.float64))


# ================================================================================================
# parameters: one line on stderr, exit 2, before anything is loaded
# ================================================================================================
@pytest.fixture
def no_loading(monkeypatch):
    """Model and data loaders that fail the test if called; returns a switch to allow the data."""
    def refuse(what):
        def f(*a, **k):
            raise AssertionError(f"{what} was loaded before the bad parameter was reported")
        return f

    monkeypatch.setattr(study, "open_model", refuse("a model"))
    monkeypatch.setattr(study, "open_data", refuse("the data"))
    monkeypatch.setattr("zoomstudy.models.loading.load_model", refuse("a model"))

    def allow_data():
        monkeypatch.setattr(study, "open_data", _real_open_data)

    return allow_data


_real_open_data = study.open_data


@pytest.fixture(scope="module")
def _inputs(tmp_path_factory):
    """A small CSV dataset, a file, a registry-shaped folder and bad checkpoints: built once, only read."""
    tmp_path = tmp_path_factory.mktemp("inputs")
    data = _dataset(tmp_path / "data")
    bad_label = _dataset(tmp_path / "bad_label")
    (bad_label / "labels.csv").write_text("file,label\n0.jpg,1\n1.jpg,5000\n2.jpg,3\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    pickle_ckpt = tmp_path / "pickle.pt"  # a pickle of something else than tensors
    pickle_ckpt.write_bytes(pickle.dumps({"model": Path("weights"), "epoch": 3}))
    import torchvision

    ten_classes = tmp_path / "resnet18_10_classes.pt"  # the right architecture with another head
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), ten_classes)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    val = tmp_path / "val"  # an 'imagenet-val' copy with 3 images instead of 50,000
    (val / "n01440764").mkdir(parents=True)
    for i in range(3):
        (val / "n01440764" / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(jpeg_bytes(40, 40, i))
    return {"data": data, "bad_label": bad_label, "file": a_file, "pickle": pickle_ckpt, "noise": noise, "val": val,
            "ten_classes": ten_classes}


@pytest.fixture
def files(_inputs, tmp_path):
    """The shared inputs, and this test's own folder ("tmp") for what it writes."""
    return {**_inputs, "tmp": tmp_path}


#: (id, extra arguments, words the message must hold, what may be loaded: None / "data" / "model")
SWEEP_CASES = [
    ("shard-5-of-4", ["--shard", "5/4"], "5/4", None),
    ("shard-0-of-0", ["--shard", "0/0"], "0/0", None),
    ("shard-garbage", ["--shard", "one/two"], "i/n", None),
    ("batch-size-0", ["--batch-size", "0"], "--batch-size", None),
    ("workers-minus-1", ["--workers", "-1"], "--workers", None),
    ("max-images-0", ["--max-images", "0"], "--max-images", None),
    ("max-images-minus-1", ["--max-images", "-1"], "--max-images", None),
    ("scales-empty", ["--scales", ""], "--scales", None),
    ("scales-garbage", ["--scales", "1,x"], "--scales", None),
    ("max-host-mb-tiny", ["--max-host-mb", "10"], "--max-host-mb", None),
    ("results-dir-is-a-file", ["--results-dir", "{file}"], "is a file", None),
    ("results-dir-under-a-file", ["--results-dir", "{file}/sub"], "is a file", None),
    ("unknown-dataset", ["--dataset", "imagenet-vall"], "unknown dataset", None),
    ("csv-missing-folder", ["--dataset", "csv:{tmp}/nowhere"], "does not exist", None),
    ("folder-missing-folder", ["--dataset", "folder:{tmp}/nowhere"], "does not exist", None),
    ("root-missing", ["--dataset", "imagenet-val", "--root", "{tmp}/nowhere"], "does not exist", None),
    ("fingerprint-on-synthetic", ["--dataset", "synthetic:3", "--fingerprint", "sha256"], "--fingerprint", None),
    ("unknown-model", ["--model", "no-such-model"], "unknown model", None),
    ("unknown-label-space", ["--label-space", "imagenet-z"], "imagenet-z", None),
    ("checkpoint-missing", ["--checkpoint", "{tmp}/nowhere.pt"], "not a file", None),
    ("cuda-without-cuda", ["--device", "cuda:7"], "cuda", None),
    ("row-count-mismatch", ["--dataset", "imagenet-val", "--root", "{val}"], "expected 50000", "data"),
    ("label-outside-label-space", ["--dataset", "csv:{bad_label}"], "labels.csv:3", "data"),
    ("checkpoint-is-a-pickle", ["--checkpoint", "{pickle}"], "not a weights file", "model"),
    ("checkpoint-is-random-bytes", ["--checkpoint", "{noise}"], "not a weights file", "model"),
    ("timm-wrong-architecture", ["--model", "timm:resnet18", "--checkpoint", "{squeeze}"], "missing ['", "model"),
    ("torchvision-wrong-architecture", ["--model", "torchvision:resnet18", "--checkpoint", "{squeeze}"],
     "missing ['", "model"),
    ("torchvision-other-head", ["--model", "torchvision:resnet18", "--checkpoint", "{ten_classes}"],
     "fc.weight [10, 512] in the checkpoint", "model"),
    ("timm-checkpoint-is-random-bytes", ["--model", "timm:resnet18", "--checkpoint", "{noise}"],
     "not a weights file", "model"),
]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, on the pickle case
@pytest.mark.parametrize("case", SWEEP_CASES, ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_parameters_one_line_exit_2_nothing_loaded(case, files, ckpt, no_loading, capsys, monkeypatch):
    name, extra, words, loads = case
    if name == "cuda-without-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    fill = {k: str(v) for k, v in files.items()} | {"squeeze": str(ckpt)}
    options = {"--model": ARCH, "--dataset": f"csv:{files['data']}", "--results-dir": str(files["tmp"] / "results"),
               "--device": "cpu", "--workers": "0"}
    options.update(dict(zip(extra[::2], [x.format(**fill) for x in extra[1::2]])))
    argv = ["sweep", "--no-pretrained", "--quiet"] + [x for kv in options.items() for x in kv]
    if loads in ("data", "model"):
        no_loading()
    if loads == "model":  # the model may be built, but the weights file must fail in one line
        monkeypatch.setattr(study, "open_model", _real_open_model)
        monkeypatch.setattr("zoomstudy.models.loading.load_model", _real_load_model)
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("zoomstudy sweep: error: ") and words in err[0], err[0]
    assert not (files["tmp"] / "results").exists() or not any((files["tmp"] / "results").iterdir())


_real_open_model = study.open_model
from zoomstudy.models import loading as _loading  # noqa: E402

_real_load_model = _loading.load_model


def test_bad_parameters_of_the_other_subcommands(tmp_path, files, no_loading, capsys):
    cases = [
        (["merge", str(tmp_path / "nowhere"), "--shards", "2"], "not a result set"),
        (["merge", str(tmp_path), "--shards", "0"], "--shards"),
        (["summary", str(files["file"])], "not a directory"),
        (["profile", "--images", str(files["data"]), "--out", str(tmp_path / "o"), "--max-images", "0"], "--max-images"),
        (["profile", "--images", str(files["data"]), "--out", str(tmp_path / "o"), "--scales", ""], "--scales"),
        (["sweep", "--model", ARCH, "--dataset", "synthetic:2", "--batch-size", "x"], "invalid int value"),
    ]
    for argv, words in cases:
        assert cli.main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and words in err[0], (argv, err)


def test_a_good_sweep_from_the_cli_opens_the_data_before_the_model(files, tmp_path, monkeypatch, capsys):
    order = []
    real_data, real_model = study.open_data, study.open_model
    monkeypatch.setattr(study, "open_data", lambda *a, **k: order.append("data") or real_data(*a, **k))
    monkeypatch.setattr(study, "open_model", lambda *a, **k: order.append("model") or real_model(*a, **k))
    argv = ["sweep", "--model", ARCH, "--no-pretrained", "--dataset", f"csv:{files['data']}", "--scales", "32,64",
            "--crop", "32", "--results-dir", str(tmp_path / "results"), "--device", "cpu", "--quiet",
            "--workers", "0", "--fingerprint", "sha256", "--max-host-mb", "512", "--no-tta"]
    assert cli.main(argv) == 0
    assert order == ["data", "model"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3
    settings = json.loads((Path(summary["path"]) / "settings.json").read_text())
    assert settings["key"]["dataset"]["fingerprint_method"].endswith("sha256)")


@pytest.mark.parametrize("spec", ["world-photo:96", "world-hard:150", "world:centered", "imagenet-plus-real",
                                  "imagenet+real"])
def test_the_cli_accepts_the_dataset_specs_open_data_accepts(spec):
    """The CLI's cheap check routes a spec as study.open_data does (registry names and aliases, world data)."""
    from zoomstudy import cli

    cli._dataset(spec, None)  # no _Bad
    with pytest.raises(cli._Bad, match="unknown dataset"):
        cli._dataset("imagenet-vall", None)
