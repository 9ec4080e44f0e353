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
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zoomstudy.provenance import is_random_weights
from zoomstudy.keyed import atomic_write
from zoomstudy.views import ViewGrid

#: Version of the profile.json layout (bump when a key changes meaning).
PROFILE_FORMAT = 1
HTML_NAME, JSON_NAME = "profile.html", "profile.json"
#: Thresholds `check_regression` knows: name -> (metric key, description).
THRESHOLDS: dict[str, tuple[str, str]] = {
    "max_oracle_gap": ("oracle_gap", "oracle gap"),
    "max_center_bias": ("center_bias", "centre bias"),
}
#: The figures of the report, in order (zoom maps follow, one per example image).
FIGURES = ("accuracy_vs_scale", "anchor_grid", "oracle_gap", "resolution_curve", "view_budget")
#: The view explorer written next to the report (`report.explorer`), linked from it.
EXPLORER_NAME = "explorer.html"



# ================================================================================================
# Inputs
# ================================================================================================
def compact_grid(scales=None, grid: int = 3, crop: int = 224) -> tuple[ViewGrid, str | None]:
    """The profile's view grid (`study.make_grid`, default "compact") and a note when the standard
    scale had to be added.

    scales: None = `views.COMPACT_SCALES` (times crop / 224 for another crop), "paper" = the paper's
    36 (likewise rescaled), or a list. The standard 1-crop scale (round(crop * 256 / 224)) is always
    included, since the oracle gap is measured against it; the grid must be odd (it needs a centre).
    """
    from zoomstudy.study import make_grid

    if int(grid) < 1 or int(grid) % 2 == 0:
        raise ValueError(f"profile: grid must be odd (the centre anchor and the 1-crop view need one), got {grid}")
    view_grid = make_grid(scales, grid, crop, default="compact")
    standard = view_grid.standard_scale
    if standard in view_grid.scales:
        return view_grid, None
    note = f"scale {standard} (the 1-crop view's resize) added to the requested scales"
    scales = tuple(sorted(view_grid.scales + (standard,)))
    return ViewGrid(scales=scales, grid=view_grid.grid, crop=view_grid.crop), note


# ================================================================================================
# The computation
# ================================================================================================
@dataclass
class Profile:
    """Everything a report or a side-by-side comparison draws for one model on one image set."""

    label: str
    spec: str
    result_set: Any  # store.ResultSet
    grid: ViewGrid
    image_ids: list[str]
    positions: list[int]
    labels: list[tuple[int, ...]]
    correct: np.ndarray  # bool [N, V]
    conf: np.ndarray  # float32 [N, V]: probability of each view's top-1 class
    metrics: dict
    scale_table: pd.DataFrame  # analysis.accuracy_vs_scale
    anchor_bounds: np.ndarray  # [g, g] %
    bars: pd.DataFrame  # the oracle-gap figure's bars: metric, accuracy, lo, hi
    resolution: pd.DataFrame  # resolution.resolution_curve
    provenance: dict
    settings: dict
    source: Any = None
    timings: dict = field(default_factory=dict)
    resolution_key: str | None = None


def _nearest(values: Sequence[int], ref: int) -> int:
    return min(values, key=lambda s: (abs(math.log(s / ref)), s))


