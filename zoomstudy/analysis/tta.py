"""Test-time aggregation without training (SPEC section 4, Table 4), from a stored sweep.

Table 4 needs no second pass over the images: for every image and view group the sweep stores the
argmax of the averaged softmax ("mean") and the class of the single most confident view ("max") in
`ResultSet.groups()`, and the 1-crop prediction is the top-1 of the grid's standard view in
`ResultSet.views()`. `tta_table` turns those into accuracies with Clopper-Pearson intervals and a
paired McNemar test against the 1-crop view; `tta_changes` says, image by image, whether an
aggregation fixed or broke the 1-crop prediction.

    groups      views                                       paper (Table 4)
    zoom_in     S > crop, all anchors                       "zoom-in"
    zoom_out    S < crop, all anchors                       "zoom-out"
    zoom_224    S = crop, all anchors                       -
    all_views   every view of the grid                      -
    five_crop   Resize(standard) + 4 corners + centre       "5-crop"
    ten_crop    five_crop + their horizontal flips          "10-crop"

The 5/10-crop sets are rendered at `grid.standard_scale` (256 for crop 224), so they exist whatever
the grid's scales; a zoom group exists when the grid has a scale of that kind.

Test-time adaptation (MEMO, Table 5) needs a pass over the images with a backward step per image; it
lives in `analysis.memo`, its stored table and summary in `analysis.table5`.

Reading choices (the paper gives no code for Table 4; SPEC section 4 fixes the definitions):

* 1-crop is the standard view `LOC:1_1_Size:<standard_scale>` of the sweep (bicubic, the anchor
  arithmetic): the paper's 75.75 row, not MEMO's bilinear baseline (76.13 in Table 5).
* Multi-label sets (ReaL, ImageNet-Hard): a prediction is correct when it is in the image's set;
  images with an empty set are left out of every row (the ReaL protocol), so all rows of a table
  score the same images and the paired tests are valid.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zoomstudy.analysis import bounds as analysis
from zoomstudy.analysis import paper
from zoomstudy.analysis.stats import accuracy_with_ci, mcnemar_exact
from zoomstudy.views import ViewGrid

#: Store groups in Table 4's order (groups a result set lacks are skipped).
GROUP_ORDER: tuple[str, ...] = ("zoom_in", "zoom_out", "zoom_224", "all_views", "five_crop", "ten_crop")
AGGREGATIONS: tuple[str, ...] = ("mean", "max")
#: Group name of the standard view's row; its aggregation is "none" (as in `paper.TABLE4`).
STANDARD = "1-crop"
#: Store group -> the name `paper.TABLE4` uses.
PAPER_GROUPS: dict[str, str] = {
    STANDARD: "1-crop", "zoom_in": "zoom_in", "zoom_out": "zoom_out", "zoom_224": "zoom_224",
    "all_views": "all_views", "five_crop": "5-crop", "ten_crop": "10-crop",
}
#: Kinds of `tta_changes`.
CHANGES: tuple[str, ...] = ("fixed", "broke", "both right", "both wrong")



def _group_label(group: str, grid: ViewGrid | None = None) -> str:
    crop = grid.crop if grid is not None else 224
    labels = {
        STANDARD: "1-crop", "zoom_in": "zoom-in", "zoom_out": "zoom-out", "zoom_224": f"S = {crop}",
        "all_views": "all views", "five_crop": "5-crop", "ten_crop": "10-crop",
    }
    return labels.get(group, group)


def method_label(group: str, aggregation: str, grid: ViewGrid | None = None) -> str:
    """Readable row name: '1-crop', 'zoom-in, mean', '10-crop, max', ..."""
    base = _group_label(group, grid)
    return base if group == STANDARD or aggregation == "none" else f"{base}, {aggregation}"


def group_sizes(grid: ViewGrid) -> dict[str, int]:
    """Number of views each group aggregates over (1 for the 1-crop view)."""
    out = {STANDARD: 1}
    for g in ("zoom_in", "zoom_out", "zoom_224"):
        out[g] = int(grid.group_mask(g).sum())
    out.update(all_views=grid.n_views, five_crop=5, ten_crop=10)
    return out


# ================================================================================================
# Table 4: from the stored groups
# ================================================================================================
@dataclass
class _Outcomes:
    """Per-image predictions of one result set, restricted to the images with a label set."""

    image_ids: list[str]
    positions: np.ndarray  # int64 [N]
    labels: list[tuple[int, ...]]
    base_pred: np.ndarray | None  # int64 [N], None when the grid has no standard view
    base_conf: np.ndarray | None  # float [N]
    preds: dict[tuple[str, str], np.ndarray]  # (group, aggregation) -> int64 [N]
    confs: dict[tuple[str, str], np.ndarray]  # (group, aggregation) -> float [N]
    left_out: int  # images without a label set

    def correct(self, pred: np.ndarray) -> np.ndarray:
        return analysis.correctness(pred.astype(np.int64), self.labels)


def _label_sets(images: pd.DataFrame, labels) -> list[tuple[int, ...]]:
    ids = images["image_id"].tolist()
    if labels is None:
        return [tuple(int(x) for x in lab) for lab in images["labels"]]
    if isinstance(labels, Mapping):
        missing = [i for i in ids if i not in labels]
        if missing:
            raise ValueError(f"labels has no entry for {len(missing)} stored image(s), e.g. {missing[0]!r}")
        raw = [labels[i] for i in ids]
    else:
        raw = list(labels)
        if len(raw) != len(ids):
            raise ValueError(f"labels has {len(raw)} entries for {len(ids)} stored images (order of ResultSet.labels())")
    return [(int(t),) if np.ndim(t) == 0 else tuple(int(x) for x in t) for t in raw]


def _standard_rows(result_set, view: int) -> pd.DataFrame:
    """image_id, pred0, prob0 of one view: one filtered scan of every part's views (not a read per part)."""
    table = result_set._read_arrow("views", ["image_id", "view", "pred0", "prob0"], view=int(view))
    if table is None:
        return pd.DataFrame(columns=["image_id", "view", "pred0", "prob0"])
    return table.to_pandas()


