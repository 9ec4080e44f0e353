"""The sweep and its result store: rows per image and view, bad images recorded, resume after kill -9,
provenance keys, shards and merge, parameter checks; and (realdata) the real SqueezeNet over the kit
against the kit's reference predictions and README figures.

Every fast test uses a tiny grid, a few small synthetic images and a random-weight SqueezeNet saved to
a checkpoint file (so a subprocess and this process load the very same weights), with chunk_images=1
so that every image goes through the model alone (identical batches in every run: bit-identical rows).
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from factories import jpeg_bytes, result_tables, save_random_squeezenet
from zoomstudy.analysis import bounds as analysis
from zoomstudy.sweep import store
from zoomstudy.data import CsvSource, SyntheticSource
from zoomstudy.models.loading import load_model
from zoomstudy.keyed import settings_key
from zoomstudy.sweep.store import ResultSet
from zoomstudy.sweep.engine import parse_shard, sweep_to_store, sweep_settings
from zoomstudy.views import ViewGrid, normalize, render_views_reference, tta_crops, pil_to_tensor

TINY = ViewGrid(scales=(32, 64, 96), grid=3, crop=48)
ARCH = "torchvision:squeezenet1_0"


# ================================================================================================
# fixtures
# ================================================================================================
@pytest.fixture(scope="module")
def ckpt(squeezenet_ckpt) -> Path:
    return squeezenet_ckpt


@pytest.fixture(scope="module")
def model(squeezenet):
    return squeezenet


def _synthetic(n=4, seed=0):
    return SyntheticSource(n, size=((40, 90), (40, 90)), seed=seed)


def _run(model, source, results_dir, **kw):
    kw.setdefault("chunk_images", 1)
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    return sweep_to_store(model, source, TINY, results_dir, **kw)


def _parts(rs: ResultSet) -> dict[str, float]:
    folder = rs.path / "parts"
    return {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}


def _tables(rs: ResultSet) -> dict[str, pd.DataFrame]:
    return result_tables(rs, errors=True)


# ================================================================================================
# one sweep: rows, order, top-5
# ================================================================================================
def test_sweep_rows_per_image_and_view(model, tmp_path):
    src = _synthetic(3)
    rs = _run(model, src, tmp_path, tta=True)
    assert rs.path.parent == tmp_path and (rs.path / "settings.json").exists()
    v = rs.views()
    assert len(v) == 3 * TINY.n_views
    ids = [s.image_id for s in src]
    for image_id, rows in v.groupby("image_id"):
        assert sorted(rows["view"]) == list(range(TINY.n_views))
    assert sorted(v["image_id"].unique()) == sorted(ids)
    # the grid columns come with the tidy table
    assert set(v.columns) >= {"scale", "row", "col", "name", "group"}
    assert (v["name"] == [TINY.view_name(x) for x in v["view"]]).all()

    pred = v[[f"pred{k}" for k in range(5)]].to_numpy()
    prob = v[[f"prob{k}" for k in range(5)]].to_numpy()
    assert ((pred >= 0) & (pred < 1000)).all()
    assert all(len(set(r)) == 5 for r in pred)  # five distinct classes
    assert (np.diff(prob, axis=1) <= 0).all()  # best first
    assert ((prob >= 0) & (prob <= 1)).all() and (prob.sum(1) <= 1 + 1e-5).all()

    images = rs.images()
    assert images["image_id"].tolist() == ids and images["position"].tolist() == [0, 1, 2]
    assert images["ok"].all()
    assert [tuple(int(x) for x in lab) for lab in images["labels"]] == [s.labels for s in src]
    assert [(int(a), int(b)) for a, b in zip(images["width"], images["height"])] == [s.image.size for s in src]
    assert len(rs.errors()) == 0

    got_ids, top1, conf = rs.predictions()
    assert got_ids == ids and top1.shape == conf.shape == (3, TINY.n_views)
    by_view = v.set_index(["image_id", "view"])
    assert top1[1, 5] == by_view.loc[(ids[1], 5), "pred0"] and conf[2, 7] == by_view.loc[(ids[2], 7), "prob0"]
    assert rs.labels() == [s.labels for s in src]
    assert rs.correct().shape == (3, TINY.n_views)

    # groups: the zoom groups of the tiny grid (32 < 48 < 64, 96), all views, 5- and 10-crop
    g = rs.groups()
    assert len(g) == 3 * 5
    for image_id, rows in g.groupby("image_id"):
        assert set(rows["group"]) == {"zoom_out", "zoom_in", "all_views", "five_crop", "ten_crop"}
        mine = by_view.loc[image_id]
        allv = rows.set_index("group").loc["all_views"]
        best = mine["prob0"].idxmax()
        assert allv["max_prob"] == pytest.approx(mine["prob0"].max(), rel=1e-6)
        assert allv["max_pred"] == mine.loc[best, "pred0"]
        assert ((rows[["mean_prob", "max_prob"]] >= 0) & (rows[["mean_prob", "max_prob"]] <= 1)).all().all()
        assert (rows["max_prob"] >= rows["mean_prob"] - 1e-6).all()


def test_sweep_predictions_equal_the_model_on_reference_views(model, tmp_path):
    """Independent recomputation: PIL reference views -> normalise -> the model -> top-5 and the groups."""
    src = _synthetic(1, seed=4)
    rs = _run(model, src, tmp_path, tta=True)
    image = src[0].image
    grey = torch.cat([render_views_reference(image, TINY).to(torch.float64),
                      tta_crops(pil_to_tensor(image), 48, TINY.standard_scale)])
    everything = model.logits(normalize(grey)).softmax(-1)  # one batch, as the sweep forwards it
    probs, ten = everything[:TINY.n_views], everything[TINY.n_views:]
    p, idx = probs.topk(5, dim=-1)
    v = rs.views().sort_values("view", kind="stable").reset_index(drop=True)
    assert (v[[f"pred{k}" for k in range(5)]].to_numpy() == idx.numpy()).all()
    np.testing.assert_allclose(v[[f"prob{k}" for k in range(5)]].to_numpy(), p.numpy(), rtol=1e-4, atol=1e-7)
    g = rs.groups().set_index("group")
    mean_c = ten.mean(0).argmax().item()
    assert g.loc["ten_crop", "mean_pred"] == mean_c
    assert g.loc["five_crop", "mean_pred"] == ten[:5].mean(0).argmax().item()
    assert g.loc["all_views", "mean_pred"] == probs.mean(0).argmax().item()


def test_parts_hold_chunk_images_images(model, tmp_path):
    """chunk_images is the unit of resume even when a model batch (batch_size views) spans more images."""
    import pyarrow.parquet as pq

    rs = _run(model, _synthetic(5, seed=3), tmp_path, chunk_images=2, batch_size=512, tta=False)
    sizes = [pq.read_table(rs.path / "parts" / f"{p}.images.parquet").num_rows for p in rs.committed_parts()]
    assert sizes == [2, 2, 1]
    assert len(rs.views()) == 5 * TINY.n_views


# ================================================================================================
# bad images
# ================================================================================================
def _write_csv_folder(root: Path, files: dict[str, bytes | None], labels: dict[str, int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if data is not None:  # None: listed in the CSV but absent
            (root / name).write_bytes(data)
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label"])
        for name in files:
            w.writerow([name, labels[name]])
    return root


def test_bad_images_are_recorded_not_fatal(model, tmp_path):
    good = jpeg_bytes(70, 50, 1, quality=90)
    files = {
        "a_good.jpg": good,
        "b_empty.jpg": b"",
        "c_truncated.jpg": good[: len(good) // 2],
        "d_text.jpg": b"this is not an image, just text\n",
        "e_good.png": None,
        "f_missing.jpg": None,
    }
    root = _write_csv_folder(tmp_path / "data", files, {k: i for i, k in enumerate(files)})
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(buf, "PNG")
    (root / "e_good.png").write_bytes(buf.getvalue())
    src = CsvSource(root)
    # one image per part: parts with and without errors, and parts without views, are read together
    rs = _run(model, src, tmp_path / "results", tta=False, workers=1)  # a decoding worker process
    assert len(rs.committed_parts()) == 6

    bad = {"b_empty.jpg": "empty", "c_truncated.jpg": "truncated", "d_text.jpg": "not an image",
           "f_missing.jpg": "not found"}
    errors = rs.errors()
    assert sorted(errors["image_id"]) == sorted(bad)
    for _, row in errors.iterrows():
        assert bad[row["image_id"]] in row["reason"], row["reason"]
    assert sorted(errors["position"]) == [1, 2, 3, 5]
    images = rs.images().set_index("image_id")
    assert len(images) == 6
    assert not images.loc[list(bad), "ok"].any() and images.loc[["a_good.jpg", "e_good.png"], "ok"].all()
    assert (images.loc[list(bad), "width"] == -1).all()
    ids, top1, _ = rs.predictions()
    assert ids == ["a_good.jpg", "e_good.png"] and top1.shape == (2, TINY.n_views)
    assert rs.labels() == [(0,), (4,)]
    assert set(rs.views()["image_id"]) == {"a_good.jpg", "e_good.png"}
    # a second run does not retry the recorded errors (they are done) and writes nothing
    before = _parts(rs)
    _run(model, src, tmp_path / "results", tta=False, workers=1)
    assert _parts(rs) == before


# ================================================================================================
# resume after kill -9
# ================================================================================================
_SWEEP_SCRIPT = """
import sys
from zoomstudy.data import SyntheticSource
from zoomstudy.models.loading import load_model
from zoomstudy.sweep.engine import sweep_to_store
from zoomstudy.views import ViewGrid
ckpt, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_model("torchvision:squeezenet1_0", checkpoint=ckpt, pretrained=False, device="cpu")
print("loaded", flush=True)
sweep_to_store(model, SyntheticSource(n, size=((40, 90), (40, 90)), seed=7), ViewGrid(scales=(32, 64, 96), grid=3, crop=48),
      out, chunk_images=1, workers=0, progress=False, tta=True)
