"""Your model, your images: zoom and position sensitivity as a practical tool (issue #7).

`profile(model, images, out_dir=...)` runs a compact sweep (12 of the paper's scales x 3 x 3 anchors
by default: 108 views per image instead of 324, a few hundred images in minutes on a CPU), the
test-resolution curve (`zoomstudy.analysis.resolution`) and writes

* ``<out_dir>/profile.html``: one self-contained page (figures as base64 PNGs, no external files):
  a table of the headline numbers, accuracy against zoom scale with 95% intervals, the 3 x 3
  position grid, the oracle gap, the resolution curve and a zoom map per example image;
* ``<out_dir>/profile.json``: the same numbers with the settings and provenance (model, weights id,
  data fingerprint, result set), for scripts and the CI of other projects.

The headline numbers, all in % of the scored images (pp for differences):

* ``one_crop``: accuracy of the standard view (Resize 256 + centre crop 224, `LOC:1_1_Size:256`);
* ``oracle``: an image counts when any of its views is right (the paper's upper bound);
* ``oracle_gap`` = oracle - one_crop: how much accuracy the right framing would recover;
* ``center_bias`` = the centre anchor's bound minus the mean of the 8 off-centre anchors' bounds
  (an anchor's bound: right at some scale at that position): how much the model needs the object in
  the middle;
* ``best_scale``: the scale whose centre view is most accurate (ties: nearest the 1-crop scale);
* ``resolution_peak_size`` / ``resolution_peak_accuracy``: the best input size at fixed framing, and
  ``fixres_gain``, its accuracy minus the accuracy at the model's training size.

`check_regression(summary, max_oracle_gap=..., max_center_bias=...)` turns a summary into a list of
failures (empty: passed); ``zoomstudy profile ... --max-oracle-gap X --max-center-bias Y`` exits 1
when one is exceeded, so a model's CI can fail when a new checkpoint becomes more framing-sensitive.

The sweep goes through the result store (`<out_dir>/results` unless results_dir is given): a second
run with the same model, data and grid reads the stored predictions, and an interrupted one resumes.
The resolution curve is kept in profile.json under a key of what produced it and reused likewise.
The 10-crop TTA views are not rendered (tta=False): the profile does not use them.

The numbers (`compute_profile`, the summary, `check_regression`) are computed in `report.profile_data`;
this module draws them: the figures, the page (the jinja2 template `templates/profile.html.j2`) and
the side-by-side tables of several models.
"""
from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from zoomstudy.keyed import atomic_write
from zoomstudy.provenance import is_random_weights
from zoomstudy.report.profile_data import JSON_NAME, THRESHOLDS, Profile, compute_profile, summary_dict

HTML_NAME = "profile.html"
#: The figures of the report, in order (zoom maps follow, one per example image).
FIGURES = ("accuracy_vs_scale", "anchor_grid", "oracle_gap", "resolution_curve", "view_budget")
#: The view explorer written next to the report (`report.explorer`), linked from it.
EXPLORER_NAME = "explorer.html"
#: The page's template, in report/templates (package data).
TEMPLATE = "profile.html.j2"
#: The section title of each figure of the page.
SECTIONS = {"accuracy_vs_scale": "Accuracy against zoom", "anchor_grid": "The position grid",
            "oracle_gap": "The oracle gap", "resolution_curve": "Test resolution (FixRes)",
            "view_budget": "The view budget"}


# ================================================================================================
# Figures
# ================================================================================================
def scale_series(table: pd.DataFrame) -> pd.DataFrame:
    """analysis.accuracy_vs_scale -> the long table plots.accuracy_vs_scale draws (centre, any anchor)."""
    from zoomstudy.report.plots import series_table

    return series_table(table, {"center": "centre view", "any_anchor": "any anchor"})


def example_rows(p: Profile, n: int = 3) -> list[int]:
    """Rows of the images to show as zoom maps: zoom rescues first (wrong at 1-crop, right somewhere)."""
    from zoomstudy.report.examples import example_rows as rows

    return rows(p.correct, p.grid.standard_view, n)


