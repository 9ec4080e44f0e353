"""Table 1 and section 3 as tidy tables with intervals, and this run beside the published numbers.

`analysis.bounds` computes the bounds of a correctness matrix; this module puts them in the tidy
frames the notebooks, the model profile and the paper tables draw and print: Table 1
(`bounds_frame`, with Clopper-Pearson intervals, and `reference_comparison`, the paper's row or the
real-data kit's figures when the run is comparable to them), the zoom groups (`group_table`), the
anchors (`anchor_bound_table`, `anchor_references`, `anchor_comparison`), the scales and the centre
share of the greedy views (`cover_scale_table`, `centre_share_table`) and the paired centre-vs-anchor
tests with Holm's adjustment (`mcnemar_table`). Every function takes arrays, a `ViewGrid` and
settings dicts, and draws nothing.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from zoomstudy.analysis import bounds
from zoomstudy.analysis import paper
from zoomstudy.analysis.stats import accuracy_with_ci, clopper_pearson
from zoomstudy.provenance import is_random_weights
from zoomstudy.views import GROUPS, ViewGrid

GROUP_LABELS = {"zoom_out": "zoom out (S < crop)", "zoom_224": "S = crop", "zoom_in": "zoom in (S > crop)"}


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
    n_classes: int = bounds.N_IMAGENET_CLASSES,
    random_rows: bool = True,
) -> pd.DataFrame:
    """Table 1 for one (model, dataset), tidy: one row per metric with a Clopper-Pearson interval.

    Columns: model, dataset, n_images, key, metric (a readable label), views (how many views the
    metric may use), accuracy, ci_low, ci_high (%). Keys: standard (the 1-crop view, left out when the
    grid lacks it), upper_all (any view), upper_topn (first top_n greedy views selected on these very
    images: optimistic, as in the paper), upper_topn_cv (selected on the other folds; left out with
    fewer than 2 images), random_topn / random_all (a uniform guesser with as many tries; no interval).
    """
    correct = bounds._as_matrix(correct, grid)
    n = correct.shape[0]
    f = min(folds, n)
    keys = [k for k in bounds.BOUND_KEYS
            if (k != "upper_topn_cv" or f >= 2) and (random_rows or not k.startswith("random"))]
    t = bounds.bound_metrics(correct, grid, n_classes=n_classes, top_n=top_n, alpha=alpha, folds=f, seed=seed,
                               keys=keys)
    t = t.rename(columns={"lo": "ci_low", "hi": "ci_high"})
    t.insert(0, "n_images", n)
    t.insert(0, "dataset", dataset)
    t.insert(0, "model", model)
    return t


def is_realdata(settings: Mapping) -> bool:
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
    if is_realdata(settings):
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
    correct = bounds._as_matrix(correct, grid)
    n = correct.shape[0]
    per_group = bounds.group_bounds(correct, grid)
    only = bounds.exclusive_solves(correct, grid)
    rows = []
    for g in GROUPS:
        if math.isnan(per_group[g]):
            continue
        for measure, value in (("bound: any view of the group", per_group[g]), ("solved by this group only", only[g])):
            lo, hi = _pct_ci(value, n, alpha)
            rows.append({"group": GROUP_LABELS[g], "key": g, "measure": measure, "accuracy": value,
                         "ci_low": min(lo, value), "ci_high": max(hi, value)})
    return pd.DataFrame(rows)


def anchor_bound_table(correct: np.ndarray, grid: ViewGrid, alpha: float = 0.05) -> pd.DataFrame:
    """Per-anchor bound (any scale at the anchor) with intervals: anchor ("r,c"), row, col, is_center,
    accuracy, ci_low, ci_high; the centre anchor first, then the others in image order."""
    correct = bounds._as_matrix(correct, grid)
    per_anchor = bounds._any_over(correct, bounds._anchor_masks(grid))  # [N, g*g]
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
    share = bounds.cover_scale_share(cover, grid)
    v = np.asarray(list(cover), np.int64)
    counts = np.bincount(v // grid.n_anchors, minlength=grid.n_scales) if v.size else np.zeros(grid.n_scales, int)
    return pd.DataFrame({"scale": list(grid.scales), "accuracy": share.to_numpy(float),
                         "group": [grid.group_of_scale(s) for s in grid.scales], "n_views": counts})


def centre_share_table(cover_topn: Sequence[int], grid: ViewGrid, realdata: bool = False) -> pd.DataFrame:
    """The centre anchor's share of the greedy top-N views against uniform (100 / g^2) and the paper's
    26.65% (averaged over its datasets and models); the kit's 35.7% when `realdata`."""
    share = bounds.cover_anchor_share(cover_topn, grid)
    ours = float(share[grid.center, grid.center]) if grid.grid % 2 and len(cover_topn) else math.nan
    rows = [("this run", ours, len(cover_topn)), ("uniform", 100.0 / grid.n_anchors, None),
            ("paper (mean over datasets and models)", paper.CENTER_SHARE_TOP36, 36)]
    if realdata:
        ref = paper.REALDATA_REFERENCE.set_index("metric")["value"]
        rows.append(("real-data kit reference", float(ref["center_share"]), int(ref["cover_length"])))
    return pd.DataFrame(rows, columns=["source", "centre_share", "views"])


def mcnemar_table(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """`analysis.bounds.center_vs_anchors` plus Holm-adjusted p-values and a verdict per anchor.

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
    if is_realdata(settings):
        out[f"kit reference: {paper.REALDATA_MODEL}"] = paper.anchor_grid(
            paper.REALDATA_REFERENCE, value="value", metric="anchor_bound")
    return out


def anchor_comparison(settings: Mapping, anchor_bounds: np.ndarray) -> dict | None:
    """Arguments for `plots.compare_table`: this run's per-anchor bound next to the same grid published
    for the same model and data (the kit's reference, or the paper's ResNet-50 on ImageNet, ImageNet-A
    or ObjectNet), on the paper's 36 x 3 x 3 grid only; None when there is no such reference."""
    key = settings["key"]
    if ViewGrid.from_dict(key["grid"]) != ViewGrid.paper():
        return None
    anchor_bounds = np.asarray(anchor_bounds, float)
    ours = pd.DataFrame([{"row": r, "col": c, "bound": anchor_bounds[r, c]} for r in range(3) for c in range(3)])
    if is_realdata(settings):
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
