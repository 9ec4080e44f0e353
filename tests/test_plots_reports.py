"""Figures (zoomstudy.report.plots) and the notebook runner / report site (zoomstudy.report.notebooks).

The figure tests check structure (axes, images, annotations, colours) on small inputs; the report
tests run real notebooks written here with nbformat through papermill and the python3 kernel.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from zoomstudy.report import plots
from zoomstudy.report import notebooks as reports
from zoomstudy.report import profiles
from zoomstudy.views import PAPER_SCALES, ViewGrid

REPO_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

RESNET50_IN = np.array([[80.57, 85.18, 81.09], [85.56, 89.90, 85.81], [81.74, 86.16, 82.22]])


def _heat_axes(fig):
    """Axes holding a heatmap (a QuadMesh), i.e. not colour bars."""
    return [ax for ax in fig.axes if ax.collections and type(ax.collections[0]).__name__ == "QuadMesh"]


# ------------------------------------------------------------------------------------------------
# anchor grids
# ------------------------------------------------------------------------------------------------
def test_anchor_grid_annotates_values_in_image_layout():
    fig = plots.anchor_grid(RESNET50_IN, title="ResNet-50, ImageNet", fmt=".2f")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # heatmap + colour bar
    ax = _heat_axes(fig)[0]
    texts = {(round(t.get_position()[1] - 0.5), round(t.get_position()[0] - 0.5)): t.get_text() for t in ax.texts}
    assert texts == {(r, c): f"{RESNET50_IN[r, c]:.2f}" for r in range(3) for c in range(3)}
    assert ax.yaxis_inverted()  # row 0 drawn at the top
    assert ax.get_title() == "ResNet-50, ImageNet"


def test_anchor_grid_accepts_tidy_table_and_rejects_bad_input():
    cells = [(r, c, RESNET50_IN[r, c]) for r in range(3) for c in range(3)]
    tidy = pd.DataFrame(cells, columns=["row", "col", "value"])
    fig = plots.anchor_grid(tidy.sample(frac=1, random_state=0), title="t", cbar=False)
    assert len(fig.axes) == 1
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(f"{v:.1f}" for v in RESNET50_IN.ravel())
    with pytest.raises(ValueError, match="square"):
        plots.anchor_grid(np.zeros((2, 3)), title="t")
    with pytest.raises(ValueError, match="same \\(row, col\\)"):
        plots.anchor_grid(pd.concat([tidy, tidy.iloc[:1]]), title="t")
    with pytest.raises(ValueError, match="full g x g"):
        plots.anchor_grid(tidy.iloc[:-1], title="t")


def test_anchor_grid_draws_into_given_axes():
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    out = plots.anchor_grid(RESNET50_IN, title="left", ax=axes[0], cbar=False)
    assert out is fig and len(axes[0].texts) == 9 and len(axes[1].texts) == 0
    plt.close(fig)


def test_anchor_grids_small_multiples_share_one_colour_scale():
    bases = [("ImageNet", 80), ("ImageNet-A", 15), ("ObjectNet", 35), ("IN-R", 60)]
    rows = [(p, r, c, base + 3 * r + c) for p, base in bases for r in range(3) for c in range(3)]
    df = pd.DataFrame(rows, columns=["panel", "row", "col", "value"])
    fig = plots.anchor_grids(df, col_wrap=3, title="per anchor")
    heat = _heat_axes(fig)
    assert len(heat) == 4 and len(fig.axes) == 5  # 4 panels (2 empty cells removed) + 1 shared colour bar
    assert [ax.get_title() for ax in heat] == ["ImageNet", "ImageNet-A", "ObjectNet", "IN-R"]
    assert {ax.collections[0].get_clim() for ax in heat} == {(15.0, 88.0)}
    assert "15.0" in [t.get_text() for t in heat[1].texts]
    with pytest.raises(ValueError, match="missing column"):
        plots.anchor_grids(pd.DataFrame({"row": [0], "col": [0], "value": [1.0]}))


# ------------------------------------------------------------------------------------------------
# accuracy against scale
# ------------------------------------------------------------------------------------------------
def _scale_table(models=("ResNet-50", "ViT-B/32"), series=("centre", "any of 9")):
    rows = []
    for m in models:
        for k, s in enumerate(series):
            for x in PAPER_SCALES:
                a = 60 * np.exp(-np.log(x / 300) ** 2) + 10 * k
                rows.append((m, s, x, a, a - 2, a + 2))
    return pd.DataFrame(rows, columns=["facet", "series", "scale", "accuracy", "lo", "hi"])


def test_accuracy_vs_scale_facets_series_bands_and_crop_line():
    fig = plots.accuracy_vs_scale(_scale_table(), title="centre vs any of 9")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        data_lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(PAPER_SCALES)]
        assert len(data_lines) == 2
        crop_lines = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [224, 224]]
        assert len(crop_lines) == 1
        bands = [c for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
        assert len(bands) == 2
        assert {"zoom out", "zoom in"} <= {t.get_text() for t in ax.texts}
        assert 224.0 in list(ax.get_xticks())
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["centre", "any of 9"]


def test_accuracy_vs_scale_legend_clear_of_titles_and_labels():
    """The legend sits below the panels (it used to sit level with the titles), and the curves leave
    headroom for the "zoom out | zoom in" labels at the top of each panel."""
    for table in (_scale_table(), _scale_table(models=("m",)).drop(columns="facet")):
        fig = plots.accuracy_vs_scale(table, title="a long title for the whole figure")
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)  # lays the figure out (constrained layout) as savefig does
        legend = fig.legends[0].get_window_extent(renderer)
        for ax in fig.axes:
            assert legend.y1 <= ax.get_window_extent(renderer).y0  # below every panel
            assert not legend.overlaps(ax.title.get_window_extent(renderer))
            top = max(line.get_ydata().max() for line in ax.get_lines() if len(line.get_xdata()) > 2)
            assert ax.get_ylim()[1] >= top * 1.1


def test_accuracy_vs_scale_minimal_table_and_errors():
    df = _scale_table(models=("m",), series=("centre",))[["scale", "accuracy"]]
    fig = plots.accuracy_vs_scale(df, title="one")
    assert len(fig.axes) == 1 and not fig.axes[0].collections
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_xdata(), PAPER_SCALES)
    with pytest.raises(ValueError, match="both lo and hi"):
        plots.accuracy_vs_scale(df.assign(lo=0.0))
    with pytest.raises(ValueError, match="missing column"):
        plots.accuracy_vs_scale(df.rename(columns={"accuracy": "acc"}))


def test_series_table_reshapes_wide_results():
    wide = pd.DataFrame({"scale": [128, 256], "group": ["zoom_out", "zoom_in"], "center": [40.0, 70.0],
                         "center_lo": [35.0, 65.0], "center_hi": [45.0, 75.0], "any_anchor": [50.0, 80.0],
                         "any_anchor_lo": [45.0, 75.0], "any_anchor_hi": [55.0, 85.0]})
    long = plots.series_table(wide, {"center": "centre", "any_anchor": "any of 9"})
    assert list(long.columns) == ["scale", "series", "accuracy", "lo", "hi"] and len(long) == 4
    row = long[(long.series == "any of 9") & (long.scale == 256)].iloc[0]
    assert (row.accuracy, row.lo, row.hi) == (80.0, 75.0, 85.0)
    fig = plots.accuracy_vs_scale(long)
    assert len(fig.axes) == 1 and len(fig.legends) == 1
    with pytest.raises(ValueError, match="missing column"):
        plots.series_table(wide, {"centre": "centre"})


# ------------------------------------------------------------------------------------------------
# ours against the paper
# ------------------------------------------------------------------------------------------------
OURS = pd.DataFrame({"model": ["ResNet-50", "AlexNet"], "split": ["IN", "IN"],
                     "top1": [75.10, 56.16], "bound": [96.9, 90.0]})
PAPER = pd.DataFrame({"model": ["AlexNet", "ResNet-50", "VGG-16"], "split": ["IN", "IN", "IN"],
                      "top1": [56.16, 75.75, 71.37], "bound": [90.03, 96.78, "-"]})


def test_compare_frame_differences():
    out = plots.compare_frame(OURS, PAPER, on=["model", "split"], value_cols=["top1", "bound"], decimals=None)
    assert list(out.columns) == [("top1", "ours"), ("top1", "paper"), ("top1", "diff"),
                                 ("bound", "ours"), ("bound", "paper"), ("bound", "diff")]
    assert out.loc[("ResNet-50", "IN"), ("top1", "diff")] == pytest.approx(75.10 - 75.75)
    assert out.loc[("AlexNet", "IN"), ("top1", "diff")] == pytest.approx(0.0)
    assert out.loc[("ResNet-50", "IN"), ("bound", "diff")] == pytest.approx(96.9 - 96.78)
    vgg = out.loc[("VGG-16", "IN")]  # only in the paper: kept, ours missing
    assert np.isnan(vgg[("top1", "ours")]) and vgg[("top1", "paper")] == 71.37 and np.isnan(vgg[("bound", "paper")])
    rounded = plots.compare_frame(OURS, PAPER, on=["model", "split"])  # value_cols: the shared ones
    assert rounded.loc[("ResNet-50", "IN"), ("bound", "diff")] == 0.12
    with pytest.raises(ValueError, match="duplicate keys"):
        plots.compare_frame(pd.concat([OURS, OURS]), PAPER, on=["model", "split"])
    with pytest.raises(ValueError, match="missing column"):
        plots.compare_frame(OURS, PAPER, on=["model"], value_cols=["top5"])


def test_compare_table_styler_formats_and_colours_diffs():
    styler = plots.compare_table(OURS, PAPER, on=["model", "split"], value_cols=["top1"])
    html = styler.to_html()
    for text in ("75.10", "75.75", "-0.65", "0.00", "71.37"):
        assert text in html
    assert "75.100000" not in html
    # the diff cells carry a background colour, the ours/paper cells do not
    styled_cells = set(re.findall(r"#(T_\w+_row\d+_col\d+)", html))
    assert styled_cells and all(cell.endswith("_col2") for cell in styled_cells)
    # VGG-16 has no diff (ours missing): its cell is blank, not the colormap's black "bad" colour
    rows = list(plots.compare_frame(OURS, PAPER, on=["model", "split"], value_cols=["top1"]).index)
    vgg = rows.index(("VGG-16", "IN"))
    css = re.search(rf"#T_\w+_row{vgg}_col2 {{(.*?)}}", html, re.S).group(1)
    assert "transparent" in css and "#000000" not in css.split("transparent")[-1]


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------
def test_view_gallery_frames_and_titles():
    rng = np.random.default_rng(0)
    import torch

    views = torch.from_numpy(rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8))
    grid = ViewGrid(scales=(64, 128, 224, 256, 512), grid=1, crop=32)
    correct = [True, False, True, True, False]
    fig = plots.view_gallery(views, names=grid.names(), correct=correct, conf=[0.9, 0.2, 0.55, 0.7, 0.1], ncols=3)
    assert len(fig.axes) == 5 and sum(len(ax.images) for ax in fig.axes) == 5
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), views[1].permute(1, 2, 0).numpy())
    for ax, ok in zip(fig.axes, correct):
        edge = matplotlib.colors.to_hex(ax.spines["left"].get_edgecolor())
        assert edge == (plots.CORRECT_COLOR if ok else plots.WRONG_COLOR)
    assert "LOC:0_0_Size:128" in fig.axes[1].get_title() and "0.20" in fig.axes[1].get_title()
    plain = plots.view_gallery(views.float(), ncols=6)  # float grey levels, no labels
    assert len(plain.axes) == 5
    with pytest.raises(ValueError, match="\\[V, 3, h, w\\]"):
        plots.view_gallery(views[0])
    with pytest.raises(ValueError, match="conf has 2 entries"):
        plots.view_gallery(views, conf=[0.1, 0.2])
    with pytest.raises(ValueError, match="grey levels"):
        plots.view_gallery(views.float() / 255 - 0.5)


def test_zoom_map_colours_each_view():
    rng = np.random.default_rng(1)
    correct = rng.random((36, 9)) > 0.5
    conf = rng.random((36, 9))
    fig = plots.zoom_map(correct, conf, PAPER_SCALES, title="img 0")
    assert len(fig.axes) == 3  # map + colour bars for right and wrong
    ax = fig.axes[0]
    assert len(ax.images) == 1
    rgb = np.asarray(ax.images[0].get_array())
    assert rgb.shape == (9, 36, 3)  # anchors down, scales across
    green = rgb[..., 1] > rgb[..., 0]
    np.testing.assert_array_equal(green, correct.T)
    assert f"{correct.sum()} of 324" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["10", "16", "32"]
    # two dashed lines bound the S = 224 column
    assert sorted(ln.get_xdata()[0] for ln in ax.get_lines()) == [8.5, 9.5]
    # no confidence: one axes with a legend; a [n_scales, g, g] array and a ViewGrid work too
    fig2 = plots.zoom_map(correct.reshape(36, 3, 3), scales=ViewGrid())
    assert len(fig2.axes) == 1 and fig2.axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="pass scales"):
        plots.zoom_map(correct[:5])
    with pytest.raises(ValueError, match="not a square"):
        plots.zoom_map(np.ones((36, 8), bool))


def test_bar_with_ci_bars_and_error_bars():
    df = pd.DataFrame({"origin": ["imagenet_a", "imagenet_r", "objectnet"] * 2, "model": ["R50"] * 3 + ["ViT"] * 3,
                       "acc": [10.0, 20, 30, 15, 25, 35]})
    df["lo"], df["hi"] = df["acc"] - 3, df["acc"] + 4
    fig = plots.bar_with_ci(df, "origin", "acc", "lo", "hi", hue="model", title="per origin")
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.patches) == 6
    assert sorted(p.get_height() for p in ax.patches) == sorted(df["acc"])
    assert len(ax.containers) == 4  # 2 bar containers + 2 error-bar containers
    err = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"][0]
    segs = err.lines[2][0].get_segments()
    assert [(s[0][1], s[1][1]) for s in segs] == [(7.0, 14.0), (17.0, 24.0), (27.0, 34.0)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["R50", "ViT"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # beside the bars
    single = plots.bar_with_ci(df[df.model == "R50"], "origin", "acc", "lo", "hi")
    assert len(single.axes[0].patches) == 3
    # a leaderboard (one row per x) coloured by source: each bar centred on its category, full width
    board = pd.DataFrame({"model": ["a", "b", "c"], "source": ["paper", "this run", "paper"], "acc": [30.0, 20, 10]})
    board["lo"], board["hi"] = board["acc"] - 1, board["acc"] + 1
    bars = plots.bar_with_ci(board, "model", "acc", "lo", "hi", hue="source").axes[0].patches
    assert sorted(round(b.get_x() + b.get_width() / 2, 6) for b in bars) == [0, 1, 2]
    assert {round(b.get_width(), 6) for b in bars} == {0.76}
    with pytest.raises(ValueError, match="lo <= acc <= hi"):
        plots.bar_with_ci(df.assign(lo=df["acc"] + 1), "origin", "acc", "lo", "hi", hue="model")


def test_fig_to_base64_png_and_figures_are_closed():
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    fig = plots.anchor_grid(np.eye(3), title="eye")
    assert set(plt.get_fignums()) == before  # returned closed: no double display, no pile-up
    png = base64.b64decode(plots.fig_to_base64_png(fig))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="Figure"):
        plots.fig_to_base64_png("not a figure")


# ------------------------------------------------------------------------------------------------
# profiles and provenance
# ------------------------------------------------------------------------------------------------
def test_resolve_parameters_merges_profile_notebook_and_overrides(monkeypatch, tmp_path):
    assert set(profiles.PROFILES) >= {"offline", "local", "quick", "paper"}
    monkeypatch.setitem(profiles.PROFILES, "t", profiles.StudyProfile("t", {"a": 1, "b": (1, 2), "c": tmp_path},
                                                                 {"02_fig": {"a": 2}}))
    assert profiles.resolve_parameters("t", "01_x", None) == {"profile": "t", "a": 1, "b": [1, 2], "c": str(tmp_path)}
    assert profiles.resolve_parameters("t", "notebooks/02_fig.ipynb", {"b": 3})["a"] == 2
    expected = {"profile": "t", "a": 5, "b": 3, "c": str(tmp_path)}
    assert profiles.resolve_parameters("t", "02_fig", {"a": 5, "b": 3}) == expected
    assert profiles.PROFILES["t"].common["b"] == (1, 2)  # the registry is not mutated
    assert profiles.resolve_parameters("offline", "x")["profile"] == "offline"
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        profiles.resolve_parameters("nope", "x")
    with pytest.raises(ValueError, match="identifiers"):
        profiles.resolve_parameters("offline", "x", {"not valid": 1})


def test_record_provenance_convention(tmp_path, monkeypatch):
    assert reports.record_provenance(None, {"a": 1}) is None  # interactive run: nothing written
    monkeypatch.setenv(reports.NOTEBOOK_ENV, "03_nb")
    path = reports.record_provenance(tmp_path, {"n": np.int64(3), "where": tmp_path})
    assert path == tmp_path / "03_nb.provenance.json"
    reports.record_provenance(tmp_path, {"revision": "abc"})
    assert reports.read_provenance(tmp_path, "03_nb") == {"n": 3, "where": str(tmp_path), "revision": "abc"}
    monkeypatch.delenv(reports.NOTEBOOK_ENV)
    with pytest.raises(ValueError, match="notebook name unknown"):
        reports.record_provenance(tmp_path, {})


def test_notebook_failed_message_is_one_line():
    err = reports.NotebookFailed("02_fit", "ValueError", "bad\n  value", 7)
    assert str(err) == "notebook 02_fit failed in cell [7]: ValueError: bad value"


# ------------------------------------------------------------------------------------------------
# running notebooks (real kernels)
# ------------------------------------------------------------------------------------------------
def _write_notebook(path, params_src: str, *cells: str, install: bool = False):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from zoomstudy.report import colab

    head = [new_markdown_cell(f"# The {path.stem} notebook\n\n{colab.badge_markdown(path.stem)}\n\nWhat it shows."),
            new_code_cell(colab.install_cell_source(), metadata={"tags": ["install"]})] if install else []
    nb = new_notebook(
        cells=head + [new_code_cell(params_src, metadata={"tags": ["parameters"]})] + [new_code_cell(c) for c in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two notebooks run by reproduce with a test profile; returns (out_dir, index path)."""
    src = tmp_path_factory.mktemp("notebooks")
    out = tmp_path_factory.mktemp("reports")
    _write_notebook(
        src / "01_numbers.ipynb",
        "greeting = 'default'\nprofile = None\nreport_dir = None",
        "from zoomstudy.report.notebooks import record_provenance\n"
        "record_provenance(report_dir, {'n_images': 3, 'source': greeting})\nprint('greeting:', greeting, profile)",
        "import sys, warnings\nprint('a warning for ' + 'stderr', file=sys.stderr)\nwarnings.warn('IProg' + 'ress not found')",
        "import matplotlib.pyplot as plt\nfrom zoomstudy.report.notebooks import record_findings\n"
        "fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.close(fig)\n"
        "record_findings(report_dir, ['1-crop accuracy is 61.0% <b>here</b>.', 'The bound is 94.0%.'], figure=fig)",
        install=True,
    )
    _write_notebook(
        src / "02_figure.ipynb",
        "scale = 1.0\nreport_dir = None",
        "import numpy as np\nfrom zoomstudy.report import plots\nvalues = np.arange(9.0).reshape(3, 3) * scale\n"
        "print('largest value', values.max())\nplots.anchor_grid(values, title='grid')",
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('plain pyplot');",
    )
    profile = profiles.StudyProfile("testprofile", {"greeting": "hello-from-profile"}, {"02_figure": {"scale": 2.5}})
    mp = pytest.MonkeyPatch()
    mp.setitem(profiles.PROFILES, "testprofile", profile)
    try:
        index = reports.reproduce(src, out, profile="testprofile", overrides={"extra": "override-xyz"}, progress=False)
    finally:
        mp.undo()
    return out, index