def zoom_map_figure(p: Profile, row: int):
    """The per-image zoom map: scales x anchors, green / red by correctness, shaded by confidence."""
    from zoomstudy.data.labels import class_name
    from zoomstudy.report.plots import zoom_map

    s, a = p.grid.n_scales, p.grid.n_anchors
    ok = p.correct[row].reshape(s, a)
    conf = p.conf[row].reshape(s, a)
    names = ", ".join(class_name(k, names=p.result_set) for k in p.labels[row][:3])
    std = "right" if p.correct[row, p.grid.standard_view] else "wrong"
    return zoom_map(ok, conf, scales=p.grid.scales, crop=p.grid.crop,
                    title=f"{p.image_ids[row]} [{names}], 1-crop {std}")


def view_budget(p: Profile, alpha: float = 0.05):
    """The budget curve of the profile's sweep (`analysis.budget`), or None with fewer than 2 images."""
    from zoomstudy.analysis.budget import budget_curve

    n = int(p.correct.shape[0])
    if n < 2:
        return None
    return budget_curve(p.result_set, max_k=min(36, p.grid.n_views), folds=min(5, n), alpha=alpha)


def profile_figures(p: Profile, n_zoom_maps: int = 3, budget=None) -> list[tuple[str, str, Any]]:
    """(name, caption, matplotlib Figure) for every figure of the report, in order (budget: `view_budget`'s curve)."""
    from zoomstudy.report import plots
    from zoomstudy.report.plots import plot_resolution_curve

    m, g = p.metrics, p.grid
    figs = [
        ("accuracy_vs_scale",
         f"Top-1 accuracy against the resize scale S (shorter side, log axis) for the centre view and for "
         f"any of the {g.n_anchors} anchors, with 95% Clopper-Pearson bands. S < {g.crop}: the image is a "
         f"thumbnail on black (zoom out); S > {g.crop}: the crop sees part of the image (zoom in).",
         plots.accuracy_vs_scale(scale_series(p.scale_table), crop=g.crop, title="accuracy against zoom scale")),
        ("anchor_grid",
         f"Upper bound per position: an image counts at an anchor when the view there is right at some scale "
         f"(row 0 = top). Centre bias = centre {m['center_anchor_bound']:.1f}% - mean of the off-centre anchors "
         f"{m['off_center_anchor_bound_mean']:.1f}% = {m['center_bias']:+.1f} pp.",
         plots.anchor_grid(p.anchor_bounds, vmin=0, vmax=100, title="upper bound per position (%)")),
        ("oracle_gap",
         f"From the standard 1-crop view to the oracle (any of the {g.n_views} views right), with 95% intervals: "
         f"the right framing would recover {m['oracle_gap']:+.1f} pp.",
         plots.bar_with_ci(p.bars, x="metric", y="accuracy", lo="lo", hi="hi", ylabel="top-1 accuracy (%)",
                           title=f"oracle gap {m['oracle_gap']:+.1f} pp")),
    ]
    curve = p.resolution
    if len(curve):
        scored = curve["accuracy"].notna().any()
        caption = ("Accuracy against the input size at fixed framing (Resize size x 256/224, CenterCrop size), "
                   "with 95% intervals; the dashed line is the model's training size. ")
        caption += (f"Peak at {m['resolution_peak_size']} px ({m['resolution_peak_accuracy']:.1f}%)." if scored
                    else "No size was accepted by the model.")
        if m["resolution_skipped_sizes"]:
            caption += f" Sizes rejected by the model: {', '.join(map(str, m['resolution_skipped_sizes']))}."
        figs.append(("resolution_curve", caption,
                     plot_resolution_curve(curve, train_size=m["resolution_train_size"],
                                           title="accuracy against test resolution")))
    if budget is not None:
        from zoomstudy.analysis.budget import budget_findings

        figs.append(("view_budget",
                     "Accuracy against the number of views k, chosen by the greedy cover on the other folds "
                     f"({budget.attrs['folds']}-fold cross-validated): any chosen view right (oracle), the mean softmax "
                     "and the most confident view over them, with bootstrap 95% bands; rings: more views add nothing "
                     "detectable. " + budget_findings(budget),
                     plots.budget_curve(budget, title="what each extra view buys")))
    for row in example_rows(p, n_zoom_maps):
        figs.append((f"zoom_map:{p.image_ids[row]}",
                     f"All {g.n_views} views of {p.image_ids[row]}: scales across, anchors (row, col) down; green = "
                     "right, red = wrong, darker = more confident.", zoom_map_figure(p, row)))
    return figs

