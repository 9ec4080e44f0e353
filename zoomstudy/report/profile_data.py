"""The numbers of a model profile (`report.model_profile` draws them): the compact sweep, its headline
metrics, the test-resolution curve, the provenance, profile.json's content and the regression check.

`compute_profile(model, images, ...)` opens the model and the data (`study`), runs (or resumes) the
compact sweep into the store, scores the images that were decoded and labelled, and computes the
headline numbers (see `report.model_profile` for their meaning) and the resolution curve
(`analysis.resolution`). The curve is kept in profile.json under a key of what produced it
(`resolution_key`: the model's and the data's content, never the device or the data's path, so a
profile rerun on another GPU or a moved copy reuses it) and reused likewise.
`check_regression(summary, max_oracle_gap=..., max_center_bias=...)` turns a summary into a list of
failures (empty: passed).
"""
from __future__ import annotations

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

from zoomstudy.keyed import DATASET_PLACE, MODEL_PLACE, settings_key, split_place
from zoomstudy.provenance import flatten, is_random_weights, stored
from zoomstudy.views import ViewGrid

#: Version of the profile.json layout (bump when a key changes meaning).
PROFILE_FORMAT = 1
JSON_NAME = "profile.json"
#: Thresholds `check_regression` knows: name -> (metric key, description).
THRESHOLDS: dict[str, tuple[str, str]] = {
    "max_oracle_gap": ("oracle_gap", "oracle gap"),
    "max_center_bias": ("center_bias", "centre bias"),
}
#: The resolution curve's columns (an empty curve has them too).
CURVE_COLUMNS = ["size", "resize", "accuracy", "lo", "hi", "n", "note"]


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


def resolution_key(model, source, sizes, max_images, normalization, center) -> str:
    """The key of a stored resolution curve: what can change it (the model's and the data's content, the
    sizes, the framing), not where it ran (device, data path: `keyed.split_place`)."""
    from zoomstudy.analysis.resolution import CROP_PCT

    key = {"model": split_place(model.provenance(), MODEL_PLACE)[0],
           "data": split_place(source.provenance(), DATASET_PLACE)[0], "sizes": [int(s) for s in sizes],
           "max_images": max_images, "crop_pct": CROP_PCT, "normalization": normalization, "center": center,
           "renderer": "views.render_windows (PIL bicubic, exact) + torchvision CenterCrop offsets"}
    return settings_key({"key": key})


def _scored(rs, source, max_images: int | None) -> dict:
    """The images of the sweep that count: decoded, labelled and within max_images (the store may hold
    more, from an earlier run with a larger max_images); ids, positions, labels, correct [N, V], conf."""
    from zoomstudy.data.labels import has_labels

    ids, _, conf = rs.predictions()
    labels = rs.labels()
    images_table = rs.images()
    ok = images_table[images_table["ok"]] if len(images_table) else images_table
    positions = [int(p) for p in ok["position"]] if len(ok) else []
    limit = math.inf if max_images is None else int(max_images)
    in_range = np.array([p < limit for p in positions], bool)
    if not in_range.any():
        raise ValueError(f"profile: no image of {source.name} could be decoded and scored")
    keep = has_labels(labels) & in_range
    if not keep.any():
        raise ValueError(f"profile: none of the {int(in_range.sum())} images of {source.name} has a label")
    errors = rs.errors()
    return {"ids": [i for i, k in zip(ids, keep) if k], "positions": [p for p, k in zip(positions, keep) if k],
            "labels": [lab for lab, k in zip(labels, keep) if k], "correct": rs.correct(keep=keep),  # bool [N, V]
            "conf": conf[keep], "n_errors": int((errors["position"] < limit).sum()) if len(errors) else 0,
            "n_unlabelled": int((in_range & ~keep).sum())}


def _resolution(loaded, source, sizes, key: str, cache: Mapping | None, timings: dict, **kw) -> pd.DataFrame:
    """The resolution curve: the cached rows when `cache` (a previous summary's entry) has this key, else
    computed (`analysis.resolution.resolution_curve`); empty without sizes."""
    from zoomstudy.analysis.resolution import resolution_curve

    if sizes and cache and cache.get("key") == key and cache.get("rows"):
        curve = pd.DataFrame(cache["rows"]).reindex(columns=CURVE_COLUMNS)
        curve[["accuracy", "lo", "hi"]] = curve[["accuracy", "lo", "hi"]].astype(float)
        timings["resolution_cached"] = True
        return curve
    if sizes:
        return resolution_curve(loaded, source, sizes, **kw)
    return pd.DataFrame(columns=CURVE_COLUMNS)