def _outcomes(result_set, labels=None) -> _Outcomes:
    images = result_set.images()
    if len(images) and "ok" in images:
        images = images[images["ok"].astype(bool)]
    images = images.reset_index(drop=True)
    if not len(images):
        raise ValueError(f"{result_set.path}: no decoded images stored")
    sets = _label_sets(images, labels)
    keep = np.array([len(s) > 0 for s in sets], bool)
    if not keep.any():
        raise ValueError(f"{result_set.path}: no stored image has a label")
    ids = images["image_id"].tolist()
    order = {k: i for i, k in enumerate(ids)}
    n = len(ids)

    groups = result_set.groups()
    if not len(groups):
        raise ValueError(f"{result_set.path}: no group rows stored (a sweep older than the TTA groups?)")
    if groups.duplicated(["image_id", "group"]).any():
        raise ValueError(f"{result_set.path}: an (image, group) pair is stored twice")
    preds, confs = {}, {}
    for g in GROUP_ORDER:
        sel = groups[groups["group"] == g]
        if not len(sel):
            continue
        row = sel["image_id"].map(order)
        if row.isna().any() or len(sel) != n:
            raise ValueError(f"{result_set.path}: group {g!r} has rows for {len(sel)} images, {n} are stored")
        row = row.to_numpy(np.int64)
        for agg in AGGREGATIONS:
            p = np.empty(n, np.int64)
            c = np.empty(n, np.float64)
            p[row] = sel[f"{agg}_pred"].to_numpy(np.int64)
            c[row] = sel[f"{agg}_prob"].to_numpy(np.float64)
            preds[(g, agg)], confs[(g, agg)] = p[keep], c[keep]

    base_pred = base_conf = None
    sv = result_set.grid.standard_view
    if sv is not None:
        std = _standard_rows(result_set, sv)
        row = std["image_id"].map(order)
        if row.isna().any() or len(std) != n:
            raise ValueError(f"{result_set.path}: the 1-crop view is stored for {len(std)} of {n} images")
        row = row.to_numpy(np.int64)
        base_pred = np.empty(n, np.int64)
        base_conf = np.empty(n, np.float64)
        base_pred[row] = std["pred0"].to_numpy(np.int64)
        base_conf[row] = std["prob0"].to_numpy(np.float64)
        base_pred, base_conf = base_pred[keep], base_conf[keep]
    return _Outcomes(
        image_ids=[i for i, k in zip(ids, keep) if k],
        positions=images["position"].to_numpy(np.int64)[keep],
        labels=[s for s, k in zip(sets, keep) if k],
        base_pred=base_pred, base_conf=base_conf, preds=preds, confs=confs,
        left_out=int((~keep).sum()),
    )