def _metrics(correct: np.ndarray, grid: ViewGrid, alpha: float) -> tuple[dict, pd.DataFrame, np.ndarray, pd.DataFrame]:
    from zoomstudy.analysis import bounds as analysis
    from zoomstudy.analysis.stats import accuracy_with_ci

    figures = analysis.bound_metrics(correct, grid, alpha=alpha, keys=("standard", "upper_all")).set_index("key")
    one = tuple(float(v) for v in figures.loc["standard", ["accuracy", "lo", "hi"]])
    orc = tuple(float(v) for v in figures.loc["upper_all", ["accuracy", "lo", "hi"]])
    bounds = analysis.anchor_bounds(correct, grid)  # [g, g]
    centre, off_mean, center_bias = analysis.center_bias(bounds)
    table = analysis.accuracy_vs_scale(correct, grid, alpha)
    best = float(table["center"].max())
    best_scale = _nearest([int(s) for s in table.loc[table["center"] == best, "scale"]], grid.standard_scale)
    row = table[table["scale"] == best_scale].iloc[0]
    bars = [("1-crop", *one), (f"best scale ({best_scale}, centre)", row["center"], row["center_lo"], row["center_hi"])]
    groups = {}
    for g, name in (("zoom_out", "zoom out"), ("zoom_224", f"S = {grid.crop}"), ("zoom_in", "zoom in")):
        mask = grid.group_mask(g)
        if mask.any():
            acc = accuracy_with_ci(correct[:, mask].any(axis=1), alpha)
            groups[g] = acc[0]
            bars.append((f"any {name} view", *acc))
        else:
            groups[g] = None
    bars.append((f"oracle (any of {grid.n_views})", *orc))
    metrics = {
        "n_images": int(correct.shape[0]),
        "one_crop": one[0], "one_crop_lo": one[1], "one_crop_hi": one[2],
        "oracle": orc[0], "oracle_lo": orc[1], "oracle_hi": orc[2],
        "oracle_gap": orc[0] - one[0],
        "center_bias": center_bias,
        "center_anchor_bound": centre,
        "off_center_anchor_bound_mean": off_mean,
        "best_scale": int(best_scale),
        "best_scale_accuracy": best,
        "zoom_out_bound": groups["zoom_out"], "zoom_224_bound": groups["zoom_224"], "zoom_in_bound": groups["zoom_in"],
    }
    frame = pd.DataFrame(bars, columns=["metric", "accuracy", "lo", "hi"])
    return metrics, table, bounds, frame


def _resolution_metrics(curve: pd.DataFrame, train_size: int) -> dict:
    from zoomstudy.analysis.resolution import peak

    size, acc = peak(curve, prefer=train_size)
    at = curve[(curve["size"] == train_size) & curve["accuracy"].notna()]
    at_train = float(at["accuracy"].iloc[0]) if len(at) else None
    return {
        "resolution_peak_size": size,
        "resolution_peak_accuracy": None if size is None else acc,
        "resolution_train_size": int(train_size),
        "resolution_train_accuracy": at_train,
        "fixres_gain": None if size is None or at_train is None else acc - at_train,
        "resolution_skipped_sizes": [int(s) for s in curve.loc[curve["accuracy"].isna(), "size"]],
    }


def _resolution_key(model, source, sizes, max_images, normalization, center) -> str:
    from zoomstudy.analysis.resolution import CROP_PCT

    prov = dict(model.provenance())
    prov.pop("weights_source", None)
    blob = {"model": prov, "data": source.provenance(), "sizes": [int(s) for s in sizes],
            "max_images": max_images, "crop_pct": CROP_PCT, "normalization": normalization, "center": center,
            "renderer": "views.render_windows (PIL bicubic, exact) + torchvision CenterCrop offsets"}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _describe_model(prov: Mapping, checkpoint) -> str:
    from zoomstudy.report.tables import describe_weights

    return describe_weights(prov, checkpoint)