def _provenance(rs, spec: str, checkpoint) -> dict:
    """The profile's provenance: the stored sweep's (`provenance.flatten`) with the model spec, the
    phrases a reader sees, and the result set's path."""
    from zoomstudy.report.provenance_text import describe_data, describe_weights

    mprov, dprov = stored(rs.settings, "model"), stored(rs.settings, "dataset")
    flat = flatten(rs.settings, checkpoint)
    return {"model": spec, **flat, "weights": describe_weights(mprov, checkpoint), "data": describe_data(dprov),
            "data_fingerprint": flat["dataset_fingerprint"], "result_set": str(rs.path),
            "result_set_key": flat["key_hash"]}


def _settings(view_grid: ViewGrid, grid_note, dprov: Mapping, rs, sizes, **kw) -> dict:
    """The profile's settings, with the warnings a reader must see (sorted-folder labels, an added scale)."""
    warnings = []
    if dprov.get("labeling") == "sorted":
        warnings.append("the class folders are neither ImageNet synsets (n01440764) nor class indices, so labels "
                        "are positions in the sorted folder list: accuracies are only meaningful if the model's "
                        "classes are in that order; rename the folders or pass a labels CSV (file,label)")
    if grid_note:
        warnings.append(grid_note)
    return {
        "grid": view_grid.to_dict(),
        "grid_note": grid_note,
        "n_views": view_grid.n_views,
        "standard_view": view_grid.view_name(view_grid.standard_view),
        "max_images": kw["max_images"],
        "normalization": kw["normalization"],
        "render_dtype": rs.settings["key"]["render"]["dtype"],
        "resolution_sizes": [int(s) for s in sizes],
        "resolution_framing": "Resize(round(size * 256 / 224), bicubic) + CenterCrop(size)",
        "resolution_center": kw["resolution_center"],
        "alpha": kw["alpha"],
        "warnings": warnings,
    }


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
    from zoomstudy.analysis.resolution import RESOLUTION_SIZES
    from zoomstudy.study import model_spec, open_data, open_model
    from zoomstudy.sweep.engine import sweep_to_store

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
    rs = sweep_to_store(loaded, source, view_grid, results_dir, batch_size=batch_size, workers=workers,
                        normalization=normalization, tta=False, max_images=max_images, progress=progress)
    timings["sweep_s"] = time.perf_counter() - t0
    scored = _scored(rs, source, max_images)
    metrics, table, bounds, bars = _metrics(scored["correct"], view_grid, alpha)
    metrics.update(n_errors=scored["n_errors"], n_unlabelled=scored["n_unlabelled"])

    t0 = time.perf_counter()
    key = resolution_key(loaded, source, sizes, max_images, normalization, resolution_center)
    curve = _resolution(loaded, source, sizes, key, resolution_cache, timings, max_images=max_images,
                        normalization=normalization, center=resolution_center, alpha=alpha, progress=progress)
    timings["resolution_s"] = time.perf_counter() - t0
    train_size = int(loaded.input_size[-1])
    metrics.update(_resolution_metrics(curve, train_size) if len(curve) else {
        "resolution_peak_size": None, "resolution_peak_accuracy": None, "resolution_train_size": train_size,
        "resolution_train_accuracy": None, "fixres_gain": None, "resolution_skipped_sizes": []})

    mprov = stored(rs.settings, "model")
    settings = _settings(view_grid, grid_note, stored(rs.settings, "dataset"), rs, sizes, max_images=max_images,
                         normalization=normalization, resolution_center=resolution_center, alpha=alpha)
    if label is None:
        weights = "random" if is_random_weights(mprov) else (
            Path(str(checkpoint)).stem if checkpoint else None)
        label = spec + (f" ({weights})" if weights else "")
    return Profile(label=label, spec=spec, result_set=rs, grid=view_grid, image_ids=scored["ids"],
                   positions=scored["positions"], labels=scored["labels"], correct=scored["correct"],
                   conf=scored["conf"], metrics=metrics, scale_table=table, anchor_bounds=bounds, bars=bars,
                   resolution=curve, provenance=_provenance(rs, spec, checkpoint), settings=settings,
                   source=source, timings=timings, resolution_key=key if sizes else None)

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