def tta_table(result_set, labels=None, *, alpha: float = 0.05) -> pd.DataFrame:
    """Table 4 of one stored sweep, tidy: one row per (group, aggregation), with intervals.

    Rows: 1-crop (the grid's standard view; left out when the grid lacks it), then every stored group
    of `GROUP_ORDER` with aggregation "mean" (argmax of the averaged softmax over the group's views)
    and "max" (class of the single most confident view).
    labels: None (the stored label sets), a mapping image_id -> label set, or a sequence aligned with
    `ResultSet.labels()`; an int or a set of ints per image; correct = prediction in the set; images
    with an empty set are left out of every row.
    Columns: method (readable), group, aggregation ("none" for 1-crop), views (views aggregated),
    accuracy, lo, hi (% with Clopper-Pearson 1 - alpha bounds), n (images), delta (accuracy - 1-crop,
    points), fixed / broke (images the row gets right / wrong where 1-crop is wrong / right), p_value
    (exact McNemar test against 1-crop; NaN for the 1-crop row or without a standard view).
    `attrs["left_out"]` counts the images left out for lack of a label.
    """
    out = _outcomes(result_set, labels)
    grid = result_set.grid
    sizes = group_sizes(grid)
    base = out.correct(out.base_pred) if out.base_pred is not None else None
    base_acc = 100.0 * base.mean() if base is not None else np.nan
    rows = []

    def add(group, agg, ok):
        acc, lo, hi = accuracy_with_ci(ok, alpha)
        row = {"method": method_label(group, agg, grid), "group": group, "aggregation": agg,
               "views": sizes.get(group, np.nan), "accuracy": acc, "lo": lo, "hi": hi, "n": int(ok.size),
               "delta": np.nan, "fixed": np.nan, "broke": np.nan, "p_value": np.nan}
        if base is not None:
            row.update(delta=acc - base_acc, fixed=int((ok & ~base).sum()), broke=int((~ok & base).sum()))
            if group != STANDARD:
                row["p_value"] = mcnemar_exact(ok, base)
        rows.append(row)

    if base is not None:
        add(STANDARD, "none", base)
    for (g, agg), pred in out.preds.items():
        add(g, agg, out.correct(pred))
    table = pd.DataFrame(rows)
    table["fixed"] = table["fixed"].astype("Int64")
    table["broke"] = table["broke"].astype("Int64")
    table.attrs["left_out"] = out.left_out
    return table


def tta_changes(result_set, group: str, aggregation: str, labels=None) -> pd.DataFrame:
    """Per image: did aggregating `group` with `aggregation` fix or break the 1-crop prediction?

    Columns: image_id, position, labels (tuple), base_pred, base_conf, base_correct, tta_pred,
    tta_conf, tta_correct, change ("fixed", "broke", "both right", "both wrong"). Images without a
    label are left out. Raises ValueError when the grid has no 1-crop view or the group is not stored.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    out = _outcomes(result_set, labels)
    if out.base_pred is None:
        raise ValueError(f"{result_set.path}: the grid {result_set.grid.to_dict()} has no 1-crop view "
                         f"(scale {result_set.grid.standard_scale} at the centre anchor)")
    if (group, aggregation) not in out.preds:
        have = sorted({g for g, _ in out.preds})
        raise ValueError(f"group {group!r} is not stored in {result_set.path}; stored: {have}")
    base = out.correct(out.base_pred)
    pred = out.preds[(group, aggregation)]
    ok = out.correct(pred)
    change = np.where(ok & ~base, "fixed", np.where(~ok & base, "broke", np.where(ok, "both right", "both wrong")))
    return pd.DataFrame({
        "image_id": out.image_ids, "position": out.positions, "labels": out.labels,
        "base_pred": out.base_pred, "base_conf": out.base_conf, "base_correct": base,
        "tta_pred": pred, "tta_conf": out.confs[(group, aggregation)], "tta_correct": ok,
        "change": change,
    })


def pick_changes(changes: pd.DataFrame, n: int = 6, kinds: Sequence[str] = ("fixed", "broke")) -> pd.DataFrame:
    """Up to n rows of `tta_changes` to show: the kinds taken in turn (fixed, broke, fixed, ...), each
    kind most confident first; filled with the other rows when there are too few changes."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    queues = [changes[changes["change"] == k].sort_values("tta_conf", ascending=False, kind="stable").index.tolist()
              for k in kinds]
    picked = []
    for batch in itertools.zip_longest(*queues):
        picked.extend(i for i in batch if i is not None)
    rest = changes.index.difference(picked, sort=False).tolist()
    return changes.loc[(picked + rest)[:n]]


