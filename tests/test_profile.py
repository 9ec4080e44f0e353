"""`zoomstudy profile` (issue #7): the compact sweep, the HTML report and its JSON summary, the
regression check and its exit codes, the resolution curve, and notebook 05.

Everything runs offline on synthetic images with SqueezeNet 1.0 at random weights and a tiny grid
(scales 48, 96, 110, 160 at crop 96: 36 views per image). The real-data kit test (marked realdata and
slow) profiles the real SqueezeNet on 20 kit images with the compact 108-view grid and prints the figures.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from zoomstudy import cli, study
from zoomstudy.analysis import resolution
from zoomstudy.report import model_profile as zp
from zoomstudy.report import profile_data
from zoomstudy.report import plots
from zoomstudy.views import ViewGrid

REPO = Path(__file__).resolve().parents[1]
TINY = {"scales": [48, 96, 110, 160], "crop": 96}  # squeezenet needs >= ~64 px
TINY_SIZES = (64, 96, 128)
IMG = re.compile(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
METRIC_KEYS = {"n_images", "one_crop", "one_crop_lo", "one_crop_hi", "oracle", "oracle_lo", "oracle_hi",
               "oracle_gap", "center_bias", "best_scale", "best_scale_accuracy", "resolution_peak_size",
               "resolution_peak_accuracy", "resolution_train_size", "fixres_gain"}


def _png_count(html: str) -> int:
    import base64

    blobs = IMG.findall(html)
    for b in blobs:  # each one a real PNG, not a truncated string
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    return len(blobs)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """8 synthetic PNGs + labels.csv (the layout a user has: a folder and a CSV)."""
    from zoomstudy.data import SyntheticSource

    folder = tmp_path_factory.mktemp("images")
    rows = ["file,label"]
    for i, s in enumerate(SyntheticSource(8, size=(120, 96), seed=3)):
        s.image.save(folder / f"img_{i}.png")
        rows.append(f"img_{i}.png,{s.labels[0]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def tiny_model():
    from zoomstudy.models.loading import load_model

    return load_model("torchvision:squeezenet1_0", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def report(tmp_path_factory, image_dir):
    out = tmp_path_factory.mktemp("profile")
    summary = zp.profile("torchvision:squeezenet1_0", image_dir, image_dir / "labels.csv", out_dir=out,
                         pretrained=False, device="cpu", workers=0, resolution_sizes=TINY_SIZES, n_zoom_maps=2,
                         thresholds={"max_oracle_gap": 50.0, "max_center_bias": 50.0}, **TINY)
    return out, summary


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------
def test_html_is_self_contained_with_every_figure_and_the_numbers(report):
    out, summary = report
    html = (out / "profile.html").read_text(encoding="utf-8")
    figures = summary["figures"]
    assert figures[:4] == ["accuracy_vs_scale", "anchor_grid", "oracle_gap", "resolution_curve"]
    assert figures[4] == "view_budget"
    assert len(figures) == 5 + 2 and all(f.startswith("zoom_map:") for f in figures[5:])
    assert _png_count(html) == len(figures)  # one embedded PNG per figure
    assert html.count('src="data:image/jpeg;base64,') == 2  # the zoom maps' image thumbnails
    # nothing fetched from elsewhere: no external images, scripts or style sheets
    assert not re.search(r'<(img|script|link)[^>]+(src|href)="(?!data:)', html)
    table = re.search(r"<table class='numbers' id='numbers'>(.*?)</table>", html, re.S)
    assert table is not None
    for quantity in ("1-crop accuracy", "oracle bound", "oracle gap", "centre bias", "best scale",
                     "resolution curve peak"):
        assert f"<th>{quantity}</th>" in table.group(1)
    assert "Random (untrained) weights" in html
    assert "Regression check: <span class='pass'>passed</span>" in html
    assert summary["explorer"] == "explorer.html" and (out / "explorer.html").is_file()
    assert "href='explorer.html'" in html and "The view budget" in html
    assert summary["budget"]["folds"] >= 2 and len(summary["budget"]["rows"]) > 3


def test_json_summary_keys_and_consistency(report):
    out, summary = report
    s = json.loads((out / "profile.json").read_text())
    assert s["kind"] == "zoomstudy.profile" and s["format"] == profile_data.PROFILE_FORMAT
    m = s["metrics"]
    assert METRIC_KEYS <= set(m)
    assert m["n_images"] == 8
    assert math.isclose(m["oracle_gap"], m["oracle"] - m["one_crop"])
    assert m["oracle"] >= m["one_crop"]
    bounds = np.asarray(s["anchor_bounds"])
    assert bounds.shape == (3, 3)
    assert math.isclose(m["center_bias"], bounds[1, 1] - np.delete(bounds.ravel(), 4).mean())
    assert m["best_scale"] in TINY["scales"] + [110]
    assert s["settings"]["grid"] == {"scales": [48, 96, 110, 160], "grid": 3, "crop": 96}
    assert s["settings"]["standard_view"] == "LOC:1_1_Size:110"
    prov = s["provenance"]
    assert prov["model"] == "torchvision:squeezenet1_0" and prov["weights_id"].startswith("random-")
    assert prov["data_fingerprint"] and prov["dataset_kind"] == "csv" and prov["result_set_key"]
    assert [r["size"] for r in s["resolution"]["rows"]] == list(TINY_SIZES) and s["resolution"]["key"]
    assert len(s["accuracy_vs_scale"]) == 4
    assert s["regression"] == {"thresholds": {"max_oracle_gap": 50.0, "max_center_bias": 50.0},
                               "failures": [], "passed": True}
    assert "NaN" not in (out / "profile.json").read_text()  # strict JSON for other tools


def test_second_run_reads_the_store_and_the_cached_curve(report, image_dir):
    out, first = report
    again = zp.profile("torchvision:squeezenet1_0", image_dir, image_dir / "labels.csv", out_dir=out,
                       pretrained=False, device="cpu", workers=0, resolution_sizes=TINY_SIZES, n_zoom_maps=2, **TINY)
    assert again["timings"].get("resolution_cached") is True
    assert again["metrics"] == first["metrics"]
    assert again["provenance"]["result_set"] == first["provenance"]["result_set"]
    assert len(list((out / "results").glob("*/settings.json"))) == 1
    # fewer images than the store holds: only the first max_images are scored
    fewer = zp.profile("torchvision:squeezenet1_0", image_dir, image_dir / "labels.csv", out_dir=out.parent / "fewer",
                       results_dir=out / "results", max_images=5, pretrained=False, device="cpu", workers=0,
                       resolution_sizes=(96,), n_zoom_maps=0, **TINY)
    assert fewer["metrics"]["n_images"] == 5 and fewer["provenance"]["result_set"] == first["provenance"]["result_set"]


def test_metrics_on_a_hand_made_matrix():
    grid = ViewGrid(scales=(64, 110, 160), grid=3, crop=96)
    correct = np.zeros((4, grid.n_views), bool)
    correct[0, grid.standard_view] = True  # right at the 1-crop view
    correct[1, grid.view_index(160, 1, 1)] = True  # right only when zoomed in, at the centre
    correct[2, grid.view_index(64, 0, 0)] = True  # right only zoomed out, top left
    m, table, bounds, bars = profile_data._metrics(correct, grid, 0.05)
    assert m["one_crop"] == 25.0 and m["oracle"] == 75.0 and m["oracle_gap"] == 50.0
    assert bounds[1, 1] == 50.0 and bounds[0, 0] == 25.0
    assert m["center_bias"] == pytest.approx(50.0 - 25.0 / 8)
    assert m["best_scale"] == 110  # a tie (25% at 110 and 160): nearest the 1-crop scale wins
    assert m["zoom_in_bound"] == 50.0 and m["zoom_out_bound"] == 25.0  # 110 and 160 both zoom in at crop 96
    assert m["zoom_224_bound"] is None  # no view at S = crop
    assert list(bars["metric"])[0] == "1-crop" and list(bars["metric"])[-1] == f"oracle (any of {grid.n_views})"


def test_compact_grid_and_architecture_guess():
    g, note = profile_data.compact_grid()
    assert g.n_scales == 12 and {224, 256} <= set(g.scales) and set(g.scales) <= set(ViewGrid.paper().scales)
    assert note is None and g.n_views == 108
    g, note = profile_data.compact_grid([48, 96, 160], crop=96)
    assert g.scales == (48, 96, 110, 160) and "110" in note
    assert profile_data.compact_grid("paper")[0] == ViewGrid.paper()
    with pytest.raises(ValueError, match="odd"):
        profile_data.compact_grid(grid=2)
    assert study.guess_architecture("/w/squeezenet1_0_deepcompression.pt") == "torchvision:squeezenet1_0"
    assert study.guess_architecture("resnet50-0676ba61.pth") == "torchvision:resnet50"
    with pytest.raises(ValueError, match="--model"):
        study.guess_architecture("weights.pt")


def test_open_data_layouts(tmp_path, image_dir):
    from zoomstudy.data import CsvSource, ImageFolderSource, SyntheticSource

    assert isinstance(study.open_data(image_dir), CsvSource)  # labels.csv inside
    moved = tmp_path / "flat"
    moved.mkdir()
    (moved / "a.png").write_bytes((image_dir / "img_0.png").read_bytes())
    (tmp_path / "mine.csv").write_text("file,label\na.png,7\n")
    src = study.open_data(moved, labels_csv=tmp_path / "mine.csv")
    assert isinstance(src, CsvSource) and src[0].labels == (7,)
    classes = tmp_path / "classes"
    (classes / "n01440764").mkdir(parents=True)
    (classes / "n01440764" / "x.png").write_bytes((image_dir / "img_1.png").read_bytes())
    src = study.open_data(classes)
    assert isinstance(src, ImageFolderSource) and src[0].labels == (0,)
    assert isinstance(study.open_data("synthetic:3"), SyntheticSource)
    with pytest.raises(ValueError, match="does not exist"):
        study.open_data(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------
# regression check and the CLI
# ------------------------------------------------------------------------------------------------
def test_check_regression_thresholds(report):
    out, summary = report
    m = summary["metrics"]
    path = out / "profile.json"
    assert profile_data.check_regression(path) == []
    assert profile_data.check_regression(out, max_oracle_gap=m["oracle_gap"], max_center_bias=m["center_bias"]) == []
    fails = profile_data.check_regression(path, max_oracle_gap=m["oracle_gap"] - 1, max_center_bias=m["center_bias"] - 1)
    assert len(fails) == 2 and "oracle gap" in fails[0] and "centre bias" in fails[1]
    doc = {"metrics": {"oracle_gap": 12.5, "center_bias": 3.0}}
    assert profile_data.check_regression(doc, max_oracle_gap=10) == [
        "oracle gap 12.50 pp exceeds the maximum 10.00 pp (max_oracle_gap)"]
    assert profile_data.check_regression(json.dumps(doc), max_oracle_gap=20, max_center_bias=5) == []
    assert "not in the summary" in profile_data.check_regression({"metrics": {}}, max_center_bias=1)[0]
    with pytest.raises(FileNotFoundError):
        profile_data.check_regression(out / "nope.json")


def test_cli_profile_exit_codes(tmp_path, image_dir, capsys):
    base = ["profile", "--model", "torchvision:squeezenet1_0", "--no-pretrained", "--images", str(image_dir),
            "--labels", str(image_dir / "labels.csv"), "--scales", "48,96,110,160", "--crop", "96",
            "--sizes", "96", "--zoom-maps", "1", "--max-images", "4", "--workers", "0", "--device", "cpu",
            "--quiet", "--out", str(tmp_path / "out")]
    assert cli.main(base + ["--max-oracle-gap", "100", "--max-center-bias", "100"]) == 0
    got = capsys.readouterr()
    assert "report:" in got.out and "oracle gap" in got.out and got.err == ""
    s = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert s["metrics"]["n_images"] == 4 and s["settings"]["resolution_sizes"] == [96]
    # a threshold below the measured value: exit 1, one line per failure (the sweep is read back)
    assert cli.main(base + ["--max-oracle-gap", "-1", "--max-center-bias", "-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("zoomstudy profile: regression: ") for line in err)
    # --check: only the JSON, nothing run
    summary = str(tmp_path / "out" / "profile.json")
    assert cli.main(["profile", "--check", summary, "--max-oracle-gap", "100"]) == 0
    assert cli.main(["profile", "--check", summary, "--max-center-bias", "-0.5"]) == 1
    capsys.readouterr()
    # bad parameters: exit 2 with one line, before any compute
    assert cli.main(["profile", "--images", str(image_dir), "--out", str(tmp_path / "x")]) == 2
    assert "--model" in capsys.readouterr().err
    assert cli.main(base[:-2] + ["--out", str(tmp_path / "y"), "--grid", "2"]) == 2
    assert "odd" in capsys.readouterr().err
    assert cli.main(["profile", "--checkpoint", str(tmp_path / "weights.pt"), "--images", str(image_dir),
                     "--out", str(tmp_path / "z")]) == 2
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------
# the resolution curve
# ------------------------------------------------------------------------------------------------
def test_center_crop_matches_pil_and_torchvision():
    from PIL import Image
    from torchvision.transforms import functional as F

    from zoomstudy.data import SyntheticSource
    from zoomstudy.views import pil_to_tensor, resized_size

    for i, s in enumerate(SyntheticSource(3, size=((90, 170), (80, 160)), seed=5)):
        im = s.image
        for size in (64, 96, 101):
            R = resolution.resize_for(size)
            W, H = resized_size(im.width, im.height, R)
            ref = np.asarray(F.center_crop(im.resize((W, H), Image.BICUBIC), [size, size]))
            ours = resolution.render_center_crop(pil_to_tensor(im), size).permute(1, 2, 0).numpy()
            assert np.array_equal(ours.astype(np.uint8), ref), (i, size)
    assert resolution.resize_for(224) == 256 and resolution.resize_for(448) == 512


def test_resolution_curve_rows(tiny_model):
    curve = resolution.resolution_curve(tiny_model, study.open_data("synthetic:5"), (96, 64, 128), max_images=4)
    assert list(curve.columns) == resolution.COLUMNS
    assert list(curve["size"]) == [64, 96, 128] and list(curve["resize"]) == [73, 110, 146]
    assert (curve["n"] == 4).all() and curve["note"].isna().all()
    assert ((curve["lo"] <= curve["accuracy"]) & (curve["accuracy"] <= curve["hi"])).all()
    with pytest.raises(ValueError, match="distinct"):
        resolution.resolution_curve(tiny_model, study.open_data("synthetic:2"), (64, 64))


def test_resolution_anchor_centre_is_the_sweeps_one_crop_view(tiny_model, tmp_path):
    """center='anchor' at size = crop renders exactly the sweep's LOC:1_1 standard view: labelled with
    the sweep's own 1-crop predictions, the curve scores 100% there."""
    from zoomstudy.data import SyntheticSource
    from zoomstudy.sweep.engine import sweep_to_store

    src = SyntheticSource(6, size=((100, 160), (90, 150)), seed=9)
    grid = ViewGrid(scales=(110,), grid=3, crop=96)
    rs = sweep_to_store(tiny_model, src, grid, tmp_path, workers=0, tta=False, progress=False)
    ids, top1, _ = rs.predictions()
    pred = dict(zip(ids, top1[:, grid.standard_view].tolist()))
    own = src.relabel(lambda r: (pred[r.image_id],), "the sweep's 1-crop predictions")
    curve = resolution.resolution_curve(tiny_model, own, (96,), center="anchor")
    assert curve["accuracy"].iloc[0] == 100.0 and curve["n"].iloc[0] == 6


