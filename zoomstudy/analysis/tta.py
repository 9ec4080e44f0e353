"""Test-time augmentation (SPEC section 4): Table 4 from a stored sweep, Table 5 (MEMO) from plain values.

Table 4 (aggregation without training) needs no second pass over the images: for every image and view
group the sweep stores the argmax of the averaged softmax ("mean") and the class of the single most
confident view ("max") in `ResultSet.groups()`, and the 1-crop prediction is the top-1 of the grid's
standard view in `ResultSet.views()`. `tta_table` turns those into accuracies with Clopper-Pearson
intervals and a paired McNemar test against the 1-crop view; `tta_changes` says, image by image,
whether an aggregation fixed or broke the 1-crop prediction.

    groups      views                                       paper (Table 4)
    zoom_in     S > crop, all anchors                       "zoom-in"
    zoom_out    S < crop, all anchors                       "zoom-out"
    zoom_224    S = crop, all anchors                       -
    all_views   every view of the grid                      -
    five_crop   Resize(standard) + 4 corners + centre       "5-crop"
    ten_crop    five_crop + their horizontal flips          "10-crop"

The 5/10-crop sets are rendered at `grid.standard_scale` (256 for crop 224), so they exist whatever
the grid's scales; a zoom group exists when the grid has a scale of that kind.

Table 5 (MEMO test-time adaptation) does need a pass over the images, with K forward passes, one
backward and a reset per image. `memo_table` runs it from plain values (a model spec, a dataset name)
and stores the per-image table as <results_dir>/memo/<hash>.parquet next to <hash>.json, the hash
covering every setting that can change a number (model and weights, data fingerprint, methods, K,
seeds, images, MEMO hyper-parameters, device); a rerun with the same settings reads the file, any
change computes a new one, and an interrupted run resumes from <hash>.partial.parquet.
`memo_summary` reduces it to Table 5's rows (accuracy averaged over seeds, the seed spread, an
interval and seconds per image).

Reading choices (the paper gives no code for Table 4; SPEC section 4 fixes the definitions):

* 1-crop is the standard view `LOC:1_1_Size:<standard_scale>` of the sweep (bicubic, the anchor
  arithmetic): the paper's 75.75 row, not MEMO's bilinear baseline (76.13 in Table 5).
* Multi-label sets (ReaL, ImageNet-Hard): a prediction is correct when it is in the image's set;
  images with an empty set are left out of every row (the ReaL protocol), so all rows of a table
  score the same images and the paired tests are valid.
* MEMO's interval over several seeds resamples images (a percentile bootstrap of the per-image share
  of seeds that are correct); with one seed it is the exact Clopper-Pearson interval.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zoomstudy import __version__
from zoomstudy.analysis import bounds as analysis
from zoomstudy.analysis import paper
from zoomstudy.analysis.stats import accuracy_with_ci, bootstrap_ci, clopper_pearson, mcnemar_exact
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

#: Bump when the MEMO table's layout or meaning changes: old files then get new hashes.
MEMO_FORMAT = 1
#: View kind of `tta` -> the method name of `paper.TABLE5` / `paper.MEMO_SPEED`.
MEMO_METHODS: dict[str, str] = {"augmix": "MEMO + AugMix", "rrc": "MEMO + RRC"}
BASELINE = "baseline"
MEMO_COLUMNS = ["image_id", "position", "method", "seed", "k", "pred", "baseline_pred", "correct",
                "baseline_correct", "seconds"]


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
    """image_id, pred0, prob0 of one view, read with a filter (not the whole views table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for part in result_set.committed_parts():
        f = result_set._file(part, "views")
        if f.exists():
            tables.append(pq.read_table(f, columns=["image_id", "view", "pred0", "prob0"],
                                        filters=[("view", "==", int(view))]))
    if not tables:
        return pd.DataFrame(columns=["image_id", "view", "pred0", "prob0"])
    return pa.concat_tables(tables).to_pandas()


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

    from zoomstudy.report.tables import class_name, load_sample
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
        truth = ", ".join(class_name(c) for c in r.labels[:2]) + (" ..." if len(r.labels) > 2 else "")
        names.append(f"{r.change}: {r.image_id.split('/')[-1]}\n1-crop: {class_name(r.base_pred)}\nlabel: {truth}")
        names.append(f"{label} ({r.change})\n{class_name(r.tta_pred)}\nlabel: {truth}")
        correct += [bool(r.base_correct), bool(r.tta_correct)]
        conf += [float(r.base_conf), float(r.tta_conf)]
    if not views:
        raise ValueError("change_views: no rows to show")
    return np.stack(views), names, np.array(correct), np.array(conf)


def _paper_names(settings: Mapping) -> tuple[str, str]:
    key = settings["key"]
    names = paper.to_paper_names(pd.DataFrame({"model": [key["model"].get("name")],
                                               "dataset": [key["dataset"].get("name")]}))
    return str(names.loc[0, "model"]), str(names.loc[0, "dataset"])


def _paper_weights(model: Mapping) -> bool:
    """The torchvision V1 weights the paper used (not random, not a checkpoint)."""
    return model.get("source") == "torchvision" and str(model.get("weights_id")).endswith("IMAGENET1K_V1")


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
    pm, pdn = _paper_names(settings)
    ref_model = str(paper.TABLE4["model"].iloc[0])
    target = pdn if pdn in set(paper.TABLE4["dataset"]) else "IN"
    comparable = (pm == ref_model and pdn == target and _paper_weights(key["model"]) and grid.crop == 224)
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


# ================================================================================================
# Table 5: MEMO
# ================================================================================================
def dataset_label_space(dataset: str) -> str:
    """The label space a dataset is scored in (SPEC section 2): the registry's for its names
    (imagenet-a -> 'imagenet-a', objectnet -> 'objectnet'), 'imagenet1k' for anything else."""
    from zoomstudy.data import DATASETS

    spec = DATASETS.get(str(dataset))
    return spec.label_space if spec is not None else "imagenet1k"


def _norm_methods(methods) -> tuple[str, ...]:
    from zoomstudy.analysis.memo import VIEW_KINDS

    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in VIEW_KINDS]
    if not methods or bad:
        raise ValueError(f"methods must name one or more of {VIEW_KINDS}, got {methods}")
    return tuple(m for m in VIEW_KINDS if m in methods)  # canonical order: a reordering is the same run


