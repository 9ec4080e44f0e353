"""Composite tables and figures of the study's notebooks, kept here so that the notebook logic is tested.

The notebooks (notebooks/01_oracle_accuracy, 02_center_bias, 04_imagenet_hard) stay thin: a sweep
(`study.ensure_results`), the analyses of `analysis`, one `plots` call per figure, and the helpers of
this module, which turn a result set into the tidy tables those calls draw:

* provenance: `provenance_info` / `provenance_statement` say which profile, weights and data produced
  a report, in one sentence that every report prints near its top and records at its end;
* Table 1: `bounds_frame` (1-crop, bound over all views, greedy top-N in-sample and cross-validated,
  random rows, with Clopper-Pearson intervals) and `reference_comparison` (the paper's Table 1 row, or
  the real-data kit's reference figures, when the run is comparable to them);
* zoom groups and anchors: `group_table`, `anchor_bound_table`, `cover_scale_table`,
  `centre_share_table`, `mcnemar_table` (Holm-adjusted McNemar tests), `anchor_references` /
  `anchor_comparison` (the paper's ResNet-50 grids, the kit's grid) and `anchor_panels` (heatmaps
  side by side, one colour scale each);
* ImageNet-Hard: `resolve_dataset` / `make_hard_standin` (an offline multi-label stand-in with an
  origin column), `image_table`, `plain_from_sweep` (and, from analysis.hard, `plain_from_model`), `hard_leaderboard_table`,
  `find_companions` (the same model and grid swept on other data, e.g. ImageNet);
* images: `pick_example`, `example_rows`, `centre_views`, `thumbnails` (and, from data, `load_sample`,
  `class_name`).

Every function takes plain arrays, DataFrames, settings dicts or a `sweep.store.ResultSet`; none draws
more than one figure, and figures are closed before they are returned (as in `plots`).
"""
from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zoomstudy.analysis import bounds as analysis
from zoomstudy.analysis import paper
from zoomstudy.analysis.hard import plain_from_model  # noqa: F401  (the notebooks' figures.plain_from_model)
from zoomstudy.analysis.stats import accuracy_with_ci, clopper_pearson
from zoomstudy.data.labels import class_name  # noqa: F401  (the notebooks' figures.class_name)
from zoomstudy.data.source import load_sample  # noqa: F401  (the notebooks' figures.load_sample)
from zoomstudy.provenance import is_random_weights
from zoomstudy.views import GROUPS, ViewGrid

#: Scheme of the offline ImageNet-Hard stand-in: "synthetic-hard:N" (see `make_hard_standin`).
STANDIN_SCHEME = "synthetic-hard"
#: Source sets of the stand-in (the `origin` values of ImageNet-Hard's parquet files).
STANDIN_ORIGINS = ("imagenet", "imagenet_a", "imagenet_r", "imagenet_sketch", "imagenet_v2", "objectnet")
GROUP_LABELS = {"zoom_out": "zoom out (S < crop)", "zoom_224": "S = crop", "zoom_in": "zoom in (S > crop)"}