class _FixedSize(nn.Module):
    """A classifier that, like a ViT with a fixed position embedding, refuses any size but 96."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 1000)

    def forward(self, x):
        if x.shape[-1] != 96 or x.shape[-2] != 96:
            raise AssertionError(f"Input image size ({x.shape[-2]}*{x.shape[-1]}) doesn't match model (96*96).")
        return self.head(x.mean(dim=(2, 3)))


def _wrap(module) -> object:
    from zoomstudy.data.labels import get_label_space
    from zoomstudy.models.loading import LoadedModel

    return LoadedModel(module=module.eval(), name="fixed96", source="test", weights_id="random",
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=(3, 96, 96),
                       interpolation="bicubic", crop_pct=0.875, label_space=get_label_space("imagenet1k"),
                       device=torch.device("cpu"), architecture="test:fixed96")


def test_resolution_skips_sizes_the_model_rejects():
    curve = resolution.resolution_curve(_wrap(_FixedSize()), study.open_data("synthetic:3"), (64, 96, 128))
    assert curve.loc[curve["size"] == 96, "n"].item() == 3 and curve.loc[curve["size"] == 96, "note"].isna().all()
    skipped = curve[curve["size"] != 96]
    assert skipped["accuracy"].isna().all() and (skipped["n"] == 0).all()
    assert skipped["note"].str.startswith("skipped: the model rejects").all()
    assert "AssertionError" in skipped["note"].iloc[0]
    assert resolution.peak(curve, prefer=96)[0] == 96
    fig = plots.plot_resolution_curve(curve, train_size=96)
    assert len(fig.axes[0].lines) >= 2  # the curve and the crosses of the rejected sizes


def test_profile_of_a_fixed_size_model_reports_the_skipped_sizes(tmp_path):
    s = zp.profile(_wrap(_FixedSize()), "synthetic:3", out_dir=tmp_path, scales=[64, 96], crop=96, workers=0,
                   resolution_sizes=(64, 96, 128), n_zoom_maps=0)
    assert s["metrics"]["resolution_skipped_sizes"] == [64, 128]
    assert s["metrics"]["resolution_peak_size"] == 96 and s["figures"] == list(zp.FIGURES)
    html = (tmp_path / "profile.html").read_text()
    assert _png_count(html) == 5 and "sizes rejected: 64, 128" in html


def test_profile_warns_when_folder_names_are_not_imagenet_classes(tmp_path, image_dir):
    for i, name in enumerate(("cat", "dog")):
        (tmp_path / "pets" / name).mkdir(parents=True)
        (tmp_path / "pets" / name / "a.png").write_bytes((image_dir / f"img_{i}.png").read_bytes())
    s = zp.profile(_wrap(_FixedSize()), tmp_path / "pets", out_dir=tmp_path / "out", scales=[96], crop=96,
                   workers=0, resolution_sizes=(), n_zoom_maps=0)
    assert s["provenance"]["dataset_kind"] == "folder" and s["metrics"]["n_images"] == 2
    assert any("sorted folder list" in w for w in s["settings"]["warnings"])
    html = (tmp_path / "out" / "profile.html").read_text()
    assert "sorted folder list" in html and _png_count(html) == 4  # no resolution curve asked for


# ------------------------------------------------------------------------------------------------
# notebook 05, headless
# ------------------------------------------------------------------------------------------------
NOTEBOOK = REPO / "notebooks" / "05_zoom_sensitivity.ipynb"


def test_notebook_is_clean_and_declares_its_parameters():
    import nbformat
    from papermill.translators import PythonTranslator

    from zoomstudy.report import profiles

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert ("https://colab.research.google.com/github/zoomstudy/zoomstudy/blob/main/notebooks/"
            "05_zoom_sensitivity.ipynb") in nb.cells[0].source
    assert "import zoomstudy" in nb.cells[1].source and "subprocess" in nb.cells[1].source
    assert "parameters" in nb.cells[2].metadata.get("tags", [])
    declared = {p.name: p for p in PythonTranslator.inspect(nb.cells[2])}
    assert {"profile", "models", "checkpoints", "pretrained", "dataset", "root", "scales", "grid", "crop",
            "max_images", "results_dir", "report_dir"} <= set(declared)
    for profile in ("offline", "local", "quick", "paper"):  # a reproduce run injects nothing undeclared
        assert set(profiles.resolve_parameters(profile, NOTEBOOK.stem)) <= set(declared)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert nb.cells[-1].source.startswith("steps.record(p, ")  # findings and provenance, written by steps


def test_notebook_runs_headless_and_compares_models(tmp_path):
    from zoomstudy.report import notebooks as reports

    out = tmp_path / "reports"
    params = {"profile": "offline", "model": "torchvision:squeezenet1_0", "models": ["timm:test_resnet"],
              "checkpoints": [None], "pretrained": False, "dataset": "synthetic:4", "sizes": [64, 96],
              "zoom_maps": 1, "results_dir": str(tmp_path / "results"), "report_dir": str(out),
              "max_oracle_gap": 100.0, **TINY}
    html_path = reports.run_notebook(NOTEBOOK, out, params, cwd=tmp_path, timeout=300)
    html = html_path.read_text(encoding="utf-8")
    # zoom curves, position grids, gap bars, resolution curves, then 1 zoom map per model
    assert _png_count(html) == 4 + 2
    assert "Traceback" not in html
    prov = json.loads((out / "05_zoom_sensitivity.provenance.json").read_text())
    assert prov["profile"] == "offline" and prov["models"] == ["torchvision:squeezenet1_0", "timm:test_resnet"]
    assert all(w.startswith("random-") for w in prov["weights_ids"]) and prov["dataset_fingerprint"]
    assert "This report was produced by profile offline" in html
    for page in prov["reports"]:  # one profile.html per model, with its JSON
        page = Path(page)
        assert _png_count(page.read_text()) == 5 + 1
        assert json.loads((page.parent / "profile.json").read_text())["regression"]["passed"] is True


# ------------------------------------------------------------------------------------------------
# the real-data kit
# ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_realdata_squeezenet_profile(realdata, tmp_path):
    ckpt = realdata / "weights" / "squeezenet1_0_deepcompression.pt"
    s = zp.profile(None, realdata / "imagenet-sample", checkpoint=ckpt, out_dir=tmp_path, max_images=20,
                   device="cpu", workers=0, n_zoom_maps=2)
    m = s["metrics"]
    assert s["provenance"]["model"] == "torchvision:squeezenet1_0"  # guessed from the file name
    assert len(s["provenance"]["weights_id"]) == 64  # the checkpoint's sha256
    assert m["n_images"] == 20 and s["settings"]["n_views"] == 108
    assert 30.0 <= m["one_crop"] <= 90.0
    assert m["oracle"] >= m["one_crop"] and m["oracle_gap"] >= 0
    assert -100 <= m["center_bias"] <= 100
    rows = pd.DataFrame(s["resolution"]["rows"])
    assert list(rows["size"]) == list(resolution.RESOLUTION_SIZES) and rows["accuracy"].notna().all()
    assert (rows["accuracy"] > 0).any()
    html = (tmp_path / "profile.html").read_text(encoding="utf-8")
    assert _png_count(html) == len(s["figures"]) == 5 + 2
    # every view against the kit's independent PIL reference (its 36 scales hold the compact 12)
    from zoomstudy.sweep.store import ResultSet

    rs = ResultSet(s["provenance"]["result_set"])
    ids, top1, _ = rs.predictions()
    ref = np.load(realdata / "reference" / "squeezenet1_0_views.npz")
    files, ref_scales = list(ref["files"]), [int(v) for v in ref["scales"]]
    pick = [ref_scales.index(v) for v in rs.grid.scales]
    expected = ref["pred"][[files.index(i) for i in ids]][:, pick].reshape(len(ids), -1)  # scale, row, col
    agree = float((expected == top1).mean())
    assert agree >= 0.99, f"only {agree:.2%} of the views agree with the reference"
    print()
    print(f"views agreeing with the kit's PIL reference: {int((expected == top1).sum())} of {expected.size}")
    print(f"real SqueezeNet 1.0 on {m['n_images']} kit images, {s['settings']['n_views']} views per image:")
    print(f"  1-crop {m['one_crop']:.1f}% [{m['one_crop_lo']:.1f}, {m['one_crop_hi']:.1f}], "
          f"oracle {m['oracle']:.1f}%, gap {m['oracle_gap']:+.1f} pp, centre bias {m['center_bias']:+.1f} pp, "
          f"best scale {m['best_scale']} ({m['best_scale_accuracy']:.1f}%)")
    print("  anchor bounds:", np.round(np.asarray(s["anchor_bounds"]), 1).tolist())
    print("  resolution:", ", ".join(f"{int(r.size)}: {r.accuracy:.0f}%" for r in rows.itertuples()),
          f"(peak {m['resolution_peak_size']} px)")
    print(f"  timings: {s['timings']}")


def test_resolution_key_leaves_out_the_device_and_the_data_location():
    """A curve computed on another GPU or from a copy of the data at another path is the same curve."""
    class Model:
        def __init__(self, device):
            self.device = device

        def provenance(self):
            return {"architecture": "torchvision:resnet18", "weights_id": "w", "device": self.device,
                    "weights_source": f"/cache/{self.device}"}

    class Data:
        def __init__(self, where):
            self.where = where

        def provenance(self):
            return {"name": "imgs", "fingerprint": "f0", "location": self.where, "csv": f"{self.where}/labels.csv"}

    key = profile_data.resolution_key(Model("cpu"), Data("/a"), (128, 224), None, "imagenet", "torchvision")
    assert key == profile_data.resolution_key(Model("cuda:0"), Data("/b"), (128, 224), None, "imagenet", "torchvision")
    assert key != profile_data.resolution_key(Model("cpu"), Data("/a"), (160, 224), None, "imagenet", "torchvision")