def _norm_seeds(seeds) -> tuple[int, ...]:
    seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    if not seeds or any(isinstance(s, bool) or not float(s).is_integer() for s in seeds):
        raise ValueError(f"seeds must be one or more integers, got {seeds}")
    return tuple(sorted({int(s) for s in seeds}))


def _check_memo_args(k, max_images, prior_n, lr, steps, resize, crop, interpolation) -> None:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if max_images is not None and int(max_images) < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
    if not isinstance(prior_n, (int, np.integer)):
        raise ValueError(f"prior_n must be an int (negative = no batch-norm adaptation), got {prior_n!r}")
    if not float(lr) > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if int(resize) < 1 or int(crop) < 1:
        raise ValueError(f"resize and crop must be positive, got resize={resize}, crop={crop}")
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")


def memo_settings(model, source, *, methods, k, seeds, max_images, prior_n=16, lr=0.00025, steps=1,
                  resize=256, crop=224, interpolation="bilinear") -> dict:
    """The provenance stored next to a MEMO table; `key` holds what can change a stored number and
    `key_hash` (the file name) hashes it."""
    from zoomstudy.sweep.engine import _git_commit

    model_prov = dict(model.provenance())
    model_prov.pop("weights_source", None)  # where the file was found does not change predictions
    key = {
        "format": MEMO_FORMAT,
        "zoomstudy": __version__,
        "model": model_prov,
        "dataset": source.provenance(),
        "memo": {
            "methods": list(_norm_methods(methods)), "k": int(k), "seeds": list(_norm_seeds(seeds)),
            "max_images": None if max_images is None else int(max_images), "prior_n": int(prior_n),
            "lr": float(lr), "optimizer": "sgd", "steps": int(steps), "resize": int(resize), "crop": int(crop),
            "interpolation": interpolation, "mean": list(model.mean), "std": list(model.std),
            "episodic": True, "seed_rule": "tta.image_seed(seed, image_id)", "random_init_seed": 0,
        },
    }
    key = json.loads(json.dumps(key, default=str))
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return {
        "key": key,
        "key_hash": hashlib.sha256(blob.encode()).hexdigest()[:16],
        "git_commit": _git_commit(),
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def memo_paths(results_dir: str | Path, key_hash: str) -> dict[str, Path]:
    folder = Path(results_dir) / "memo"
    return {"table": folder / f"{key_hash}.parquet", "settings": folder / f"{key_hash}.json",
            "partial": folder / f"{key_hash}.partial.parquet"}


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _write_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _finish(df: pd.DataFrame, settings: dict, path: Path, reused: bool) -> pd.DataFrame:
    df = df.sort_values(["position", "seed", "method"], kind="stable").reset_index(drop=True)
    df.attrs.update(settings=settings, path=str(path), reused=reused)
    return df


def memo_table(
    model_spec: str,
    dataset: str,
    checkpoint: str | None = None,
    *,
    root: str | None = None,
    pretrained: bool = True,
    label_space: str | None = None,
    device: str | None = None,
    results_dir: str | Path = "results",
    methods: Sequence[str] = ("rrc", "augmix"),
    k: int = 16,
    seeds: Sequence[int] = (0,),
    max_images: int | None = None,
    prior_n: int = 16,
    lr: float = 0.00025,
    steps: int = 1,
    resize: int = 256,
    crop: int = 224,
    interpolation: str = "bilinear",
    progress: bool = True,
    save_every_s: float = 60.0,
    warmup: bool = True,
) -> pd.DataFrame:
    """MEMO over the first `max_images` images of a dataset, one row per (image, method, seed), stored.

    model_spec, checkpoint, pretrained, device: as `study.open_model`; dataset, root: as
    `study.open_data`. label_space None: the dataset's own (`dataset_label_space`); the logits are
    restricted to it for the loss and the prediction, as MEMO does for ImageNet-A/R.
    methods: view kinds ('rrc' = the paper's zoom-in RandomResizedCrop, 'augmix' = MEMO's AugMix);
    k: augmented views per image (16 in the paper's text, 64 in MEMO's code default); seeds: base seeds
    of the views (each image uses `tta.image_seed(seed, image_id)`); prior_n, lr, steps: MEMO's
    batch-norm prior strength N, SGD learning rate and steps; resize, crop, interpolation: the plain
    prediction view (Resize 256 bilinear + CenterCrop 224: Table 5's baseline).
    Images without a decodable image or without a label are skipped (counted in the settings file).
    Random weights (pretrained=False, no checkpoint) are drawn under torch seed 0, so that a stored
    table and its rerun use the same model. warmup: run one untimed episode per method before the
    first timed one (allocators, kernel selection). save_every_s: how often the partial table is
    written while running (the unit of resume).

    Returns a DataFrame: image_id, position (in the source), method ('memo_rrc' / 'memo_augmix'),
    seed, k, pred, baseline_pred, correct, baseline_correct, seconds (views + adaptation + adapted
    prediction of that episode). attrs: settings (the stored JSON), path (the parquet file), reused
    (True when nothing was computed).
    """
    from tqdm.auto import tqdm

    from zoomstudy.study import open_data, open_model
    from zoomstudy.analysis.memo import memo_for_model

    import torch

    methods, seeds = _norm_methods(methods), _norm_seeds(seeds)
    _check_memo_args(k, max_images, prior_n, lr, steps, resize, crop, interpolation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random weights are the same in every run of the key (load_model seeds them too)
        model = open_model(model_spec, checkpoint, label_space=label_space or dataset_label_space(dataset),
                           device=device, pretrained=pretrained)
    source = open_data(dataset, root)
    settings = memo_settings(model, source, methods=methods, k=k, seeds=seeds, max_images=max_images,
                             prior_n=prior_n, lr=lr, steps=steps, resize=resize, crop=crop,
                             interpolation=interpolation)
    paths = memo_paths(results_dir, settings["key_hash"])
    paths["table"].parent.mkdir(parents=True, exist_ok=True)
    if paths["settings"].exists():
        old = json.loads(paths["settings"].read_text(encoding="utf-8"))
        if old.get("key") != settings["key"]:
            raise ValueError(f"{paths['settings']} holds other settings (hash collision?); remove it")
        if paths["table"].exists():
            return _finish(pd.read_parquet(paths["table"]), old, paths["table"], reused=True)
    else:
        _write_json(settings, paths["settings"])

    done_rows = pd.read_parquet(paths["partial"]) if paths["partial"].exists() else pd.DataFrame(columns=MEMO_COLUMNS)
    done = set(zip(done_rows["image_id"], done_rows["seed"].astype(int)))
    frames = [done_rows] if len(done_rows) else []
    rows: list[pd.DataFrame] = []
    skipped = {"unreadable": 0, "unlabelled": 0}
    try:
        total = len(source) if max_images is None else min(len(source), int(max_images))
    except TypeError:
        total = max_images
    kw = dict(views=methods, k=int(k), prior_n=int(prior_n), lr=float(lr), steps=int(steps),
              resize=int(resize), crop=int(crop), interpolation=interpolation)
    last_save = time.monotonic()

    def save_partial():
        if rows:
            _write_parquet(pd.concat(frames + rows, ignore_index=True), paths["partial"])

    samples = iter(source) if max_images is None else itertools.islice(iter(source), int(max_images))
    with tqdm(total=total, unit="img", disable=not progress, desc=f"MEMO {model.name}") as bar:
        for position, sample in enumerate(samples):
            bar.update(1)
            if sample.image is None:
                skipped["unreadable"] += 1
                continue
            if not sample.labels:
                skipped["unlabelled"] += 1
                continue
            for seed in seeds:
                if (sample.image_id, seed) in done:
                    continue
                if warmup:  # one untimed episode per method: lazy initialisation must not count as MEMO's time
                    memo_for_model(model, [sample], seed=seed, **kw)
                    warmup = False
                df = memo_for_model(model, [sample], seed=seed, **kw)
                df.insert(1, "position", position)
                rows.append(df[MEMO_COLUMNS])
            if time.monotonic() - last_save > save_every_s:
                save_partial()
                last_save = time.monotonic()
    table = pd.concat(frames + rows, ignore_index=True) if frames or rows else pd.DataFrame(columns=MEMO_COLUMNS)
    table = table[MEMO_COLUMNS].astype({"position": "int64", "seed": "int64", "k": "int64", "pred": "int64",
                                        "baseline_pred": "int64", "correct": bool, "baseline_correct": bool,
                                        "seconds": "float64"})
    _write_parquet(table, paths["table"])
    settings["result"] = {"rows": int(len(table)), "images": int(table["image_id"].nunique()),
                          "skipped": skipped, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json(settings, paths["settings"])
    paths["partial"].unlink(missing_ok=True)
    if any(skipped.values()):
        warnings.warn(f"memo_table: skipped {skipped['unreadable']} unreadable and {skipped['unlabelled']} "
                      f"unlabelled images", stacklevel=2)
    return _finish(table, settings, paths["table"], reused=False)


def _interval(per_image: np.ndarray, n_seeds: int, alpha: float, seed: int = 0) -> tuple[float, float]:
    """% interval of the mean of per-image shares correct: exact for one seed, bootstrap over images else."""
    if n_seeds == 1:
        lo, hi = clopper_pearson(int(round(per_image.sum())), per_image.size, alpha)
    else:
        lo, hi = bootstrap_ci(per_image.astype(np.float64), np.mean, alpha=alpha, seed=seed)
    return 100.0 * lo, 100.0 * hi


def memo_summary(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Table 5's rows from a `memo_table`: the baseline, then MEMO + AugMix and MEMO + RRC.

    Columns: method (the paper's name), key ('baseline', 'memo_augmix', 'memo_rrc'), n (images), seeds,
    accuracy (%, mean over seeds of the per-seed accuracy), spread (sample std over seeds, points; NaN
    with one seed), acc_min, acc_max (over seeds), lo, hi (% 1 - alpha interval: Clopper-Pearson with
    one seed, else a percentile bootstrap over images of the per-image share of seeds correct),
    seconds_per_image (mean episode time; NaN for the baseline, whose forward is not timed), delta
    (accuracy - baseline, points), p_value (exact McNemar against the baseline, first seed).
    """
    missing = [c for c in ("image_id", "method", "seed", "correct", "baseline_correct", "seconds") if c not in df.columns]
    if missing:
        raise ValueError(f"memo_summary: missing column(s) {missing}")
    if not len(df):
        raise ValueError("memo_summary: the MEMO table is empty")
    images = list(pd.unique(df["image_id"]))
    base = df.drop_duplicates("image_id").set_index("image_id")["baseline_correct"].reindex(images).to_numpy(bool)
    b_acc, b_lo, b_hi = accuracy_with_ci(base, alpha)
    rows = [{"method": BASELINE, "key": BASELINE, "n": len(images), "seeds": np.nan, "accuracy": b_acc,
             "spread": np.nan, "acc_min": b_acc, "acc_max": b_acc, "lo": b_lo, "hi": b_hi,
             "seconds_per_image": np.nan, "delta": 0.0, "p_value": np.nan}]
    for view, name in MEMO_METHODS.items():
        d = df[df["method"] == f"memo_{view}"]
        if not len(d):
            continue
        wide = d.pivot_table(index="image_id", columns="seed", values="correct", aggfunc="first")  # [N, seeds]
        wide = wide.reindex([i for i in images if i in wide.index])
        per_seed = 100.0 * wide.astype(float).mean(axis=0)  # accuracy per seed over its images
        share = wide.astype(float).mean(axis=1).to_numpy()  # per image: share of seeds correct
        n_seeds = wide.shape[1]
        lo, hi = _interval(share, n_seeds, alpha)
        acc = float(per_seed.mean())
        first = wide.iloc[:, 0]
        ok_first = first.notna().to_numpy()
        p = mcnemar_exact(first.to_numpy()[ok_first].astype(bool),
                          pd.Series(base, index=images).reindex(wide.index).to_numpy(bool)[ok_first])
        rows.append({"method": name, "key": f"memo_{view}", "n": int(wide.shape[0]), "seeds": n_seeds,
                     "accuracy": acc, "spread": float(per_seed.std(ddof=1)) if n_seeds > 1 else np.nan,
                     "acc_min": float(per_seed.min()), "acc_max": float(per_seed.max()),
                     "lo": min(lo, acc), "hi": max(hi, acc),
                     "seconds_per_image": float(d.groupby("image_id")["seconds"].mean().mean()),
                     "delta": acc - b_acc, "p_value": p})
    out = pd.DataFrame(rows)
    out["seeds"] = out["seeds"].astype("Int64")
    return out


def table5_comparison(summary: pd.DataFrame, settings: Mapping, paper_model: str | None = None) -> dict:
    """Arguments for `plots.compare_table`: this run's Table 5 rows next to the paper's column.

    paper_model: the column of `paper.TABLE5` this run reproduces ('ResNet-50', 'DeepAugment+AugMix',
    'MoEx+CutMix'); None infers 'ResNet-50' for torchvision resnet50 with its V1 weights. `comparable`
    is True when such a column exists for this run's dataset (IN, IN-A, IN-R, IN-Sketch, ObjectNet)
    and the plain view is crop 224; otherwise ResNet-50 on IN is shown for orientation only.
    Returns dict(ours, paper, on, value_cols, caption, comparable).
    """
    key = settings["key"]
    pm, pdn = _paper_names(settings)
    if paper_model is None and pm == "ResNet-50" and _paper_weights(key["model"]):
        paper_model = "ResNet-50"
    if paper_model is not None and paper_model not in paper.TABLE5_MODELS:
        raise ValueError(f"paper_model must be one of {paper.TABLE5_MODELS}, got {paper_model!r}")
    datasets = set(paper.TABLE5["dataset"])
    comparable = paper_model is not None and pdn in datasets and key["memo"]["crop"] == 224
    ref_model = paper_model if comparable else "ResNet-50"
    ref_data = pdn if comparable else "IN"
    ref = paper.TABLE5[(paper.TABLE5["model"] == ref_model) & (paper.TABLE5["dataset"] == ref_data)]
    ours = summary[["method", "accuracy"]].rename(columns={"accuracy": "top1"})
    if comparable:
        caption = f"ours vs paper Table 5 ({ref_model}, {ref_data}, K = 16); diff = ours - paper"
        if key["memo"]["k"] != 16:
            caption += f" -- note: this run uses K = {key['memo']['k']}"
    else:
        caption = (f"FOR ORIENTATION ONLY: this run is {pm} ({key['model'].get('weights_id')}) on {pdn}; the paper's "
                   f"column is {ref_model} on {ref_data}; the diff column is not a reproduction error")
    return {"ours": ours.reset_index(drop=True), "paper": ref[["method", "top1"]].reset_index(drop=True),
            "on": ["method"], "value_cols": ["top1"], "caption": caption, "comparable": comparable}


def speed_comparison(summary: pd.DataFrame, settings: Mapping | None = None) -> dict:
    """Arguments for `plots.compare_table`: seconds per image of MEMO + RRC and MEMO + AugMix beside
    the paper's 0.65 s and 1.15 s (`paper.MEMO_SPEED`; the paper does not state its hardware)."""
    ours = summary[summary["key"] != BASELINE][["method", "seconds_per_image"]].reset_index(drop=True)
    where = ""
    if settings is not None:
        m = settings["key"]["memo"]
        where = f" (this run: {settings['key']['model'].get('device')}, K = {m['k']}, crop {m['crop']})"
    caption = f"seconds per image, ours{where} vs the paper's (hardware not stated); diff = ours - paper"
    return {"ours": ours, "paper": paper.MEMO_SPEED.copy(), "on": ["method"], "value_cols": ["seconds_per_image"],
            "caption": caption}


def memo_description(settings: Mapping) -> str:
    """One sentence on what a MEMO table was computed with."""
    key = settings["key"]
    m = key["memo"]
    model = key["model"]
    methods = " and ".join(MEMO_METHODS[v] for v in m["methods"])
    seeds = m["seeds"]
    res = settings.get("result") or {}
    n = f"{res['images']} images" if "images" in res else "its images"
    return (f"{methods} on {n} of {key['dataset'].get('name')} with {model.get('architecture')} "
            f"(weights {model.get('weights_id')}, label space {model.get('label_space', {}).get('name')}, "
            f"{model.get('device')}); K = {m['k']}, {len(seeds)} seed(s) {seeds}, prior N = {m['prior_n']}, "
            f"lr {m['lr']}, {m['steps']} step(s), prediction view Resize {m['resize']} {m['interpolation']} + "
            f"CenterCrop {m['crop']}.")


def is_random_weights(settings: Mapping) -> bool:
    """Random (untrained) weights: weights_id 'random' or 'random-<hash of the initial state>'."""
    return str(settings["key"]["model"].get("weights_id")).startswith("random")


__all__ = [
    "tta_table", "tta_changes", "pick_changes", "change_views", "table4_comparison", "group_sizes",
    "method_label", "dataset_label_space", "memo_settings", "memo_paths", "memo_table", "memo_summary",
    "table5_comparison", "speed_comparison", "memo_description", "is_random_weights",
]
