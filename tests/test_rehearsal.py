"""The rehearsal: the paper path end to end, offline, on miniature replicas of every paper dataset.

Each replica is built here in its real on-disk or hub format, from the real-data kit's images and
synthetic ones: ImageNet val (a flat folder of ILSVRC2012_val_XXXXXXXX.JPEG with its ground truth, plus
a ReaL json in timm's format), ImageNet-A / -R / -Sketch (synset folders of their classes), ObjectNet
(images/ + mappings/, a 2-px red border), ImageNet-Hard (a local parquet with the hub's columns).
The six Table 1 architectures load from local weight files (random initialisation saved here with
torch.save; CLIP is a tiny open_clip model with random weights), plus the kit's real SqueezeNet.
`matrix.plan -> preflight -> run`, then `paper_tables.the_paper` and notebook 06 read the store.

Cost: the views run at 224 px for every model (ViT-B/32 accepts nothing else), so the grid is the
centre anchor at 2 scales, without the 10 TTA crops, and 2-3 images per dataset.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from factories import synset_folders
from zoomstudy import matrix
from zoomstudy.report import paper_tables

open_clip = pytest.importorskip("open_clip")  # the `clip` extra (.ci/run installs it)

TINY_CLIP = "zoomstudy-rehearsal-clip"
TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
ARCHS = ("alexnet", "vgg16", "resnet18", "resnet50", "vit_b_32")
RESTRICTED = {"imagenet-a": "imagenet-a", "imagenet-r": "imagenet-r", "objectnet": "objectnet"}


# ================================================================================================
# Replicas
# ================================================================================================
def _jpeg(path: Path, seed: int, size=(64, 48), border: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if border:
        a[:border], a[-border:], a[:, :border], a[:, -border:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _val_replica(root: Path, realdata: Path) -> tuple[Path, Path]:
    """3 kit images as ILSVRC2012_val_0000000N.JPEG with labels.csv, and a 50,000-entry ReaL json
    (timm's format) whose 2nd set is empty (left out of ReaL, kept in IN+ReaL)."""
    kit = pd.read_csv(realdata / "imagenet-sample" / "labels.csv").head(3)
    root.mkdir(parents=True)
    rows = []
    for n, r in enumerate(kit.itertuples(index=False), start=1):
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        shutil.copyfile(realdata / "imagenet-sample" / r.file, root / name)
        rows.append({"file": name, "label": int(r.label)})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    real = [[] for _ in range(50000)]
    real[0] = [rows[0]["label"], 7]
    real[2] = [11]  # the original label is not in its ReaL set: IN and ReaL disagree on it
    real_json = root.parent / "real.json"
    real_json.write_text(json.dumps(real))
    return root, real_json


def _objectnet_replica(root: Path) -> Path:
    """images/<folder>/*.png + mappings/folder_to_objectnet_label.json, 2-px red borders."""
    from zoomstudy.data.labels import objectnet_classes

    classes = sorted(objectnet_classes())[:2]  # two ImageNet-overlapping ObjectNet classes
    mapping = {}
    for k, cls in enumerate(classes):
        folder = cls.lower().replace(" ", "_")
        mapping[folder] = cls
        _jpeg(root / "images" / folder / f"{k}.png", 100 + k, size=(70, 60), border=2)
    (root / "mappings").mkdir(parents=True)
    (root / "mappings" / "folder_to_objectnet_label.json").write_text(json.dumps(mapping))
    return root


def _hard_replica(path: Path, realdata: Path, n: int = 3) -> Path:
    """The hub's parquet columns: image {bytes, path}, label (list), origin, english_label (list)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kit = pd.read_csv(realdata / "imagenet-sample" / "labels.csv").iloc[10:10 + n]
    images = [{"bytes": (realdata / "imagenet-sample" / f).read_bytes(), "path": f} for f in kit["file"]]
    labels = [[int(x), (int(x) + 1) % 1000] for x in kit["label"]]
    origins = ["imagenet", "objectnet", "imagenet_a"][:n]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": pa.array(labels, pa.list_(pa.int64())),
        "origin": pa.array(origins, pa.string()),
        "english_label": pa.array([["x", "y"] for _ in labels], pa.list_(pa.string())),
    }), path)
    return path


@pytest.fixture(scope="module")
def rehearsal(realdata, tmp_path_factory, monkeypatch_module):
    """Replicas, weight files, one matrix run; returns what the assertions need (and the timings)."""
    t0 = time.perf_counter()
    tmp = tmp_path_factory.mktemp("rehearsal")
    from zoomstudy.data.labels import get_label_space

    val, real_json = _val_replica(tmp / "data" / "imagenet-val", realdata)
    roots = {
        "imagenet-val": str(val),
        "imagenet-a": str(synset_folders(tmp / "data" / "imagenet-a", get_label_space("imagenet-a").indices[[3, 150]], 10)),
        "imagenet-r": str(synset_folders(tmp / "data" / "imagenet-r", get_label_space("imagenet-r").indices[[0, 199]], 20)),
        "imagenet-sketch": str(synset_folders(tmp / "data" / "imagenet-sketch", [1, 500], 30)),
        "objectnet": str(_objectnet_replica(tmp / "data" / "objectnet")),
        "imagenet-hard": str(_hard_replica(tmp / "data" / "imagenet-hard" / "validation-00000-of-00001.parquet", realdata).parent),
    }
    monkeypatch_module.setenv("ZOOMSTUDY_REAL_LABELS", str(real_json))
    monkeypatch_module.setenv("ZOOMSTUDY_CLIP_TEMPLATES", "1")  # 1 prompt template: seconds, not minutes, on a CPU
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch_module.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch_module.setenv("HF_DATASETS_CACHE", str(tmp / "hf"))
    for env in ("ZOOMSTUDY_IMAGENET_VAL", "ZOOMSTUDY_IMAGENET_A", "ZOOMSTUDY_IMAGENET_R", "ZOOMSTUDY_IMAGENET_SKETCH",
                "ZOOMSTUDY_OBJECTNET", "ZOOMSTUDY_IMAGENET_HARD"):
        monkeypatch_module.delenv(env, raising=False)
    cfg = tmp / f"{TINY_CLIP}.json"
    cfg.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(cfg)

    models = {**{m: s for m, s in matrix.TABLE1_MODELS.items() if m != "CLIP ViT-L/14"},
              "CLIP ViT-L/14": f"clip:{TINY_CLIP}", "SqueezeNet 1.0 (kit)": "squeezenet1_0"}
    hard_models = {"AlexNet": "alexnet", "ResNet-50": "resnet50", "CLIP ViT-L/14": f"clip:{TINY_CLIP}"}
    from zoomstudy.study import make_grid

    grid = make_grid([224, 256], grid=1, crop=224)
    jobs = matrix.plan(models, None, hard_models)
    rows = {name: None for name in roots} | {"imagenet-hard": 3}
    results = tmp / "results"
    pre = matrix.preflight(jobs, roots=roots, data_dir=tmp / "no-data", grid=grid, probe=False, device="cpu",
                           expected_rows=rows)
    t_setup = time.perf_counter() - t0
    # One model at a time: its weights file (random init, torch.save of the state_dict) exists only
    # while its jobs run, so the disk holds at most one (VGG-16's is 528 MB).
    from torchvision.models import get_model

    weights = tmp / "weights"
    weights.mkdir()
    checkpoints = {"squeezenet1_0": str(realdata / "weights" / "squeezenet1_0_deepcompression.pt")}
    t1 = time.perf_counter()
    done = []
    for spec in dict.fromkeys(j.spec for j in jobs):
        ckpt = None
        if spec in ARCHS:
            torch.manual_seed(ARCHS.index(spec))
            ckpt = weights / f"{spec}.pt"
            torch.save(get_model(spec, weights=None).state_dict(), ckpt)
        part = matrix.Preflight([j for j in jobs if j.spec == spec], pre.datasets, pre.cost, pre.device)
        try:
            done.append(matrix.run(part, results_dir=results, grid=grid, pretrained=False, device="cpu",
                                   checkpoints={**checkpoints, spec: str(ckpt)} if ckpt else checkpoints,
                                   batch_size=64, workers=0, tta=False, progress=False, log=lambda s: None))
        finally:
            if ckpt is not None:
                ckpt.unlink()
    done = pd.concat(done, ignore_index=True)
    t_run = time.perf_counter() - t1
    t2 = time.perf_counter()
    report = paper_tables.the_paper(results, roots=roots, data_dir=tmp / "no-data", table1_models=models)
    t_tables = time.perf_counter() - t2
    return dict(tmp=tmp, roots=roots, checkpoints=checkpoints, models=models, grid=grid, jobs=jobs, pre=pre,
                done=done, results=results, report=report, real_json=real_json,
                times={"setup": t_setup, "run": t_run, "tables": t_tables, "total": time.perf_counter() - t0})


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# ================================================================================================
# The rehearsal's assertions
# ================================================================================================
@pytest.mark.slow
@pytest.mark.realdata
def test_every_job_ran_once_and_table1_comes_from_the_store(rehearsal):
    from zoomstudy.analysis.bounds import table1_row
    from zoomstudy.data.registry import relabel_results
    from zoomstudy.sweep.store import ResultSet, find_results

    done, pre = rehearsal["done"], rehearsal["pre"]
    assert all(s.found for s in pre.datasets.values()), {k: s.error for k, s in pre.datasets.items()}
    assert (done["status"] == "done").all(), done[done["status"] != "done"].to_dict("records")
    # 7 Table 1 columns are 5 sweeps per model: ReaL and IN+ReaL add none
    n_models = len(rehearsal["models"])
    assert len(find_results(rehearsal["results"])) == n_models * 5
    cells = rehearsal["report"]["cells"]
    assert len(cells) == n_models * 7 and (cells["status"] == "ok").all(), cells[cells["status"] != "ok"]
    results = Path(rehearsal["results"]).resolve()
    for r in cells.itertuples(index=False):
        path = Path(r.result_set).resolve()
        assert path.parent == results and (path / "settings.json").is_file()
        # the cell's numbers are the stored predictions' numbers, recomputed here from the files
        rs = relabel_results(ResultSet(path), matrix.TABLE1_DATASETS[r.dataset])
        ref = table1_row(rs.correct(), rs.grid, r.model, r.dataset, top_n=min(36, rs.grid.n_views))
        assert r.standard == pytest.approx(ref["standard"]) and r.upper_324 == pytest.approx(ref["upper_2"])
        assert r.n_images == rs.correct().shape[0] > 0
        assert not np.isnan(r.standard_paper) or r.model not in paper_tables.paper.MODELS
    # a display table: rows = models, columns = the 7 datasets, each cell ours (the paper's)
    shown = rehearsal["report"]["table1"]["standard"]
    assert list(shown.columns) == list(matrix.TABLE1_DATASETS) and len(shown) == n_models
    assert shown.loc["ResNet-50", "IN"].endswith(" (75.75)")
    # the random row follows each dataset's number of classes
    rnd = rehearsal["report"]["random"].set_index("dataset")
    assert rnd.loc["IN-A", "n_classes"] == 200 and rnd.loc["ObjectNet", "n_classes"] == 125
    assert rnd.loc["IN", "random_all"] == pytest.approx(100 * 2 / 1000)
    # resumable and stored once: a second run computes nothing and changes no file
    before = sorted(p.name for p in results.rglob("*.parquet"))
    kit_jobs = [j for j in pre.jobs if j.spec == "squeezenet1_0"]
    again = matrix.run(pre.__class__(kit_jobs, pre.datasets, pre.cost, pre.device), results_dir=results,
                       grid=rehearsal["grid"], checkpoints=rehearsal["checkpoints"], pretrained=False, device="cpu",
                       workers=0, tta=False, progress=False, log=lambda s: None)
    assert (again["status"] == "done").all() and sorted(p.name for p in results.rglob("*.parquet")) == before


@pytest.mark.slow
@pytest.mark.realdata
def test_restricted_datasets_store_only_their_label_space(rehearsal):
    from zoomstudy.data.labels import get_label_space
    from zoomstudy.sweep.store import find_results

    checked = 0
    for name, space_name in RESTRICTED.items():
        space = get_label_space(space_name)
        for rs in find_results(rehearsal["results"], dataset=name):
            assert rs.settings["key"]["model"]["label_space"]["name"] == space_name
            preds = rs.views()[[f"pred{k}" for k in range(5)]].to_numpy().astype(np.int64)
            assert len(preds) and space.contains(preds).all(), (name, rs.settings["key"]["model"]["name"])
            checked += 1
    assert checked == 3 * len(rehearsal["models"])


@pytest.mark.slow
@pytest.mark.realdata
def test_real_and_plus_real_come_from_the_one_val_result_set(rehearsal):
    cells = rehearsal["report"]["cells"].set_index(["model", "dataset"])
    for m in rehearsal["models"]:
        val = cells.loc[(m, "IN")]
        assert cells.loc[(m, "ReaL"), "result_set"] == cells.loc[(m, "IN+ReaL"), "result_set"] == val["result_set"]
        assert val["n_images"] == 3 and cells.loc[(m, "IN+ReaL"), "n_images"] == 3
        assert cells.loc[(m, "ReaL"), "n_images"] == 2  # the empty ReaL set is left out
        assert "relabelled at analysis time" in cells.loc[(m, "ReaL"), "note"]


@pytest.mark.slow
@pytest.mark.realdata
def test_tables_beyond_table1(rehearsal):
    rep = rehearsal["report"]
    anchors = rep["anchors"]  # every model of the rows, each on the figure's three datasets
    assert set(anchors) == {f"{m} {d}" for m in rehearsal["models"] for d in ("IN", "IN-A", "ObjectNet")}
    assert all(a["status"] == "ok" and a["ours"].shape == (1, 1) and a["paper"].shape == (3, 3) for a in anchors.values())
    centre = rep["centre"]
    assert len(centre) == len(rep["cells"]) and centre.attrs["paper"] == 26.65
    # 1 x 1 grid: the centre holds every view of a cover (100%); NaN where the cover is empty (random
    # weights that solve no image), and the mean is over the cells that have a cover
    share = centre["center_share"]
    assert (share.isna() | (share == 100.0)).all() and (share == 100.0).any()
    assert centre.attrs["mean"] == pytest.approx(100.0)
    t4 = rep["table4"]
    assert set(t4["dataset"]) == {"IN", "IN-A"} and t4.loc[t4["group"] == "1-crop", "ours"].notna().all()
    t5 = rep["table5"]
    assert t5["ours"].isna().all() and t5["status"].str.startswith("not stored").all()  # no MEMO run here: it says so
    board = rep["hard"]
    ours = board[board["status"] == "ok"]
    assert set(ours["paper_model"]) == {"AlexNet", "ResNet-50", "CLIP ViT-L/14"} and (ours["n"] == 3).all()
    assert board.loc[board["status"] != "ok", "status"].str.contains("--hard-models").all()
    assert set(rep["hard_per_origin"].index) == {"all", "imagenet", "imagenet_a", "objectnet"}
    # CLIP was scored on ImageNet-Hard with its own preprocessing (SPEC 5)
    tables = matrix.stored_hard_tables(rehearsal["results"])
    clip_settings = tables[f"clip:{TINY_CLIP}"].attrs["settings"]["key"]
    assert clip_settings["preprocess"]["interpolation"] == "bicubic" and clip_settings["preprocess"]["crop_pct"] == 1.0


@pytest.mark.slow
@pytest.mark.realdata
def test_wrong_row_count_stops_before_any_compute(rehearsal, tmp_path):
    roots = rehearsal["roots"]
    jobs = matrix.plan(["resnet50"], ["IN-A"], ["resnet50"])
    pre = matrix.preflight(jobs, roots=roots, data_dir=tmp_path, probe=False, device="cpu",
                           expected_rows={"imagenet-a": None})  # ImageNet-Hard keeps its pinned 10,980
    hard = pre.datasets["imagenet-hard"]
    assert not hard.found and "3 rows, expected 10980" in hard.error and "23,845, 13,630, 11,350, 10,980" in hard.error
    assert "imagenet-hard" in pre.text() and "--expected-rows imagenet-hard=none" in pre.text()
    assert "expected_rows=" not in pre.text()  # the CLI's flags, not the Python keywords
    # and the plain run itself refuses before the model (resnet50 pretrained would need a download)
    with pytest.raises(ValueError, match="expected 10980"):
        matrix.hard_plain("resnet50", root=roots["imagenet-hard"], results_dir=tmp_path / "r", device="cpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_missing_dataset_cells_say_how_to_get_them(rehearsal, tmp_path):
    roots = {k: v for k, v in rehearsal["roots"].items() if k != "imagenet-sketch"}
    cells = paper_tables.table1_cells(tmp_path / "empty", {"ResNet-50": "resnet50"}, roots=roots, data_dir=tmp_path)
    status = cells.set_index("dataset")["status"]
    assert status["IN-Sketch"].startswith("no data: provide imagenet-sketch") and "--root imagenet-sketch=PATH" in status["IN-Sketch"]
    assert status["IN"].startswith("not run yet: zoomstudy paper --models resnet50")  # data there, sweep not run
    shown = paper_tables.table1_display(cells, "upper_topn_cv")
    assert shown.loc["ResNet-50", "IN-Sketch"] == "no data"  # the how-to is said once, below the grid
    missing = paper_tables.missing_cells(cells).set_index("dataset")  # one row per column, said once
    assert len(missing) == 7 and missing.loc["IN-Sketch", "how to get them"] == status["IN-Sketch"]
    assert missing.loc["IN", "models without data"] == "ResNet-50"


@pytest.mark.slow
@pytest.mark.realdata
def test_notebook_06_renders_the_rehearsal(rehearsal):
    from zoomstudy.report import notebooks as reports
    from zoomstudy.report import profiles

    out = rehearsal["tmp"] / "reports"
    params = {**profiles.resolve_parameters("paper", "06_the_paper"), "results_dir": str(rehearsal["results"]),
              "roots": rehearsal["roots"], "report_dir": str(out), "table1_models": rehearsal["models"]}
    html = reports.run_notebook(Path(__file__).resolve().parents[1] / "notebooks" / "06_the_paper.ipynb", out, params,
                                cwd=rehearsal["tmp"], timeout=300)
    text = Path(html).read_text()
    assert "relabelled at analysis time" in text and "(75.75)" in text
    prov = json.loads((out / "06_the_paper.provenance.json").read_text())
    assert prov["table1_cells_with_data"] == 7 * len(rehearsal["models"])
    t = rehearsal["times"]
    print(f"\nrehearsal: setup {t['setup']:.1f} s, matrix run {t['run']:.1f} s, tables {t['tables']:.1f} s, "
          f"total {t['total']:.1f} s")


# ================================================================================================
# Fast unit tests of the matrix
# ================================================================================================
def test_plan_sweeps_real_once_and_selects():
    jobs = matrix.plan()
    sweeps = [j for j in jobs if j.kind == "sweep"]
    assert len(sweeps) == 6 * 5  # 6 models x 7 columns = 30 sweeps: ReaL and IN+ReaL ride on IN
    val = [j for j in sweeps if j.dataset == "imagenet-val"][0]
    assert val.columns == ("IN", "ReaL", "IN+ReaL")
    assert len([j for j in jobs if j.kind == "plain"]) == 9
    sel = matrix.plan(["ResNet-50"], ["IN-A", "ReaL"], [])
    assert [(j.spec, j.dataset) for j in sel] == [("resnet50", "imagenet-a"), ("resnet50", "imagenet-val")]
    with pytest.raises(ValueError, match="unknown dataset"):
        matrix.plan(None, ["no-such-set"])


def test_preflight_prices_views_from_a_probe(tmp_path):
    from zoomstudy.study import make_grid

    d = tmp_path / "imagenet-sketch"
    synset_folders(d, [1, 2, 3], 0)
    grid = make_grid([64, 96], grid=3, crop=64)
    jobs = matrix.plan(["resnet18"], ["IN-Sketch", "IN-A"], [])
    calls = []

    def probe(spec, g, **kw):
        calls.append((spec, g.n_views, kw["kind"]))
        return 0.5

    pre = matrix.preflight(jobs, data_dir=tmp_path, grid=grid, expected_rows={"imagenet-sketch": None},
                           device="cpu", probe_fn=probe)
    assert pre.datasets["imagenet-sketch"].found and pre.datasets["imagenet-sketch"].via.endswith("/imagenet-sketch/")
    assert not pre.datasets["imagenet-a"].found and "--root imagenet-a=PATH" in pre.datasets["imagenet-a"].howto
    row = pre.cost.iloc[0]
    assert row["images"] == 3 and row["views_per_image"] == 18 + matrix.TTA_VIEWS and row["views"] == 84
    assert row["hours"] == pytest.approx(3 * 0.5 / 3600) and calls == [("resnet18", 18, "sweep")]
    assert "datasets missing (1)" in pre.text() and "imagenet-a" in pre.text()
    # the real probe: a random-weight model, one image's views, timed
    s = matrix.probe_seconds_per_image("torchvision:squeezenet1_0", grid, device="cpu", batch_size=64)
    assert 0 < s < 60


def test_cli_paper_dry_run_and_bad_parameters(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants as hf_constants

    from zoomstudy.cli import main

    # offline: ImageNet-Hard (read from the hub at its pin otherwise) is one of the missing, whatever the
    # hub stand-in of another test serves
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert main(["paper", "--dry-run", "--no-probe", "--data-dir", str(tmp_path), "--models", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "datasets missing (6)" in out and "how:" in out
    assert main(["paper", "--root", "imagenet-a", "--dry-run"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["paper", "--scales", "x", "--dry-run"]) == 2
