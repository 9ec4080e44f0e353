"""The view budget: what each extra view buys, from a stored sweep (beyond the paper).

The paper's greedy top-36 is a bound: views chosen on the very images they are scored on, and an image
counts when *any* chosen view is right, which no deployed model can check. A practitioner asks how many
views to pay for, and which. `budget_curve` answers from the store alone, no second pass:

* ``cover``: the greedy cover (`bounds.greedy_cover`) selected on the other folds, scored on the held-out
  fold ("any of the first k views is right": still an oracle, but an honest one);
* ``mean`` / ``max``: the same views, with an answer a deployed model can compute: the argmax of the
  averaged softmax, or the class of the single most confident view;
* ``fixed``: the reference groups 1-crop, 5-crop, 10-crop and the paper's zoom-in group (Table 4), from
  the groups the sweep stored (`tta._outcomes`), mean and max.

k runs over 1..`max_k` (36, the paper's budget) and the whole grid (324 views on the paper grid). Once the
fold's cover is complete (no view adds a training image), the next views are the most accurate remaining
ones on the training folds, so every k has k views. Intervals: a seeded bootstrap over images
(`stats.bootstrap_ci`); the gain of k over k-1 views is tested with the exact McNemar test on the same
images (`stats.mcnemar_exact`), and `saturation` marks the budget after which the gain is no longer
detectable: the smallest k that no larger budget (up to `max_k`) beats by a detectable margin. (The gain
of one view over k - 1 alone is too small to detect on a few hundred images long before the curve is
flat; the `detectable` column still says it per step.)

Reading choices:

* The store keeps each view's top-5 classes, not the whole softmax, so ``mean`` over a chosen set sums
  the top-5 probabilities (a class outside a view's top-5 adds 0). The argmax is then exact whenever its
  top-5 sum beats every other class's upper bound: its own top-5 sum plus, for each view whose top-5
  lacks it, that view's 5th probability (the most a class outside a view's top-5 can have there);
  `mean_exact` is the share of images where this certificate holds (always 1 at k = 1). The whole-grid
  row uses the stored ``all_views`` group, which is exact. ``max`` needs only the top-1 and is exact.
* Multi-label sets are scored as everywhere else (`bounds.correctness`); images without a label are left
  out, as in `tta.tta_table`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zoomstudy.analysis import bounds
from zoomstudy.analysis import tta
from zoomstudy.analysis.stats import bootstrap_ci, mcnemar_exact
from zoomstudy.views import ViewGrid

RULES: tuple[str, ...] = ("cover", "mean", "max")
#: Fixed reference groups of the curve, in the order shown: (store group, label).
FIXED_GROUPS: tuple[tuple[str, str], ...] = (
    (tta.STANDARD, "1-crop"), ("five_crop", "5-crop"), ("ten_crop", "10-crop"), ("zoom_in", "zoom-in"))
#: Rule -> readable name (tables, figure legend, findings).
RULE_LABELS = {"cover": "greedy cover, any view right (oracle)", "mean": "greedy views, mean softmax",
               "max": "greedy views, most confident view", "fixed": "fixed group"}
TOPK = 5


@dataclass
class StoredViews:
    """Per image and view of one result set: top-5 classes and probabilities, restricted to labelled images."""

    image_ids: list[str]
    labels: list[tuple[int, ...]]
    pred: np.ndarray  # int64 [N, V, 5]
    prob: np.ndarray  # float64 [N, V, 5]
    grid: ViewGrid

    @classmethod
    def from_top1(cls, image_ids, labels, pred: np.ndarray, conf: np.ndarray, grid: ViewGrid) -> "StoredViews":
        """Views known by their top-1 class and confidence only (e.g. the kit's reference file): enough
        for the cover and max rules, not for mean (`budget_curve` leaves it out)."""
        pred = np.asarray(pred, np.int64).reshape(len(image_ids), grid.n_views, 1)
        conf = np.asarray(conf, np.float64).reshape(len(image_ids), grid.n_views, 1)
        return cls(list(image_ids), [tuple(int(x) for x in s) for s in labels], pred, conf, grid)

    @property
    def topk(self) -> int:
        return int(self.pred.shape[-1])

    @property
    def correct(self) -> np.ndarray:
        """bool [N, V]: top-1 of the view in the image's label set."""
        return bounds.correctness(self.pred[..., 0], self.labels)


def stored_views(result_set) -> StoredViews:
    """The top-5 of every (image, view) of a complete result set, in `ResultSet.predictions` order;
    images without a label are left out (as in `tta.tta_table`)."""
    ids, _, _ = result_set.predictions()  # checks completeness: every view of every image, once
    grid = result_set.grid
    cols = ["image_id", "view"] + [f"pred{k}" for k in range(TOPK)] + [f"prob{k}" for k in range(TOPK)]
    table = result_set._read_arrow("views", cols)
    n, v = len(ids), grid.n_views
    pred = np.zeros((n, v, TOPK), np.int64)
    prob = np.zeros((n, v, TOPK), np.float64)
    if table is not None and table.num_rows:
        df = table.to_pandas()
        row = df["image_id"].map({k: i for i, k in enumerate(ids)}).to_numpy(np.int64)
        view = df["view"].to_numpy(np.int64)
        for k in range(TOPK):
            pred[row, view, k] = df[f"pred{k}"].to_numpy(np.int64)
            prob[row, view, k] = df[f"prob{k}"].to_numpy(np.float64)
    labels = result_set.labels()
    keep = np.array([len(s) > 0 for s in labels], bool)
    return StoredViews([i for i, k in zip(ids, keep) if k], [s for s, k in zip(labels, keep) if k],
                       pred[keep], prob[keep], grid)


def choose_views(correct: np.ndarray, k: int) -> list[int]:
    """k views: the greedy cover of `correct` (bool [N, V]), then, once the cover is complete, the most
    accurate remaining views (ties to the lowest index). The selection rule of the curve and the policy."""
    correct = np.asarray(correct)
    n_views = correct.shape[1]
    if not 1 <= k <= n_views:
        raise ValueError(f"k must be in 1..{n_views}, got {k}")
    cover = bounds.greedy_cover(correct, k)
    if len(cover) < k:
        taken = np.zeros(n_views, bool)
        taken[cover] = True
        acc = correct.sum(axis=0).astype(np.int64)
        rest = [int(v) for v in np.lexsort((np.arange(n_views), -acc)) if not taken[v]]  # most accurate first
        cover = cover + rest[: k - len(cover)]
    return [int(v) for v in cover]


def _running(sv: StoredViews, order: np.ndarray, correct: np.ndarray):
    """Per image, along its own view order [N, K]: (cover hits, mean pred, mean certified, max pred), each [N, K]."""
    n, kmax = order.shape
    rows = np.arange(n)
    scores = np.zeros((n, 1000), np.float64)
    slack = np.zeros(n, np.float64)  # sum of the views' last stored probabilities
    present = np.zeros((n, 1000), np.float64)  # per class: that sum over the views whose top-5 holds it
    best_conf = np.full(n, -1.0)
    best_pred = np.zeros(n, np.int64)
    hit = np.zeros(n, bool)
    out_hit = np.zeros((n, kmax), bool)
    out_mean = np.zeros((n, kmax), np.int64)
    out_exact = np.zeros((n, kmax), bool)
    out_max = np.zeros((n, kmax), np.int64)
    for j in range(kmax):
        v = order[:, j]
        p, c = sv.pred[rows, v], sv.prob[rows, v]  # [N, 5]
        for t in range(p.shape[1]):
            np.add.at(scores, (rows, p[:, t]), c[:, t])
            np.add.at(present, (rows, p[:, t]), c[:, -1])
        slack += c[:, -1]
        best = scores.argmax(axis=1)
        # a class gains at most the last stored probability of each view whose top-5 lacks it
        upper = scores + (slack[:, None] - present)
        upper[rows, best] = -np.inf
        out_mean[:, j] = best
        out_exact[:, j] = scores[rows, best] > upper.max(axis=1)
        better = c[:, 0] > best_conf  # strict: the earlier view keeps a tie (the store's argmax does the same)
        best_conf = np.where(better, c[:, 0], best_conf)
        best_pred = np.where(better, p[:, 0], best_pred)
        out_max[:, j] = best_pred
        hit |= correct[rows, v]
        out_hit[:, j] = hit
    return out_hit, out_mean, out_exact, out_max


def _row(rule, method, k, ok, alpha, n_boot, seed, **extra) -> dict:
    lo, hi = bootstrap_ci(ok, np.mean, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"rule": rule, "method": method, "k": int(k), "accuracy": 100.0 * float(ok.mean()),
            "lo": 100.0 * lo, "hi": 100.0 * hi, "n": int(ok.size), **extra}


def budget_curve(result_set=None, *, max_k: int = 36, folds: int = 5, seed: int = 0, alpha: float = 0.05,
                 n_boot: int = 1000, views: StoredViews | None = None) -> pd.DataFrame:
    """Accuracy against the number of views k, cross-validated, for the rules of the module docstring.

    One row per (rule, k) for k = 1..max_k and k = n_views (the whole grid), then one row per stored
    fixed group and aggregation (rule "fixed"). Columns: rule, method, k, accuracy, lo, hi (% with a
    bootstrap 1 - alpha interval over images), n, gain (points over k - 1 views of the same rule),
    p_gain (exact McNemar test of k against k - 1), detectable (p_gain < alpha and gain > 0), mean_exact
    (share of images whose top-5 mean is certified exact; 1 for the other rules).
    attrs: saturation {rule: the smallest k after which no budget up to max_k is detectably better
    (exact McNemar at alpha against k: "more views add nothing detectable")}, folds, seed,
    alpha, one_crop (accuracy % of the 1-crop view, None without one), views {rule: the views of fold 0}.

    views: the `StoredViews` to use instead of reading `result_set` (read once for several calls, or
    built with `StoredViews.from_top1`: then the mean rule is left out, and without a result set the
    fixed groups are the 1-crop view only).
    """
    if result_set is None and views is None:
        raise ValueError("budget_curve needs a result set or views=")
    sv = stored_views(result_set) if views is None else views
    rules = RULES if sv.topk >= TOPK else tuple(r for r in RULES if r != "mean")
    grid = sv.grid
    correct = sv.correct
    n, n_views = correct.shape
    if n == 0:
        raise ValueError(f"{result_set.path}: no labelled image stored")
    if not 1 <= max_k <= n_views:
        raise ValueError(f"max_k must be in 1..{n_views}, got {max_k}")
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be in [2, n_images={n}], got {folds}")
    order, first_fold_views = _cross_validated_order(correct, max_k, folds, seed)
    hit, mean_pred, mean_exact, max_pred = _running(sv, order, correct)
    ok = {"cover": hit, "mean": bounds.correctness(mean_pred, sv.labels), "max": bounds.correctness(max_pred, sv.labels)}

    out = _outcomes_or_none(result_set, sv) if result_set is not None else None
    whole = {"cover": correct.any(axis=1)}
    if out is not None and ("all_views", "mean") in out.preds:
        whole["mean"] = out.correct(out.preds[("all_views", "mean")])
        whole["max"] = out.correct(out.preds[("all_views", "max")])
    elif out is None:  # the first most confident view of the whole grid, as the store's group does
        best = sv.prob[..., 0].argmax(axis=1)
        whole["max"] = bounds.correctness(sv.pred[np.arange(n), best, 0], sv.labels)
    rows, saturation = [], {}
    for rule in rules:
        prev = None
        ks = list(range(1, max_k + 1)) + ([n_views] if n_views > max_k and rule in whole else [])
        for k in ks:
            cur = ok[rule][:, k - 1] if k <= max_k else whole[rule]
            extra = {"gain": np.nan, "p_gain": np.nan, "detectable": False,
                     "mean_exact": float(mean_exact[:, k - 1].mean()) if rule == "mean" and k <= max_k else 1.0}
            if prev is not None:
                gain = 100.0 * (cur.mean() - prev.mean())
                p = mcnemar_exact(cur, prev)
                extra.update(gain=gain, p_gain=p, detectable=bool(p < alpha and gain > 0))
            rows.append(_row(rule, RULE_LABELS[rule], k, cur, alpha, n_boot, seed, **extra))
            prev = cur
        saturation[rule] = _saturation(ok[rule], alpha)
    fixed, one_crop = _fixed_rows(out, grid, correct, alpha, n_boot, seed)
    rows += fixed
    table = pd.DataFrame(rows)
    table.attrs.update(saturation=saturation, folds=folds, seed=seed, alpha=alpha, one_crop=one_crop,
                       views={"fold0": first_fold_views}, n_views=n_views, max_k=max_k)
    return table


def _cross_validated_order(correct: np.ndarray, max_k: int, folds: int, seed: int) -> tuple[np.ndarray, list]:
    """Per image [N, max_k], the views the greedy cover chose on the other folds (so each image is scored
    with views selected without it), and fold 0's choice (what a policy of the first fold would ship)."""
    n = correct.shape[0]
    fold = bounds.cv_folds(n, folds, seed)
    order = np.zeros((n, max_k), np.int64)
    first_fold_views = None
    for f in range(folds):
        test = fold == f
        chosen = choose_views(correct[~test], max_k)
        order[test] = chosen
        if first_fold_views is None:
            first_fold_views = chosen
    return order, first_fold_views


def _fixed_rows(out, grid, correct: np.ndarray, alpha: float, n_boot: int, seed: int) -> tuple[list[dict], float | None]:
    """The reference rows (rule "fixed"): 1-crop and the stored groups (5-crop, 10-crop, zoom-in) under
    both aggregations, from the sweep's own group rows (`out`, None: the 1-crop view of `correct` only);
    and the 1-crop accuracy in %."""
    out_rows, one_crop = [], None
    ref = dict(gain=np.nan, p_gain=np.nan, detectable=False, mean_exact=1.0)  # no budget step for a fixed group
    if out is None:
        if grid.standard_view is not None:
            base = correct[:, grid.standard_view]
            one_crop = 100.0 * float(base.mean())
            out_rows.append(_row("fixed", "1-crop", 1, base, alpha, n_boot, seed, **ref))
        return out_rows, one_crop
    sizes = tta.group_sizes(grid)
    for group, label in FIXED_GROUPS:
        if group == tta.STANDARD:
            if out.base_pred is not None:
                base = out.correct(out.base_pred)
                one_crop = 100.0 * float(base.mean())
                out_rows.append(_row("fixed", label, 1, base, alpha, n_boot, seed, **ref))
            continue
        for agg in tta.AGGREGATIONS:
            if (group, agg) in out.preds:
                out_rows.append(_row("fixed", f"{label}, {agg}", sizes[group], out.correct(out.preds[(group, agg)]),
                                     alpha, n_boot, seed, **ref))
    return out_rows, one_crop


def _saturation(ok: np.ndarray, alpha: float) -> int:
    """The smallest k after which no larger budget (up to the curve's last k) is detectably better:
    for every k' > k, the gain of k' over k views fails the exact McNemar test at alpha (or is <= 0).
    ok: bool [N, K], column j = the rule's correctness with j + 1 views."""
    kmax = ok.shape[1]
    for k in range(1, kmax + 1):
        a = ok[:, k - 1]
        if all(not (ok[:, j].mean() > a.mean() and mcnemar_exact(ok[:, j], a) < alpha) for j in range(k, kmax)):
            return k
    return kmax


def _outcomes_or_none(result_set, sv: StoredViews):
    """The stored groups (`tta._outcomes`) aligned with `sv`'s images, or None when none are stored."""
    try:
        out = tta._outcomes(result_set)
    except ValueError:
        return None
    if out.image_ids != sv.image_ids:
        raise ValueError(f"{result_set.path}: the groups table and the views table list different images")
    return out


def budget_table(curve: pd.DataFrame, ks: Sequence[int] = (1, 2, 4, 8, 36)) -> pd.DataFrame:
    """The curve at a few budgets, one row per k (and the whole grid), one column per rule:
    'accuracy [lo, hi]' strings, plus the fixed groups below with their view count as k."""
    n_views = curve.attrs.get("n_views")
    want = [k for k in ks if k in set(curve["k"])] + ([n_views] if n_views and n_views not in ks else [])
    sel = curve[curve["rule"].isin(RULES) & curve["k"].isin(want)]
    cell = sel.assign(cell=[f"{a:.1f} [{lo:.1f}, {hi:.1f}]" for a, lo, hi in zip(sel["accuracy"], sel["lo"], sel["hi"])])
    wide = cell.pivot(index="k", columns="rule", values="cell").reindex(columns=list(RULES)).reset_index()
    wide.columns.name = None
    wide = wide.rename(columns={r: RULE_LABELS[r] for r in RULES}).astype({"k": str})
    fixed = curve[curve["rule"] == "fixed"]
    extra = pd.DataFrame({"k": [f"{m} ({k} views)" for m, k in zip(fixed["method"], fixed["k"])],
                          RULE_LABELS["mean"]: [f"{a:.1f} [{lo:.1f}, {hi:.1f}]" for a, lo, hi in
                                                zip(fixed["accuracy"], fixed["lo"], fixed["hi"])]})
    return pd.concat([wide, extra], ignore_index=True).fillna("-")


def budget_findings(curve: pd.DataFrame, rule: str = "mean") -> str:
    """One sentence with the run's numbers: the deployable curve at the saturation point, against 1-crop."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule not in set(curve["rule"]):
        rule = "max"  # a curve from top-1 views only has no mean rule
    rows = curve[curve["rule"] == rule].set_index("k")
    k = int(curve.attrs["saturation"][rule])
    r = rows.loc[k]
    agg = {"mean": "mean-aggregated", "max": "taking the most confident view", "cover": "counting any right view"}[rule]
    base = curve.attrs.get("one_crop")
    start = f"from {base:.1f}% (1-crop) " if base is not None else ""
    s = (f"View budget ({curve.attrs['folds']}-fold cross-validated, {int(r['n'])} images): with {k} chosen "
         f"view{'s' if k > 1 else ''}, {agg}, accuracy goes {start}to {r['accuracy']:.1f}% "
         f"(95% bootstrap CI {r['lo']:.1f} to {r['hi']:.1f})")
    kmax = int(curve.attrs["max_k"])
    if k < kmax:
        s += f"; more views, up to {kmax}, add nothing detectable (exact McNemar, alpha {curve.attrs['alpha']:g})"
    else:
        s += f"; the gain is still detectable at {kmax} views"
    best_cover = curve[(curve["rule"] == "cover") & (curve["k"] == k)]
    if rule != "cover" and len(best_cover):
        s += f", while the oracle cover of the same {k} views would reach {float(best_cover['accuracy'].iloc[0]):.1f}%"
    return s + "."


def make_policy(result_set, k: int, aggregate: str = "mean", *, folds: int = 5, seed: int = 0,
                curve: pd.DataFrame | None = None) -> dict:
    """A `ZoomTTA` policy chosen on a stored sweep: the k views `choose_views` picks on all its labelled
    images, the aggregation, the grid and normalisation the sweep rendered with, the model and data it
    was chosen on, and the cross-validated accuracy of the same rule at k (from `budget_curve`: the
    views were selected on other folds than they were scored on, so this is the number to expect).
    Save it with `sweep.zoomtta.save_policy`."""
    from zoomstudy.sweep.zoomtta import AGGREGATES, POLICY_FORMAT, POLICY_VERSION

    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    sv = stored_views(result_set)
    grid = sv.grid
    if not 1 <= k <= min(grid.n_views, 36 if curve is None else int(curve.attrs["max_k"])):
        raise ValueError(f"k must be in 1..{min(grid.n_views, 36)}, got {k}")
    if curve is None:
        curve = budget_curve(result_set, max_k=max(k, 1), folds=folds, seed=seed, views=sv)
    chosen = choose_views(sv.correct, k)
    at = curve[(curve["k"] == k) & curve["rule"].isin(RULES)].set_index("rule")
    key = result_set.settings["key"]
    render = key.get("render", {})
    one = curve.attrs.get("one_crop")
    return {
        "format": POLICY_FORMAT, "version": POLICY_VERSION,
        "views": [[grid.scales[s], r, c] for s, r, c in (grid.unravel(v) for v in chosen)],
        "view_names": [grid.view_name(v) for v in chosen],
        "aggregate": aggregate,
        "grid": {"grid": grid.grid, "crop": grid.crop},
        "normalization": {"mean": list(render.get("mean", (0.485, 0.456, 0.406))),
                          "std": list(render.get("std", (0.229, 0.224, 0.225))),
                          "render_dtype": render.get("dtype")},
        "chosen_on": {"model": key.get("model"), "dataset": key.get("dataset"), "grid": key.get("grid"),
                      "result_set": str(result_set.path), "n_images": int(len(sv.image_ids))},
        "cv_accuracy": {
            "folds": int(curve.attrs["folds"]), "seed": int(curve.attrs["seed"]), "k": int(k),
            "accuracy": float(at.loc[aggregate, "accuracy"]), "lo": float(at.loc[aggregate, "lo"]),
            "hi": float(at.loc[aggregate, "hi"]), "oracle_cover": float(at.loc["cover", "accuracy"]),
            "one_crop": None if one is None else float(one),
            "mean_exact": float(at.loc[aggregate, "mean_exact"]),
        },
    }


__all__ = ["budget_curve", "budget_table", "budget_findings", "make_policy", "choose_views", "stored_views", "StoredViews"]
