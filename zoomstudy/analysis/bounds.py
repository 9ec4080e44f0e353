"""The analyses of SPEC section 3, all as functions of one correctness matrix.

Everything here starts from `correct: bool [n_images, n_views]`, views numbered as `ViewGrid` numbers
them (scale-major, then anchor row, then anchor column), so a sweep is computed once and every table of
the paper is a cheap reduction of it. Accuracies are in percent, the unit of the paper's tables.

Choices the paper leaves open, exposed as parameters:

* `topn_bound` is the paper's optimistic bound: the 36 views are selected on the very images they are
  scored on. `topn_bound_cv` selects on k-1 folds and scores on the held-out fold (beyond the paper).
* Greedy ties go to the lowest view index, and the cover stops once no view adds an image (the
  convention of the real-data kit's reference figures).
* Shares of images (`exclusive_solves`) are shares of all images, not of the solved ones.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from zoomstudy.analysis.stats import accuracy_with_ci, mcnemar_exact
from zoomstudy.data.labels import N_IMAGENET_CLASSES, correctness, has_labels, padded_labels  # noqa: F401
from zoomstudy.views import GROUPS, ViewGrid


# From predictions to correctness: `correctness` (top-1 in the label set) lives with the labels, in
# zoomstudy.data.labels, where the store reads it too.
# ================================================================================================
# Bounds
# ================================================================================================
def _as_matrix(correct: np.ndarray, grid: ViewGrid | None = None) -> np.ndarray:
    correct = np.asarray(correct)
    if correct.dtype != bool or correct.ndim != 2:
        raise ValueError(f"correct must be a bool [n_images, n_views] matrix, got {correct.dtype} {correct.shape}")
    if correct.shape[0] == 0:
        raise ValueError("correct has no images")
    if grid is not None and correct.shape[1] != grid.n_views:
        raise ValueError(f"correct has {correct.shape[1]} views but the grid has {grid.n_views}")
    return correct


def _pct(hits: np.ndarray) -> float:
    return 100.0 * float(np.count_nonzero(hits)) / hits.size


def _any_over(correct: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """bool [N, K]: the image is correct in some view of mask k (masks: bool [K, V]).

    Rows are bit-packed once into 64-bit words, so each mask costs N x ceil(V / 64) word operations;
    numpy's `correct[:, mask].any(1)` copies the selected columns and is ~100x slower at 50k x 324.
    """
    n, v = correct.shape
    n_bytes, n_words = -(-v // 8), -(-v // 64)
    packed = np.zeros((n, 8 * n_words), np.uint8)  # [N, 8W]
    packed[:, :n_bytes] = np.packbits(correct, axis=1)
    words = np.ascontiguousarray(packed.view(np.uint64).T)  # [W, N]: one word of every image contiguous
    mask_bytes = np.zeros((masks.shape[0], 8 * n_words), np.uint8)  # [K, 8W]
    mask_bytes[:, :n_bytes] = np.packbits(masks, axis=1)
    mask_words = mask_bytes.view(np.uint64)  # [K, W], same bit layout as the rows
    out = np.empty((n, masks.shape[0]), bool)  # [N, K]
    acc = np.empty(n, np.uint64)  # [N]
    for k in range(masks.shape[0]):
        acc[:] = 0
        for j in np.flatnonzero(mask_words[k]):  # W is small (6 for 324 views): whole-column word ops
            acc |= words[j] & mask_words[k, j]
        out[:, k] = acc != 0
    return out


def _anchor_masks(grid: ViewGrid) -> np.ndarray:
    """bool [g*g, V]: the views of each anchor (row-major anchors)."""
    return (np.arange(grid.n_views)[None, :] % grid.n_anchors) == np.arange(grid.n_anchors)[:, None]


def _scale_masks(grid: ViewGrid) -> np.ndarray:
    """bool [S, V]: the views of each scale."""
    return (np.arange(grid.n_views)[None, :] // grid.n_anchors) == np.arange(grid.n_scales)[:, None]


def standard_accuracy(correct: np.ndarray, grid: ViewGrid) -> float:
    """Accuracy % of the standard 1-crop view `LOC:1_1_Size:256`."""
    correct = _as_matrix(correct, grid)
    v = grid.standard_view
    if v is None:
        raise ValueError(f"the grid has no standard view (needs scale {grid.standard_scale} and an odd grid)")
    return _pct(correct[:, v])


def oracle_accuracy(correct: np.ndarray) -> float:
    """Upper bound %: an image counts if any of its views is correct (the paper's N = 324 column)."""
    return _pct(_as_matrix(correct).any(axis=1))


def covered(correct: np.ndarray, views: Sequence[int]) -> np.ndarray:
    """bool [N]: some view of `views` classifies the image correctly (False for an empty selection)."""
    correct = _as_matrix(correct)
    views = np.asarray(views, np.int64).reshape(-1)
    if views.size and (views.min() < 0 or views.max() >= correct.shape[1]):
        raise ValueError(f"view indices must lie in [0, {correct.shape[1]})")
    return correct[:, views].any(axis=1)


def greedy_cover(correct: np.ndarray, max_views: int | None = None) -> list[int]:
    """Greedy set cover over views: repeatedly take the view that solves most not-yet-solved images.

    Ties go to the lowest view index; stops when no view adds an image or after `max_views` views.
    Keeps per-view counts of uncovered images and subtracts each newly covered image's row once, and
    works on a compacted copy of the still-uncovered rows once half of them are gone, so a whole cover
    costs a few passes over the matrix instead of one pass per step (tails of 200+ steps are common).
    """
    correct = _as_matrix(correct)
    if max_views is not None and max_views < 0:
        raise ValueError(f"max_views must be >= 0 or None, got {max_views}")
    n_views = correct.shape[1]
    limit = n_views if max_views is None else min(int(max_views), n_views)
    counts = correct.sum(axis=0, dtype=np.int64)  # [V] uncovered images each view solves
    rows = correct  # [M, V] rows that may still be uncovered (compacted now and then)
    uncovered = np.ones(rows.shape[0], bool)  # [M]
    n_uncovered = rows.shape[0]
    cover: list[int] = []
    while len(cover) < limit:
        best = int(np.argmax(counts))  # argmax returns the first maximum: lowest index wins ties
        if counts[best] == 0:
            break
        new = rows[:, best] & uncovered  # [M] images this view covers first
        n_uncovered -= int(counts[best])  # counts[best] is exactly the number of newly covered images
        uncovered &= ~new
        counts -= rows[new].sum(axis=0, dtype=np.int64)
        cover.append(best)
        if 2 * n_uncovered < rows.shape[0]:  # amortised: each compaction at least halves the rows
            rows, uncovered = rows[uncovered], np.ones(n_uncovered, bool)
    return cover


def topn_bound(correct: np.ndarray, n: int = 36) -> float:
    """Upper bound % with the first n greedy views, selected on the same images (optimistic, as the paper)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return _pct(covered(correct, greedy_cover(correct, n)))


def cv_folds(n: int, folds: int, seed: int) -> np.ndarray:
    """int [N]: each image's fold, balanced and seeded (shared by every cross-validated selection)."""
    return np.random.default_rng(seed).permutation(n) % folds


def _cv_hits(correct: np.ndarray, n: int, folds: int, seed: int) -> np.ndarray:
    """bool [N]: each image scored by the top-n views selected on the other folds."""
    correct = _as_matrix(correct)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 2 <= folds <= correct.shape[0]:
        raise ValueError(f"folds must be in [2, n_images={correct.shape[0]}], got {folds}")
    fold = cv_folds(correct.shape[0], folds, seed)
    hits = np.zeros(correct.shape[0], bool)
    for f in range(folds):
        test = fold == f
        views = greedy_cover(correct[~test], n)
        hits[test] = correct[test][:, views].any(axis=1)
    return hits


def topn_bound_cv(correct: np.ndarray, n: int = 36, folds: int = 2, seed: int = 0) -> float:
    """Cross-validated top-n bound % (beyond the paper): views selected on k-1 folds, scored on the rest.

    Every image is scored exactly once, so this is the size-weighted mean over folds.
    """
    return _pct(_cv_hits(correct, n, folds, seed))


def random_bound(n: int, n_classes: int) -> float:
    """Table 1's 'random' row: a uniform guesser given n tries, min(100, 100 n / n_classes) %."""
    if n < 0 or n_classes < 1:
        raise ValueError(f"need n >= 0 and n_classes >= 1, got n={n}, n_classes={n_classes}")
    return min(100.0, 100.0 * n / n_classes)


# ================================================================================================
# Where the solving views are
# ================================================================================================
def anchor_bounds(correct: np.ndarray, grid: ViewGrid) -> np.ndarray:
    """float [grid, grid] %: correct at any scale of that anchor; image layout, row 0 = top."""
    correct = _as_matrix(correct, grid)
    per_anchor = _any_over(correct, _anchor_masks(grid))  # [N, g*g]
    hits = per_anchor.sum(axis=0).reshape(grid.grid, grid.grid)  # [g, g]
    return 100.0 * hits / correct.shape[0]  # count first: 57 of 100 is exactly 57.0


def _check_views(views: Sequence[int], grid: ViewGrid) -> np.ndarray:
    v = np.asarray(views, np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= grid.n_views):
        raise ValueError(f"view indices must lie in [0, {grid.n_views})")
    return v


def cover_anchor_share(cover: Sequence[int], grid: ViewGrid) -> np.ndarray:
    """float [grid, grid] %: share of the selected views at each anchor (NaN for an empty selection).

    The paper's centre-bias figure: 26.65% of the top-36 views at the centre, 11.1% if uniform.
    """
    v = _check_views(cover, grid)
    if v.size == 0:
        return np.full((grid.grid, grid.grid), np.nan)
    counts = np.bincount(v % grid.n_anchors, minlength=grid.n_anchors)  # [g*g]
    return 100.0 * counts.reshape(grid.grid, grid.grid) / v.size


def cover_scale_share(cover: Sequence[int], grid: ViewGrid) -> pd.Series:
    """% of the selected views at each scale, a Series indexed by scale (NaN for an empty selection)."""
    v = _check_views(cover, grid)
    counts = np.bincount(v // grid.n_anchors, minlength=grid.n_scales)  # [S]
    share = 100.0 * counts / v.size if v.size else np.full(grid.n_scales, np.nan)
    return pd.Series(share, index=pd.Index(grid.scales, name="scale"), name="share")


def _group_solved(correct: np.ndarray, grid: ViewGrid) -> dict[str, np.ndarray | None]:
    """Per group: bool [N] solved by some view of the group, None when the grid has no such view."""
    masks = np.stack([grid.group_mask(g) for g in GROUPS])  # [3, V]
    solved = _any_over(correct, masks)  # [N, 3]
    return {g: (solved[:, k] if masks[k].any() else None) for k, g in enumerate(GROUPS)}


def group_bounds(correct: np.ndarray, grid: ViewGrid) -> dict[str, float]:
    """Upper bound % restricted to zoom-out (S < crop), zoom-224 (S = crop), zoom-in (S > crop) views.

    NaN for a group the grid has no view of.
    """
    solved = _group_solved(_as_matrix(correct, grid), grid)
    return {g: (np.nan if s is None else _pct(s)) for g, s in solved.items()}


def exclusive_solves(correct: np.ndarray, grid: ViewGrid) -> dict[str, float]:
    """% of all images that one group solves and no other group does, per group, plus their sum ('any')."""
    solved = _group_solved(_as_matrix(correct, grid), grid)
    present = {g: s for g, s in solved.items() if s is not None}
    n_groups = np.sum([s for s in present.values()], axis=0, dtype=np.int64)  # [N] groups solving each image
    out = {g: (np.nan if s is None else _pct(s & (n_groups == 1))) for g, s in solved.items()}
    out["any"] = _pct(n_groups == 1)
    return out


def _centre(grid: ViewGrid) -> int:
    if grid.grid % 2 == 0:
        raise ValueError(f"a {grid.grid} x {grid.grid} grid has no centre anchor")
    return grid.center


def accuracy_vs_scale(correct: np.ndarray, grid: ViewGrid, alpha: float = 0.05) -> pd.DataFrame:
    """Per scale: centre-view accuracy and any-of-the-anchors accuracy, %, with Clopper-Pearson CIs."""
    correct = _as_matrix(correct, grid)
    c = _centre(grid)
    centre = correct[:, c * grid.grid + c :: grid.n_anchors]  # [N, S]
    anyanchor = _any_over(correct, _scale_masks(grid))  # [N, S]
    rows = []
    for s, scale in enumerate(grid.scales):
        a, a_lo, a_hi = accuracy_with_ci(centre[:, s], alpha)
        b, b_lo, b_hi = accuracy_with_ci(anyanchor[:, s], alpha)
        rows.append((scale, grid.group_of_scale(scale), a, a_lo, a_hi, b, b_lo, b_hi))
    cols = ["scale", "group", "center", "center_lo", "center_hi", "any_anchor", "any_anchor_lo", "any_anchor_hi"]
    return pd.DataFrame(rows, columns=cols)


def center_vs_anchors(correct: np.ndarray, grid: ViewGrid, scale: int | None = None) -> pd.DataFrame:
    """Paired exact McNemar test of the centre anchor against each off-centre anchor.

    scale=None compares the per-anchor bounds (any scale at the anchor, the heatmap's numbers);
    an int compares the single views at that scale. One row per off-centre anchor: row, col, anchor %,
    center %, only_center and only_anchor (discordant image counts), p_value (two-sided, uncorrected).
    """
    correct = _as_matrix(correct, grid)
    c = _centre(grid)
    if scale is None:
        per_anchor = _any_over(correct, _anchor_masks(grid)).reshape(-1, grid.grid, grid.grid)  # [N, g, g]
    else:
        if scale not in grid.scales:
            raise ValueError(f"scale {scale} is not in the grid's scales")
        s = grid.scales.index(scale)
        per_anchor = correct[:, s * grid.n_anchors : (s + 1) * grid.n_anchors].reshape(-1, grid.grid, grid.grid)
    centre = per_anchor[:, c, c]
    rows = []
    for r in range(grid.grid):
        for col in range(grid.grid):
            if (r, col) == (c, c):
                continue
            other = per_anchor[:, r, col]
            rows.append(
                (r, col, _pct(other), _pct(centre), int((centre & ~other).sum()), int((~centre & other).sum()),
                 mcnemar_exact(centre, other))
            )
    return pd.DataFrame(rows, columns=["row", "col", "anchor", "center", "only_center", "only_anchor", "p_value"])


# ================================================================================================
# Table 1's figures: the one implementation
# ================================================================================================
#: Keys of `bound_metrics`, in Table 1's order.
BOUND_KEYS: tuple[str, ...] = ("standard", "upper_all", "upper_topn", "upper_topn_cv", "random_topn", "random_all")
_BOUND_COLUMNS = ["key", "metric", "views", "accuracy", "lo", "hi"]


def bound_metrics(
    correct: np.ndarray,
    grid: ViewGrid,
    *,
    n_classes: int = N_IMAGENET_CLASSES,
    top_n: int = 36,
    alpha: float = 0.05,
    folds: int = 2,
    seed: int = 0,
    keys: Sequence[str] = BOUND_KEYS,
    cover: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The 1-crop, oracle and greedy top-N figures of one (model, dataset) matrix, tidy: one row a metric.

    This is the one place these numbers are computed; `table1_row`, `summarize`, the notebooks'
    `analysis.bound_tables.bounds_frame`, the model profile and the controlled experiment all read them here.

    Columns: key, metric (a readable label), views (how many views the metric may use), accuracy, lo,
    hi (%, Clopper-Pearson 1 - alpha; NaN for the random rows). Keys (`BOUND_KEYS`, computed when
    named in `keys`, in that order):

    * standard: the 1-crop view `LOC:1_1_Size:<standard_scale>` (no row when the grid lacks it);
    * upper_all: an image counts when any view is right (the paper's N = 324 column, the oracle);
    * upper_topn: the first top_n greedy views, selected on these very images (optimistic, as in the
      paper); `cover` passes a greedy cover already computed (its first top_n views are used);
    * upper_topn_cv: top_n greedy views selected on the other folds (`folds` must lie in
      [2, n_images]; ask for it only with at least two images);
    * random_topn / random_all: a uniform guesser with as many tries as views (`random_bound`).

    top_n counts as min(top_n, n_views) views (a smaller grid has no more to select).
    """
    correct = _as_matrix(correct, grid)
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    unknown = [k for k in keys if k not in BOUND_KEYS]
    if unknown:
        raise ValueError(f"unknown bound metrics {unknown}; known: {BOUND_KEYS}")
    k = min(top_n, grid.n_views)
    rows = []

    def add(key: str, label: str, views: int, hits: np.ndarray | None = None, value: float | None = None):
        acc, lo, hi = accuracy_with_ci(hits, alpha) if hits is not None else (value, np.nan, np.nan)
        rows.append((key, label, views, acc, lo, hi))

    sv = grid.standard_view
    for key in BOUND_KEYS:
        if key not in keys:
            continue
        if key == "standard" and sv is not None:
            add(key, f"1-crop ({grid.view_name(sv)})", 1, correct[:, sv])
        elif key == "upper_all":
            add(key, f"any of {grid.n_views} views", grid.n_views, correct.any(axis=1))
        elif key == "upper_topn":
            views = greedy_cover(correct, top_n) if cover is None else list(cover)[:top_n]
            add(key, f"greedy top-{top_n}, selected on these images", k, covered(correct, views))
        elif key == "upper_topn_cv":
            add(key, f"greedy top-{top_n}, {folds}-fold cross-validated", k, _cv_hits(correct, top_n, folds, seed))
        elif key == "random_topn":
            add(key, f"random guess, {k} tries", k, value=random_bound(k, n_classes))
        elif key == "random_all":
            add(key, f"random guess, {grid.n_views} tries", grid.n_views, value=random_bound(grid.n_views, n_classes))
    return pd.DataFrame(rows, columns=_BOUND_COLUMNS)


def _ci(metrics: pd.DataFrame, key: str) -> tuple[float, float, float] | None:
    """(accuracy, lo, hi) of one `bound_metrics` row, None when it has no such row."""
    row = metrics[metrics["key"] == key]
    if row.empty:
        return None
    acc, lo, hi = row.iloc[0][["accuracy", "lo", "hi"]]
    return float(acc), float(lo), float(hi)


def center_bias(bounds: np.ndarray) -> tuple[float, float, float]:
    """(centre-anchor bound, mean of the off-centre anchor bounds, their difference) of an `anchor_bounds`
    grid [g, g] (odd g), in %: how much a model needs the object in the middle. For a 1 x 1 grid the
    off-centre mean is the centre's and the bias 0."""
    bounds = np.asarray(bounds, float)
    g = bounds.shape[0]
    if bounds.shape != (g, g) or g % 2 == 0:
        raise ValueError(f"center_bias needs an odd square grid of anchor bounds, got shape {bounds.shape}")
    c = g // 2
    centre = float(bounds[c, c])
    off = np.delete(bounds.ravel(), c * g + c)
    off_mean = float(off.mean()) if off.size else centre
    return centre, off_mean, centre - off_mean


# ================================================================================================
# One-call summaries
# ================================================================================================
def summarize(
    correct: np.ndarray,
    grid: ViewGrid,
    n_classes: int = N_IMAGENET_CLASSES,
    top_n: int = 36,
    alpha: float = 0.05,
    folds: int = 2,
    seed: int = 0,
) -> dict:
    """Every section-3 number for one (model, dataset) matrix.

    Keys: n_images, n_views, top_n; standard, upper_all, upper_topn, upper_topn_cv as
    (acc %, lo %, hi %) Clopper-Pearson tuples (standard is None if the grid lacks the 1-crop view; the
    top-n intervals ignore the selection, so they understate the in-sample bound's optimism);
    random_topn, random_all (%); cover (the full greedy cover), cover_length, cover_topn (its first
    top_n views); anchor_bounds [g, g] %; cover_anchor_share [g, g] % and center_share % of cover_topn
    (center_share NaN for an even grid); group_bounds and exclusive_solves (dicts of %).
    The bounds are `bound_metrics`'.
    """
    correct = _as_matrix(correct, grid)
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    cover = greedy_cover(correct)
    topn = cover[:top_n]  # greedy is prefix-stable: the first top_n picks are the max_views=top_n cover
    share = cover_anchor_share(topn, grid)
    m = bound_metrics(correct, grid, n_classes=n_classes, top_n=top_n, alpha=alpha, folds=folds, seed=seed,
                      cover=cover)
    value = dict(zip(m["key"], m["accuracy"]))
    return {
        "n_images": correct.shape[0],
        "n_views": grid.n_views,
        "top_n": top_n,
        "standard": _ci(m, "standard"),
        "upper_all": _ci(m, "upper_all"),
        "upper_topn": _ci(m, "upper_topn"),
        "upper_topn_cv": _ci(m, "upper_topn_cv"),
        "random_topn": float(value["random_topn"]),
        "random_all": float(value["random_all"]),
        "cover": cover,
        "cover_length": len(cover),
        "cover_topn": topn,
        "anchor_bounds": anchor_bounds(correct, grid),
        "cover_anchor_share": share,
        "center_share": float(share[grid.center, grid.center]) if grid.grid % 2 else np.nan,
        "group_bounds": group_bounds(correct, grid),
        "exclusive_solves": exclusive_solves(correct, grid),
    }


def table1_row(
    correct: np.ndarray,
    grid: ViewGrid,
    model: str,
    dataset: str,
    top_n: int = 36,
    alpha: float = 0.05,
    folds: int = 2,
    seed: int = 0,
) -> dict:
    """One tidy Table 1 row: model, dataset, n_images, top_n, then standard, upper_<n_views>, upper_topn,
    upper_topn_cv, each with _lo / _hi Clopper-Pearson bounds (%), from `bound_metrics`.

    The all-views column is named after the grid (upper_324 for the paper's grid) so it lines up with
    `paper.TABLE1`; standard is NaN when the grid lacks the 1-crop view.
    """
    correct = _as_matrix(correct, grid)
    n = correct.shape[0]
    cv = n >= folds  # a cross-validated cover needs an image per fold; fewer: the in-sample figures only
    keys = ("standard", "upper_all", "upper_topn") + (("upper_topn_cv",) if cv else ())
    m = bound_metrics(correct, grid, top_n=top_n, alpha=alpha, folds=folds if cv else 2, seed=seed, keys=keys)
    row: dict = {"model": model, "dataset": dataset, "n_images": n, "top_n": top_n}
    if not cv:
        row["note"] = (f"no cross-validated top-{top_n}: {folds}-fold cross-validation needs >= {folds} images, "
                       f"{n} stored; the figures are in-sample")
    for key in ("standard", "upper_all", "upper_topn", "upper_topn_cv"):
        name = f"upper_{grid.n_views}" if key == "upper_all" else key
        acc, lo, hi = _ci(m, key) or (np.nan,) * 3
        row.update({name: acc, f"{name}_lo": lo, f"{name}_hi": hi})
    return row


def table1(
    matrices: Mapping[tuple[str, str], np.ndarray],
    grid: ViewGrid,
    top_n: int = 36,
    alpha: float = 0.05,
    folds: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Table 1 as a tidy DataFrame, one `table1_row` per {(model, dataset): correct} entry."""
    return pd.DataFrame(
        [table1_row(c, grid, m, d, top_n, alpha, folds, seed) for (m, d), c in matrices.items()]
    )