# ================================================================================================
# Data
# ================================================================================================
def make_hard_standin(folder: str | Path, n: int = 24, seed: int = 0, size=(96, 72)) -> Path:
    """Write a small synthetic stand-in for ImageNet-Hard: N PNG images + labels.csv, deterministic.

    Columns of labels.csv: file, label (1 to 5 ImageNet-1k indices, "3;17"), origin (cycling over
    `STANDIN_ORIGINS`), english_label (the first label's class name). The CSV is rewritten only when
    it is missing or differs, and the images only when missing, so a result set keyed on the folder's
    fingerprint is resumed, not recomputed. Open it with `open_source("csv:FOLDER")`.
    """
    from zoomstudy.data import SyntheticSource
    from zoomstudy.data.labels import imagenet_class_names
    from zoomstudy.keyed import atomic_write

    if n < 1:
        raise ValueError(f"make_hard_standin: n must be >= 1, got {n}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = SyntheticSource(n, size=size, seed=seed)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 7])
        labels = sorted(int(x) for x in rng.choice(1000, size=int(rng.integers(1, 6)), replace=False))
        name = f"hard_{i:04d}.png"
        path = folder / name
        if not path.exists():
            atomic_write(path, lambda tmp: pixels[i].image.save(tmp, format="PNG"))
        rows.append({"file": name, "label": ";".join(map(str, labels)),
                     "origin": STANDIN_ORIGINS[i % len(STANDIN_ORIGINS)],
                     # ImageNet's name whatever model was opened last: these bytes are part of the data's key
                     "english_label": imagenet_class_names()[labels[0]].split(",")[0].strip()})
    text = _csv_text(rows)
    target = folder / "labels.csv"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        atomic_write(target, text)
    return folder


def _csv_text(rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def resolve_dataset(dataset: str, root: str | None, workdir: str | Path) -> tuple[str, str | None, str | None]:
    """(dataset, root, note): "synthetic-hard:N" becomes "csv:<workdir>/standin/synthetic-hard-N" after
    writing the stand-in there; anything else is returned unchanged (note None)."""
    scheme, sep, rest = str(dataset).partition(":")
    if scheme != STANDIN_SCHEME:
        return dataset, root, None
    if sep and rest and not rest.isdigit():
        raise ValueError(f"{STANDIN_SCHEME}:N needs an integer N, got {dataset!r}")
    n = int(rest) if rest else 24
    folder = make_hard_standin(Path(workdir) / "standin" / f"{STANDIN_SCHEME}-{n}", n=n)
    note = (f"{dataset} is a synthetic stand-in for ImageNet-Hard ({n} random images with random multi-label "
            f"sets and origins, written to {folder}); its numbers say nothing about the real dataset.")
    return f"csv:{folder}", None, note


# ================================================================================================
# Provenance
# ================================================================================================
def provenance_info(result_set, profile: str | None, checkpoint: str | None = None) -> dict:
    """What produced a result set: profile, model, weights, data and grid, JSON-serialisable.

    result_set: a `sweep.store.ResultSet` (then the number of images it holds is reported too, e.g. the
    first 300 of 10,980) or its settings dict. checkpoint: the file the weights came from (the
    settings keep only its sha256).
    """
    if isinstance(result_set, Mapping):
        settings, stored = result_set, None
    else:
        settings, stored = result_set.settings, int(len(result_set.images()))
    from zoomstudy.provenance import stored as provenance

    key = settings["key"]
    # the key's content plus where it ran (data path, device), which the store keeps outside the key
    model, data, grid = provenance(settings, "model"), provenance(settings, "dataset"), ViewGrid.from_dict(key["grid"])
    info = {
        "profile": profile,
        "model": model.get("architecture") or f"{model.get('source')}:{model.get('name')}",
        "weights_id": model.get("weights_id"),
        "weights": describe_weights(model, checkpoint),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "label_space": (model.get("label_space") or {}).get("name"),
        "device": model.get("device"),
        "dataset": data.get("name"),
        "dataset_kind": data.get("kind"),
        "dataset_location": data.get("location"),
        "dataset_revision": data.get("resolved_revision") or data.get("revision"),
        "dataset_rows": data.get("hub_rows") or data.get("rows"),  # a hub prefix: the commit's full count
        "dataset_fingerprint": data.get("fingerprint"),
        "images_stored": stored,
        "data": describe_data(data, stored),
        "grid": grid.to_dict(),
        "n_views": grid.n_views,
        "result_set": settings.get("key_hash"),
        "zoomstudy": key.get("zoomstudy"),
        "git_commit": settings.get("git_commit"),
    }
    info["statement"] = provenance_statement(info)
    return info


def describe_weights(model: Mapping, checkpoint: str | None = None) -> str:
    """One phrase for the weights of a model provenance record ('random (untrained) weights', ...)."""
    arch = model.get("architecture") or f"{model.get('source')}:{model.get('name')}"
    wid = str(model.get("weights_id"))
    if is_random_weights(model):
        return f"random (untrained {arch})"
    if model.get("source") == "checkpoint" or checkpoint:
        where = f" {Path(str(checkpoint)).name}" if checkpoint else ""
        return f"checkpoint{where} (sha256 {wid[:12]}, {arch})"
    return f"{wid} ({arch})"


def describe_data(data: Mapping, used: int | None = None) -> str:
    """One phrase for a dataset provenance record: name, kind, size (and how many images were `used`
    when not all), where, revision, fingerprint."""
    world = data.get("source") == "zoomstudy.world"  # experiment.world.WorldSource.provenance()
    kind = data.get("kind") or (f"procedural world, {data.get('split')} split, seed {data.get('seed')}" if world
                                else None)
    parts = [str(kind)] if kind else []
    rows = data.get("rows") if data.get("rows") is not None else data.get("items")
    rows = data.get("hub_rows") or rows  # a pinned hub read of the first files: of the commit's full count
    if used is not None and rows is not None and used != rows:
        parts.append(f"{used} of {rows} images")
    elif rows is not None:
        parts.append(f"{rows} images")
    loc = data.get("location")
    if isinstance(loc, list):
        loc = f"{len(loc)} files in {Path(loc[0]).parent}" if loc else None
    if loc:
        parts.append(str(loc))
    rev = data.get("resolved_revision") or data.get("revision")
    if rev:
        parts.append(f"revision {rev}")
    if data.get("kind") == "synthetic" and data.get("params"):
        parts.append(f"generator seed {data['params'].get('seed')}")
    if data.get("fingerprint"):
        parts.append(f"fingerprint {str(data['fingerprint'])[:12]}")
    return f"{data.get('name')} ({', '.join(parts)})" if parts else str(data.get("name"))


def provenance_statement(info: Mapping) -> str:
    """'This report was produced by profile X with weights Y on data Z (grid ...).'"""
    g = info.get("grid") or {}
    grid = ""
    if g:
        grid = (f"; {info.get('n_views')} views per image: {len(g['scales'])} scales x {g['grid']}x{g['grid']} "
                f"anchors, crop {g['crop']}")
    return (f"This report was produced by profile {info.get('profile')} with weights {info.get('weights')} "
            f"on data {info.get('data')}{grid}.")


# ================================================================================================
# Table 1
# ================================================================================================
def bounds_frame(
    correct: np.ndarray,
    grid: ViewGrid,
    *,
    model: str = "",
    dataset: str = "",
    top_n: int = 36,
    folds: int = 2,
    seed: int = 0,
    alpha: float = 0.05,
    n_classes: int = analysis.N_IMAGENET_CLASSES,
    random_rows: bool = True,
) -> pd.DataFrame:
    """Table 1 for one (model, dataset), tidy: one row per metric with a Clopper-Pearson interval.

    Columns: model, dataset, n_images, key, metric (a readable label), views (how many views the
    metric may use), accuracy, ci_low, ci_high (%). Keys: standard (the 1-crop view, left out when the
    grid lacks it), upper_all (any view), upper_topn (first top_n greedy views selected on these very
    images: optimistic, as in the paper), upper_topn_cv (selected on the other folds; left out with
    fewer than 2 images), random_topn / random_all (a uniform guesser with as many tries; no interval).
    """
    correct = analysis._as_matrix(correct, grid)
    n = correct.shape[0]
    f = min(folds, n)
    keys = [k for k in analysis.BOUND_KEYS
            if (k != "upper_topn_cv" or f >= 2) and (random_rows or not k.startswith("random"))]
    t = analysis.bound_metrics(correct, grid, n_classes=n_classes, top_n=top_n, alpha=alpha, folds=f, seed=seed,
                               keys=keys)
    t = t.rename(columns={"lo": "ci_low", "hi": "ci_high"})
    t.insert(0, "n_images", n)
    t.insert(0, "dataset", dataset)
    t.insert(0, "model", model)
    return t


def _is_realdata(settings: Mapping) -> bool:
    """The run is the real-data kit's: its 100 ImageNet images with the real SqueezeNet weights."""
    model, data = settings["key"]["model"], settings["key"]["dataset"]
    kind = data.get("kind") or settings.get("provenance", {}).get("dataset", {}).get("kind")
    return (kind == "csv" and data.get("name") == "imagenet-sample" and data.get("rows") == 100
            and model.get("name") == "squeezenet1_0" and not is_random_weights(settings))


def reference_comparison(settings: Mapping, frame: pd.DataFrame, top_n: int = 36,
                         cover_length: int | None = None) -> dict | None:
    """Arguments for `plots.compare_table` putting this run next to its published target, or None.

    The target is the paper's Table 1 row (`paper.TABLE1`, plus `TABLE1_TOP36`) when the model and
    the dataset are the paper's (names mapped with `paper.to_paper_names`) and the weights are not
    random, or the real-data kit's reference figures (`paper.REALDATA_REFERENCE`) when the data and
    weights are the kit's. Only comparable numbers are compared: the 1-crop view needs crop 224 and
    scale 256; the bounds need the paper's 36 x 3 x 3 grid (and top_n = 36 for the greedy bound).
    Returns a dict with ours, paper, on, value_cols, caption; None when nothing is comparable.
    """
    key = settings["key"]
    grid = ViewGrid.from_dict(key["grid"])
    paper_grid = grid == ViewGrid.paper()
    vals = dict(zip(frame["key"], frame["accuracy"]))
    ours: dict[str, float] = {}
    if "standard" in vals and grid.crop == 224 and grid.standard_scale == 256:
        ours["standard"] = vals["standard"]
    if paper_grid:
        ours["upper_324"] = vals["upper_all"]
        if top_n == 36:
            ours["upper_36"] = vals["upper_topn"]
    n_used, n_rows = int(frame["n_images"].iloc[0]) if "n_images" in frame else None, key["dataset"].get("rows")
    subset = f" -- ours on {n_used} of the {n_rows} images" if n_used is not None and n_rows and n_used != n_rows else ""
    if _is_realdata(settings):
        if paper_grid and cover_length is not None:
            ours["cover_length"] = float(cover_length)
        if not ours:
            return None
        mine = pd.DataFrame({"metric": list(ours), "value": list(ours.values())})
        ref = paper.REALDATA_REFERENCE
        ref = ref[ref["metric"].isin(list(ours))][["metric", "value"]].reset_index(drop=True)
        caption = (f"ours vs the real-data kit's reference figures ({paper.REALDATA_MODEL}, "
                   f"{paper.REALDATA_DATASET}); diff = ours - reference{subset}")
        return {"ours": mine, "paper": ref, "on": ["metric"], "value_cols": ["value"], "caption": caption}
    if is_random_weights(settings):
        return None
    pm, pdn = paper.paper_names(settings)
    ref = paper.TABLE1[(paper.TABLE1["model"] == pm) & (paper.TABLE1["dataset"] == pdn)]
    if ref.empty or not ours:
        return None
    ref = ref.merge(paper.TABLE1_TOP36, on=["model", "dataset"], how="left")
    cols = [c for c in ("standard", "upper_324", "upper_36") if c in ours and ref[c].notna().any()]
    if not cols:
        return None
    mine = pd.DataFrame([{"model": pm, "dataset": pdn, **{c: ours[c] for c in cols}}])
    wid = str(key["model"].get("weights_id"))
    caption = f"ours vs paper Table 1 ({pm}, {pdn}); diff = ours - paper{subset}"
    if key["model"].get("source") == "torchvision" and not wid.endswith("IMAGENET1K_V1"):
        caption += f" -- note: the paper used torchvision's IMAGENET1K_V1 weights, this run {wid}"
    return {"ours": mine, "paper": ref[["model", "dataset"] + cols].reset_index(drop=True), "on": ["model", "dataset"],
            "value_cols": cols, "caption": caption}


# ================================================================================================
# Zoom groups, anchors, scales
# ================================================================================================
def _pct_ci(pct: float, n: int, alpha: float) -> tuple[float, float]:
    k = int(round(pct * n / 100.0))
    lo, hi = clopper_pearson(k, n, alpha)
    return 100.0 * lo, 100.0 * hi


def group_table(correct: np.ndarray, grid: ViewGrid, alpha: float = 0.05) -> pd.DataFrame:
    """Zoom-out / S = crop / zoom-in bounds and the images only that group solves, tidy, with intervals.

    Columns: group (a readable label), key (zoom_out, zoom_224, zoom_in), measure ("bound: any view
    of the group" or "solved by this group only"), accuracy, ci_low, ci_high (% of all images).
    Groups the grid has no view of are left out.
    """
    correct = analysis._as_matrix(correct, grid)
    n = correct.shape[0]
    bounds = analysis.group_bounds(correct, grid)
    only = analysis.exclusive_solves(correct, grid)
    rows = []
    for g in GROUPS:
        if math.isnan(bounds[g]):
            continue
        for measure, value in (("bound: any view of the group", bounds[g]), ("solved by this group only", only[g])):
            lo, hi = _pct_ci(value, n, alpha)
            rows.append({"group": GROUP_LABELS[g], "key": g, "measure": measure, "accuracy": value,
                         "ci_low": min(lo, value), "ci_high": max(hi, value)})
    return pd.DataFrame(rows)


def anchor_bound_table(correct: np.ndarray, grid: ViewGrid, alpha: float = 0.05) -> pd.DataFrame:
    """Per-anchor bound (any scale at the anchor) with intervals: anchor ("r,c"), row, col, is_center,
    accuracy, ci_low, ci_high; the centre anchor first, then the others in image order."""
    correct = analysis._as_matrix(correct, grid)
    per_anchor = analysis._any_over(correct, analysis._anchor_masks(grid))  # [N, g*g]
    c = grid.center if grid.grid % 2 else -1
    rows = []
    for a in range(grid.n_anchors):
        r, col = divmod(a, grid.grid)
        acc, lo, hi = accuracy_with_ci(per_anchor[:, a], alpha)
        rows.append({"anchor": f"{r},{col}" + (" (centre)" if (r, col) == (c, c) else ""), "row": r, "col": col,
                     "is_center": (r, col) == (c, c), "accuracy": acc, "ci_low": lo, "ci_high": hi})
    df = pd.DataFrame(rows)
    return df.sort_values("is_center", ascending=False, kind="stable").reset_index(drop=True)


def cover_scale_table(cover: Sequence[int], grid: ViewGrid) -> pd.DataFrame:
    """Share (%) of the selected views at each scale, as `plots.accuracy_vs_scale` draws it:
    columns scale, accuracy (the share; NaN for an empty selection), group, n_views."""
    share = analysis.cover_scale_share(cover, grid)
    v = np.asarray(list(cover), np.int64)
    counts = np.bincount(v // grid.n_anchors, minlength=grid.n_scales) if v.size else np.zeros(grid.n_scales, int)
    return pd.DataFrame({"scale": list(grid.scales), "accuracy": share.to_numpy(float),
                         "group": [grid.group_of_scale(s) for s in grid.scales], "n_views": counts})


def centre_share_table(cover_topn: Sequence[int], grid: ViewGrid, realdata: bool = False) -> pd.DataFrame:
    """The centre anchor's share of the greedy top-N views against uniform (100 / g^2) and the paper's
    26.65% (averaged over its datasets and models); the kit's 35.7% when `realdata`."""
    share = analysis.cover_anchor_share(cover_topn, grid)
    ours = float(share[grid.center, grid.center]) if grid.grid % 2 and len(cover_topn) else math.nan
    rows = [("this run", ours, len(cover_topn)), ("uniform", 100.0 / grid.n_anchors, None),
            ("paper (mean over datasets and models)", paper.CENTER_SHARE_TOP36, 36)]
    if realdata:
        ref = paper.REALDATA_REFERENCE.set_index("metric")["value"]
        rows.append(("real-data kit reference", float(ref["center_share"]), int(ref["cover_length"])))
    return pd.DataFrame(rows, columns=["source", "centre_share", "views"])


def mcnemar_table(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """`analysis.center_vs_anchors` plus Holm-adjusted p-values and a verdict per anchor.

    Adds anchor ("r,c"), diff (centre - anchor, points), p_holm (Holm-Bonferroni over the rows, which
    controls the family-wise error of the g^2 - 1 comparisons) and significant (p_holm < alpha).
    """
    missing = [c for c in ("row", "col", "anchor", "center", "p_value") if c not in df.columns]
    if missing:
        raise ValueError(f"mcnemar_table: missing columns {missing}")
    out = df.copy()
    p = out["p_value"].to_numpy(float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    out.insert(0, "anchor_rc", [f"{r},{c}" for r, c in zip(out["row"], out["col"])])
    out["diff"] = out["center"] - out["anchor"]
    out["p_holm"] = adj
    out["significant"] = out["p_holm"] < alpha
    return out


def anchor_references(settings: Mapping) -> dict[str, np.ndarray]:
    """Published per-anchor bounds to show next to a run: the paper's ResNet-50 grid on the run's
    dataset when the paper has it (ImageNet, ImageNet-A, ObjectNet), else on ImageNet; and the
    real-data kit's reference grid when the run is the kit's."""
    _, pdn = paper.paper_names(settings)
    have = set(paper.PER_ANCHOR["dataset"])
    d = pdn if pdn in have else "IN"
    label = {"IN": "ImageNet", "IN-A": "ImageNet-A", "ObjectNet": "ObjectNet"}.get(d, d)
    out = {f"paper: ResNet-50 on {label}": paper.anchor_grid(paper.PER_ANCHOR, dataset=d)}
    if _is_realdata(settings):
        out[f"kit reference: {paper.REALDATA_MODEL}"] = paper.anchor_grid(
            paper.REALDATA_REFERENCE, value="value", metric="anchor_bound")
    return out


def anchor_comparison(settings: Mapping, bounds: np.ndarray) -> dict | None:
    """Arguments for `plots.compare_table`: this run's per-anchor bound next to the same grid published
    for the same model and data (the kit's reference, or the paper's ResNet-50 on ImageNet, ImageNet-A
    or ObjectNet), on the paper's 36 x 3 x 3 grid only; None when there is no such reference."""
    key = settings["key"]
    if ViewGrid.from_dict(key["grid"]) != ViewGrid.paper():
        return None
    bounds = np.asarray(bounds, float)
    ours = pd.DataFrame([{"row": r, "col": c, "bound": bounds[r, c]} for r in range(3) for c in range(3)])
    if _is_realdata(settings):
        ref = paper.REALDATA_REFERENCE[paper.REALDATA_REFERENCE["metric"] == "anchor_bound"]
        ref = pd.DataFrame({"row": ref["row"].astype(int), "col": ref["col"].astype(int), "bound": ref["value"]})
        caption = f"per-anchor bound: ours vs the kit's reference ({paper.REALDATA_MODEL}); diff = ours - reference"
    else:
        pm, pdn = paper.paper_names(settings)
        ref = paper.PER_ANCHOR[(paper.PER_ANCHOR["model"] == pm) & (paper.PER_ANCHOR["dataset"] == pdn)]
        if ref.empty or is_random_weights(settings):
            return None
        ref = ref[["row", "col", "bound"]]
        caption = f"per-anchor bound: ours vs paper ({pm}, {pdn}); diff = ours - paper"
    return {"ours": ours, "paper": ref.reset_index(drop=True), "on": ["row", "col"], "value_cols": ["bound"],
            "caption": caption}


def anchor_panels(panels: Mapping[str, np.ndarray | None], *, fmt: str = ".1f", cbar_label: str = "accuracy (%)",
                  title: str | None = None, ncols: int | None = None):
    """Anchor heatmaps side by side, each on its own colour scale (`plots.anchor_grid` per panel).

    Use it to put a run next to references measured on other models and data (the paper's ResNet-50,
    the real-data kit), where one shared colour scale would flatten the panel with the smaller range.
    ncols: panels per row (default: all in one row), filled row by row; a panel of None is a blank
    saying "no data" (a model without that dataset, so the columns stay the datasets).
    """
    import matplotlib.pyplot as plt

    from zoomstudy.report import plots

    if not panels:
        raise ValueError("anchor_panels: no panels")
    ncols = len(panels) if not ncols else int(ncols)
    nrows = -(-len(panels) // ncols)
    with plots._styled():
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), layout="constrained", squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (name, values) in zip(axes.flat, panels.items()):
            if values is None:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{name}\nno data", ha="center", va="center", transform=ax.transAxes)
                continue
            grid = np.asarray(values, float)
            finite = grid[np.isfinite(grid)]
            vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
            if vmin == vmax:
                vmin, vmax = vmin - 1.0, vmax + 1.0
            plots.anchor_grid(grid, ax=ax, title=str(name), fmt=fmt, vmin=vmin, vmax=vmax, cbar_label=cbar_label)
        if title:
            fig.suptitle(title)
    plt.close(fig)
    return fig


# ================================================================================================
# Images
# ================================================================================================
def pick_example(correct: np.ndarray, standard_view: int | None = None, shown: Sequence[int] | None = None) -> int:
    """Row of an instructive image: wrong at the 1-crop view but right in some view (zoom rescues it),
    preferring one whose `shown` views (e.g. the centre view at each scale, as a gallery shows them)
    are partly right and partly wrong; else right in some view but not all; else the first image."""
    correct = np.asarray(correct, bool)
    if correct.ndim != 2 or correct.shape[0] == 0:
        raise ValueError(f"pick_example: expected a non-empty [N, V] matrix, got {correct.shape}")
    some, every = correct.any(axis=1), correct.all(axis=1)
    rescued = some & ~correct[:, standard_view] if standard_view is not None else some & ~every
    candidates = []
    if shown is not None and len(shown):
        sub = correct[:, list(shown)]
        mixed = sub.any(axis=1) & ~sub.all(axis=1)
        candidates += [rescued & mixed, mixed]
    candidates += [rescued, some & ~every, some]
    for mask in candidates:
        if mask.any():
            return int(np.flatnonzero(mask)[0])
    return 0


def example_rows(correct: np.ndarray, standard_view: int | None, n: int) -> list[int]:
    """Up to n image rows to show: those zoom rescues (wrong at the 1-crop view, right in some view)
    first, then those right at the 1-crop view, then the rest; source order within each kind."""
    correct = np.asarray(correct, bool)
    some = correct.any(axis=1)
    std = correct[:, standard_view] if standard_view is not None else np.zeros(len(correct), bool)
    kinds = [some & ~std, std, ~some]
    rows = [int(i) for mask in kinds for i in np.flatnonzero(mask)]
    return rows[: max(0, int(n))]


def centre_views(image, grid: ViewGrid):
    """The centre-anchor view of one image at every scale of the grid, rendered with
    `views.render_views` one scale at a time (the whole grid at once would hold all views in memory).

    image: a PIL image or a uint8 [3, H, W] tensor. Returns (grey levels float [S, 3, crop, crop],
    the view indices of those views in `grid`).
    """
    import torch

    from zoomstudy.views import pil_to_tensor, render_views

    x = image if torch.is_tensor(image) else pil_to_tensor(image)
    c = grid.center
    out = []
    for s in grid.scales:
        one = ViewGrid(scales=(s,), grid=grid.grid, crop=grid.crop)
        out.append(render_views(x, one)[c * grid.grid + c])
    return torch.stack(out), [grid.view_index(s, c, c) for s in grid.scales]


def thumbnails(images: Sequence, size: int = 128):
    """PIL images -> uint8 tensor [N, 3, size, size]: shorter side resized to `size`, centre crop."""
    import torch
    from PIL import Image

    out = np.zeros((len(images), size, size, 3), np.uint8)
    for i, im in enumerate(images):
        if im is None:
            continue
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        out[i] = np.asarray(im.crop((left, top, left + size, top + size)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# ================================================================================================
# ImageNet-Hard
# ================================================================================================
def image_table(result_set) -> pd.DataFrame:
    """One row per decoded image, in the order of `ResultSet.predictions()`: image_id, position,
    labels (tuple), width, height, and the image's meta fields as columns (e.g. origin)."""
    images = result_set.images()
    if "ok" in images:
        images = images[images["ok"].astype(bool)]
    images = images.reset_index(drop=True)
    metas = [json.loads(m) if isinstance(m, str) and m else (m or {}) for m in images.get("meta", [None] * len(images))]
    meta = pd.DataFrame(metas, index=images.index)
    base = images[["image_id", "position", "width", "height"]].copy()
    base["labels"] = [tuple(int(x) for x in lab) for lab in images["labels"]]
    extra = meta[[c for c in meta.columns if c not in base.columns]]
    return pd.concat([base, extra], axis=1)


def plain_from_sweep(result_set, grid: ViewGrid | None = None) -> pd.DataFrame:
    """The 1-crop view of a sweep as a per-image table like `hard.evaluate_plain`'s: image_id, origin,
    labels, pred, confidence, correct (multi-label: top-1 in the label set)."""
    from zoomstudy.analysis.hard import multilabel_correct

    grid = grid or result_set.grid
    sv = grid.standard_view
    if sv is None:
        raise ValueError("plain_from_sweep: the grid has no 1-crop view (needs the standard scale at the centre)")
    ids, top1, conf = result_set.predictions()
    table = image_table(result_set)
    pred = top1[:, sv].astype(np.int64)
    return pd.DataFrame({
        "image_id": ids,
        "origin": table["origin"].astype(str).to_numpy() if "origin" in table else "all",
        "labels": [list(t) for t in table["labels"]],
        "pred": pred,
        "confidence": conf[:, sv].astype(float),
        "correct": multilabel_correct(pred, [list(t) for t in table["labels"]]),
    })


def hard_leaderboard_table(leaderboard: pd.DataFrame, run_label: str = "this run") -> pd.DataFrame:
    """The paper's ImageNet-Hard top-1 (`paper.IMAGENET_HARD`) with this run's rows added, tidy for
    `plots.bar_with_ci`: model, source ("paper" or run_label), top1, ci_low, ci_high, n, note; sorted
    by top-1, best first. The paper gives no intervals (ci = top1)."""
    rows = [{"model": m, "source": "paper", "top1": float(t), "ci_low": float(t), "ci_high": float(t),
             "n": paper.IMAGENET_HARD_SIZE, "note": f"{int(i)} px" if int(i) != 224 else ""}
            for m, t, i in paper.IMAGENET_HARD[["model", "top1", "input"]].itertuples(index=False)]
    for r in leaderboard.itertuples(index=False):
        note = "full set" if r.full_set else f"{r.n} of {paper.IMAGENET_HARD_SIZE} images"
        if isinstance(r.paper_model, str):
            note += f"; paper {r.paper_model}: {r.paper_top1:.2f}"
        rows.append({"model": f"{r.model} ({run_label})", "source": run_label, "top1": float(r.accuracy),
                     "ci_low": float(r.ci_low), "ci_high": float(r.ci_high), "n": int(r.n), "note": note})
    return pd.DataFrame(rows).sort_values("top1", ascending=False, kind="stable").reset_index(drop=True)


def find_companions(results_dir: str | Path, result_set, datasets: Sequence[str] | None = None) -> list:
    """Other result sets under results_dir of the same model, weights, label space and grid, on other
    data (e.g. ImageNet next to ImageNet-Hard), with at least one image stored.

    datasets: keep only these dataset names (as in settings['key']['dataset']['name']); None keeps all.
    """
    from zoomstudy.sweep.store import find_results

    here = result_set.settings["key"]
    out = []
    for rs in find_results(results_dir):
        if rs.path.resolve() == Path(result_set.path).resolve():
            continue
        key = rs.settings["key"]
        same = all(key["model"].get(k) == here["model"].get(k) for k in ("architecture", "weights_id", "label_space"))
        if not same or key["grid"] != here["grid"]:
            continue
        if key["dataset"].get("fingerprint") == here["dataset"].get("fingerprint"):
            continue
        if datasets is not None and key["dataset"].get("name") not in set(datasets):
            continue
        if not rs.committed_parts():
            continue
        out.append(rs)
    return out