def compute_profile(
    model,
    images,
    labels_csv: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    results_dir: str | os.PathLike = "results/profile",
    scales=None,
    grid: int = 3,
    crop: int = 224,
    max_images: int | None = None,
    resolution_sizes: Sequence[int] | None = None,
    resolution_center: str = "torchvision",
    pretrained: bool = True,
    device: str | None = None,
    amp: str | None = None,
    label_space: str = "imagenet1k",
    normalization: str = "imagenet",
    batch_size: int | None = None,
    workers: int | None = None,
    alpha: float = 0.05,
    label: str | None = None,
    progress: bool = False,
    resolution_cache: Mapping | None = None,
) -> Profile:
    """The sweep (resumed from the store when it exists), the analyses and the resolution curve.

    model: a name ("torchvision:resnet50", "timm:NAME.TAG", a paper model), a `LoadedModel`, or None
    with a checkpoint whose file name tells the architecture (`study.guess_architecture`). images:
    anything `study.open_data` reads. resolution_sizes: None = `resolution.RESOLUTION_SIZES`; () skips the curve.
    resolution_center: where the curve's centre crop sits ('torchvision' CenterCrop, or 'anchor', SPEC 1's
    centre anchor, with which the curve passes through the 1-crop view at the training size).
    batch_size: views per forward pass (default 32 on CPU, 512 on CUDA). resolution_cache: a
    previous summary's "resolution" entry, reused when its key matches.
    """
    from zoomstudy.analysis.resolution import RESOLUTION_SIZES, resolution_curve
    from zoomstudy.study import model_spec, open_data, open_model
    from zoomstudy.sweep.engine import sweep

    view_grid, grid_note = compact_grid(scales, grid, crop)  # bad grids fail before any loading
    sizes = RESOLUTION_SIZES if resolution_sizes is None else tuple(int(s) for s in resolution_sizes)
    source = open_data(images, labels_csv=labels_csv, max_images=max_images)
    spec = model_spec(model, checkpoint)
    loaded = open_model(spec if model is None else model, checkpoint, pretrained=pretrained, device=device,
                        label_space=label_space, amp=amp)
    if batch_size is None:
        batch_size = 512 if loaded.device.type == "cuda" else 32
    timings = {}

    t0 = time.perf_counter()
    rs = sweep(loaded, source, view_grid, results_dir, batch_size=batch_size, workers=workers,
               normalization=normalization, tta=False, max_images=max_images, progress=progress)
    timings["sweep_s"] = time.perf_counter() - t0

    from zoomstudy.analysis.bounds import has_labels

    ids, _, conf = rs.predictions()
    labels = rs.labels()
    images_table = rs.images()
    ok = images_table[images_table["ok"]] if len(images_table) else images_table
    positions = [int(p) for p in ok["position"]] if len(ok) else []
    # the store may hold more images than asked for (an earlier run with a larger max_images)
    limit = math.inf if max_images is None else int(max_images)
    in_range = np.array([p < limit for p in positions], bool)
    if not in_range.any():
        raise ValueError(f"profile: no image of {source.name} could be decoded and scored")
    keep = has_labels(labels) & in_range
    if not keep.any():
        raise ValueError(f"profile: none of the {int(in_range.sum())} images of {source.name} has a label")
    correct = rs.correct(keep=keep)  # bool [N, V]
    ids = [i for i, k in zip(ids, keep) if k]
    positions = [p for p, k in zip(positions, keep) if k]
    labels = [lab for lab, k in zip(labels, keep) if k]
    conf = conf[keep]

    metrics, table, bounds, bars = _metrics(correct, view_grid, alpha)
    errors = rs.errors()
    metrics["n_errors"] = int((errors["position"] < limit).sum()) if len(errors) else 0
    metrics["n_unlabelled"] = int((in_range & ~keep).sum())

    t0 = time.perf_counter()
    key = _resolution_key(loaded, source, sizes, max_images, normalization, resolution_center)
    if sizes and resolution_cache and resolution_cache.get("key") == key and resolution_cache.get("rows"):
        curve = pd.DataFrame(resolution_cache["rows"])
        curve = curve.reindex(columns=["size", "resize", "accuracy", "lo", "hi", "n", "note"])
        curve[["accuracy", "lo", "hi"]] = curve[["accuracy", "lo", "hi"]].astype(float)
        timings["resolution_cached"] = True
    elif sizes:
        curve = resolution_curve(loaded, source, sizes, max_images=max_images, normalization=normalization,
                                 center=resolution_center, alpha=alpha, progress=progress)
    else:
        curve = pd.DataFrame(columns=["size", "resize", "accuracy", "lo", "hi", "n", "note"])
    timings["resolution_s"] = time.perf_counter() - t0
    train_size = int(loaded.input_size[-1])
    metrics.update(_resolution_metrics(curve, train_size) if len(curve) else {
        "resolution_peak_size": None, "resolution_peak_accuracy": None, "resolution_train_size": train_size,
        "resolution_train_accuracy": None, "fixres_gain": None, "resolution_skipped_sizes": []})

    from zoomstudy.sweep.store import provenance as stored_provenance

    key_settings = rs.settings["key"]
    mprov, dprov = stored_provenance(rs.settings, "model"), stored_provenance(rs.settings, "dataset")
    from zoomstudy.report.tables import describe_data

    provenance = {
        "model": spec,
        "architecture": mprov.get("architecture"),
        "weights_id": mprov.get("weights_id"),
        "weights": _describe_model(mprov, checkpoint),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "label_space": (mprov.get("label_space") or {}).get("name"),
        "device": mprov.get("device"),
        "data": describe_data(dprov),
        "dataset": dprov.get("name"),
        "dataset_kind": dprov.get("kind"),
        "dataset_location": dprov.get("location"),
        "dataset_rows": dprov.get("rows"),
        "data_fingerprint": dprov.get("fingerprint"),
        "labels_fingerprint": dprov.get("labels_fingerprint"),
        "result_set": str(rs.path),
        "result_set_key": rs.settings.get("key_hash"),
        "zoomstudy": key_settings.get("zoomstudy"),
        "git_commit": rs.settings.get("git_commit"),
        "versions": mprov.get("versions"),
    }
    warnings = []
    if dprov.get("labeling") == "sorted":
        warnings.append("the class folders are neither ImageNet synsets (n01440764) nor class indices, so labels "
                        "are positions in the sorted folder list: accuracies are only meaningful if the model's "
                        "classes are in that order; rename the folders or pass a labels CSV (file,label)")
    if grid_note:
        warnings.append(grid_note)
    settings = {
        "grid": view_grid.to_dict(),
        "grid_note": grid_note,
        "n_views": view_grid.n_views,
        "standard_view": view_grid.view_name(view_grid.standard_view),
        "max_images": max_images,
        "normalization": normalization,
        "render_dtype": key_settings["render"]["dtype"],
        "resolution_sizes": [int(s) for s in sizes],
        "resolution_framing": "Resize(round(size * 256 / 224), bicubic) + CenterCrop(size)",
        "resolution_center": resolution_center,
        "alpha": alpha,
        "warnings": warnings,
    }
    if label is None:
        weights = "random" if is_random_weights(mprov) else (
            Path(str(checkpoint)).stem if checkpoint else None)
        label = spec + (f" ({weights})" if weights else "")
    return Profile(label=label, spec=spec, result_set=rs, grid=view_grid, image_ids=ids, positions=positions,
                   labels=labels, correct=correct, conf=conf, metrics=metrics, scale_table=table,
                   anchor_bounds=bounds, bars=bars, resolution=curve, provenance=provenance, settings=settings,
                   source=source, timings=timings, resolution_key=key if sizes else None)


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
    names = ", ".join(class_name(k) for k in p.labels[row][:3])
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
# Summary, regression check
# ================================================================================================
def _clean(value):
    """JSON-safe: NaN and infinities become None, numpy scalars and arrays plain Python."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _records(df: pd.DataFrame) -> list[dict]:
    return _clean(df.astype(object).where(df.notna(), None).to_dict(orient="records"))


def summary_dict(p: Profile, thresholds: Mapping | None = None, figures: Sequence[str] = (), curve=None) -> dict:
    """The profile.json content: metrics, tables, settings, provenance, regression verdict (and the
    view budget's rows, when `curve` is given)."""
    thresholds = {k: v for k, v in (thresholds or {}).items() if v is not None}
    out = {
        "format": PROFILE_FORMAT,
        "kind": "zoomstudy.profile",
        "label": p.label,
        "metrics": p.metrics,
        "anchor_bounds": p.anchor_bounds,
        "accuracy_vs_scale": _records(p.scale_table),
        "resolution": {"key": p.resolution_key, "rows": _records(p.resolution)},
        "settings": p.settings,
        "provenance": p.provenance,
        "figures": list(figures),
        "budget": None if curve is None else {"saturation": curve.attrs["saturation"], "folds": curve.attrs["folds"],
                                              "rows": _records(curve)},
        "timings": p.timings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = _clean(out)
    failures = check_regression(out, **thresholds)
    out["regression"] = {"thresholds": thresholds, "failures": failures, "passed": not failures}
    return out


def _load_summary(summary) -> dict:
    if isinstance(summary, Mapping):
        return dict(summary)
    if isinstance(summary, (str, os.PathLike)):
        text = str(summary)
        if text.lstrip().startswith("{"):
            return json.loads(text)
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / JSON_NAME
        if not path.is_file():
            raise FileNotFoundError(f"profile summary not found: {path}")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"profile summary {path} is not JSON: {e}") from None
    raise ValueError(f"check_regression: expected a summary dict, JSON text or a path, got {type(summary).__name__}")


def check_regression(summary_json, max_oracle_gap: float | None = None, max_center_bias: float | None = None) -> list[str]:
    """Failures of a profile summary against thresholds (pp), one line each; [] means passed.

    summary_json: profile.json's path (or its folder), its text, or the dict. A threshold of None is
    not checked; a checked metric missing from the summary is a failure (never a silent pass).
    """
    s = _load_summary(summary_json)
    if not isinstance(s, Mapping):
        raise ValueError(f"check_regression: a profile summary is a JSON object, got a {type(s).__name__}")
    metrics = s.get("metrics", s)
    if not isinstance(metrics, Mapping):
        raise ValueError(f"check_regression: the summary's 'metrics' is a {type(metrics).__name__}, not an object")
    failures = []
    for name, limit in (("max_oracle_gap", max_oracle_gap), ("max_center_bias", max_center_bias)):
        if limit is None:
            continue
        key, what = THRESHOLDS[name]
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"check_regression: metric {key!r} is {value!r}, not a number (true is no 1.0)")
        if value is None or not math.isfinite(float(value)):
            failures.append(f"{what} ({key}) is not in the summary; cannot check {name} = {float(limit):g}")
        elif float(value) > float(limit):
            failures.append(f"{what} {float(value):.2f} pp exceeds the maximum {float(limit):.2f} pp ({name})")
    return failures


