"""ImageNet-Hard evaluation (SPEC section 5): plain 1-crop predictions, multi-label scoring, tables.

ImageNet-Hard gathers images from several ImageNet-style test sets (the `origin` column) that the
paper's zoom study left unsolved; each carries up to 10 acceptable ImageNet-1k classes. A model is scored on all 1000
logits (no label-space restriction) and is correct when its top-1 class is in the image's list.

Choices the paper leaves open, exposed as parameters:

* The plain view is Resize(floor(224 / 0.875) = 256) + CenterCrop(224) with ImageNet statistics for
  ImageNet models, or the model's own timm-style data config (EfficientNet-L2-NS: 800 px, crop_pct
  0.96, bicubic; CLIP: its own mean / std, crop_pct 1.0, bicubic). The SPEC does not name the
  interpolation of the default; `PLAIN_CONFIG` uses bilinear, torchvision's reference evaluation
  transform for its V1 weights (pass interpolation="bicubic" to match the zoom sweep instead).
* An image that cannot be decoded stays in the table with pred -1 and counts as wrong, so the
  accuracy is over the whole pinned revision (10,980 images), like the paper's.

Images come from `zoomstudy.data` (`open_dataset("imagenet-hard", ...)`, an `HFSource` over the hub
repository or local parquet files), which owns decoding, the revision pin and the row-count guard
(the revisions held 23,845 / 13,630 / 11,350 / 10,980 rows); `leaderboard` flags a table that is not
the full 10,980 images.

From a stored sweep instead of a model: `image_table` (one row per decoded image, its labels and
origin), `plain_from_sweep` (the sweep's own 1-crop view as `evaluate_plain`'s table),
`hard_leaderboard_table` (this run among the paper's models) and `find_companions` (the same model
and grid swept on other data, to put the zoom bound here next to ImageNet's).
"""
from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zoomstudy.data import Sample
from zoomstudy.data.labels import N_IMAGENET_CLASSES
from zoomstudy.analysis.paper import IMAGENET_HARD, IMAGENET_HARD_SIZE, paper_model_name
from zoomstudy.analysis.stats import accuracy_with_ci
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import ViewGrid, resize_center_crop

#: The plain 1-crop view of ImageNet models (timm-style data config).
PLAIN_CONFIG: dict = {
    "input_size": (3, 224, 224),
    "crop_pct": 0.875,
    "crop_mode": "center",
    "interpolation": "bilinear",
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
}

# ================================================================================================
# Scoring
# ================================================================================================
def _label_row(i: int, row) -> np.ndarray:
    r = np.atleast_1d(np.asarray(row))
    if r.size == 0:
        raise ValueError(f"label list of row {i} is empty; every ImageNet-Hard image has >= 1 label")
    if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"label list of row {i} must be a flat list of integers, got {r.tolist()!r}")
    if r.min() < 0 or r.max() >= N_IMAGENET_CLASSES:
        raise ValueError(f"label list of row {i} has labels outside 0..{N_IMAGENET_CLASSES - 1}: {r.tolist()}")
    return r


def padded_label_lists(labels: Sequence[Sequence[int]]) -> np.ndarray:
    """int64 [N, L] of ImageNet-1k indices padded with -1, rejecting empty or out-of-range lists.

    Every ImageNet-Hard image has at least one label, so an empty list is a loading bug, not an
    image to skip: the error names the first offending row.
    """
    rows = [_label_row(i, r) for i, r in enumerate(labels)]
    width = max((r.size for r in rows), default=1)
    padded = np.full((len(rows), width), -1, np.int64)  # [N, L]
    for i, r in enumerate(rows):
        padded[i, : r.size] = r
    return padded


def multilabel_correct(pred_1k: np.ndarray, labels: Sequence[Sequence[int]]) -> np.ndarray:
    """bool [N]: the top-1 ImageNet-1k prediction is one of the image's labels.

    pred_1k: int [N] in 0..999, or -1 for an image without a prediction (never correct).
    labels: N lists of ImageNet-1k indices (non-empty, 0..999).
    """
    pred = np.asarray(pred_1k)
    if pred.ndim != 1 or not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"pred_1k must be an integer array [N], got {pred.dtype} {pred.shape}")
    if pred.size and (pred.min() < -1 or pred.max() >= N_IMAGENET_CLASSES):
        raise ValueError(f"pred_1k must hold ImageNet-1k indices 0..{N_IMAGENET_CLASSES - 1} (or -1 for none)")
    if len(labels) != pred.shape[0]:
        raise ValueError(f"pred_1k has {pred.shape[0]} images but labels has {len(labels)}")
    padded = padded_label_lists(labels)  # [N, L]
    return (padded == pred[:, None]).any(axis=1) & (pred >= 0)  # -1 would match the padding


