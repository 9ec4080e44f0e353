"""The study notebooks (notebooks/*.ipynb), their profiles (zoomstudy.report.profiles) and their helpers
(zoomstudy.report.steps and the tables they show: analysis.bound_tables, analysis.hard, report.examples).

* Every notebook in notebooks/ is committed clean: a cell tagged "parameters", no outputs, no
  execution counts; the study notebooks declare every parameter their profiles set.
* 01_oracle_accuracy, 02_center_bias and 04_imagenet_hard run headless through
  `reports.run_notebook` with the offline profile shrunk to 6 synthetic images and 4 scales at crop 96
  (one kernel each; 02 and 04 reuse 01's result store, as they do in a real `reproduce` run), and
  their HTML reports must embed the figures and say which profile, weights and data produced them.
* The figures helpers are checked on small hand-made inputs, including a result store written by hand.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zoomstudy.analysis import bound_tables
from zoomstudy.analysis import hard
from zoomstudy.analysis import paper
from zoomstudy.data import labels
from zoomstudy.data.source import load_sample
from zoomstudy.data import standin
from zoomstudy.report import examples
from zoomstudy.report import plots
from zoomstudy.report import provenance_text
from zoomstudy.report import profiles
from zoomstudy.report import notebooks as reports
from zoomstudy.views import ViewGrid

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
STUDY = ("01_oracle_accuracy", "02_center_bias", "04_imagenet_hard", "06_the_paper")
#: Minimum number of embedded PNG figures per report (the offline data make every figure, even at 0%).
MIN_FIGURES = {"01_oracle_accuracy": 5, "02_center_bias": 4, "04_imagenet_hard": 5}
from conftest import TINY  # noqa: E402  (the offline profile shrunk for tests)
IMG = re.compile(r'<img[^>]+src="data:image/png;base64,')


def _read(path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def _parameters_cell(nb):
    return next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)


# ------------------------------------------------------------------------------------------------
# committed notebooks
# ------------------------------------------------------------------------------------------------
def test_study_notebooks_exist():
    for name in STUDY:
        assert (NOTEBOOKS / f"{name}.ipynb").is_file()


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = _read(path)
    assert _parameters_cell(nb) is not None, f"{path.name} has no cell tagged 'parameters'"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


def _profile_keys(name):
    """Every parameter some profile sets for this notebook (besides profile itself)."""
    keys = set()
    for profile in profiles.PROFILES:
        keys |= set(profiles.resolve_parameters(profile, name))
    return keys - {"profile"}


OWN_NOTEBOOKS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("name", OWN_NOTEBOOKS)
def test_parameters_cell_leaves_profile_values_to_the_profile(name):
    """A parameter a profile sets is None in the cell (None: from the profile), and the next cell
    resolves them with one package call; so a notebook run by hand gets its profile's values."""
    from papermill.translators import PythonTranslator

    nb = _read(NOTEBOOKS / f"{name}.ipynb")
    i = next(k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    ns = {}
    exec(nb.cells[i].source, ns)  # plain assignments only
    declared = {prm.name for prm in PythonTranslator.inspect(nb.cells[i])}
    assert ns["profile"] == profiles.DEFAULT_PROFILE
    for key in _profile_keys(name) & declared:
        assert ns[key] is None, f"{name}: {key} = {ns[key]!r} in the parameters cell would override every profile"
    resolve = nb.cells[i + 1].source
    assert f'notebook_parameters(profile, "{name}", globals())' in resolve
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "._" not in code.replace("_, ", ""), f"{name} calls a private name"
    assert "warnings.filterwarnings" not in code


@pytest.mark.parametrize("name", OWN_NOTEBOOKS)
def test_parameters_cell_lists_exactly_the_parameters_the_notebook_declares(name):
    """profiles.NOTEBOOK_PARAMETERS and the parameters cell agree: no dummy parameter a notebook ignores,
    none it takes missing; every profile gives the notebook only those."""
    from papermill.translators import PythonTranslator

    nb = _read(NOTEBOOKS / f"{name}.ipynb")
    declared = {prm.name for prm in PythonTranslator.inspect(_parameters_cell(nb))}
    assert declared == set(profiles.NOTEBOOK_PARAMETERS[name]) | {"profile", "report_dir"}
    for profile in profiles.PROFILES:
        assert set(profiles.resolve_parameters(profile, name)) <= declared


def test_profiles_are_typed_and_give_a_notebook_only_its_parameters():
    offline = profiles.PROFILES["offline"]
    assert isinstance(offline, profiles.StudyProfile)
    with pytest.raises(TypeError):
        offline.common["model"] = "x"  # read-only
    with pytest.raises(Exception):
        offline.name = "x"  # frozen
    assert profiles.resolve_parameters("offline", "00_controlled_experiment") == {"profile": "offline"}
    assert profiles.resolve_parameters("offline", "06_the_paper") == {"profile": "offline",
                                                                       "results_dir": "results/offline"}
    # an override reaches the notebooks that take it only
    assert "model" not in profiles.resolve_parameters("offline", "06_the_paper", {"model": "m", "top_n": 5})
    assert profiles.resolve_parameters("offline", "06_the_paper", {"top_n": 5})["top_n"] == 5
    # a notebook not declared gets every common value
    assert profiles.resolve_parameters("offline", "99_mine")["model"] == offline.common["model"]
    changed = offline.updated(common={"crop": 96}, notebooks={"04_imagenet_hard": {"n_examples": 2}})
    assert changed.common["crop"] == 96 and changed.notebooks["04_imagenet_hard"]["plain_protocol"] == "sweep"
    assert offline.common["crop"] == 56  # the original is unchanged
    with pytest.raises(ValueError, match="does not declare"):
        profiles.StudyProfile("bad", {}, {"00_controlled_experiment": {"model": "resnet50"}})
    # in a notebook's namespace, variables it does not declare (a later cell's, on Colab) are not parameters
    p = profiles.notebook_parameters("offline", "02_center_bias", {"top_n": 5, "cover": [1, 2], "gallery_image": 3})
    assert p.top_n == 5 and "cover" not in p and "gallery_image" not in p


def test_notebook_parameters_resolve_the_profile_with_overrides():
    import types

    params_cell = {"profile": "local", "model": None, "checkpoint": None, "dataset": None, "scales": None,
                   "crop": None, "top_n": 36, "report_dir": None, "alpha": 0.05, "In": ["x"], "_hidden": 1,
                   "np": types.ModuleType("np"), "f": lambda: 0}
    p = profiles.notebook_parameters("local", "01_oracle_accuracy", params_cell)
    local = profiles.resolve_parameters("local", "01_oracle_accuracy")
    assert {k: p[k] for k in local} == local  # no overrides: exactly the local profile's values
    assert p.model == local["model"] and p.checkpoint.endswith("squeezenet1_0_deepcompression.pt")
    assert p.top_n == 36 and p.alpha == 0.05 and p.report_dir is None and p.profile == "local"
    assert not {"In", "_hidden", "np", "f"} & set(p)
    over = profiles.notebook_parameters("local", "01_oracle_accuracy", {**params_cell, "crop": 96, "model": "m"})
    assert over.crop == 96 and over.model == "m" and over.dataset == local["dataset"]
    assert profiles.notebook_parameters("offline", "04_imagenet_hard", {"plain_protocol": None}).plain_protocol == "sweep"
    # the same values as a reproduce run, which injects the resolved parameters into the same cell
    injected = {**params_cell, **profiles.resolve_parameters("local", "01_oracle_accuracy")}
    assert profiles.notebook_parameters("local", "01_oracle_accuracy", injected) == p
    with pytest.raises(AttributeError, match="no parameter 'modle'"):
        p.modle
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.notebook_parameters("nope", "01_oracle_accuracy", {})


@pytest.mark.parametrize("name", STUDY)
def test_study_notebook_shape_and_profile_parameters(name):
    from papermill.translators import PythonTranslator

    nb = _read(NOTEBOOKS / f"{name}.ipynb")
    title = nb.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    from zoomstudy.report import colab

    assert colab.badge_url(name) in title.source
    assert "import zoomstudy" in nb.cells[1].source and "subprocess" in nb.cells[1].source  # installs when missing
    assert "%pip" not in "".join(c.source for c in nb.cells)  # no magics: runs headless as well
    assert nb.cells[2] is _parameters_cell(nb)
    declared = {p.name for p in PythonTranslator.inspect(nb.cells[2])}
    assert {"profile", "results_dir", "report_dir"} <= declared
    if name != "06_the_paper":  # 06 reads the store only: no sweep parameters
        assert {"model", "checkpoint", "pretrained", "dataset", "root", "scales", "grid", "crop", "max_images"} <= declared
    for profile in profiles.PROFILES:
        if profile in ("offline", "local", "quick", "paper"):
            params = set(profiles.resolve_parameters(profile, name))
            assert params <= declared, f"profile {profile} sets {params - declared}, undeclared in {name}"
    assert nb.cells[-1].source.startswith("steps.record(p, ")  # findings and provenance, written by steps


def test_profiles_hold_plain_parameters():
    offline = profiles.resolve_parameters("offline", "01_oracle_accuracy")
    # the offline default is the paper in miniature: the RandomResizedCrop world model on photo-like images
    assert offline["dataset"].startswith("world-photo") and offline["model"] == "world:rrc"
    assert offline["crop"] == 56 and offline["scales"] is None and offline["pretrained"] is False
    hard = profiles.resolve_parameters("offline", "04_imagenet_hard")
    assert hard["dataset"].startswith("world-hard:") and hard["crop"] == 56
    local = profiles.resolve_parameters("local", "02_center_bias")
    assert local["checkpoint"].endswith("weights/squeezenet1_0_deepcompression.pt")
    assert local["dataset"].startswith("csv:") and local["dataset"].endswith("imagenet-sample")
    assert local["scales"] is None and local["results_dir"] == "results/local"
    assert profiles.resolve_parameters("quick", "01_oracle_accuracy")["pretrained"] is True
    paper_nb = profiles.resolve_parameters("paper", "04_imagenet_hard")
    assert paper_nb["dataset"] == "imagenet-hard" and paper_nb["model"] == "resnet50"
    assert profiles.resolve_parameters("paper", "01_oracle_accuracy")["dataset"] == "imagenet-val"
    for profile in ("offline", "local", "quick", "paper"):
        for value in profiles.resolve_parameters(profile, "04_imagenet_hard").values():
            assert value is None or isinstance(value, (str, int, float, bool, list))


# ------------------------------------------------------------------------------------------------
# headless runs
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(report_site):
    """run(name) -> the report folder where reproduce ran that study notebook (conftest's report_site:
    offline profile, tiny data; 02 and 04 reuse 01's result store, as in a real reproduce run)."""
    out, _, names = report_site

    def _run(name: str) -> Path:
        assert name in names and (out / f"{name}.html").is_file()
        return out

    return _run


def _check_report(out: Path, name: str, data: str) -> str:
    html = (out / f"{name}.html").read_text(encoding="utf-8")
    n_png = len(IMG.findall(html))
    assert n_png >= MIN_FIGURES[name], f"{name}: {n_png} embedded figures"
    statement = (f"This report was produced by profile offline with weights random (untrained "
                 f"torchvision:squeezenet1_0) on data {data}")
    assert html.count(statement) >= 2  # near the top (after the sweep) and at the end
    assert "Traceback" not in html
    prov = json.loads((out / f"{name}.provenance.json").read_text())
    assert prov["profile"] == "offline" and prov["weights_id"].startswith("random-")
    assert prov["statement"].startswith(statement) and prov["grid"]["scales"] == TINY["scales"]
    assert prov["model"] == "torchvision:squeezenet1_0" and prov["dataset_fingerprint"]
    return html


def test_oracle_notebook_runs_headless(run):
    out = run("01_oracle_accuracy")
    html = _check_report(out, "01_oracle_accuracy", "synthetic-6 (synthetic, 6 images")
    assert "any of 36 views" in html and "greedy top-36, 2-fold cross-validated" in html
    assert "No published number is comparable" in html
    prov = json.loads((out / "01_oracle_accuracy.provenance.json").read_text())
    assert prov["n_images"] == 6 and set(prov["results"]) >= {"standard", "upper_all", "upper_topn_cv"}


def test_center_bias_notebook_runs_headless(run):
    run("01_oracle_accuracy")  # the same result set: 02 reuses the sweep
    out = run("02_center_bias")
    html = _check_report(out, "02_center_bias", "synthetic-6 (synthetic, 6 images")
    assert "26.65" in html and "p_holm" in html  # the paper's centre share; Holm-adjusted tests
    assert "single views at scale 110" in html
    prov = json.loads((out / "02_center_bias.provenance.json").read_text())
    assert np.asarray(prov["anchor_bounds"]).shape == (3, 3)


def test_imagenet_hard_notebook_runs_headless(run):
    run("01_oracle_accuracy")  # an "ImageNet" result set of the same model and grid to compare with
    out = run("04_imagenet_hard")
    html = _check_report(out, "04_imagenet_hard", "synthetic-hard-6 (csv, 6 images")
    assert "synthetic stand-in for ImageNet-Hard" in html
    assert "EfficientNet-L2-NS" in html and "squeezenet1_0 (this run)" in html  # the leaderboard
    assert "compared with synthetic-6" in html  # the zoom bound next to the other dataset's
    prov = json.loads((out / "04_imagenet_hard.provenance.json").read_text())
    assert prov["plain_protocol"] == "sweep" and len(prov["companions"]) == 1
    assert "1-crop protocol: the sweep's 1-crop view LOC:1_1_Size:110" in html


# ------------------------------------------------------------------------------------------------
# figures helpers: tables
# ------------------------------------------------------------------------------------------------
GRID = ViewGrid(scales=(48, 96, 110, 160), crop=96)  # standard scale round(96 * 256 / 224) = 110


def _matrix():
    """4 images x 36 views: 0 right at the 1-crop view only, 1 right at one zoom-in corner view,
    2 right at every zoom-out view, 3 never right."""
    c = np.zeros((4, GRID.n_views), bool)
    c[0, GRID.standard_view] = True
    c[1, GRID.view_index(160, 0, 0)] = True
    c[2, [GRID.view_index(48, r, k) for r in range(3) for k in range(3)]] = True
    return c


def test_bounds_frame_table1_rows_with_intervals():
    t = bound_tables.bounds_frame(_matrix(), GRID, model="m", dataset="d", top_n=2, folds=2, n_classes=10)
    assert list(t["key"]) == ["standard", "upper_all", "upper_topn", "upper_topn_cv", "random_topn", "random_all"]
    acc = dict(zip(t["key"], t["accuracy"]))
    assert acc["standard"] == 25.0 and acc["upper_all"] == 75.0
    assert acc["upper_topn"] == 50.0  # two greedy views solve two of the three solvable images
    assert acc["random_topn"] == 20.0 and acc["random_all"] == 100.0  # min(100, 100 n / classes)
    assert t.loc[0, "metric"] == "1-crop (LOC:1_1_Size:110)" and t.loc[1, "views"] == 36
    ci = t.dropna(subset=["ci_low"])
    assert (ci["ci_low"] <= ci["accuracy"]).all() and (ci["accuracy"] <= ci["ci_high"]).all()
    assert t[t["key"].str.startswith("random")]["ci_low"].isna().all()
    one = bound_tables.bounds_frame(_matrix()[:1], GRID, random_rows=False)
    assert "upper_topn_cv" not in set(one["key"]) and len(one) == 3  # no cross-validation on one image


def test_group_anchor_scale_and_share_tables():
    c = _matrix()
    g = bound_tables.group_table(c, GRID).set_index(["key", "measure"])["accuracy"]
    assert g[("zoom_out", "bound: any view of the group")] == 25.0  # image 2
    assert g[("zoom_in", "bound: any view of the group")] == 50.0  # images 0 (S=110) and 1 (S=160)
    assert g[("zoom_224", "bound: any view of the group")] == 0.0
    assert g[("zoom_in", "solved by this group only")] == 50.0
    a = bound_tables.anchor_bound_table(c, GRID)
    assert a.loc[0, "anchor"] == "1,1 (centre)" and a.loc[0, "accuracy"] == 50.0  # images 0 and 2
    assert a.set_index("anchor").loc["0,0", "accuracy"] == 50.0  # images 1 and 2
    cover = [GRID.view_index(48, 0, 0), GRID.standard_view]
    s = bound_tables.cover_scale_table(cover, GRID)
    assert list(s["scale"]) == [48, 96, 110, 160] and list(s["accuracy"]) == [50.0, 0.0, 50.0, 0.0]
    assert list(s["n_views"]) == [1, 0, 1, 0]
    assert bound_tables.cover_scale_table([], GRID)["accuracy"].isna().all()
    share = bound_tables.centre_share_table(cover, GRID, realdata=True).set_index("source")["centre_share"]
    assert share["this run"] == 50.0 and share["uniform"] == pytest.approx(100 / 9)
    assert share["paper (mean over datasets and models)"] == 26.65 and share["real-data kit reference"] == 35.7
    assert np.isnan(bound_tables.centre_share_table([], GRID).loc[0, "centre_share"])


def test_mcnemar_table_holm_adjustment():
    df = pd.DataFrame({"row": [0, 0, 2], "col": [0, 1, 2], "anchor": [10.0, 20.0, 30.0], "center": 50.0,
                       "p_value": [0.01, 0.04, 0.03]})
    t = bound_tables.mcnemar_table(df, alpha=0.05)
    assert np.allclose(t["p_holm"], [0.03, 0.06, 0.06])  # 3 x 0.01; max(2 x 0.03, 1 x 0.04) stays monotone
    assert list(t["significant"]) == [True, False, False]
    assert list(t["diff"]) == [40.0, 30.0, 20.0] and list(t["anchor_rc"]) == ["0,0", "0,1", "2,2"]
    with pytest.raises(ValueError, match="missing"):
        bound_tables.mcnemar_table(df.drop(columns="p_value"))


def test_pick_example_and_example_rows():
    c = _matrix()
    assert examples.pick_example(c, GRID.standard_view) == 1  # wrong at 1-crop, rescued by a zoom view
    assert examples.pick_example(c[[0, 3]], GRID.standard_view) == 0
    assert examples.pick_example(np.zeros((2, 5), bool)) == 0
    assert examples.example_rows(c, GRID.standard_view, 10) == [1, 2, 0, 3]
    assert examples.example_rows(c, GRID.standard_view, 2) == [1, 2]


# ------------------------------------------------------------------------------------------------
# provenance and published references
# ------------------------------------------------------------------------------------------------
def _settings(model="squeezenet1_0", weights="random", source="torchvision", dataset=None, grid=GRID, key_hash="k"):
    dataset = dataset or {"kind": "synthetic", "name": "synthetic-6", "rows": 6, "location": None,
                          "fingerprint": "f" * 64, "params": {"seed": 0}}
    return {"key": {"model": {"name": model, "source": source, "architecture": f"torchvision:{model}",
                              "weights_id": weights, "label_space": {"name": "imagenet1k", "n_classes": 1000},
                              "device": "cpu"},
                    "dataset": dataset, "grid": grid.to_dict(), "zoomstudy": "0.1.0"},
            "key_hash": key_hash}


def test_provenance_statement_names_profile_weights_and_data():
    info = provenance_text.provenance_info(_settings(), "offline")
    assert info["statement"] == (
        "This report was produced by profile offline with weights random (untrained torchvision:squeezenet1_0) on "
        "data synthetic-6 (synthetic, 6 images, generator seed 0, fingerprint ffffffffffff); 36 views per image: "
        "4 scales x 3x3 anchors, crop 96.")
    assert info["weights_id"] == "random" and info["n_views"] == 36 and info["dataset_rows"] == 6
    json.dumps(info)  # recordable as it is
    kit = _settings(weights="ab" * 32, source="checkpoint",
                    dataset={"kind": "csv", "name": "imagenet-sample", "rows": 100, "location": "/kit/imagenet-sample"})
    text = provenance_text.provenance_info(kit, "local", checkpoint="/kit/weights/sq.pt")["statement"]
    assert "profile local with weights checkpoint sq.pt (sha256 abababababab" in text
    assert "on data imagenet-sample (csv, 100 images, /kit/imagenet-sample)" in text
    hub = _settings(model="resnet50", weights="ResNet50_Weights.IMAGENET1K_V1",
                    dataset={"kind": "hf", "name": "imagenet-hard", "rows": 10980, "location": "taesiri/imagenet-hard",
                             "revision": "main", "resolved_revision": "c" * 40})
    text = provenance_text.provenance_info(hub, "paper")["statement"]
    assert "weights ResNet50_Weights.IMAGENET1K_V1 (torchvision:resnet50)" in text
    assert f"revision {'c' * 40}" in text


def test_reference_comparison_with_paper_table1_and_kit():
    paper_grid = ViewGrid.paper()
    frame = pd.DataFrame({"key": ["standard", "upper_all", "upper_topn", "upper_topn_cv"],
                          "accuracy": [75.0, 96.0, 94.0, 93.0]})
    resnet = _settings(model="resnet50", weights="ResNet50_Weights.IMAGENET1K_V1", grid=paper_grid,
                       dataset={"kind": "folder", "name": "imagenet-val", "rows": 50000})
    cmp = bound_tables.reference_comparison(resnet, frame, top_n=36)
    assert cmp["value_cols"] == ["standard", "upper_324", "upper_36"] and cmp["on"] == ["model", "dataset"]
    assert cmp["paper"].iloc[0][["standard", "upper_324", "upper_36"]].tolist() == [75.75, 96.78, 94.46]
    assert cmp["ours"].iloc[0][["model", "dataset"]].tolist() == ["ResNet-50", "IN"]
    assert "IMAGENET1K_V1" not in cmp["caption"] and "of the" not in cmp["caption"]  # paper weights, all images
    subset = bound_tables.reference_comparison(resnet, frame.assign(n_images=300))
    assert "ours on 300 of the 50000 images" in subset["caption"]
    v2 = _settings(model="resnet50", weights="ResNet50_Weights.IMAGENET1K_V2", grid=paper_grid,
                   dataset={"kind": "folder", "name": "imagenet-val", "rows": 50000})
    assert "IMAGENET1K_V1" in bound_tables.reference_comparison(v2, frame)["caption"]
    reduced = _settings(model="resnet50", weights="ResNet50_Weights.IMAGENET1K_V1",
                        grid=ViewGrid(scales=(128, 224, 256, 448)), dataset={"name": "imagenet-val"})
    assert bound_tables.reference_comparison(reduced, frame)["value_cols"] == ["standard"]  # bounds need 324 views
    assert bound_tables.reference_comparison(_settings(grid=paper_grid), frame) is None  # random squeezenet
    kit = _settings(weights="ab" * 32, source="checkpoint", grid=paper_grid,
                    dataset={"kind": "csv", "name": "imagenet-sample", "rows": 100})
    cmp = bound_tables.reference_comparison(kit, frame, top_n=36, cover_length=14)
    assert cmp["on"] == ["metric"]
    assert dict(zip(cmp["paper"]["metric"], cmp["paper"]["value"])) == {
        "standard": 61.0, "upper_324": 94.0, "upper_36": 94.0, "cover_length": 14.0}
    assert dict(zip(cmp["ours"]["metric"], cmp["ours"]["value"]))["cover_length"] == 14.0


def test_anchor_references_and_comparison():
    refs = bound_tables.anchor_references(_settings())
    assert list(refs) == ["paper: ResNet-50 on ImageNet"] and refs["paper: ResNet-50 on ImageNet"][1, 1] == 89.90
    objectnet = _settings(model="resnet50", weights="ResNet50_Weights.IMAGENET1K_V1", grid=ViewGrid.paper(),
                          dataset={"kind": "folder", "name": "objectnet", "rows": 18574})
    assert list(bound_tables.anchor_references(objectnet)) == ["paper: ResNet-50 on ObjectNet"]
    cmp = bound_tables.anchor_comparison(objectnet, np.full((3, 3), 50.0))
    assert cmp["on"] == ["row", "col"] and cmp["paper"]["bound"].iloc[4] == 64.62
    assert bound_tables.anchor_comparison(_settings(), np.zeros((3, 3))) is None  # reduced grid
    kit = _settings(weights="ab" * 32, source="checkpoint", grid=ViewGrid.paper(),
                    dataset={"kind": "csv", "name": "imagenet-sample", "rows": 100})
    assert len(bound_tables.anchor_references(kit)) == 2
    cmp = bound_tables.anchor_comparison(kit, np.zeros((3, 3)))
    assert cmp["paper"]["bound"].tolist() == [57.0, 76.0, 61.0, 68.0, 83.0, 67.0, 51.0, 63.0, 54.0]


def test_anchor_panels_one_colour_scale_per_panel():
    fig = plots.anchor_panels({"ours": np.full((3, 3), np.nan), "paper": np.arange(9.0).reshape(3, 3)},
                                title="bounds")
    heat = [ax for ax in fig.axes if ax.get_title() in ("ours", "paper")]
    assert [ax.get_title() for ax in heat] == ["ours", "paper"]
    assert len(fig.axes) == 4  # two heatmaps, two colour bars
    assert heat[1].collections[0].get_clim() == (0.0, 8.0)
    with pytest.raises(ValueError):
        plots.anchor_panels({})


# ------------------------------------------------------------------------------------------------
# data, images and a hand-written result store
# ------------------------------------------------------------------------------------------------
def test_hard_standin_is_a_deterministic_multilabel_csv(tmp_path):
    from zoomstudy.data import open_source

    spec, root, note = standin.resolve_dataset("synthetic-hard:6", None, tmp_path)
    assert spec.startswith("csv:") and root is None and "stand-in" in note
    src = open_source(spec)
    assert len(src) == 6 and src.name == "synthetic-hard-6"
    samples = list(src)
    assert all(1 <= len(s.labels) <= 5 and s.image.size == (96, 72) for s in samples)
    assert [s.meta["origin"] for s in samples] == list(standin.STANDIN_ORIGINS)
    folder = Path(spec[4:])
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    fingerprint = src.provenance()["fingerprint"]
    standin.resolve_dataset("synthetic-hard:6", None, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # nothing rewritten
    assert open_source(spec).provenance()["fingerprint"] == fingerprint
    assert standin.resolve_dataset("imagenet-val", "/x", tmp_path) == ("imagenet-val", "/x", None)
    with pytest.raises(ValueError):
        standin.resolve_dataset("synthetic-hard:many", None, tmp_path)


def test_load_sample_indexed_and_streamed():
    from zoomstudy.data import SyntheticSource

    src = SyntheticSource(3)
    assert load_sample(src, 2).image_id == "synthetic/000002"

    class Stream:
        _records = None

        def __iter__(self):
            return iter(SyntheticSource(3))

    assert load_sample(Stream(), 1).image_id == "synthetic/000001"
    with pytest.raises(IndexError):
        load_sample(Stream(), 5)


def test_centre_views_match_the_full_grid_and_thumbnails():
    import torch
    from PIL import Image

    from zoomstudy.views import render_views

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    grid = ViewGrid(scales=(16, 32, 48, 80), crop=32)
    views, idx = examples.centre_views(image, grid)
    full = render_views(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous(), grid)
    assert idx == [grid.view_index(s, 1, 1) for s in grid.scales]
    assert torch.equal(views, full[idx])
    thumbs = examples.thumbnails([image, Image.new("L", (10, 30)), None], size=24)
    assert thumbs.shape == (3, 3, 24, 24) and thumbs.dtype == torch.uint8 and int(thumbs[2].max()) == 0
    assert labels.class_name(0) == "tench" and labels.class_name(5000) == "#5000"


def _store(results_dir, dataset, weights="random", grid=GRID, labels=((1, 2), (3,), (4,)), origins=("a", "b", "a")):
    """A result set written by hand: image i predicts class i + 1 at the 1-crop view, 999 elsewhere."""
    from zoomstudy.sweep.store import ResultSet

    settings = _settings(weights=weights, grid=grid, dataset=dataset)
    settings = {"key": settings["key"], "dataset_rows": len(labels)}
    rs = ResultSet.create(results_dir, settings)
    n, v = len(labels), grid.n_views
    pred = np.full((n, v), 999, np.int16)
    pred[:, grid.standard_view] = np.arange(1, n + 1)
    views = {"image_id": np.repeat([f"img{i}" for i in range(n)], v), "view": np.tile(np.arange(v, dtype=np.int16), n)}
    for k in range(5):
        views[f"pred{k}"] = pred.ravel() if k == 0 else np.zeros(n * v, np.int16)
        views[f"prob{k}"] = np.full(n * v, 0.5 if k == 0 else 0.1, np.float32)
    rs.write_part("part-000000", {
        "views": pd.DataFrame(views),
        "groups": pd.DataFrame(columns=["image_id", "group", "mean_pred", "mean_prob", "max_pred", "max_prob"]),
        "errors": pd.DataFrame({"image_id": pd.Series([], dtype=str), "position": pd.Series([], dtype="int64"),
                                "reason": pd.Series([], dtype=str)}),
        "images": pd.DataFrame({"image_id": [f"img{i}" for i in range(n)], "position": np.arange(n),
                                "labels": [list(x) for x in labels], "width": 64, "height": 48,
                                "meta": [json.dumps({"origin": o}) for o in origins], "ok": True}),
    })
    return rs


def test_image_table_plain_from_sweep_and_companions(tmp_path):
    hard_ds = {"kind": "csv", "name": "hard", "rows": 3, "fingerprint": "h"}
    rs = _store(tmp_path, hard_ds)
    images = hard.image_table(rs)
    assert list(images["origin"]) == ["a", "b", "a"] and images.loc[0, "labels"] == (1, 2)
    plain = hard.plain_from_sweep(rs)
    assert list(plain["pred"]) == [1, 2, 3] and list(plain["correct"]) == [True, False, False]
    assert list(plain["origin"]) == ["a", "b", "a"] and plain["confidence"].iloc[0] == 0.5

    board = hard.leaderboard({"squeezenet1_0": plain})
    table = hard.hard_leaderboard_table(board)
    assert len(table) == len(paper.IMAGENET_HARD) + 1
    assert list(table["model"][:2]) == ["EfficientNet-L2-NS", "squeezenet1_0 (this run)"]  # 39.00 > 33.3
    assert (table["top1"].diff().dropna() <= 0).all()  # best first
    ours = table[table["source"] == "this run"].iloc[0]
    assert ours["top1"] == pytest.approx(100 / 3) and ours["note"] == "3 of 10980 images"
    assert table.set_index("model").loc["EfficientNet-L2-NS", "note"] == "800 px"

    imagenet = _store(tmp_path, {"kind": "synthetic", "name": "synthetic-6", "rows": 3, "fingerprint": "s"})
    _store(tmp_path, {"kind": "synthetic", "name": "other-weights", "rows": 3, "fingerprint": "o"}, weights="x")
    _store(tmp_path, {"kind": "synthetic", "name": "other-grid", "rows": 3, "fingerprint": "g"},
           grid=ViewGrid(scales=(48, 110), crop=96))
    found = hard.find_companions(tmp_path, rs)
    assert [c.path for c in found] == [imagenet.path]
    assert hard.find_companions(tmp_path, rs, ["imagenet-val"]) == []
    assert [c.path for c in hard.find_companions(tmp_path, imagenet, ["hard"])] == [rs.path]


def test_plain_from_model_scores_multilabel_and_fills_origin():
    import torch

    from zoomstudy.data import SyntheticSource

    class Model:  # the LoadedModel interface plain_from_model uses: logits and data_config
        def data_config(self):
            return {"input_size": (3, 32, 32), "crop_pct": 0.875, "interpolation": "bilinear",
                    "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

        def logits(self, x):
            assert x.shape[1:] == (3, 32, 32)
            out = torch.zeros(len(x), 1000)
            out[:, 5] = 1.0  # right for images 1 and 3
            return out

    src = SyntheticSource(5, n_classes=10)
    labels = [s.labels for s in src]
    df = hard.plain_from_model(Model(), src, max_images=4, batch_size=3)
    assert len(df) == 4 and (df["pred"] == 5).all() and (df["origin"] == "all").all()
    assert list(df["correct"]) == [5 in lab for lab in labels[:4]] == [False, True, False, True]


# ------------------------------------------------------------------------------------------------
# the notebook steps (zoomstudy.report.steps) and the install source (zoomstudy.report.colab)
# ------------------------------------------------------------------------------------------------
def test_memo_arguments_follow_the_sweep_unless_set():
    from zoomstudy.report import steps

    base = {"model": "m", "checkpoint": "m.pt", "pretrained": False, "max_images": 10, "memo_model": None,
            "memo_checkpoint": None, "memo_pretrained": None, "memo_max_images": None}
    assert steps.memo_arguments(base) == {"model": "m", "checkpoint": "m.pt", "pretrained": False, "max_images": 10}
    other = steps.memo_arguments({**base, "memo_model": "resnet50", "memo_pretrained": True, "memo_max_images": 3})
    assert other == {"model": "resnet50", "checkpoint": None, "pretrained": True, "max_images": 3}  # m.pt is m's
    assert steps.memo_arguments({**base, "memo_checkpoint": "robust.pt"})["checkpoint"] == "robust.pt"


def test_model_runs_put_the_profile_model_first():
    from zoomstudy.report import steps

    assert steps.model_runs(None, None, "a", "a.pt") == [("a", "a.pt")]
    assert steps.model_runs(["b", "a"], ["b.pt", None], "a", "a.pt") == [("a", "a.pt"), ("b", "b.pt")]
    assert steps.model_runs(["b", "c"], None) == [("b", None), ("c", None)]
    with pytest.raises(ValueError, match="one entry .* per model"):
        steps.model_runs(["b", "c"], [None])
    with pytest.raises(ValueError, match="no model"):
        steps.model_runs([], [], None)


def test_plain_top1_rejects_unknown_protocols():
    from zoomstudy.report import steps

    with pytest.raises(ValueError, match="plain_protocol"):
        steps.plain_top1({"plain_protocol": "both"}, None, "x", None)


def test_per_origin_table_and_example_labels():
    from zoomstudy.report import steps

    images = pd.DataFrame({"origin": ["a", "b", "a"], "labels": [(0, 1), (2,), (3,)]})
    c = np.zeros((3, 4), bool)
    c[0, 1] = c[2, 3] = True
    plain = pd.DataFrame({"origin": ["a", "b", "a"], "correct": [True, False, False]})
    t = steps.per_origin_table(images, c, plain).set_index(["measure", "origin"])["accuracy"]
    assert t[("1-crop", "a")] == 50.0 and t[("any of 4 views", "a")] == 100.0 and t[("any of 4 views", "b")] == 0.0
    assert steps.per_origin_table(images.drop(columns="origin"), c, plain) is None
    top1 = np.array([[0, 2, 0, 0], [2, 2, 2, 2], [1, 1, 1, 3]])
    assert steps.example_labels(images, [0, 2], top1, 1) == ["[a] tench (+1)\n1-crop: great white shark",
                                                             "[a] tiger shark\n1-crop: goldfish"]


class _Sweep:
    """What the findings functions read of a steps.SweepResults."""

    def __init__(self, correct, grid, random_weights=False, n_classes=1000):
        self.correct, self.grid, self.random_weights, self.n_classes = correct, grid, random_weights, n_classes
        self.info = {"model": "m", "dataset": "d"}


def test_findings_are_sentences_with_the_run_numbers():
    from zoomstudy.analysis import bounds
    from zoomstudy.report import steps

    c = _matrix()
    table = bound_tables.bounds_frame(c, GRID, top_n=2, folds=2, n_classes=10)
    found = steps.oracle_findings(table, _Sweep(c, GRID), cover_length=3, top_n=2)
    assert found[0] == ("m on d (4 images, 36 views each): 1-crop accuracy is 25.0%; the right framing among the "
                        "36 views would reach 75.0% (+50.0 points).")
    assert found[1].startswith("The greedy top-2 views reach 50.0%") and "3 views together" in found[1]
    assert steps.oracle_findings(table, _Sweep(c, GRID, True), 3, 2)[0].startswith("Random weights")
    # with 12 classes, 36 guesses cover every label: the finding says the bound is saturated by chance
    few = steps.oracle_findings(table, _Sweep(c, GRID, n_classes=12), 3, 2)[0]
    assert few.endswith("(+50.0 points), but 36 random guesses among 12 classes would reach 100% too, so this bound "
                        "is saturated by chance; the cross-validated top-N is the informative bound here.")
    assert steps.chance_saturation(_Sweep(c, GRID, n_classes=72)) is not None  # 36 / 72 = 50%
    assert steps.chance_saturation(_Sweep(c, GRID, n_classes=73)) is None
    summary = bounds.summarize(c, GRID, top_n=2)
    centre = steps.centre_findings(summary, _Sweep(c, GRID), top_n=2)
    assert centre[0].startswith("m on d: the per-anchor bound is 50.0% at the centre against 28.1% on average off-centre (+21.9 points).")
    assert "% of the greedy top-2 views (2 views) sit at the centre, against 11.1% if uniform" in centre[1]
    comparison = pd.DataFrame([{"model": "m", "n_images": 4, "one_crop": 25.0, "oracle": 75.0, "oracle_gap": 50.0,
                                "center_bias": 12.5, "best_scale": 110, "best_scale_accuracy": 50.0}])
    assert steps.sensitivity_findings(comparison) == [
        "m (4 images): 1-crop 25.0%, oracle 75.0% (gap +50.0 points), centre bias +12.5 points, best scale 110 px (50.0%)."]


def test_install_source_is_named_once_and_the_notebooks_agree(monkeypatch):
    import tomllib

    from zoomstudy.report import colab

    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert colab.repository_url() == url.rstrip("/")
    monkeypatch.delenv(colab.PIP_SPEC_ENV, raising=False)
    assert colab.pip_spec() == f"zoomstudy[notebooks] @ git+{url}"
    monkeypatch.setenv(colab.PIP_SPEC_ENV, "/content/zoomstudy")
    assert colab.pip_spec() == "/content/zoomstudy"
    assert colab.badge_url("01_x", "https://github.com/me/zs") == (
        "https://colab.research.google.com/github/me/zs/blob/main/notebooks/01_x.ipynb")
    with pytest.raises(ValueError, match="github.com/OWNER/NAME"):
        colab.badge_url("01_x", "https://gitlab.com/me/zs")
    for name in OWN_NOTEBOOKS:
        nb = _read(NOTEBOOKS / f"{name}.ipynb")
        synced = colab.synced_notebook(_read(NOTEBOOKS / f"{name}.ipynb"), name)
        assert [c.source for c in nb.cells] == [c.source for c in synced.cells], \
            f"{name}: badge or install cell out of date; run python -m zoomstudy.report.colab"
        assert colab.badge_url(name) in nb.cells[0].source and "install" in nb.cells[1].metadata["tags"]
    ns = {}
    exec(colab.install_cell_source(url), ns)  # zoomstudy is importable here: a no-op
    assert "_spec" not in ns


def test_sync_notebooks_rewrites_badge_and_install_cell(tmp_path):
    import shutil

    from zoomstudy.report import colab

    shutil.copy(NOTEBOOKS / "02_center_bias.ipynb", tmp_path)
    assert colab.sync_notebooks(tmp_path, "https://github.com/me/zs") == [tmp_path / "02_center_bias.ipynb"]
    nb = _read(tmp_path / "02_center_bias.ipynb")
    assert "github/me/zs/blob/main/notebooks/02_center_bias.ipynb" in nb.cells[0].source
    assert "git+https://github.com/me/zs" in nb.cells[1].source
    assert colab.sync_notebooks(tmp_path, "https://github.com/me/zs") == []  # idempotent


def test_local_profile_points_at_the_real_data_kit(realdata):
    """The local profile's default checkpoint and images are the kit's (found from the checkout)."""
    local = profiles.resolve_parameters("local", "01_oracle_accuracy")
    assert Path(local["checkpoint"]).is_file()
    assert (Path(local["dataset"].removeprefix("csv:")) / "labels.csv").is_file()


def test_world_data_is_described_by_its_split_seed_and_size():
    from zoomstudy.experiment.world import WorldSource, WorldSpec
    from zoomstudy.report import provenance_text

    prov = WorldSource(WorldSpec(), 5, "photo", seed=2).provenance()
    assert provenance_text.describe_data(prov) == "world-photo (procedural world, photo split, seed 2, 5 images)"
    assert provenance_text.describe_data({"name": "x"}) == "x"


def test_world_results_are_scored_in_the_worlds_own_classes():
    """label_space_note stays silent for world data scored in the world's classes (not 'given explicitly')."""
    from zoomstudy import study
    from zoomstudy.experiment.world import WorldSource, WorldSpec

    photo = WorldSource(WorldSpec(), 3, "photo").provenance()
    used = {"model": {"label_space": {"name": "world-12"}}}
    assert study.label_space_note({**used, "dataset": photo}) is None
    assert study.label_space_note({**used, "dataset": {"name": "world-hard", "kind": "parquet"}}) is None
    note = study.label_space_note({"model": {"label_space": {"name": "imagenet1k"}}, "dataset": photo})
    assert note and "'world-12'" in note


def test_hard_ranking_places_the_run_beside_the_paper_or_the_world_models(monkeypatch):
    """ImageNet data: beside the paper's models. world-hard: beside the other world models trained here
    (this run's own model appears once, as this run), and the finding says which."""
    from zoomstudy.analysis import hard
    from zoomstudy.experiment import hard_set
    from zoomstudy.report import steps

    plain = pd.DataFrame({"correct": [True, False, False, False], "origin": ["a", "b", "a", "b"]})
    board = hard.leaderboard({"world-rrc-cnn-s0": plain})  # 25%
    sweep = _Sweep(np.zeros((4, 36), bool), GRID, n_classes=12)
    sweep.settings = {"key": {"model": {"name": "world-rrc-cnn-s0"}}}
    sweep.info = {"model": "world:rrc", "dataset": "world-hard"}

    paper_rank = steps.hard_ranking(board, sweep, "imagenet-hard")
    assert paper_rank.attrs["reference"] == f"the paper's {len(paper.IMAGENET_HARD)} models"

    def fake_board(source, alpha=0.05, **kw):
        results = {"world-centered-cnn-s0": pd.DataFrame({"correct": [True, True, False, False]}),  # 50%
                   "world-left-cnn-s0": pd.DataFrame({"correct": [False] * 4}),  # 0%
                   "world-rrc-cnn-s0": plain}  # this run's own model: not listed twice
        return hard.leaderboard(results, alpha=alpha), None

    monkeypatch.setattr(hard_set, "world_hard_leaderboard", fake_board)
    monkeypatch.setattr("zoomstudy.study.open_data", lambda spec, root=None: object())
    rank = steps.hard_ranking(board, sweep, "world-hard:150")
    assert list(rank["model"]) == ["world-centered-cnn-s0", "world-rrc-cnn-s0 (this run)", "world-left-cnn-s0"]
    assert list(rank["source"]) == ["world model (seed 0)", "this run", "world model (seed 0)"]
    assert rank.attrs["reference"] == "the 2 other world models trained here (seed 0)"
    here = pd.DataFrame({"key": ["upper_all"], "accuracy": [75.0]})
    found = steps.hard_findings(board, rank, here, sweep)
    assert found[0] == ("world:rrc on world-hard (4 images): plain 1-crop top-1 25.0%, place 2 of 3 beside the 2 other "
                        "world models trained here (seed 0).")
    assert found[1].startswith("The right framing among 36 views would solve 75.0% of these images, but 36 random")


# ------------------------------------------------------------------------------------------------
# the notebook pattern: the steps a cell calls, and the record of the last cell
# ------------------------------------------------------------------------------------------------
def _hand_sweep(tmp_path):
    """A steps.SweepResults over the hand-written store (3 images; image 0 right at the 1-crop view)."""
    from zoomstudy.report import steps

    rs = _store(tmp_path, {"kind": "csv", "name": "hard", "rows": 3, "fingerprint": "h", "location": "/data/hard"})
    return steps.SweepResults(rs, rs.grid, provenance_text.provenance_info(rs, "offline"), rs.correct())


def test_record_writes_findings_and_provenance_naming_profile_weights_and_data(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from zoomstudy.report import steps

    sweep = _hand_sweep(tmp_path / "results")
    p = profiles.Parameters(profile="offline", top_n=2, cv_folds=2, seed=0, alpha=0.05, report_dir=str(tmp_path / "r"))
    table = steps.table1(p, sweep)
    cover, _ = steps.table1_comparison(p, sweep, table)
    fig, _ = plt.subplots()
    plt.close(fig)
    explorer = steps.Link(tmp_path / "r" / "explorer-x.html", "Open the view explorer", relative=True)
    rec = steps.oracle_record(p, sweep, table, cover, fig, explorer)
    monkeypatch.setenv(reports.NOTEBOOK_ENV, "01_oracle_accuracy")
    found = steps.record(p, rec)
    assert list(found) == rec.findings and found[0].startswith("Random weights")
    out = tmp_path / "r"
    written = reports.read_findings(out, "01_oracle_accuracy")
    assert written["findings"] == rec.findings and written["links"] == {"view explorer": "explorer-x.html"}
    assert (out / written["thumbnail"]).is_file()
    prov = reports.read_provenance(out, "01_oracle_accuracy")
    assert prov["profile"] == "offline" and prov["weights"] == "random (untrained torchvision:squeezenet1_0)"
    assert prov["dataset"] == "hard" and prov["data"].startswith("hard (csv, 3 images, /data/hard")
    assert prov["statement"] == sweep.info["statement"] and prov["n_images"] == 3
    assert prov["cover_length"] == len(cover) and prov["results"]["upper_all"] == pytest.approx(100 / 3, abs=1e-3)
    # interactive (report_dir None): the findings are returned, nothing is written
    assert list(steps.record(profiles.Parameters({**p, "report_dir": None}), rec)) == rec.findings


def test_each_record_names_what_produced_its_numbers(tmp_path):
    """The records of notebooks 02 and 04 carry the sweep's provenance plus their own numbers."""
    from zoomstudy.analysis import hard
    from zoomstudy.report import steps

    sweep = _hand_sweep(tmp_path / "results")
    p = profiles.Parameters(profile="offline", top_n=2, cv_folds=2, seed=0, alpha=0.05, report_dir=None,
                            results_dir=str(tmp_path / "results"), compare_with=None, plain_protocol="sweep")
    summary, figure = steps.anchor_bounds(p, sweep)
    rec = steps.centre_record(p, sweep, summary, figure)
    assert rec.provenance["weights_id"] == "random" and np.asarray(rec.provenance["anchor_bounds"]).shape == (3, 3)
    assert rec.statements == [sweep.info["statement"]] and rec.figure is figure
    plain = hard.plain_from_sweep(sweep.result_set)
    board = hard.leaderboard({"squeezenet1_0": plain})
    ranking = steps.hard_ranking(board, sweep, "imagenet-hard")
    datasets = steps.compare_datasets(p, sweep)  # no companion in this store
    assert datasets.companions == [] and set(datasets.here["key"]) >= {"standard", "upper_all"}
    rec = steps.hard_record(p, sweep, board, ranking, datasets, None)
    assert rec.provenance["plain_protocol"] == "sweep" and rec.provenance["companions"] == []
    assert rec.provenance["plain_top1"] == pytest.approx(100 / 3) and rec.provenance["upper_all"] == pytest.approx(100 / 3)
    assert rec.findings[-1].startswith("The right framing among 36 views would solve 33.3%")


def test_steps_show_tables_and_figures_as_one_output(tmp_path, capsys):
    from matplotlib.figure import Figure

    from zoomstudy.report import steps

    sweep = _hand_sweep(tmp_path / "results")
    p = profiles.Parameters(profile="offline", top_n=2, alpha=0.05)
    shown = steps.centre_tests(p, sweep)  # any scale, then the single views at the 1-crop scale
    assert len(shown) == 2 and "p_holm" in shown[0].data.columns
    assert "single views at scale 110" in shown[1].to_html()
    shares = steps.cover_anchors(p, sweep, steps.anchor_bounds(p, sweep)[0])
    assert isinstance(shares[1], Figure) and "centre_share" in shares[0].data.columns
    assert isinstance(steps.zoom_groups(p, sweep), Figure)
    assert "% of the images are solved by one group of views only." in capsys.readouterr().out
    styled = steps.styled(pd.DataFrame({"a": [1.234, np.nan]}), caption="c").to_html()
    assert "1.23" in styled and "-" in styled and "c</caption>" in styled
    assert steps.Shown(None, 1) == (None, 1)
    link = steps.Link(tmp_path / "e.html", "Open", relative=True)
    assert "href='e.html'" in link._repr_html_()
    assert str(tmp_path / "e.html") in steps.Link(tmp_path / "e.html", "Open", relative=False)._repr_html_()