print("finished", flush=True)
"""


def _committed(results_dir: Path) -> int:
    return len(list(results_dir.glob("*/parts/*.images.parquet")))


def _run_and_kill(ckpt: Path, results_dir: Path, n: int, kill_at: int, timeout: float = 240) -> int:
    """Run the sweep in a subprocess; kill -9 it as soon as `kill_at` parts are committed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SWEEP_SCRIPT, str(ckpt), str(results_dir), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + timeout
        while _committed(results_dir) < kill_at:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the sweep ended before it could be killed (rc {proc.returncode}):\n{err.decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the sweep made no progress")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _committed(results_dir)


def test_resume_after_kill_loses_and_duplicates_nothing(ckpt, tmp_path):
    n = 6
    killed = tmp_path / "killed"
    k1 = _run_and_kill(ckpt, killed, n, kill_at=1)
    assert 1 <= k1 < n
    k2 = _run_and_kill(ckpt, killed, n, kill_at=k1 + 2)
    assert k1 + 2 <= k2 < n
    (rs_dir,) = [p for p in killed.iterdir() if p.is_dir()]
    # leftovers of a killed write: an uncommitted part and a temporary file
    parts = rs_dir / "parts"
    (parts / "part-999999.views.parquet").write_bytes(b"half a part")
    (parts / "part-999999.groups.parquet.tmp").write_bytes(b"partial")

    model_ = load_model(ARCH, checkpoint=ckpt, pretrained=False, device="cpu")
    src = SyntheticSource(n, size=((40, 90), (40, 90)), seed=7)
    resumed = sweep_to_store(model_, src, TINY, killed, chunk_images=1, workers=0, progress=False, tta=True)
    assert resumed.path == rs_dir
    names = os.listdir(parts)
    assert not any(f.endswith(".tmp") or f.startswith("part-999999") for f in names)
    committed = set(resumed.committed_parts())
    assert len(committed) == n and all(f.split(".")[0] in committed for f in names)

    clean = sweep_to_store(model_, src, TINY, tmp_path / "clean", chunk_images=1, workers=0, progress=False, tta=True)
    assert clean.path.name == resumed.path.name  # same settings, same key
    got, want = _tables(resumed), _tables(clean)
    assert len(got["views"]) == n * TINY.n_views and len(got["images"]) == n
    assert got["images"]["position"].tolist() == list(range(n))
    for name in ("views", "groups", "images"):
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)
    store.merge(resumed, 1)


