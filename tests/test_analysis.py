"""Tests of zoomstudy.analysis.bounds, .stats and .paper: exact values on hand-built
matrices, interval properties, and the real-data kit's reference figures."""
from __future__ import annotations

import math
import re
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from zoomstudy.analysis import paper
from zoomstudy.analysis.bounds import (
    accuracy_vs_scale,
    BOUND_KEYS,
    anchor_bounds,
    bound_metrics,
    center_bias,
    center_vs_anchors,
    correctness,
    cover_anchor_share,
    cover_scale_share,
    covered,
    exclusive_solves,
    greedy_cover,
    group_bounds,
    has_labels,
    oracle_accuracy,
    padded_labels,
    random_bound,
    standard_accuracy,
    summarize,
    table1,
    table1_row,
    topn_bound,
    topn_bound_cv,
)
from zoomstudy.analysis.stats import accuracy_with_ci, bootstrap_ci, clopper_pearson, mcnemar_exact
from zoomstudy.views import ViewGrid


def _views(n_views: int, solves: list[set[int]], n_images: int) -> np.ndarray:
    """bool [n_images, n_views] from the image set each view solves."""
    m = np.zeros((n_images, n_views), bool)
    for v, images in enumerate(solves):
        m[list(images), v] = True
    return m


def _naive_greedy(correct: np.ndarray, max_views: int | None = None) -> list[int]:
    """Greedy recomputed from scratch each step (no incremental counts): the slow definition."""
    uncovered = np.ones(correct.shape[0], bool)
    cover: list[int] = []
    while max_views is None or len(cover) < max_views:
        gains = (correct & uncovered[:, None]).sum(axis=0)
        best = min(range(correct.shape[1]), key=lambda v: (-gains[v], v))
        if gains[best] == 0:
            break
        cover.append(best)
        uncovered &= ~correct[:, best]
    return cover