# ================================================================================================
# The report
# ================================================================================================
_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 64rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; font-size: 0.9rem; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0; } figure img { max-width: 100%; } figcaption { font-size: 0.85rem; color: #555; }
.zoom { display: flex; gap: 1rem; align-items: flex-start; } .zoom img.thumb { border: 1px solid #ccc; }
.pass { color: #1a9850; font-weight: bold; } .warn { color: #8a5a00; } .fail { color: #d73027; font-weight: bold; }
code { font-family: ui-monospace, Menlo, monospace; font-size: 0.85rem; } .muted { color: #666; font-size: 0.85rem; }
"""


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


def _img(b64: str, alt: str, mime: str = "image/png", cls: str = "figure") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt, quote=True)}" src="data:{mime};base64,{b64}">'


def _table(df: pd.DataFrame, digits: int = 1) -> str:
    return df.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.{digits}f}", border=0)


def render_report(p: Profile, summary: Mapping, figures: Sequence[tuple[str, str, Any]]) -> str:
    """The self-contained HTML page (figures as base64 PNGs, thumbnails as base64 JPEGs)."""
    from zoomstudy.data.sources import load_sample
    from zoomstudy.report.plots import fig_to_base64_png

    prov, reg = summary["provenance"], summary["regression"]
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>zoomstudy profile: {esc(p.label)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Zoom and position sensitivity: {esc(p.label)}</h1>",
        f"<p>Model <code>{esc(str(prov['model']))}</code> with weights {esc(str(prov['weights']))}, on "
        f"{esc(str(prov['data']))}. {summary['metrics']['n_images']} images, {summary['settings']['n_views']} views each.</p>",
    ]
    if is_random_weights(prov):
        parts.append("<p class='muted'>Random (untrained) weights: accuracies near chance are expected; this run "
                     "checks the pipeline, it says nothing about a trained model.</p>")
    for w in summary["settings"].get("warnings") or []:
        parts.append(f"<p class='warn'>Note: {esc(w)}.</p>")
    parts.append("<h2>Numbers</h2><table class='numbers' id='numbers'><tr><th>quantity</th><th>value</th>"
                 "<th>meaning</th></tr>")
    for name, value, meaning in numbers_rows(summary):
        parts.append(f"<tr><th>{esc(name)}</th><td class='num'>{esc(value)}</td><td>{esc(meaning)}</td></tr>")
    parts.append("</table>")
    if reg["thresholds"]:
        verdict = "<span class='pass'>passed</span>" if reg["passed"] else "<span class='fail'>failed</span>"
        parts.append(f"<h2>Regression check: {verdict}</h2><ul>")
        for name, limit in reg["thresholds"].items():
            parts.append(f"<li><code>{esc(name)}</code> = {float(limit):g} pp</li>")
        parts.append("</ul>")
        if reg["failures"]:
            parts.append("<ul>" + "".join(f"<li class='fail'>{esc(f)}</li>" for f in reg["failures"]) + "</ul>")
    sections = {"accuracy_vs_scale": "Accuracy against zoom", "anchor_grid": "The position grid",
                "oracle_gap": "The oracle gap", "resolution_curve": "Test resolution (FixRes)",
                "view_budget": "The view budget"}
    if summary.get("explorer"):
        parts.append(f"<p>Every image, every view: <a href='{esc(summary['explorer'])}'>the view explorer</a> "
                     "(click a cell of an image's grid to see that crop and its top-5).</p>")
    zoom_header = False
    positions = dict(zip(p.image_ids, p.positions))
    for name, caption, fig in figures:
        b64 = fig_to_base64_png(fig)
        if name.startswith("zoom_map:"):
            if not zoom_header:
                parts.append("<h2>Zoom maps of example images</h2><p class='muted'>Images wrong at the 1-crop view "
                             "but right in some view (rescued by framing) come first.</p>")
                zoom_header = True
            image_id = name.split(":", 1)[1]
            thumb = ""
            if p.source is not None and image_id in positions:
                try:
                    sample = load_sample(p.source, positions[image_id])
                    if sample.image is not None:
                        thumb = _img(_thumb_b64(sample.image), image_id, "image/jpeg", "thumb")
                except Exception:  # noqa: BLE001 - a thumbnail is decoration, never a failure
                    thumb = ""
            parts.append(f"<figure class='zoom'>{thumb}<div>{_img(b64, name)}"
                         f"<figcaption>{esc(caption)}</figcaption></div></figure>")
        else:
            parts.append(f"<h2>{esc(sections.get(name, name))}</h2><figure>{_img(b64, name)}"
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
            if name == "accuracy_vs_scale":
                t = p.scale_table[["scale", "group", "center", "center_lo", "center_hi", "any_anchor"]]
                parts.append(f"<details><summary>per-scale table</summary>{_table(t)}</details>")
            if name == "resolution_curve":
                parts.append(f"<details><summary>resolution table</summary>{_table(p.resolution)}</details>")
    parts.append("<h2>Provenance</h2><table>")
    for k, v in prov.items():
        parts.append(f"<tr><th>{esc(k)}</th><td><code>{esc(json.dumps(v, default=str))}</code></td></tr>")
    parts.append("</table>")
    parts.append(f"<p class='muted'>Settings: <code>{esc(json.dumps(summary['settings'], default=str))}</code></p>")
    parts.append(f"<p class='muted'>Produced by zoomstudy profile; the numbers are in {JSON_NAME} next to this "
                 "file.</p></body></html>")
    return "\n".join(parts)


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