# ================================================================================================
# provenance key
# ================================================================================================
def _key(model, source, grid=TINY, normalization="imagenet", render_dtype=torch.float64, tta=True):
    return settings_key(sweep_settings(model, source, grid, normalization=normalization,
                                       render_dtype=render_dtype, tta=tta))


def test_key_changes_with_everything_that_changes_a_prediction(model, ckpt, tmp_path):
    src = _synthetic(2)
    base = _key(model, src)
    assert _key(model, _synthetic(2)) == base  # same settings, same key
    # the same weights file elsewhere: same key (the path is not a prediction input)
    copy = tmp_path / "elsewhere" / "copy.pt"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())
    assert _key(load_model(ARCH, checkpoint=copy, pretrained=False, device="cpu"), src) == base

    other_weights = save_random_squeezenet(tmp_path / "squeeze_b.pt", 1)
    variants = {
        "grid": _key(model, src, grid=ViewGrid(scales=(32, 64, 128), grid=3, crop=48)),
        "grid size": _key(model, src, grid=ViewGrid(scales=(32, 64, 96), grid=2, crop=48)),
        "weights": _key(load_model(ARCH, checkpoint=other_weights, pretrained=False, device="cpu"), src),
        "label space": _key(load_model(ARCH, checkpoint=ckpt, pretrained=False, device="cpu",
                                       label_space="imagenet-r"), src),
        "normalization": _key(model, src, normalization="model"),
        "render dtype": _key(model, src, render_dtype=torch.float32),
        "tta": _key(model, src, tta=False),
        "dataset": _key(model, _synthetic(2, seed=1)),
        "dataset size": _key(model, _synthetic(3)),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_key_changes_when_a_dataset_file_changes(model, tmp_path):
    files = {"x.jpg": jpeg_bytes(50, 40, 1, quality=90), "y.jpg": jpeg_bytes(60, 40, 2, quality=90)}
    root = _write_csv_folder(tmp_path / "d", files, {"x.jpg": 1, "y.jpg": 2})
    k0 = _key(model, CsvSource(root))
    assert _key(model, CsvSource(root)) == k0
    (root / "y.jpg").write_bytes(jpeg_bytes(61, 40, 2, quality=90))  # another image (another size in bytes)
    k1 = _key(model, CsvSource(root))
    assert k1 != k0
    # content-exact fingerprints see a same-size edit too
    s0 = _key(model, CsvSource(root, fingerprint="sha256"))
    data = bytearray((root / "y.jpg").read_bytes())
    data[-3] ^= 0xFF
    (root / "y.jpg").write_bytes(bytes(data))
    assert _key(model, CsvSource(root, fingerprint="sha256")) != s0
    # labels are part of the dataset too
    _write_csv_folder(root, {"x.jpg": files["x.jpg"], "y.jpg": bytes(data)}, {"x.jpg": 1, "y.jpg": 3})
    assert _key(model, CsvSource(root, fingerprint="sha256")) not in (s0, k0, k1)


def test_same_settings_same_folder_and_nothing_recomputed(model, tmp_path):
    src = _synthetic(2)
    rs = _run(model, src, tmp_path)
    assert rs.path.name == _key(model, src)  # tta=True, float64 on CPU, imagenet normalisation
    before = _parts(rs)
    assert len(before) == 2 * 5  # 4 tables and the manifest per part
    t0 = time.perf_counter()
    again = _run(model, src, tmp_path)
    assert again.path == rs.path and _parts(again) == before
    assert time.perf_counter() - t0 < 10  # nothing decoded, rendered or forwarded
    other = _run(model, src, tmp_path, render_dtype=torch.float32)
    assert other.path != rs.path and sorted(p.name for p in tmp_path.iterdir()) == sorted([rs.path.name, other.path.name])
    saved = json.loads((rs.path / "settings.json").read_text())
    assert saved["key_hash"] == rs.path.name and saved["key"]["render"]["dtype"] == "float64"
    # a folder whose settings.json holds other settings is refused, not silently reused
    bogus = json.loads(json.dumps(saved))
    bogus["key"]["grid"]["crop"] = 999
    (rs.path / "settings.json").write_text(json.dumps(bogus))
    with pytest.raises(ValueError):
        _run(model, src, tmp_path)


# ================================================================================================
# shards and merge
# ================================================================================================
def test_shards_merge_to_the_single_run(model, tmp_path):
    src = _synthetic(4, seed=2)
    a = _run(model, src, tmp_path / "sharded", shard=(0, 2))
    with pytest.raises(ValueError):
        store.merge(a, 2)  # shard 1 of 2 missing
    b = _run(model, src, tmp_path / "sharded", shard=(1, 2))
    assert a.path == b.path
    assert sorted(a.images()["position"]) == [0, 1, 2, 3]
    assert {p.split("-")[0] for p in a.committed_parts()} == {"shard0of2", "shard1of2"}
    merged = store.merge(a, 2)
    single = _run(model, src, tmp_path / "single")
    assert single.path.name == merged.path.name
    ids_m, top1_m, conf_m = merged.predictions()
    ids_s, top1_s, conf_s = single.predictions()
    assert ids_m == ids_s == [s.image_id for s in src]
    assert np.array_equal(top1_m, top1_s) and np.array_equal(conf_m, conf_s)
    pd.testing.assert_frame_equal(_tables(merged)["views"], _tables(single)["views"], check_exact=True)


def test_merge_detects_an_image_stored_twice(model, tmp_path):
    src = _synthetic(2)
    rs = _run(model, src, tmp_path)
    parts = rs.committed_parts()
    for table in store.TABLES:  # duplicate a committed part under another name
        f = rs.path / "parts" / f"{parts[0]}.{table}.parquet"
        (rs.path / "parts" / f"dup-000000.{table}.parquet").write_bytes(f.read_bytes())
    with pytest.raises(ValueError):
        store.merge(ResultSet(rs.path), 1)


# ================================================================================================
# parameters
# ================================================================================================
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(chunk_images=0),
        dict(workers=-1),
        dict(shard=(3, 2)),
        dict(shard=(0, 0)),
        dict(shard=(-1, 2)),
        dict(normalization="foo"),
        dict(grid="paper"),
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_bad_parameters_raise_before_anything_is_written(model, tmp_path, kwargs):
    out = tmp_path / "results"
    grid = kwargs.pop("grid", TINY)
    with pytest.raises(ValueError):
        sweep_to_store(model, _synthetic(1), grid, out, progress=False, **kwargs)
    assert not out.exists()


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    with pytest.raises(ValueError):
        parse_shard("3-8")


# ================================================================================================
# real data: SqueezeNet over the kit vs the kit's reference
# ================================================================================================
def _figures(correct: np.ndarray, grid: ViewGrid) -> dict:
    return {
        "standard": analysis.standard_accuracy(correct, grid),
        "oracle": analysis.oracle_accuracy(correct),
        "top36": analysis.topn_bound(correct, 36),
        "anchors": analysis.anchor_bounds(correct, grid),
    }


#: The kit README's reference figures (100 images, paper grid, SqueezeNet 1.0 Deep Compression).
README = {"standard": 61.0, "oracle": 94.0, "top36": 94.0,
          "anchors": np.array([[57.0, 76.0, 61.0], [68.0, 83.0, 67.0], [51.0, 63.0, 54.0]])}


@pytest.mark.realdata
def test_realdata_reference_npz_reproduces_the_readme_figures(realdata):
    """The analyses on the kit's reference predictions give the README numbers exactly (cheap)."""
    z = np.load(realdata / "reference" / "squeezenet1_0_views.npz")
    grid = ViewGrid.paper()
    assert list(z["scales"]) == list(grid.scales)
    correct = analysis.correctness(z["pred"].reshape(100, grid.n_views).astype(np.int64),
                                   [(int(x),) for x in z["labels"]])
    fig = _figures(correct, grid)
    for k in ("standard", "oracle", "top36"):
        assert fig[k] == README[k]
    assert np.array_equal(fig["anchors"], README["anchors"])
    cover = analysis.greedy_cover(correct)
    assert len(cover) == 14 and sum(grid.unravel(v)[1:] == (1, 1) for v in cover) == 5


@pytest.mark.realdata
@pytest.mark.slow
def test_realdata_sweep_matches_the_reference_predictions(realdata, tmp_path):
    """Real SqueezeNet over the kit on the paper grid (render float64, no TTA), compared per view with the
    kit's reference `pred`: >= 99.5% agreement. By default only the first 25 images (about 25 x 324
    SqueezeNet forwards: minutes on 2 CPU cores); ZOOMSTUDY_REALDATA_IMAGES=100 runs all of them and
    then also checks the README figures. The store's analysis figures must match the reference's on
    the same images within the disagreement (a figure moves by at most 100 / N per image that has a
    disagreeing view)."""
    n = int(os.environ.get("ZOOMSTUDY_REALDATA_IMAGES", "25"))
    kit = realdata / "imagenet-sample"
    model_ = load_model(ARCH, checkpoint=realdata / "weights" / "squeezenet1_0_deepcompression.pt",
                        pretrained=False, device="cpu")
    src = CsvSource(root=kit, csv=kit / "labels.csv")
    grid = ViewGrid.paper()
    t0 = time.perf_counter()
    rs = sweep_to_store(model_, src, grid, tmp_path, render_dtype=torch.float64, tta=False, max_images=n,
               chunk_images=5, batch_size=324, progress=False)
    elapsed = time.perf_counter() - t0
    ids, top1, _ = rs.predictions()
    assert len(ids) == n and len(rs.errors()) == 0

    z = np.load(realdata / "reference" / "squeezenet1_0_views.npz")
    row = {str(f): i for i, f in enumerate(z["files"])}
    order = [row[i] for i in ids]
    ref = z["pred"].reshape(len(z["files"]), grid.n_views)[order].astype(np.int64)
    assert [int(z["labels"][i]) for i in order] == [lab[0] for lab in rs.labels()]
    same = top1.astype(np.int64) == ref
    agreement = float(same.mean())
    touched = int((~same).any(axis=1).sum())  # images with at least one disagreeing view
    mine = _figures(rs.correct(), grid)
    theirs = _figures(analysis.correctness(ref, rs.labels()), grid)
    tol = 100.0 * touched / n + 1e-9
    print(f"\nrealdata sweep: {n} images x {grid.n_views} views in {elapsed:.0f} s; agreement with the "
          f"reference {100 * agreement:.3f}% ({int((~same).sum())} views differ, {touched} images touched)")
    for k in ("standard", "oracle", "top36"):
        print(f"  {k}: store {mine[k]:.2f}  reference {theirs[k]:.2f}" + (f"  README {README[k]:.2f}" if n == 100 else ""))
    print("  anchors (store):\n", mine["anchors"], "\n  anchors (reference):\n", theirs["anchors"])
    assert agreement >= 0.995
    for k in ("standard", "oracle", "top36"):
        assert abs(mine[k] - theirs[k]) <= tol
        if n == 100:
            assert abs(mine[k] - README[k]) <= tol
    assert np.abs(mine["anchors"] - theirs["anchors"]).max() <= tol
    if n == 100:
        assert np.abs(mine["anchors"] - README["anchors"]).max() <= tol