# ================================================================================================
# The report
# ================================================================================================
def _pct(v, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}%"


def _pp(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:+.1f} pp"


def numbers_rows(summary: Mapping) -> list[tuple[str, str, str]]:
    """(quantity, value, meaning) rows of the report's numbers table."""
    m, st = summary["metrics"], summary["settings"]
    g = st["grid"]
    rows = [
        ("images scored", f"{m['n_images']}",
         f"{m['n_errors']} undecodable and {m['n_unlabelled']} unlabelled images left out"),
        ("1-crop accuracy", f"{_pct(m['one_crop'])} [{_pct(m['one_crop_lo'])}, {_pct(m['one_crop_hi'])}]",
         f"standard view {st['standard_view']} (Resize {round(g['crop'] * 256 / 224)}, centre crop {g['crop']}); "
         "95% Clopper-Pearson interval"),
        ("oracle bound", f"{_pct(m['oracle'])} [{_pct(m['oracle_lo'])}, {_pct(m['oracle_hi'])}]",
         f"right in at least one of the {st['n_views']} views ({len(g['scales'])} scales x {g['grid']}x{g['grid']} anchors)"),
        ("oracle gap", _pp(m["oracle_gap"]), "oracle bound - 1-crop: the accuracy the right framing would recover"),
        ("centre bias", _pp(m["center_bias"]),
         f"centre-anchor bound {_pct(m['center_anchor_bound'])} - mean of the off-centre anchor bounds "
         f"{_pct(m['off_center_anchor_bound_mean'])}"),
        ("best scale", f"S = {m['best_scale']} ({_pct(m['best_scale_accuracy'])})",
         "the scale whose centre view is most accurate"),
        ("zoom groups", f"out {_pct(m['zoom_out_bound'])} / {g['crop']}: {_pct(m['zoom_224_bound'])} / "
         f"in {_pct(m['zoom_in_bound'])}", "bound over the views with S < crop, S = crop, S > crop"),
    ]
    if st.get("resolution_sizes"):
        peak = m["resolution_peak_size"]
        rows.append((
            "resolution curve peak",
            "-" if peak is None else f"{peak} px ({_pct(m['resolution_peak_accuracy'])})",
            f"best input size at fixed framing; at the training size {m['resolution_train_size']} px: "
            f"{_pct(m['resolution_train_accuracy'])} (FixRes gain {_pp(m['fixres_gain'])})"
            + ("; crops placed by torchvision's CenterCrop, which can sit 1 px from the 1-crop view's anchor"
               if st.get("resolution_center", "torchvision") == "torchvision" else "")
            + (f"; sizes rejected: {', '.join(map(str, m['resolution_skipped_sizes']))}"
               if m["resolution_skipped_sizes"] else ""),
        ))
    return rows


def _thumb_b64(image, size: int = 160) -> str:
    im = image.convert("RGB").copy()
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(df: pd.DataFrame, digits: int = 1) -> str:
    return df.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.{digits}f}", border=0)


def _figure_entry(p: Profile, name: str, caption: str, fig, positions: dict, first_zoom: bool) -> dict:
    """What the template draws for one figure: its PNG, caption and title, a zoom map's thumbnail, and
    the table that goes with the accuracy and resolution figures."""
    from zoomstudy.data.source import load_sample
    from zoomstudy.report.plots import fig_to_base64_png

    entry = {"name": name, "caption": caption, "png": fig_to_base64_png(fig), "zoom": name.startswith("zoom_map:"),
             "title": SECTIONS.get(name, name), "table": None}
    if entry["zoom"]:
        image_id = name.split(":", 1)[1]
        entry.update(image_id=image_id, first_zoom=first_zoom, thumb=None)
        if p.source is not None and image_id in positions:
            try:
                sample = load_sample(p.source, positions[image_id])
                if sample.image is not None:
                    entry["thumb"] = _thumb_b64(sample.image)
            except Exception:  # noqa: BLE001 - a thumbnail is decoration, never a failure
                pass
    elif name == "accuracy_vs_scale":
        t = p.scale_table[["scale", "group", "center", "center_lo", "center_hi", "any_anchor"]]
        entry.update(table=_table(t), table_name="per-scale table")
    elif name == "resolution_curve":
        entry.update(table=_table(p.resolution), table_name="resolution table")
    return entry


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("zoomstudy.report", "templates"),
                              autoescape=True, keep_trailing_newline=False)