def per_origin_accuracy(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Accuracy per source set with a Clopper-Pearson interval, plus an "all" row last.

    df: one row per image with columns origin and correct (bool), e.g. `evaluate_plain`'s output.
    Returns origin, n, n_correct, accuracy, ci_low, ci_high (percent; 1 - alpha coverage).
    """
    missing = [c for c in ("origin", "correct") if c not in df.columns]
    if missing:
        raise ValueError(f"per_origin_accuracy needs columns {missing}")
    if len(df) == 0:
        raise ValueError("per_origin_accuracy needs at least one image")
    if df["origin"].isna().any():
        raise ValueError(f"{int(df['origin'].isna().sum())} images have no origin")
    correct = df["correct"].to_numpy()
    if correct.dtype != bool:
        raise ValueError(f"column 'correct' must be bool, got {correct.dtype}")
    rows = []
    groups = [(str(o), correct[(df["origin"] == o).to_numpy()]) for o in sorted(df["origin"].unique())]
    for origin, c in groups + [("all", correct)]:
        acc, lo, hi = accuracy_with_ci(c, alpha=alpha)
        rows.append({"origin": origin, "n": c.size, "n_correct": int(c.sum()), "accuracy": acc,
                     "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def leaderboard(
    results: Mapping[str, pd.DataFrame],
    alpha: float = 0.05,
    paper_names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per evaluated model beside the paper's ImageNet-Hard top-1 (SPEC section 7).

    results: model -> per-image table with a bool `correct` column. paper_names overrides the
    matching of a result name to a paper model (see `paper.MODEL_ALIASES`). Columns: model, paper_model,
    n, full_set (n == 10,980), accuracy, ci_low, ci_high, paper_top1, delta, paper_in_ci.
    """
    if not results:
        raise ValueError("leaderboard needs at least one model's results")
    paper = dict(zip(IMAGENET_HARD["model"], IMAGENET_HARD["top1"].astype(float)))
    paper_names = dict(paper_names or {})
    unknown = sorted(set(paper_names.values()) - set(paper))
    if unknown:
        raise ValueError(f"paper_names maps to models the paper does not report: {unknown}")
    rows = []
    for model, df in results.items():
        if "correct" not in df.columns:
            raise ValueError(f"results[{model!r}] has no 'correct' column")
        correct = df["correct"].to_numpy()
        if correct.dtype != bool or correct.size == 0:
            raise ValueError(f"results[{model!r}]['correct'] must be a non-empty bool column")
        acc, lo, hi = accuracy_with_ci(correct, alpha=alpha)
        name = paper_names.get(model) or paper_model_name(model, among=paper)
        ref = paper.get(name, math.nan)
        rows.append({
            "model": model, "paper_model": name, "n": correct.size, "full_set": correct.size == IMAGENET_HARD_SIZE,
            "accuracy": acc, "ci_low": lo, "ci_high": hi, "paper_top1": ref, "delta": acc - ref,
            "paper_in_ci": bool(lo <= ref <= hi) if not math.isnan(ref) else False,
        })
    return pd.DataFrame(rows)


# ================================================================================================
# Plain evaluation
# ================================================================================================
def plain_transform(data_config: Mapping | None = None) -> Callable:
    """PIL image -> float [3, H, W]: Resize(floor(size / crop_pct)) + CenterCrop(size) + normalise.

    data_config: timm-style keys (input_size, crop_pct, crop_mode, interpolation, mean, std); missing
    keys come from `PLAIN_CONFIG`, so None is the plain Resize 256 / CenterCrop 224 view.
    """
    from torchvision import transforms as T

    cfg = {**PLAIN_CONFIG, **dict(data_config or {})}
    h, w = (int(s) for s in tuple(cfg["input_size"])[-2:])
    crop_pct = float(cfg["crop_pct"] if cfg["crop_pct"] is not None else PLAIN_CONFIG["crop_pct"])
    if h < 1 or w < 1 or not 0 < crop_pct <= 1:
        raise ValueError(f"plain_transform: need a positive input_size and 0 < crop_pct <= 1, got {cfg}")
    if cfg.get("crop_mode", "center") != "center":
        raise ValueError(f"plain_transform supports crop_mode 'center' only, got {cfg['crop_mode']!r}")
    try:
        interp = T.InterpolationMode(str(cfg["interpolation"]))
    except ValueError:
        raise ValueError(f"plain_transform: unknown interpolation {cfg['interpolation']!r}") from None
    scale = math.floor(h / crop_pct) if h == w else (math.floor(h / crop_pct), math.floor(w / crop_pct))
    return T.Compose([
        # views.resize_center_crop: the shorter side -> scale when square, then CenterCrop (h, w)
        functools.partial(resize_center_crop, resize=scale, crop=(h, w), interpolation=interp),
        T.ToTensor(),
        T.Normalize(tuple(cfg["mean"]), tuple(cfg["std"])),
    ])


def _origin(sample) -> str:
    origin = (getattr(sample, "meta", None) or {}).get("origin", getattr(sample, "origin", None))
    if origin is None:
        raise ValueError(f"sample {sample.image_id!r} has no origin (expected meta['origin'])")
    return str(origin)


def evaluate_plain(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    samples: Iterable[Sample],
    preprocess: Callable | Mapping | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Top-1 of the plain view for every image: image_id, origin, labels, pred, confidence, correct, error.

    model_fn: float [B, 3, H, W] -> logits [B, 1000] (all ImageNet-1k classes: no restriction).
    preprocess: a PIL -> tensor callable, a timm-style data config (see `plain_transform`), or None
    for Resize 256 / CenterCrop 224. Undecodable images get pred -1, confidence NaN, correct False.
    A list of samples is validated (labels, origin) before the first forward pass; a stream is
    validated image by image, so a bad row stops it before that row's batch runs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if preprocess is None or isinstance(preprocess, Mapping):
        preprocess = plain_transform(preprocess)
    elif not callable(preprocess):
        raise ValueError(f"preprocess must be callable, a data-config dict or None, got {type(preprocess).__name__}")
    if isinstance(samples, Sequence):  # labels and origins are cheap to check before any forward pass
        for i, s in enumerate(samples):
            _label_row(i, s.labels)
            _origin(s)
    records: list[dict] = []
    batch: list[torch.Tensor] = []
    pending: list[int] = []  # indices into records of the images in `batch`

    def flush():
        x = torch.stack(batch)  # [B, 3, H, W]
        if device is not None:
            x = x.to(device)
        with torch.no_grad():
            logits = model_fn(x)
        if logits.ndim != 2 or logits.shape != (len(batch), N_IMAGENET_CLASSES):
            raise ValueError(f"model_fn must return logits [B={len(batch)}, {N_IMAGENET_CLASSES}], "
                             f"got {tuple(logits.shape)}")
        prob = torch.softmax(logits.float(), dim=1)  # [B, 1000]
        conf, pred = prob.max(dim=1)  # [B], [B]
        for j, (p, c) in zip(pending, zip(pred.tolist(), conf.tolist())):
            records[j]["pred"], records[j]["confidence"] = p, c
        batch.clear()
        pending.clear()

    for s in samples:
        _label_row(len(records), s.labels)  # a streamed bad row stops the run before its batch
        rec = {"image_id": s.image_id, "origin": _origin(s), "labels": list(s.labels), "pred": -1,
               "confidence": math.nan, "error": s.error}
        records.append(rec)
        if s.image is None:
            rec["error"] = rec["error"] or "no image"
            continue
        batch.append(preprocess(s.image))  # [3, H, W]
        pending.append(len(records) - 1)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not records:
        raise ValueError("evaluate_plain got no samples")
    df = pd.DataFrame.from_records(records)
    df["pred"] = df["pred"].astype(np.int64)
    df["correct"] = multilabel_correct(df["pred"].to_numpy(), df["labels"].tolist())
    return df[["image_id", "origin", "labels", "pred", "confidence", "correct", "error"]]


def plain_from_model(model, source, max_images: int | None = None, batch_size: int = 32) -> pd.DataFrame:
    """`hard.evaluate_plain` (Resize 256 + CenterCrop 224, the model's data config) over a source's first
    max_images images; images without an origin get origin "all"."""
    from dataclasses import replace

    def samples():
        it = iter(source)
        if max_images is not None:
            it = itertools.islice(it, max_images)
        for s in it:
            if "origin" not in (s.meta or {}):
                s = replace(s, meta={**(s.meta or {}), "origin": "all"})
            yield s

    cfg = model.data_config()
    return evaluate_plain(model.logits, samples(), preprocess=cfg, batch_size=batch_size)


# ================================================================================================
# ImageNet-Hard from a stored sweep: its images, its 1-crop view, the leaderboard, the companions
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
    """The paper's ImageNet-Hard top-1 (`analysis.paper.IMAGENET_HARD`) with this run's rows added, tidy for
    `plots.bar_with_ci`: model, source ("paper" or run_label), top1, ci_low, ci_high, n, note; sorted
    by top-1, best first. The paper gives no intervals (ci = top1)."""
    rows = [{"model": m, "source": "paper", "top1": float(t), "ci_low": float(t), "ci_high": float(t),
             "n": IMAGENET_HARD_SIZE, "note": f"{int(i)} px" if int(i) != 224 else ""}
            for m, t, i in IMAGENET_HARD[["model", "top1", "input"]].itertuples(index=False)]
    for r in leaderboard.itertuples(index=False):
        note = "full set" if r.full_set else f"{r.n} of {IMAGENET_HARD_SIZE} images"
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
