"""The view budget (zoomstudy.analysis.budget), the deployable ZoomTTA module and its policy file
(zoomstudy.sweep.zoomtta), the `tta-policy` CLI; and (realdata) ZoomTTA against the store on kit images."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from zoomstudy import cli
from zoomstudy.analysis import bounds, budget
from zoomstudy.sweep.store import ResultSet
from zoomstudy.sweep.zoomtta import ZoomTTA, check_policy, load_policy, save_policy
from zoomstudy.views import ViewGrid, render_views

GRID = ViewGrid(scales=(48, 96, 110, 160), grid=3, crop=96)  # 1-crop scale 110 is in the grid
CLASSES = np.array([3, 17, 42, 99, 123, 256, 300, 512, 640, 777, 901, 950])


def _hand_probs(n: int, v: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Full softmax [N, V, 1000] over a few classes (peaked, so top-5 carries most of the mass) and labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, v, len(CLASSES)))
    labels = rng.integers(0, len(CLASSES), n)
    logits[np.arange(n), :, labels] += rng.normal(0.3, 1.0, (n, v))  # the true class is often on top
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    full = np.zeros((n, v, 1000))
    full[..., CLASSES] = p
    return full, CLASSES[labels]


def _store_from_probs(path, full: np.ndarray, labels, grid=GRID) -> ResultSet:
    """A result set as a sweep writes it: per view the top-5, per group mean and max of the full softmax."""
    n, v, _ = full.shape
    rs = ResultSet.create(path, {"key": {"grid": grid.to_dict(), "model": {"name": "hand"}, "dataset": {"name": "hand"},
                                         "render": {"dtype": "float64", "mean": [0.485, 0.456, 0.406],
                                                    "std": [0.229, 0.224, 0.225]}}})
    ids = [f"img{i}" for i in range(n)]
    top = np.argsort(-full, axis=-1, kind="stable")[..., :5]
    views = pd.DataFrame({"image_id": np.repeat(ids, v), "view": np.tile(np.arange(v, dtype=np.int16), n)})
    for j in range(5):
        views[f"pred{j}"] = top[..., j].reshape(-1).astype(np.int16)
        views[f"prob{j}"] = np.take_along_axis(full, top[..., j:j + 1], -1).reshape(-1).astype(np.float32)
    masks = {g: grid.group_mask(g) for g in ("zoom_in", "zoom_out", "zoom_224")}
    masks["all_views"] = np.ones(v, bool)
    rows = []
    for i in range(n):
        for g, m in masks.items():
            if m.any():
                p = full[i, m]
                conf = p.max(1)
                b = int(conf.argmax())
                rows.append((ids[i], g, int(p.mean(0).argmax()), float(p.mean(0).max()), int(p[b].argmax()), float(conf[b])))
    images = [(ids[i], i, [int(labels[i])], 10, 10, "{}", True) for i in range(n)]
    rs.write_part("part-000000", {
        "views": views,
        "groups": pd.DataFrame(rows, columns=["image_id", "group", "mean_pred", "mean_prob", "max_pred", "max_prob"]),
        "errors": pd.DataFrame({"image_id": pd.Series([], dtype=str), "position": pd.Series([], dtype="int64"),
                                "reason": pd.Series([], dtype=str)}),
        "images": pd.DataFrame(images, columns=["image_id", "position", "labels", "width", "height", "meta", "ok"]),
    })
    return rs


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    full, labels = _hand_probs(24, GRID.n_views)
    return _store_from_probs(tmp_path_factory.mktemp("budget"), full, labels), full, labels


# ------------------------------------------------------------------------------------------------
# the budget curve
# ------------------------------------------------------------------------------------------------
def test_choose_views_is_the_greedy_cover_then_the_most_accurate_views():
    c = np.zeros((4, 6), bool)
    c[0, [1, 2]] = c[1, 2] = c[2, [2, 4]] = c[3, 4] = True  # cover: 2 (3 images), 4 (1 more) -> complete
    c[:, 5] = [True, False, False, False]
    assert bounds.greedy_cover(c) == [2, 4]
    assert budget.choose_views(c, 2) == [2, 4]
    assert budget.choose_views(c, 5) == [2, 4, 1, 5, 0]  # then by accuracy (1 and 5: one image each; lowest first)
    with pytest.raises(ValueError, match="k must be"):
        budget.choose_views(c, 7)


def test_budget_curve_matches_a_brute_force_over_the_full_softmax(hand):
    rs, full, labels = hand
    curve = budget.budget_curve(rs, max_k=6, folds=3, seed=1, n_boot=200)
    sv = budget.stored_views(rs)
    assert sv.image_ids == [f"img{i}" for i in range(24)]
    correct = sv.correct
    assert np.array_equal(correct, full.argmax(-1) == labels[:, None])
    fold = bounds.cv_folds(24, 3, 1)
    exp = {r: np.zeros((24, 6), bool) for r in budget.RULES}
    certified = np.zeros((24, 6), bool)
    for f in range(3):
        views = budget.choose_views(correct[fold != f], 6)
        for i in np.flatnonzero(fold == f):
            for k in range(1, 7):
                chosen = full[i, views[:k]]  # [k, 1000]
                exp["cover"][i, k - 1] = correct[i, views[:k]].any()
                exp["mean"][i, k - 1] = chosen.mean(0).argmax() == labels[i]
                exp["max"][i, k - 1] = chosen[chosen.max(1).argmax()].argmax() == labels[i]
    _, mean_pred, mean_exact, _ = budget._running(sv, np.array([budget.choose_views(correct[fold != f], 6)
                                                                for f in fold]), correct)
    for i in range(24):
        for k in range(6):
            if mean_exact[i, k]:  # the certificate is sound: the top-5 mean's argmax is the full mean's
                views = budget.choose_views(correct[fold != fold[i]], 6)[:k + 1]
                assert mean_pred[i, k] == full[i, views].mean(0).argmax()
                certified[i, k] = True
    assert certified.mean() > 0.5  # peaked softmax: most images are certified
    assert mean_exact[:, 0].all()  # one view: its top-5 argmax is its argmax
    for rule in ("cover", "max"):
        got = curve[(curve["rule"] == rule) & (curve["k"] <= 6)]["accuracy"].to_numpy()
        assert np.allclose(got, 100 * exp[rule].mean(0)), rule
    mean_rows = curve[(curve["rule"] == "mean") & (curve["k"] <= 6)]
    assert np.allclose(mean_rows["mean_exact"], mean_exact.mean(0))
    # the whole grid: the stored all_views group (exact mean and max of the full softmax)
    whole = curve[curve["k"] == GRID.n_views].set_index("rule")
    assert whole.loc["cover", "accuracy"] == 100 * correct.any(1).mean()
    assert whole.loc["mean", "accuracy"] == pytest.approx(100 * (full.mean(1).argmax(-1) == labels).mean())
    # intervals, gains and the fixed groups
    assert ((curve["lo"] <= curve["accuracy"]) & (curve["accuracy"] <= curve["hi"])).all()
    cover = curve[curve["rule"] == "cover"].set_index("k")
    assert cover.loc[2, "gain"] == pytest.approx(cover.loc[2, "accuracy"] - cover.loc[1, "accuracy"])
    assert (cover["accuracy"].diff().dropna() >= 0).all()  # the oracle never loses with more views
    fixed = curve[curve["rule"] == "fixed"]
    assert list(fixed["method"]) == ["1-crop", "zoom-in, mean", "zoom-in, max"]
    assert fixed["accuracy"].iloc[0] == 100 * correct[:, GRID.standard_view].mean() == curve.attrs["one_crop"]
    assert set(curve.attrs["saturation"]) == set(budget.RULES)
    table = budget.budget_table(curve, ks=(1, 2, 4))
    assert list(table["k"][:4]) == ["1", "2", "4", "36"] and "zoom-in, mean (18 views)" in set(table["k"])
    sentence = budget.budget_findings(curve)
    k = curve.attrs["saturation"]["mean"]
    assert f"with {k} chosen view" in sentence and f"{curve.attrs['one_crop']:.1f}% (1-crop)" in sentence


def test_saturation_is_the_budget_no_larger_one_beats_detectably():
    ok = np.zeros((40, 5), bool)
    ok[:10, :] = True  # 25% with one view
    ok[10:30, 2:] = True  # +20 images from k = 3 on: detectable against k = 1 and 2
    ok[30:32, 4] = True  # +2 images at k = 5: not detectable against k = 3
    assert budget._saturation(ok, 0.05) == 3
    assert budget._saturation(np.ones((5, 3), bool), 0.05) == 1


def test_curve_from_top1_views_has_no_mean_rule():
    full, labels = _hand_probs(10, GRID.n_views, seed=3)
    sv = budget.StoredViews.from_top1([str(i) for i in range(10)], [(int(x),) for x in labels],
                                      full.argmax(-1), full.max(-1), GRID)
    curve = budget.budget_curve(views=sv, max_k=4, folds=2, n_boot=100)
    assert set(curve["rule"]) == {"cover", "max", "fixed"} and set(curve["k"]) == {1, 2, 3, 4, 36}
    assert "most confident view" in budget.budget_findings(curve)
    with pytest.raises(ValueError, match="folds"):
        budget.budget_curve(views=sv, folds=11)


# ------------------------------------------------------------------------------------------------
# ZoomTTA and the policy
# ------------------------------------------------------------------------------------------------
class _Fixed(torch.nn.Module):
    """Logits from pixel statistics: deterministic, depends on the crop (mean grey level per channel)."""

    def forward(self, x):
        feats = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)  # [B, 6]
        w = torch.arange(6000, dtype=x.dtype).reshape(6, 1000).sin()
        return feats @ w


def _image(h=90, w=130, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


def test_zoomtta_renders_the_grid_views_and_aggregates():
    views = [(160, 0, 2), (48, 1, 1), (160, 2, 0)]
    z = ZoomTTA(_Fixed(), views, "mean", grid=3, crop=96)
    im = _image()
    want = render_views(im, GRID)[[GRID.view_index(*v) for v in views]].to(torch.uint8)
    assert torch.equal(z.render(im), want)
    from zoomstudy.views import normalize

    probs = _Fixed()(normalize(want)).softmax(-1)  # [3, 1000]
    out = z(im)
    assert out.shape == (1, 1000) and torch.allclose(out[0].exp(), probs.mean(0), atol=1e-6)
    zmax = ZoomTTA(_Fixed(), views, "max", grid=3, crop=96)
    best = probs.max(1).values.argmax()
    assert torch.allclose(zmax(im)[0].exp(), probs[best], atol=1e-6)
    # a batch of differently sized images, tensors and PIL alike, gives each image's own answer
    from PIL import Image

    im2 = _image(120, 70, seed=1)
    pil = Image.fromarray(im2.permute(1, 2, 0).numpy())
    both = z([im, pil])
    assert torch.allclose(both[0], out[0], atol=1e-6) and torch.allclose(both[1], z(im2)[0], atol=1e-6)
    assert torch.equal(z.predict(torch.stack([im, im])), out.argmax(-1).repeat(2))
    for bad in ([], [(160, 3, 0)], [(0, 1, 1)], [(48, 1, 1), (48, 1, 1)], "abc"):
        with pytest.raises(ValueError):
            ZoomTTA(_Fixed(), bad, grid=3, crop=96)
    with pytest.raises(ValueError, match="aggregate"):
        ZoomTTA(_Fixed(), views, "median")
    with pytest.raises(ValueError, match="uint8"):
        z(im.float())


def test_policy_from_the_store_round_trips_and_rebuilds_the_module(hand, tmp_path):
    rs, _, _ = hand
    pol = budget.make_policy(rs, 3, "max", folds=3)
    assert len(pol["views"]) == 3 and pol["aggregate"] == "max" and pol["grid"] == {"grid": 3, "crop": 96}
    chosen = budget.choose_views(budget.stored_views(rs).correct, 3)
    assert pol["view_names"] == [GRID.view_name(v) for v in chosen]
    assert [GRID.view_index(*v) for v in pol["views"]] == chosen
    assert pol["chosen_on"]["n_images"] == 24 and pol["chosen_on"]["model"] == {"name": "hand"}
    cv = pol["cv_accuracy"]
    row = budget.budget_curve(rs, max_k=3, folds=3, n_boot=1000).query("rule == 'max' and k == 3").iloc[0]
    assert cv["accuracy"] == row["accuracy"] and cv["k"] == 3 and cv["folds"] == 3
    path = save_policy(pol, tmp_path / "policy.json")
    assert load_policy(path) == json.loads(path.read_text()) == check_policy(pol)
    z = ZoomTTA.from_policy(_Fixed(), path)
    assert z.views == [tuple(v) for v in pol["views"]] and z.aggregate == "max" and z.crop == 96
    bad = dict(pol, format="other")
    with pytest.raises(ValueError, match="not a zoomstudy-tta-policy"):
        check_policy(bad)
    with pytest.raises(ValueError, match="version"):
        check_policy(dict(pol, version=2))
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_policy(tmp_path / "junk.json")


def test_tta_policy_cli(hand, tmp_path, capsys):
    rs, _, _ = hand
    out = tmp_path / "p" / "policy.json"
    assert cli.main(["tta-policy", str(rs.path), "--k", "2", "--folds", "3", "--out", str(out)]) == 0
    pol = load_policy(out)
    assert len(pol["views"]) == 2 and pol["aggregate"] == "mean"
    assert "cross-validated top-1" in capsys.readouterr().out
    for args, msg in (([str(tmp_path)], "not a result set"), ([str(rs.path), "--k", "0"], "--k must be >= 1"),
                      ([str(rs.path), "--k", "37"], "--k must be <= 36"), ([str(rs.path), "--folds", "1"], "--folds"),
                      ([str(rs.path), "--out", str(tmp_path)], "is a directory"),
                      ([str(rs.path), "--aggregate", "median"], "invalid choice")):
        assert cli.main(["tta-policy", *args]) == 2
        assert msg in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the real-data kit: ZoomTTA equals the store
# ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_realdata_zoomtta_reproduces_the_stored_predictions(realdata, tmp_path):
    """Real SqueezeNet on 3 kit images: a sweep over 2 paper scales (18 views; a view is the same pixels
    whatever other scales the grid holds), then ZoomTTA on the same images: its mean and max over all
    18 views are the stored all_views group's, and a policy chosen from the store gives, view for view,
    the store's max-aggregated prediction (and its top-5 mean wherever that is certified exact)."""
    from zoomstudy.analysis import tta
    from zoomstudy.data.folders import CsvSource
    from zoomstudy.models.loading import load_model
    from zoomstudy.data.source import load_sample
    from zoomstudy.sweep.engine import sweep_to_store

    kit = realdata / "imagenet-sample"
    model = load_model("torchvision:squeezenet1_0", checkpoint=realdata / "weights" / "squeezenet1_0_deepcompression.pt",
                       pretrained=False, device="cpu")
    src = CsvSource(root=kit, csv=kit / "labels.csv")
    grid = ViewGrid(scales=(256, 448))
    n = 3
    rs = sweep_to_store(model, src, grid, tmp_path, render_dtype=torch.float64, tta=False, max_images=n, workers=0, progress=False)
    images = [load_sample(src, i).image for i in range(n)]
    out = tta._outcomes(rs)
    every = [(grid.scales[s], r, c) for s, r, c in map(grid.unravel, range(grid.n_views))]
    for agg in ("mean", "max"):
        got = ZoomTTA(model, every, agg).predict(images).numpy()
        assert np.array_equal(got, out.preds[("all_views", agg)]), agg
    pol = budget.make_policy(rs, 4, "max", folds=3)
    path = save_policy(pol, tmp_path / "policy.json")
    sv = budget.stored_views(rs)
    order = np.tile([grid.view_index(*v) for v in pol["views"]], (n, 1))
    _, mean_pred, mean_exact, max_pred = budget._running(sv, order, sv.correct)
    assert np.array_equal(ZoomTTA.from_policy(model, path).predict(images).numpy(), max_pred[:, -1])
    mean = ZoomTTA(model, pol["views"], "mean").predict(images).numpy()
    assert np.array_equal(mean[mean_exact[:, -1]], mean_pred[mean_exact[:, -1], -1])


def test_explorer_filters_follow_the_groups():
    from zoomstudy.report.explorer import FILTERS, image_flags

    c = np.zeros((5, GRID.n_views), bool)
    c[0, GRID.standard_view] = True  # the 1-crop view (scale 110 > crop 96: a zoom-in view)
    c[1, GRID.view_index(160, 0, 0)] = True  # zoom-in only
    c[2, GRID.view_index(48, 2, 2)] = True  # zoom-out only
    c[3, [GRID.view_index(48, 0, 0), GRID.view_index(160, 1, 1)]] = True  # both
    flags = image_flags(c, GRID)  # image 4: never solved
    assert set(flags) == set(FILTERS)
    assert flags["zoom_in_only"].tolist() == [True, True, False, False, False]
    assert flags["zoom_out_only"].tolist() == [False, False, True, False, False]
    assert flags["never"].tolist() == [False, False, False, False, True]
    assert flags["one_crop"].tolist() == [True, False, False, False, False] and flags["all"].all()