def _letterbox(image, size: int) -> np.ndarray:
    """The whole image fitted into size x size on black (what a group's views see together), uint8 [3, s, s]."""
    from PIL import Image

    im = image.convert("RGB")
    w, h = im.size
    s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(im.resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(canvas).transpose(2, 0, 1)


def change_views(result_set, source, rows: pd.DataFrame, group: str, aggregation: str):
    """Inputs of `plots.view_gallery` for examples of `tta_changes`: per image two panels, the 1-crop
    view (rendered again from the decoded image) and the whole image, titled with the 1-crop and the
    aggregated prediction and framed by their correctness.

    Returns (views uint8 [2 n, 3, crop, crop], names, correct bool [2 n], conf [2 n]).
    """
    import torch

    from zoomstudy.data.labels import class_name
    from zoomstudy.data.source import load_sample
    from zoomstudy.views import pil_to_tensor, render_views

    grid = result_set.grid
    one = ViewGrid(scales=(grid.standard_scale,), grid=grid.grid, crop=grid.crop)
    centre = grid.center * grid.grid + grid.center
    views, names, correct, conf = [], [], [], []
    label = method_label(group, aggregation, grid)
    for r in rows.itertuples(index=False):
        sample = load_sample(source, int(r.position))
        if sample.image is None or sample.image_id != r.image_id:
            raise ValueError(f"source position {r.position} is {sample.image_id!r}, the store says {r.image_id!r}")
        std = render_views(pil_to_tensor(sample.image), one)[centre]  # grey levels [3, crop, crop]
        views.append(std.round().clamp(0, 255).to(torch.uint8).numpy())
        views.append(_letterbox(sample.image, grid.crop))
        truth = ", ".join(class_name(c, names=result_set) for c in r.labels[:2]) + (" ..." if len(r.labels) > 2 else "")
        names.append(f"{r.change}: {r.image_id.split('/')[-1]}\n1-crop: {class_name(r.base_pred, names=result_set)}"
                     f"\nlabel: {truth}")
        names.append(f"{label} ({r.change})\n{class_name(r.tta_pred, names=result_set)}\nlabel: {truth}")
        correct += [bool(r.base_correct), bool(r.tta_correct)]
        conf += [float(r.base_conf), float(r.tta_conf)]
    if not views:
        raise ValueError("change_views: no rows to show")
    return np.stack(views), names, np.array(correct), np.array(conf)


def table4_comparison(table: pd.DataFrame, settings: Mapping) -> dict:
    """Arguments for `plots.compare_table`: this run's Table 4 next to the paper's, keyed on
    (group, aggregation) in the paper's names (5-crop, 10-crop, 1-crop / none).

    The paper's rows are ViT-B/32 on ImageNet (and two on ImageNet-A). `comparable` is True when this
    run is ViT-B/32 with torchvision's V1 weights, crop 224, on IN or IN-A; otherwise the paper's IN
    rows are shown for orientation only and the caption says so.
    Returns dict(ours, paper, on, value_cols, caption, comparable).
    """
    key = settings["key"]
    grid = ViewGrid.from_dict(key["grid"])
    pm, pdn = paper.paper_names(settings)
    ref_model = str(paper.TABLE4["model"].iloc[0])
    target = pdn if pdn in set(paper.TABLE4["dataset"]) else "IN"
    comparable = (pm == ref_model and pdn == target and paper.paper_weights(key["model"]) and grid.crop == 224)
    ours = pd.DataFrame({
        "group": [PAPER_GROUPS.get(g, g) for g in table["group"]],
        "aggregation": table["aggregation"].tolist(),
        "top1": table["accuracy"].to_numpy(float),
    })
    ref = paper.TABLE4[paper.TABLE4["dataset"] == target][["group", "aggregation", "top1"]].reset_index(drop=True)
    if comparable:
        caption = f"ours vs paper Table 4 ({ref_model}, {target}); diff = ours - paper"
        if grid != ViewGrid.paper():
            caption += f" -- note: the zoom groups here come from {grid.n_scales} scales, the paper's from 36"
    else:
        caption = (f"FOR ORIENTATION ONLY: this run is {pm} on {pdn}, the paper's Table 4 is {ref_model} on {target}"
                   f" (torchvision V1 weights, crop 224); the diff column is not a reproduction error")
    return {"ours": ours, "paper": ref, "on": ["group", "aggregation"], "value_cols": ["top1"],
            "caption": caption, "comparable": comparable}


__all__ = [
    "tta_table", "tta_changes", "pick_changes", "change_views", "table4_comparison", "group_sizes", "method_label",
]