def render_report(p: Profile, summary: Mapping, figures: Sequence[tuple[str, str, Any]]) -> str:
    """The self-contained HTML page (figures as base64 PNGs, thumbnails as base64 JPEGs), from the template."""
    positions = dict(zip(p.image_ids, p.positions))
    entries, zoom_seen = [], False
    for name, caption, fig in figures:
        entries.append(_figure_entry(p, name, caption, fig, positions, first_zoom=not zoom_seen))
        zoom_seen = zoom_seen or entries[-1]["zoom"]
    prov = summary["provenance"]
    return _environment().get_template(TEMPLATE).render(
        label=p.label, prov=prov, n_images=summary["metrics"]["n_images"], n_views=summary["settings"]["n_views"],
        random_weights=is_random_weights(prov), warnings=summary["settings"].get("warnings") or [],
        numbers=numbers_rows(summary), regression=summary["regression"], explorer=summary.get("explorer"),
        figures=entries, provenance_rows=[(k, json.dumps(v, default=str)) for k, v in prov.items()],
        settings_json=json.dumps(summary["settings"], default=str), json_name=JSON_NAME)


def write_report(p: Profile, out_dir: str | os.PathLike, *, thresholds: Mapping | None = None,
                 n_zoom_maps: int = 3) -> dict:
    """Write <out_dir>/profile.html and <out_dir>/profile.json; returns the summary (plus paths)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    curve = view_budget(p)
    figs = profile_figures(p, n_zoom_maps, curve)
    summary = summary_dict(p, thresholds, [name for name, _, _ in figs], curve)
    if p.source is not None:
        from zoomstudy.report.explorer import write_explorer

        summary["explorer"] = write_explorer(p.result_set, p.source, out_dir / EXPLORER_NAME).name
    page = render_report(p, summary, figs)
    summary["timings"]["report_s"] = time.perf_counter() - t0
    summary["html"] = HTML_NAME
    atomic_write(out_dir / HTML_NAME, page)
    atomic_write(out_dir / JSON_NAME, json.dumps(summary, indent=2, default=str, allow_nan=False))
    return {**summary, "html_path": str(out_dir / HTML_NAME), "json_path": str(out_dir / JSON_NAME)}


def profile(
    model,
    images,
    labels_csv: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    out_dir: str | os.PathLike,
    scales=None,
    grid: int = 3,
    crop: int = 224,
    max_images: int | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    results_dir: str | os.PathLike | None = None,
    resolution_sizes: Sequence[int] | None = None,
    n_zoom_maps: int = 3,
    **kw,
) -> dict:
    """Profile a model's zoom and position sensitivity on a set of images; write the HTML and JSON.

    model: a name, a `LoadedModel`, or None with a checkpoint named after its architecture.
    images: a folder (labels.csv inside or class sub-folders), with labels_csv a folder + CSV
    (file,label), or a source / source spec (see `study.open_data`). scales: None = `views.COMPACT_SCALES`
    (12 x 3 x 3 = 108 views), "paper" = the 36 of the paper, or a list. thresholds:
    {"max_oracle_gap": pp, "max_center_bias": pp}, checked into summary["regression"].
    results_dir: the sweep's store (default <out_dir>/results). Other keywords go to
    `compute_profile` (pretrained, device, label_space, normalization, batch_size, workers, alpha,
    label, progress). Returns the summary written to profile.json, plus html_path and json_path.
    """
    unknown = set(thresholds or {}) - set(THRESHOLDS)
    if unknown:
        raise ValueError(f"profile: unknown thresholds {sorted(unknown)}; known: {sorted(THRESHOLDS)}")
    if n_zoom_maps < 0:
        raise ValueError(f"profile: n_zoom_maps must be >= 0, got {n_zoom_maps}")
    out_dir = Path(out_dir)
    previous = None
    if (out_dir / JSON_NAME).is_file():
        try:
            previous = json.loads((out_dir / JSON_NAME).read_text(encoding="utf-8")).get("resolution")
        except (OSError, ValueError):
            previous = None
    t0 = time.perf_counter()
    p = compute_profile(model, images, labels_csv, checkpoint=checkpoint,
                        results_dir=results_dir if results_dir is not None else out_dir / "results",
                        scales=scales, grid=grid, crop=crop, max_images=max_images,
                        resolution_sizes=resolution_sizes, resolution_cache=previous, **kw)
    summary = write_report(p, out_dir, thresholds=thresholds, n_zoom_maps=n_zoom_maps)
    summary["timings"]["total_s"] = time.perf_counter() - t0
    atomic_write(out_dir / JSON_NAME, json.dumps({k: v for k, v in summary.items()
                                                   if k not in ("html_path", "json_path")},
                                                  indent=2, default=str, allow_nan=False))
    return summary


# ================================================================================================
# Several models side by side (the notebook)
# ================================================================================================
def _labels(profiles: Sequence[Profile]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in profiles:
        n = seen.get(p.label, 0)
        seen[p.label] = n + 1
        out.append(p.label if n == 0 else f"{p.label} #{n + 1}")
    return out


def compare_metrics(profiles: Sequence[Profile]) -> pd.DataFrame:
    """One row per model: the headline numbers (%, pp) side by side."""
    cols = ["n_images", "one_crop", "oracle", "oracle_gap", "center_bias", "best_scale", "best_scale_accuracy",
            "resolution_peak_size", "resolution_peak_accuracy", "resolution_train_accuracy", "fixres_gain"]
    rows = [{"model": lab, **{c: p.metrics.get(c) for c in cols}} for lab, p in zip(_labels(profiles), profiles)]
    return pd.DataFrame(rows, columns=["model"] + cols)


def anchor_frame(profiles: Sequence[Profile]) -> pd.DataFrame:
    """panel, row, col, value: the per-anchor bounds of every model (for plots.anchor_grids)."""
    rows = []
    for lab, p in zip(_labels(profiles), profiles):
        g = p.anchor_bounds.shape[0]
        rows += [(lab, r, c, float(p.anchor_bounds[r, c])) for r in range(g) for c in range(g)]
    return pd.DataFrame(rows, columns=["panel", "row", "col", "value"])


def scale_frame(profiles: Sequence[Profile]) -> pd.DataFrame:
    """scale, accuracy, lo, hi, series (model), facet (centre view / any anchor): for plots.accuracy_vs_scale."""
    parts = []
    for lab, p in zip(_labels(profiles), profiles):
        long = scale_series(p.scale_table).rename(columns={"series": "facet"})
        long["series"] = lab
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def resolution_frame(profiles: Sequence[Profile]) -> pd.DataFrame:
    """The resolution curves of every model with a series column (for plots.plot_resolution_curve)."""
    parts = []
    for lab, p in zip(_labels(profiles), profiles):
        d = p.resolution.copy()
        d["series"] = lab
        parts.append(d)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def gap_frame(profiles: Sequence[Profile]) -> pd.DataFrame:
    """metric (1-crop / oracle), accuracy, lo, hi, model: the oracle gaps as grouped bars."""
    rows = []
    for lab, p in zip(_labels(profiles), profiles):
        m = p.metrics
        rows.append(("1-crop", m["one_crop"], m["one_crop_lo"], m["one_crop_hi"], lab))
        rows.append(("oracle", m["oracle"], m["oracle_lo"], m["oracle_hi"], lab))
    return pd.DataFrame(rows, columns=["metric", "accuracy", "lo", "hi", "model"])