def test_reproduce_renders_self_contained_reports(site):
    out, index = site
    for name in ("01_numbers", "02_figure"):
        assert (out / f"{name}.ipynb").exists() and (out / f"{name}.html").exists()
    fig_html = (out / "02_figure.html").read_text()
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', fig_html)) == 2
    assert "greeting: hello-from-profile testprofile" in (out / "01_numbers.html").read_text()
    # the figure returned by a plots function is displayed exactly once
    import nbformat

    nb = nbformat.read(str(out / "02_figure.ipynb"), as_version=4)
    grid_cell = next(c for c in nb.cells if "anchor_grid" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in grid_cell.outputs) == 1
    assert "largest value 20.0" in fig_html  # 8 * 2.5: the notebook-specific profile parameter arrived


def test_reports_are_rendered_for_reading(site):
    """Code folded (one <details> per code cell), no install cell, no injected parameters cell, no
    stderr (warnings, progress bars), no Colab badge; the outputs and the findings stay."""
    out, _ = site
    text = (out / "01_numbers.html").read_text()
    assert text.count("<details class=\"zs-code\">") == 4  # parameters, 3 code cells
    assert "<summary>parameters</summary>" in text
    assert "Install zoomstudy" not in text and "ZOOMSTUDY_PIP_SPEC" not in text and "Open In Colab" not in text
    assert "injected-parameters" not in text and "hello-from-profile" not in text.split("greeting:")[0]
    assert "a warning for stderr" not in text and "IProgress" not in text
    assert "greeting: hello-from-profile testprofile" in text and "Headline findings" in text
    assert "<script src=\"http" not in text and "cdn" not in text.lower()  # opens offline
    executed = (out / "01_numbers.ipynb").read_text()
    assert "a warning for stderr" in executed  # the executed notebook keeps everything