# ------------------------------------------------------------------------------------------------
# correctness
# ------------------------------------------------------------------------------------------------
def test_padded_labels_forms():
    np.testing.assert_array_equal(padded_labels([(3,), (1, 7, 9), 5, ()]),
                                  [[3, -1, -1], [1, 7, 9], [5, -1, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(padded_labels(np.array([4, 2])), [[4], [2]])
    np.testing.assert_array_equal(has_labels([(1,), (), [2, 3]]), [True, False, True])
    with pytest.raises(ValueError):
        padded_labels([(1, -2)])
    with pytest.raises(ValueError):
        padded_labels(np.array([[1, -5]]))


def test_correctness_multilabel():
    top1 = np.array([[3, 4, 7], [9, 1, 2], [5, 5, 0]])  # [N=3, V=3]
    labels = [(3, 7), (1, 2, 9), 0]
    expected = [[True, False, True], [True, True, True], [False, False, True]]
    np.testing.assert_array_equal(correctness(top1, labels), expected)
    padded = np.array([[3, 7, -1], [1, 2, 9], [0, -1, -1]])
    np.testing.assert_array_equal(correctness(top1, padded), expected)
    np.testing.assert_array_equal(correctness(top1[:, 0], labels), [True, True, False])  # 1-D top1


def test_correctness_empty_label_sets():
    top1 = np.array([[1, 2], [3, 4], [5, 6]])
    labels = [(2,), (), (5, 6)]
    with pytest.raises(ValueError, match="empty label set"):
        correctness(top1, labels)
    out = correctness(top1, labels, keep=has_labels(labels))
    np.testing.assert_array_equal(out, [[False, True], [True, True]])
    with pytest.raises(ValueError, match="empty label set"):
        correctness(top1, labels, keep=np.array([True, True, False]))
    with pytest.raises(ValueError):
        correctness(np.array([[-1, 2]]), [(2,)])  # -1 would match the padding
    with pytest.raises(ValueError):
        correctness(top1, [(1,), (2,)])  # length mismatch


# ------------------------------------------------------------------------------------------------
# greedy cover and bounds
# ------------------------------------------------------------------------------------------------
def test_greedy_cover_ties_and_stopping():
    # V0 {0}; V1 {1,2}; V2 {3,4} ties V1 -> lower index first; V3 {1} adds nothing after V1;
    # V4 solves nothing; image 5 is solved by no view, so the cover stops after 3 views.
    m = _views(5, [{0}, {1, 2}, {3, 4}, {1}, set()], n_images=6)
    assert greedy_cover(m) == [1, 2, 0]
    assert greedy_cover(m, max_views=2) == [1, 2]
    assert greedy_cover(m, max_views=0) == []
    assert greedy_cover(np.zeros((4, 3), bool)) == []
    # greedy, not optimal: {0,1,3,4} first, then two single-image views where 2 would do.
    m = _views(3, [{0, 1, 2}, {3, 4, 5}, {0, 1, 3, 4}], n_images=6)
    assert greedy_cover(m) == [2, 0, 1]
    with pytest.raises(ValueError):
        greedy_cover(m, max_views=-1)
    with pytest.raises(ValueError):
        greedy_cover(m.astype(int))


def test_greedy_cover_matches_naive_definition():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n, v = rng.integers(1, 60), rng.integers(1, 30)
        m = rng.random((n, v)) < rng.uniform(0.02, 0.4)
        assert greedy_cover(m) == _naive_greedy(m)
        assert greedy_cover(m, 3) == _naive_greedy(m, 3)


def test_greedy_cover_speed_smoke():
    m = np.random.default_rng(0).random((50_000, 324), dtype=np.float32) < 0.3
    t = time.perf_counter()
    cover = greedy_cover(m)
    assert time.perf_counter() - t < 5.0  # smoke bound; measured ~0.15 s on one core
    assert covered(m, cover).sum() == m.any(axis=1).sum()


def test_bounds_exact_values():
    grid = ViewGrid(scales=(224, 256), grid=3)  # 18 views; standard = scale 256, centre = view 13
    assert grid.standard_view == 13
    m = np.zeros((4, 18), bool)
    m[0, 13] = True
    m[1, [0, 5]] = True
    m[2, 5] = True
    m[3, 0] = True
    assert standard_accuracy(m, grid) == 25.0
    assert oracle_accuracy(m) == 100.0
    # views 0 {1, 3} and 5 {1, 2} tie: 0 first; then 5 {2} and 13 {0} tie: 5 first
    assert greedy_cover(m) == [0, 5, 13]
    assert topn_bound(m, n=1) == 50.0
    assert topn_bound(m, n=2) == 75.0
    assert topn_bound(m, n=36) == 100.0
    with pytest.raises(ValueError):
        standard_accuracy(m, ViewGrid(scales=(224, 288), grid=3))
    with pytest.raises(ValueError):
        standard_accuracy(m[:, :9], grid)
    with pytest.raises(ValueError):
        topn_bound(m, n=0)


def test_topn_bound_cv():
    # each image solved only by its own view: in-sample selection looks perfect, held out it is useless
    diag = np.eye(8, dtype=bool)
    assert topn_bound(diag, n=8) == 100.0
    assert topn_bound_cv(diag, n=8, folds=2, seed=0) == 0.0
    # one view solves every image: selection transfers perfectly, whatever the folds
    m = np.zeros((9, 5), bool)
    m[:, 3] = True
    m[0, 1] = True
    assert topn_bound_cv(m, n=1, folds=3, seed=5) == 100.0
    rng = np.random.default_rng(2)
    r = rng.random((200, 40)) < 0.05
    assert topn_bound_cv(r, 5, seed=1) == topn_bound_cv(r, 5, seed=1)
    with pytest.raises(ValueError):
        topn_bound_cv(r, 5, folds=1)
    with pytest.raises(ValueError):
        topn_bound_cv(r, 5, folds=201)


def test_random_bound():
    assert random_bound(36, 1000) == pytest.approx(3.6)
    assert random_bound(324, 1000) == pytest.approx(32.4)
    assert random_bound(324, 200) == 100.0
    assert random_bound(36, 113) == pytest.approx(3600 / 113)
    with pytest.raises(ValueError):
        random_bound(36, 0)


# ------------------------------------------------------------------------------------------------
# where the solving views are
# ------------------------------------------------------------------------------------------------
def test_anchor_bounds_layout_and_shares():
    grid = ViewGrid(scales=(128, 256), grid=3)  # views 0-8 at 128, 9-17 at 256
    m = np.zeros((4, 18), bool)
    m[0, grid.view_index(128, 0, 2)] = True  # top right
    m[1, grid.view_index(256, 0, 2)] = True  # top right, other scale
    m[1, grid.view_index(256, 2, 0)] = True  # bottom left
    m[2, grid.view_index(128, 1, 1)] = True
    m[2, grid.view_index(256, 1, 1)] = True  # centre twice counts once
    expected = np.zeros((3, 3))
    expected[0, 2], expected[2, 0], expected[1, 1] = 50.0, 25.0, 25.0
    np.testing.assert_array_equal(anchor_bounds(m, grid), expected)

    cover = [grid.view_index(256, 1, 1), grid.view_index(128, 1, 1), grid.view_index(128, 0, 0), 17]
    share = cover_anchor_share(cover, grid)
    assert share[1, 1] == 50.0 and share[0, 0] == 25.0 and share[2, 2] == 25.0 and share.sum() == 100.0
    s = cover_scale_share(cover, grid)
    assert list(s.index) == [128, 256] and list(s) == [50.0, 50.0]
    assert np.isnan(cover_anchor_share([], grid)).all()
    with pytest.raises(ValueError):
        cover_anchor_share([18], grid)


def test_group_bounds_and_exclusive_solves():
    grid = ViewGrid(scales=(128, 224, 256), grid=1)  # one anchor: view = scale position
    m = np.array(
        [
            [False, False, True],  # zoom-in only
            [True, False, True],  # zoom-out and zoom-in
            [False, True, False],  # zoom-224 only
            [False, False, False],
        ]
    )
    assert group_bounds(m, grid) == {"zoom_out": 25.0, "zoom_224": 25.0, "zoom_in": 50.0}
    assert exclusive_solves(m, grid) == {"zoom_out": 0.0, "zoom_224": 25.0, "zoom_in": 25.0, "any": 50.0}
    no224 = ViewGrid(scales=(128, 256), grid=1)
    gb = group_bounds(m[:, [0, 2]], no224)
    assert math.isnan(gb["zoom_224"]) and gb["zoom_in"] == 50.0
    ex = exclusive_solves(m[:, [0, 2]], no224)
    assert math.isnan(ex["zoom_224"]) and ex["zoom_in"] == 25.0 and ex["zoom_out"] == 0.0


def test_view_reductions_match_naive_on_paper_grid():
    # 324 views span six 64-bit words: checks the bit-packed reductions across word boundaries
    grid = ViewGrid()
    rng = np.random.default_rng(7)
    m = rng.random((500, grid.n_views)) < 0.004
    cube = m.reshape(-1, grid.n_scales, 3, 3)  # [N, S, r, c]
    np.testing.assert_allclose(anchor_bounds(m, grid), 100 * cube.any(axis=1).mean(axis=0))
    df = accuracy_vs_scale(m, grid)
    np.testing.assert_allclose(df["any_anchor"], 100 * cube.any(axis=(2, 3)).mean(axis=0))
    np.testing.assert_allclose(df["center"], 100 * cube[:, :, 1, 1].mean(axis=0))
    gb = group_bounds(m, grid)
    for g in ("zoom_in", "zoom_out", "zoom_224"):
        assert gb[g] == pytest.approx(100 * m[:, grid.group_mask(g)].any(axis=1).mean())
    cva = center_vs_anchors(m, grid)
    np.testing.assert_allclose(cva["anchor"], [100 * cube[:, :, r, c].any(axis=1).mean()
                                               for r in range(3) for c in range(3) if (r, c) != (1, 1)])


def test_accuracy_vs_scale():
    grid = ViewGrid(scales=(128, 256), grid=3)
    m = np.zeros((4, 18), bool)
    m[:2, grid.view_index(128, 1, 1)] = True  # 2 of 4 at the centre
    m[2, grid.view_index(128, 0, 0)] = True  # one more off-centre
    m[3, grid.view_index(256, 2, 2)] = True
    df = accuracy_vs_scale(m, grid)
    assert list(df["scale"]) == [128, 256] and list(df["group"]) == ["zoom_out", "zoom_in"]
    assert list(df["center"]) == [50.0, 0.0] and list(df["any_anchor"]) == [75.0, 25.0]
    assert (df["center_lo"] <= df["center"]).all() and (df["center"] <= df["center_hi"]).all()
    assert (df["any_anchor_lo"] <= df["any_anchor"]).all() and (df["any_anchor"] <= df["any_anchor_hi"]).all()
    with pytest.raises(ValueError):
        accuracy_vs_scale(np.zeros((2, 8), bool), ViewGrid(scales=(128, 256), grid=2))


def test_center_vs_anchors():
    grid = ViewGrid(scales=(256,), grid=3)
    n = 20
    m = np.zeros((n, 9), bool)
    c, tl = grid.view_index(256, 1, 1), grid.view_index(256, 0, 0)
    m[:10, c] = True  # centre right on 10
    m[:4, tl] = True  # top-left agrees on 4 of them...
    m[10:11, tl] = True  # ...and is alone on 1: discordant 6 vs 1
    df = center_vs_anchors(m, grid)
    assert len(df) == 8
    top_left = df[(df.row == 0) & (df.col == 0)].iloc[0]
    assert (top_left.only_center, top_left.only_anchor) == (6, 1)
    assert top_left.center == 50.0 and top_left.anchor == 25.0
    assert top_left.p_value == pytest.approx(2 * 8 / 128)  # P(X <= 1 | 7, 1/2) = 8/128, two-sided
    df256 = center_vs_anchors(m, grid, scale=256)
    pd.testing.assert_frame_equal(df, df256)
    with pytest.raises(ValueError):
        center_vs_anchors(m, grid, scale=128)


# ------------------------------------------------------------------------------------------------
# stats
# ------------------------------------------------------------------------------------------------
def test_clopper_pearson_known_values():
    n, a = 10, 0.05
    assert clopper_pearson(0, n, a) == pytest.approx((0.0, 1 - (a / 2) ** (1 / n)))
    assert clopper_pearson(n, n, a) == pytest.approx(((a / 2) ** (1 / n), 1.0))
    assert clopper_pearson(0, 10)[1] == pytest.approx(0.30849, abs=1e-5)
    for k, n in [(1, 7), (61, 100), (94, 100), (3, 5000)]:
        ref = st.binomtest(k, n).proportion_ci(0.95, method="exact")
        lo, hi = clopper_pearson(k, n)
        assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=1e-9)
        assert lo <= k / n <= hi
    assert np.subtract(*clopper_pearson(30, 100, 0.01)[::-1]) > np.subtract(*clopper_pearson(30, 100)[::-1])
    for bad in [(5, 3), (-1, 3), (0, 0)]:
        with pytest.raises(ValueError):
            clopper_pearson(*bad)
    with pytest.raises(ValueError):
        clopper_pearson(1, 3, alpha=1.5)


def test_accuracy_with_ci_and_bootstrap():
    x = np.zeros(200, bool)
    x[:130] = True
    acc, lo, hi = accuracy_with_ci(x)
    assert acc == 65.0 and lo < acc < hi
    assert (lo, hi) == pytest.approx(tuple(100 * v for v in clopper_pearson(130, 200)))
    b = accuracy_with_ci(x, method="bootstrap", seed=3)
    assert b == accuracy_with_ci(x, method="bootstrap", seed=3)  # seeded
    assert b[0] == 65.0 and b[1] < 65.0 < b[2]
    assert abs(b[1] - lo) < 3 and abs(b[2] - hi) < 3  # bootstrap and exact agree at n = 200
    assert bootstrap_ci(np.ones(50, bool)) == (1.0, 1.0)
    # paired rows: the CI of a difference of two columns
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.7
    b = a & (rng.random(300) < 0.8)  # b solves a subset of a: strongly paired, diff = share of a & ~b
    diff = lambda x, y, axis=-1: x.mean(axis) - y.mean(axis)  # noqa: E731
    d_lo, d_hi = bootstrap_ci((a, b), diff, seed=1)
    d = a.mean() - b.mean()
    assert 0 < d_lo < d < d_hi
    # pairing matters: the paired interval is about as wide as that of the share of a & ~b alone,
    # i.e. narrower than one that treats the two samples as independent
    solo_lo, solo_hi = bootstrap_ci(a & ~b, seed=1)
    assert abs((d_hi - d_lo) - (solo_hi - solo_lo)) < 0.01
    with pytest.raises(ValueError):
        bootstrap_ci((a, b[:-1]), diff)
    with pytest.raises(ValueError):
        accuracy_with_ci(x, method="wald")
    with pytest.raises(ValueError):
        accuracy_with_ci(x.astype(int))
    with pytest.raises(ValueError):
        bootstrap_ci(x, n_boot=0)


def test_mcnemar_exact():
    a = np.array([True] * 5 + [False] * 1 + [True] * 4 + [False] * 3)
    b = np.array([False] * 5 + [True] * 1 + [True] * 4 + [False] * 3)
    assert mcnemar_exact(a, b) == pytest.approx(14 / 64)  # discordant 5 vs 1: 2 * (1 + 6) / 64
    assert mcnemar_exact(b, a) == pytest.approx(14 / 64)
    assert mcnemar_exact(a, a) == 1.0
    assert mcnemar_exact(np.ones(10, bool), np.zeros(10, bool)) == pytest.approx(2 / 1024)
    with pytest.raises(ValueError):
        mcnemar_exact(a, b[:-1])


# ------------------------------------------------------------------------------------------------
# summaries
# ------------------------------------------------------------------------------------------------
def test_summarize_and_table1_row_agree_with_parts():
    grid = ViewGrid()
    rng = np.random.default_rng(4)
    m = rng.random((300, grid.n_views)) < rng.random(300)[:, None] * 0.05
    s = summarize(m, grid, n_classes=200, top_n=10)
    assert s["standard"][0] == standard_accuracy(m, grid)
    assert s["upper_all"][0] == oracle_accuracy(m)
    assert s["upper_topn"][0] == topn_bound(m, 10)
    assert s["upper_topn_cv"][0] == topn_bound_cv(m, 10)
    assert s["cover"] == greedy_cover(m) and s["cover_topn"] == greedy_cover(m, 10)
    assert s["random_topn"] == 5.0 and s["random_all"] == 100.0
    np.testing.assert_array_equal(s["anchor_bounds"], anchor_bounds(m, grid))
    assert s["center_share"] == cover_anchor_share(greedy_cover(m, 10), grid)[1, 1]
    for key in ("standard", "upper_all", "upper_topn", "upper_topn_cv"):
        acc, lo, hi = s[key]
        assert lo <= acc <= hi

    no_standard = ViewGrid(scales=grid.scales[:9])  # the zoom-out scales only: no 256
    assert summarize(m[:, :81], no_standard, top_n=10)["standard"] is None
    row81 = table1_row(m[:, :81], no_standard, "M", "D")
    assert math.isnan(row81["standard"]) and row81["upper_81"] == oracle_accuracy(m[:, :81])

    row = table1_row(m, grid, "M", "D", top_n=10)
    assert row["model"] == "M" and row["upper_324"] == s["upper_all"][0]
    assert row["upper_topn"] == s["upper_topn"][0] and row["upper_topn_cv_hi"] == s["upper_topn_cv"][2]
    df = table1({("M", "D"): m, ("M", "E"): m[:100]}, grid, top_n=10)
    assert list(df["dataset"]) == ["D", "E"] and df.loc[1, "n_images"] == 100
    from zoomstudy.report.plots import compare_frame

    merged = compare_frame(df.assign(dataset="IN", model=["AlexNet", "VGG-16"]), paper.TABLE1, on=["model", "dataset"])
    assert len(merged) == len(paper.TABLE1)
    assert merged[("standard", "ours")].notna().sum() == 2


def test_bound_metrics_is_the_one_table1_computation():
    grid = ViewGrid(scales=(64, 256, 512), grid=3, crop=224)  # 27 views, the 1-crop view included
    rng = np.random.default_rng(7)
    m = rng.random((60, grid.n_views)) < 0.1
    t = bound_metrics(m, grid, n_classes=100, top_n=36).set_index("key")
    assert list(t.index) == list(BOUND_KEYS) and list(t.columns) == ["metric", "views", "accuracy", "lo", "hi"]
    assert t.loc["standard", "accuracy"] == standard_accuracy(m, grid) and t.loc["standard", "views"] == 1
    assert t.loc["upper_all", "accuracy"] == oracle_accuracy(m) and t.loc["upper_all", "views"] == 27
    assert t.loc["upper_topn", "accuracy"] == topn_bound(m, 36)
    assert t.loc["upper_topn_cv", "accuracy"] == topn_bound_cv(m, 36)
    assert t.loc["upper_topn", "views"] == 27  # top-36 of 27 views: all of them
    assert t.loc["random_topn", "accuracy"] == random_bound(27, 100) and np.isnan(t.loc["random_all", "lo"])
    assert t.loc["standard", "metric"] == "1-crop (LOC:1_1_Size:256)"
    ci = t.dropna(subset=["lo"])
    assert len(ci) == 4 and ((ci["lo"] <= ci["accuracy"]) & (ci["accuracy"] <= ci["hi"])).all()
    some = bound_metrics(m, grid, keys=("upper_all", "standard"))
    assert list(some["key"]) == ["standard", "upper_all"]  # always in Table 1's order
    no_standard = ViewGrid(scales=(64, 512), grid=3, crop=224)
    assert "standard" not in set(bound_metrics(m[:, :18], no_standard, keys=("standard", "upper_all"))["key"])
    cover = greedy_cover(m)
    reused = bound_metrics(m, grid, cover=cover, keys=("upper_topn",))
    assert reused.equals(bound_metrics(m, grid, keys=("upper_topn",)))
    with pytest.raises(ValueError, match="unknown bound metrics"):
        bound_metrics(m, grid, keys=("oracle",))
    with pytest.raises(ValueError, match="folds"):
        bound_metrics(m[:1], grid, keys=("upper_topn_cv",))


def test_center_bias_of_anchor_bounds():
    bounds = np.array([[10.0, 20.0, 10.0], [20.0, 90.0, 20.0], [10.0, 20.0, 10.0]])
    assert center_bias(bounds) == (90.0, 15.0, 75.0)
    assert center_bias(np.array([[40.0]])) == (40.0, 40.0, 0.0)
    with pytest.raises(ValueError, match="odd"):
        center_bias(np.zeros((2, 2)))


# ------------------------------------------------------------------------------------------------
# paper tables
# ------------------------------------------------------------------------------------------------
def test_paper_tables_shape_and_consistency():
    assert len(paper.TABLE1) == 42 and paper.TABLE1.notna().all().all()
    assert (paper.TABLE1["standard"] < paper.TABLE1["upper_324"]).all()
    assert paper.TABLE1.set_index(["model", "dataset"]).loc[("ViT-B/32", "IN+ReaL"), "upper_324"] == 98.91
    both = paper.TABLE1_TOP36.merge(paper.TABLE1, on=["model", "dataset"])
    assert len(both) == 14 and (both["upper_36"] <= both["upper_324"]).all()
    for d in ("IN", "IN-A", "ObjectNet"):
        g = paper.anchor_grid(paper.PER_ANCHOR, dataset=d)
        assert g.shape == (3, 3) and g.argmax() == 4  # the centre anchor is the best one
    assert len(paper.TABLE5) == 45 and paper.TABLE5.groupby("method").size().eq(15).all()
    assert paper.TABLE4.set_index(["dataset", "group", "aggregation"]).loc[("IN-A", "zoom_in", "max"), "top1"] == 24.69
    assert len(paper.IMAGENET_HARD) == 9


def test_paper_name_mappings_match_registries():
    from zoomstudy.data import DATASETS as REGISTRY
    from zoomstudy.models.loading import MODELS as TORCHVISION

    assert set(paper.DATASET_KEYS) == set(paper.DATASETS)
    assert set(paper.DATASET_KEYS.values()) <= set(REGISTRY)
    assert {v for k, v in paper.MODEL_KEYS.items() if not k.startswith("CLIP")} <= set(TORCHVISION)
    ours = pd.DataFrame({"model": ["resnet50", "squeezenet1_0"], "dataset": ["imagenet-a", "objectnet"]})
    renamed = paper.to_paper_names(ours)
    assert list(renamed.model) == ["ResNet-50", "squeezenet1_0"] and list(renamed.dataset) == ["IN-A", "ObjectNet"]


def test_paper_tables_match_spec(realdata):
    spec_path = realdata.parent / "SPEC.md"
    if not spec_path.exists():
        pytest.skip("SPEC.md not found next to the real-data kit")
    spec = spec_path.read_text()
    cells = {}
    for line in spec.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(parts) == 8 and "/" in parts[1]:
            for d, cell in zip(paper.DATASETS, parts[1:]):
                cells[(parts[0], d)] = tuple(float(x) for x in cell.split("/"))
    t1 = {(r.model, r.dataset): (r.standard, r.upper_324) for r in paper.TABLE1.itertuples()}
    assert t1 == cells
    t5 = {}
    for line in spec.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(parts) == 6 and "/" in parts[1]:
            for d, cell in zip(("IN", "IN-A", "IN-R", "IN-Sketch", "ObjectNet"), parts[1:]):
                for model, x in zip(paper.TABLE5_MODELS, cell.split("/")):
                    t5[(parts[0], model, d)] = float(x)
    assert {(r.method, r.model, r.dataset): r.top1 for r in paper.TABLE5.itertuples()} == t5
    para = spec.split("Table 1, upper bound N = 36")[1].split("\n\n")[0]
    for model, part in zip(("ResNet-50", "ViT-B/32"), para.split(";")):
        values = [float(x) for x in re.findall(r"\d+\.\d+", part)]
        sel = paper.TABLE1_TOP36[paper.TABLE1_TOP36.model == model].set_index("dataset")["upper_36"]
        assert list(sel[list(paper.DATASETS)]) == values
    for d, name in (("IN", "ImageNet"), ("IN-A", "ImageNet-A"), ("ObjectNet", "ObjectNet")):
        line = re.search(rf"^- {re.escape(name)}: ([\d. /]+)", spec, re.M).group(1)
        values = [float(x) for x in line.replace("/", " ").split()]
        np.testing.assert_array_equal(paper.anchor_grid(paper.PER_ANCHOR, dataset=d).ravel(), values)
    assert f"{paper.CENTER_SHARE_TOP36:.2f}% of them at the centre anchor" in spec
    hard = " ".join(spec.split("ImageNet-Hard (10,980 images), top-1 %:")[1].split("\n\n")[0].split())
    assert len(re.findall(r"\d+\.\d+", hard)) == len(paper.IMAGENET_HARD)
    for r in paper.IMAGENET_HARD.itertuples():
        size = f" ({r.input} px)" if r.input != 224 else ""
        assert f"{r.model}{size} {r.top1:.2f}" in hard


# ------------------------------------------------------------------------------------------------
# real-data kit
# ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_realdata_reference_figures(realdata):
    ref = np.load(realdata / "reference" / "squeezenet1_0_views.npz")
    grid = ViewGrid()
    assert tuple(int(s) for s in ref["scales"]) == grid.scales
    pred = ref["pred"].astype(np.int64)  # [100, 36, 3, 3] = [image, scale, row, col]
    top1 = pred.reshape(pred.shape[0], -1)  # [100, 324]: scale-major, then row, then col = ViewGrid order
    assert top1[7, grid.view_index(256, 0, 2)] == pred[7, grid.scales.index(256), 0, 2]
    correct = correctness(top1, [(int(l),) for l in ref["labels"]])

    assert standard_accuracy(correct, grid) == pytest.approx(61.0)
    assert oracle_accuracy(correct) == pytest.approx(94.0)
    cover = greedy_cover(correct)
    assert len(cover) == 14
    assert topn_bound(correct, 36) == pytest.approx(94.0)
    np.testing.assert_allclose(anchor_bounds(correct, grid), [[57, 76, 61], [68, 83, 67], [51, 63, 54]])
    centre = [v for v in cover if grid.unravel(v)[1:] == (1, 1)]
    assert len(centre) == 5
    assert round(cover_anchor_share(cover, grid)[1, 1], 1) == 35.7

    # the same figures, via the tidy reference table
    want = paper.REALDATA_REFERENCE
    scalars = want[want.row.isna()].set_index("metric")["value"]
    s = summarize(correct, grid)
    assert s["standard"][0] == scalars["standard"] and s["upper_all"][0] == scalars["upper_324"]
    assert s["upper_topn"][0] == scalars["upper_36"] and s["cover_length"] == scalars["cover_length"]
    assert round(s["center_share"], 1) == scalars["center_share"]
    np.testing.assert_array_equal(s["anchor_bounds"], paper.anchor_grid(want, "value", metric="anchor_bound"))


@pytest.mark.realdata
def test_realdata_reference_table_matches_readme(realdata):
    text = (realdata / "README.md").read_text()
    want = paper.REALDATA_REFERENCE
    scalars = want[want.row.isna()].set_index("metric")["value"]
    assert f"1-crop (`LOC:1_1_Size:256`): {scalars['standard']:.2f}% top-1" in text
    assert f"bound over all 324 views: {scalars['upper_324']:.2f}%" in text
    assert f"greedy top-36 bound: {scalars['upper_36']:.2f}%" in text
    assert f"complete after {int(scalars['cover_length'])} views" in text
    assert f"{scalars['center_share']:.1f}% ({int(scalars['cover_center_views'])} of {int(scalars['cover_length'])};" in text
    rows = paper.anchor_grid(want, "value", metric="anchor_bound")
    line = " / ".join(" ".join(f"{x:.1f}" for x in r) for r in rows)
    assert f"rows top to bottom: {line}" in text