def test_record_findings_for_the_index(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    shown = reports.record_findings(None, ["A is 1.0%.", "B is  2.0%."])  # interactive: nothing written
    assert shown == ["A is 1.0%.", "B is 2.0%."] and "- B is 2.0%." in shown._repr_markdown_()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(reports.NOTEBOOK_ENV, "07_nb")
    fig, ax = plt.subplots(figsize=(6, 4))
    plt.close(fig)
    reports.record_findings(tmp_path, ["A is 1.0%."], figure=fig)
    assert reports.read_findings(tmp_path, "07_nb") == {"findings": ["A is 1.0%."], "thumbnail": "07_nb.thumb.png"}
    from PIL import Image

    assert abs(Image.open(tmp_path / "07_nb.thumb.png").width - reports.THUMBNAIL_WIDTH) <= 40
    reports.record_findings(tmp_path, ["only words"])
    assert reports.read_findings(tmp_path, "07_nb")["thumbnail"] is None
    assert not (tmp_path / "07_nb.thumb.png").exists()  # no stale thumbnail
    for bad in ("one string", ["ok", ""], [3]):
        with pytest.raises(ValueError, match="sentences"):
            reports.record_findings(tmp_path, bad)
    with pytest.raises(ValueError, match="Figure"):
        reports.record_findings(tmp_path, ["x"], figure="fig")


def test_index_leads_with_findings_and_folds_provenance(site):
    out, index = site
    text = index.read_text()
    findings = text.index("1-crop accuracy is 61.0% &lt;b&gt;here&lt;/b&gt;.")  # escaped, as written
    assert "<img src='01_numbers.thumb.png'" in text and (out / "01_numbers.thumb.png").is_file()
    assert findings < text.index("Provenance") < text.index("<h3>Parameters</h3>")
    assert "<h2 id='01_numbers'>The 01_numbers notebook</h2>" in text  # the notebook's own title
    assert "records no headline findings" in text  # 02_figure states none
    before = text.split("</style>")[1].split("Provenance")[0]
    assert "{" not in before and "<table>" not in before  # no parameter tables or JSON above the provenance


def test_reproduce_index_links_reports_with_parameters_and_provenance(site):
    out, index = site
    assert index == out / "index.html"
    text = index.read_text()
    assert "href='01_numbers.html'" in text and "href='02_figure.html'" in text
    for value in ("hello-from-profile", "override-xyz", "2.5", "testprofile", "n_images", "zoomstudy"):
        assert value in text
    manifest = json.loads((out / "index.json").read_text())
    assert [e["status"] for e in manifest["notebooks"]] == ["ok", "ok"]
    first = manifest["notebooks"][0]
    assert first["provenance"] == {"n_images": 3, "source": "hello-from-profile"}
    assert first["parameters"]["report_dir"] == str(out.resolve())
    assert manifest["run"]["profile"] == "testprofile" and manifest["run"]["versions"]["zoomstudy"]


def test_reproduce_stops_at_failing_notebook(tmp_path):
    src, out = tmp_path / "nbs", tmp_path / "out"
    src.mkdir()
    _write_notebook(src / "01_ok.ipynb", "report_dir = None", "x = 1")
    _write_notebook(src / "02_fail.ipynb", "report_dir = None", "y = 2", "raise ValueError('boom 42')")
    _write_notebook(src / "03_never.ipynb", "report_dir = None", "z = 3")
    with pytest.raises(reports.NotebookFailed) as info:
        reports.reproduce(src, out, profile="offline", progress=False)
    err = info.value
    assert "02_fail" in str(err) and "ValueError: boom 42" in str(err) and "\n" not in str(err)
    assert err.exec_count == 4 and err.ename == "ValueError"
    manifest = json.loads((out / "index.json").read_text())
    assert [e["status"] for e in manifest["notebooks"]] == ["ok", "failed", "not-run"]
    text = (out / "index.html").read_text()
    assert "href='01_ok.html'" in text and "boom 42" in text and "failed" in text
    assert (out / "02_fail.html").exists() and not (out / "03_never.html").exists()


def test_run_notebook_errors(tmp_path):
    nb = tmp_path / "a.ipynb"
    _write_notebook(nb, "report_dir = None", "pass")
    with pytest.raises(reports.NotebookFailed, match="notebook a failed: NoSuchKernel"):
        reports.run_notebook(nb, tmp_path / "out", {}, kernel="no-such-kernel-zoomstudy")
    with pytest.raises(FileNotFoundError):
        reports.run_notebook(tmp_path / "missing.ipynb", tmp_path / "out", {})
    with pytest.raises(ValueError, match="overwrite the source"):
        reports.run_notebook(nb, tmp_path, {})
    with pytest.raises(ValueError, match="unknown profile"):
        reports.reproduce(tmp_path, tmp_path / "out", profile="nope", progress=False)


def test_reproduce_refuses_an_override_no_notebook_takes(tmp_path):
    """A parameter no notebook of the run declares (a typo, or one for another notebook) stops the run
    before anything runs, instead of being dropped."""
    with pytest.raises(ValueError, match=r"overrides \['modle'\] are parameters of none"):
        reports.reproduce(REPO_NOTEBOOKS, tmp_path / "out", profile="offline", notebooks=["06_the_paper"],
                          overrides={"modle": "resnet50"}, progress=False)
    assert not (tmp_path / "out").exists()
