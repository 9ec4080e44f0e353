"""Test-time augmentation tables: Table 4 from a stored sweep (zoomstudy.analysis.tta), the stored MEMO
table and its summary (zoomstudy.analysis.table5), and notebook 03 executed headless.

One real sweep (random SqueezeNet, 4 synthetic images, 4 scales x 3 x 3 views of 96 px, plus the 10-crop
set) and one small MEMO table are shared by the tests of this module; the notebook test runs last on the
same result store, so it reuses both instead of computing them again.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from zoomstudy.analysis import tta
from zoomstudy.analysis import paper
from zoomstudy.report import notebooks as reports
from zoomstudy import study
from zoomstudy.analysis import memo, table5
from zoomstudy.analysis.stats import clopper_pearson, mcnemar_exact
from zoomstudy.sweep.store import ResultSet
from zoomstudy.sweep.engine import sweep_to_store
from zoomstudy.views import ViewGrid, normalize, pil_to_tensor, render_views, tta_crops
from conftest import REPO

SCALES = (48, 96, 110, 160)
GRID = ViewGrid(scales=SCALES, grid=3, crop=96)  # standard scale round(96 * 256 / 224) = 110 is in the grid
N_IMAGES = 4
MODEL = "torchvision:squeezenet1_0"
# MEMO as notebook 03 runs it with crop 96 (so the notebook test reuses this table)
MEMO_KW = dict(pretrained=False, device="cpu", k=2, seeds=(0,), max_images=2, resize=110, crop=96, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops on a small shared CPU


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tta_results")


@pytest.fixture(scope="module")
def swept(store_dir):
    """(model, result set) of a real sweep; keyed exactly as the notebook's study.ensure_results keys it."""
    model = study.open_model(MODEL, pretrained=False, device="cpu")
    rs = sweep_to_store(model, study.open_data(f"synthetic:{N_IMAGES}"), GRID, store_dir, workers=0, progress=False)
    return model, rs


@pytest.fixture(scope="module")
def memo_df(store_dir):
    return study.memo_table(MODEL, f"synthetic:{N_IMAGES}", results_dir=store_dir, **MEMO_KW)


# ================================================================================================
# Table 4 on a real sweep
# ================================================================================================
def _groups(rs) -> pd.DataFrame:
    return rs.groups().set_index(["image_id", "group"])


def test_tta_table_rows_and_counts(swept):
    _, rs = swept
    table = tta.tta_table(rs)
    assert list(table.columns[:8]) == ["method", "group", "aggregation", "views", "accuracy", "lo", "hi", "n"]
    expected = [("1-crop", "none")] + [(g, a) for g in tta.GROUP_ORDER for a in ("mean", "max")]
    assert list(zip(table["group"], table["aggregation"])) == expected
    assert (table["n"] == N_IMAGES).all()
    views = dict(zip(table["group"], table["views"]))
    # zoom-in: 110 and 160 > 96; zoom-out: 48; S = crop: 96; 5/10-crop rendered at the standard scale
    assert views == {"1-crop": 1, "zoom_in": 18, "zoom_out": 9, "zoom_224": 9, "all_views": 36, "five_crop": 5,
                     "ten_crop": 10}
    assert table.loc[0, "method"] == "1-crop" and "zoom-in, mean" in set(table["method"])
    for r in table.itertuples():
        k = round(r.accuracy * r.n / 100)
        lo, hi = clopper_pearson(k, r.n)
        assert r.lo == pytest.approx(100 * lo) and r.hi == pytest.approx(100 * hi)


def test_tta_table_matches_the_stored_predictions(swept):
    """With labels chosen from the stored predictions, every row's accuracy is known exactly."""
    _, rs = swept
    ids, top1, _ = rs.predictions()
    base = top1[:, GRID.standard_view].astype(int)
    g = _groups(rs)
    zin = np.array([g.loc[(i, "zoom_in"), "mean_pred"] for i in ids])
    table = tta.tta_table(rs, labels={i: (int(z),) for i, z in zip(ids, zin)}).set_index(["group", "aggregation"])
    assert table.loc[("zoom_in", "mean"), "accuracy"] == 100.0
    assert table.loc[("1-crop", "none"), "accuracy"] == pytest.approx(100 * np.mean(base == zin))
    for grp in tta.GROUP_ORDER:
        for agg in ("mean", "max"):
            pred = np.array([g.loc[(i, grp), f"{agg}_pred"] for i in ids])
            assert table.loc[(grp, agg), "accuracy"] == pytest.approx(100 * np.mean(pred == zin))
            fixed = int(((pred == zin) & (base != zin)).sum())
            assert table.loc[(grp, agg), "fixed"] == fixed
    # multi-label sets (sequence form, in ResultSet.labels() order): correct = prediction in the set
    tc = np.array([g.loc[(i, "ten_crop"), "max_pred"] for i in ids])
    multi = tta.tta_table(rs, labels=[(int(a), int(b)) for a, b in zip(base, tc)]).set_index(["group", "aggregation"])
    assert multi.loc[("1-crop", "none"), "accuracy"] == 100.0
    assert multi.loc[("ten_crop", "max"), "accuracy"] == 100.0
    assert multi.loc[("ten_crop", "max"), "broke"] == 0


def test_stored_groups_are_mean_and_max_of_the_views(swept):
    """The sweep's 'mean' is the argmax of the averaged softmax, 'max' the most confident view (recomputed
    here from the model for two images); and 'max' agrees with the per-view top-1 of the views table."""
    model, rs = swept
    g = _groups(rs)
    source = study.open_data(f"synthetic:{N_IMAGES}")
    masks = {name: np.flatnonzero(GRID.group_mask(name)) for name in ("zoom_in", "zoom_out", "zoom_224")}
    masks.update(all_views=np.arange(GRID.n_views), five_crop=GRID.n_views + np.arange(5),
                 ten_crop=GRID.n_views + np.arange(10))
    for i in range(2):
        s = source[i]
        x = pil_to_tensor(s.image)
        grey = torch.cat([render_views(x, GRID), tta_crops(x, GRID.crop, GRID.standard_scale)])
        probs = model.logits(normalize(grey)).softmax(-1)  # [46, 1000]
        for name, idx in masks.items():
            p = probs[torch.as_tensor(idx)]
            row = g.loc[(s.image_id, name)]
            assert row["mean_pred"] == int(p.mean(0).argmax())
            assert row["mean_prob"] == pytest.approx(float(p.mean(0).max()), rel=1e-5)
            conf, cls = p.max(1)
            assert row["max_pred"] == int(cls[conf.argmax()])
            assert row["max_prob"] == pytest.approx(float(conf.max()), rel=1e-5)
    ids, top1, conf = rs.predictions()
    for n, image_id in enumerate(ids):
        for name in ("zoom_in", "zoom_out", "all_views"):
            v = masks[name][np.argmax(conf[n, masks[name]])]
            assert g.loc[(image_id, name), "max_pred"] == top1[n, v]
            assert g.loc[(image_id, name), "max_prob"] == pytest.approx(conf[n, v])


def test_tta_changes_on_the_sweep(swept):
    _, rs = swept
    ids, top1, _ = rs.predictions()
    base = top1[:, GRID.standard_view]
    labels = {i: (int(b),) for i, b in zip(ids, base)}  # 1-crop always right: nothing can be fixed
    ch = tta.tta_changes(rs, "zoom_out", "mean", labels=labels)
    assert list(ch["image_id"]) == ids
    assert ch["base_correct"].all() and set(ch["change"]) <= {"both right", "broke"}
    assert (ch["change"] == "broke").sum() == (ch["tta_pred"] != ch["base_pred"]).sum()
    with pytest.raises(ValueError, match="aggregation"):
        tta.tta_changes(rs, "zoom_in", "median")


# ================================================================================================
# Table 4 on a hand-built store: the exact semantics
# ================================================================================================
def _hand_store(path, grid=GRID, drop_group_of=None):
    """Images A-D labelled (B multi-label), E undecodable, F with an empty label set."""
    settings = {"key": {"grid": grid.to_dict(), "model": {"name": "hand"}, "dataset": {"name": "hand"}}}
    rs = ResultSet.create(path, settings)
    labels = {"A": [1], "B": [2, 3], "C": [4], "D": [5], "F": []}
    base = {"A": 1, "B": 9, "C": 4, "D": 9, "F": 0}  # 1-crop: A, C right
    groups = {  # (mean_pred, max_pred)
        "zoom_in": {"A": (1, 8), "B": (3, 2), "C": (7, 4), "D": (5, 8), "F": (0, 0)},
        "ten_crop": {"A": (9, 1), "B": (9, 9), "C": (9, 9), "D": (9, 9), "F": (0, 0)},
    }
    ok = ["A", "B", "C", "D", "F"]
    v = grid.n_views
    pred0 = np.full((len(ok), v), 999, np.int16)
    if grid.standard_view is not None:
        pred0[:, grid.standard_view] = [base[i] for i in ok]
    views = pd.DataFrame({"image_id": np.repeat(ok, v), "view": np.tile(np.arange(v, dtype=np.int16), len(ok))})
    for j in range(5):
        views[f"pred{j}"] = (pred0.reshape(-1) if j == 0 else np.full(len(views), 900 + j)).astype(np.int16)
        views[f"prob{j}"] = np.float32(0.5 / (j + 1))
    rows = [(i, g, mp, 0.6, xp, 0.9) for g, d in groups.items() for i, (mp, xp) in d.items() if i != drop_group_of]
    images = [(i, n, labels[i], 10, 10, "{}", True) for n, i in enumerate(ok)] + [("E", 9, [6], -1, -1, "{}", False)]
    rs.write_part("part-000000", {
        "views": views,
        "groups": pd.DataFrame(rows, columns=["image_id", "group", "mean_pred", "mean_prob", "max_pred", "max_prob"]),
        "errors": pd.DataFrame([("E", 9, "broken")], columns=["image_id", "position", "reason"]),
        "images": pd.DataFrame(images, columns=["image_id", "position", "labels", "width", "height", "meta", "ok"]),
    })
    return rs


def test_tta_table_semantics_exact(tmp_path):
    rs = _hand_store(tmp_path)
    t = tta.tta_table(rs)
    assert t.attrs["left_out"] == 1  # F: empty label set; E: undecodable, never counted
    t = t.set_index(["group", "aggregation"])
    assert list(t.index) == [("1-crop", "none"), ("zoom_in", "mean"), ("zoom_in", "max"), ("ten_crop", "mean"),
                             ("ten_crop", "max")]
    assert (t["n"] == 4).all()
    exp = {("1-crop", "none"): (50.0, 0, 0), ("zoom_in", "mean"): (75.0, 2, 1), ("zoom_in", "max"): (50.0, 1, 1),
           ("ten_crop", "mean"): (0.0, 0, 2), ("ten_crop", "max"): (25.0, 0, 1)}
    for key, (acc, fixed, broke) in exp.items():
        assert t.loc[key, "accuracy"] == acc
        assert t.loc[key, "delta"] == acc - 50.0
        assert (t.loc[key, "fixed"], t.loc[key, "broke"]) == (fixed, broke)
    base = np.array([True, False, True, False])
    assert t.loc[("zoom_in", "mean"), "p_value"] == mcnemar_exact(np.array([True, True, False, True]), base)
    assert np.isnan(t.loc[("1-crop", "none"), "p_value"])
    lo, hi = clopper_pearson(3, 4)
    assert (t.loc[("zoom_in", "mean"), "lo"], t.loc[("zoom_in", "mean"), "hi"]) == pytest.approx((100 * lo, 100 * hi))
    # other labels: a mapping, and a sequence in ResultSet.labels() order (F's empty set left out again)
    mapped = tta.tta_table(rs, labels={"A": 8, "B": [9], "C": (7,), "D": 8, "F": ()}).set_index(["group", "aggregation"])
    listed = tta.tta_table(rs, labels=[8, [9], (7,), 8, ()]).set_index(["group", "aggregation"])
    assert mapped["accuracy"].tolist() == listed["accuracy"].tolist()
    assert mapped.loc[("zoom_in", "max"), "accuracy"] == 50.0 and mapped.loc[("1-crop", "none"), "accuracy"] == 25.0
    with pytest.raises(ValueError, match="entries"):
        tta.tta_table(rs, labels=[1, 2])
    with pytest.raises(ValueError, match="no entry"):
        tta.tta_table(rs, labels={"A": 1})


def test_tta_changes_exact(tmp_path):
    rs = _hand_store(tmp_path)
    ch = tta.tta_changes(rs, "zoom_in", "mean").set_index("image_id")
    assert ch["change"].to_dict() == {"A": "both right", "B": "fixed", "C": "broke", "D": "fixed"}
    assert ch.loc["B", "labels"] == (2, 3) and ch.loc["B", "tta_pred"] == 3 and ch.loc["B", "base_pred"] == 9
    assert ch.loc["B", "tta_conf"] == pytest.approx(0.6) and ch.loc["B", "base_conf"] == pytest.approx(0.5)
    picked = tta.pick_changes(ch.reset_index(), n=3)
    assert list(picked["change"]) == ["fixed", "broke", "fixed"]
    assert len(tta.pick_changes(ch.reset_index(), n=10)) == 4
    with pytest.raises(ValueError, match="not stored"):
        tta.tta_changes(rs, "zoom_out", "mean")


def test_without_standard_view_and_inconsistent_store(tmp_path):
    no_std = ViewGrid(scales=(48, 96, 160), grid=3, crop=96)
    rs = _hand_store(tmp_path / "a", grid=no_std)
    t = tta.tta_table(rs)
    assert "1-crop" not in set(t["group"]) and t["delta"].isna().all() and t["p_value"].isna().all()
    with pytest.raises(ValueError, match="no 1-crop view"):
        tta.tta_changes(rs, "zoom_in", "mean")
    with pytest.raises(ValueError, match="group 'zoom_in' has rows for 4 images"):
        tta.tta_table(_hand_store(tmp_path / "b", drop_group_of="C"))


def test_table4_comparison():
    t = pd.DataFrame({"group": ["1-crop", "zoom_in", "zoom_in", "five_crop", "ten_crop"],
                      "aggregation": ["none", "mean", "max", "mean", "mean"], "accuracy": [75.0, 79.0, 74.0, 77.0, 78.0]})
    vit = {"key": {"grid": ViewGrid.paper().to_dict(), "model": {"name": "vit_b_32", "source": "torchvision",
                                                                 "weights_id": "ViT_B_32_Weights.IMAGENET1K_V1"},
                   "dataset": {"name": "imagenet-val"}}}
    cmp = tta.table4_comparison(t, vit)
    assert cmp["comparable"] and "paper Table 4" in cmp["caption"]
    ours = cmp["ours"].set_index(["group", "aggregation"])["top1"]
    assert ours[("5-crop", "mean")] == 77.0 and ours[("1-crop", "none")] == 75.0
    assert len(cmp["paper"]) == 6  # the paper's IN rows
    other = {"key": {**vit["key"], "model": {"name": "squeezenet1_0", "weights_id": "random"}}}
    cmp = tta.table4_comparison(t, other)
    assert not cmp["comparable"] and "ORIENTATION" in cmp["caption"]
    ina = {"key": {**vit["key"], "dataset": {"name": "imagenet-a"}}}
    assert set(tta.table4_comparison(t, ina)["paper"]["group"]) == {"1-crop", "zoom_in"}


# ================================================================================================
# MEMO
# ================================================================================================
def test_memo_table_runs_and_is_stored(memo_df, store_dir):
    df = memo_df
    assert list(df.columns) == table5.MEMO_COLUMNS
    assert len(df) == 2 * 2  # 2 images x 2 methods x 1 seed
    assert set(df["method"]) == {"memo_rrc", "memo_augmix"} and (df["k"] == 2).all()
    assert df["position"].tolist() == [0, 0, 1, 1] and (df["seconds"] > 0).all()
    assert df["pred"].between(0, 999).all() and df["correct"].dtype == bool
    path = df.attrs["path"]
    assert path.startswith(str(store_dir / "memo")) and path.endswith(".parquet") and not df.attrs["reused"]
    settings = json.loads((store_dir / "memo" / f"{df.attrs['settings']['key_hash']}.json").read_text())
    assert settings["key"]["memo"]["k"] == 2 and settings["key"]["memo"]["methods"] == ["rrc", "augmix"]
    assert settings["result"]["images"] == 2 and settings["key"]["model"]["weights_id"].startswith("random")
    assert not list((store_dir / "memo").glob("*.partial.parquet"))


def test_memo_table_reused_and_rekeyed(memo_df, store_dir, monkeypatch):
    calls = []
    real = memo.memo_for_model

    def counting(*a, **kw):
        calls.append(kw.get("seed"))
        return real(*a, **kw)

    monkeypatch.setattr(memo, "memo_for_model", counting)
    again = study.memo_table(MODEL, f"synthetic:{N_IMAGES}", results_dir=store_dir,
                                 **{**MEMO_KW, "seeds": [0, 0]})  # same settings once normalised
    assert again.attrs["reused"] and not calls
    pd.testing.assert_frame_equal(again, memo_df)
    kw = {**MEMO_KW, "k": 1, "seeds": (0, 1), "max_images": 1}
    other = study.memo_table(MODEL, f"synthetic:{N_IMAGES}", results_dir=store_dir, methods=("rrc",), **kw)
    assert not other.attrs["reused"] and other.attrs["path"] != memo_df.attrs["path"]
    assert len(other) == 2 and sorted(other["seed"]) == [0, 1] and set(other["method"]) == {"memo_rrc"}
    assert calls == [0, 0, 1]  # one untimed warm-up episode, then one per seed


def test_memo_table_resumes(tmp_path, monkeypatch):
    real = memo.memo_for_model
    calls = []

    def flaky(model, samples, **kw):
        calls.append(samples[0].image_id)
        if len(calls) == 4:  # warm-up, image 0, image 1: then the run dies
            raise KeyboardInterrupt
        return real(model, samples, **kw)

    kw = {**MEMO_KW, "k": 1, "max_images": 3, "save_every_s": 0.0}
    monkeypatch.setattr(memo, "memo_for_model", flaky)
    with pytest.raises(KeyboardInterrupt):
        study.memo_table(MODEL, "synthetic:3", results_dir=tmp_path, methods=("rrc",), **kw)
    assert len(list((tmp_path / "memo").glob("*.partial.parquet"))) == 1
    monkeypatch.setattr(memo, "memo_for_model", real)
    calls.clear()
    monkeypatch.setattr(memo, "memo_for_model", lambda m, s, **k: (calls.append(s[0].image_id), real(m, s, **k))[1])
    df = study.memo_table(MODEL, "synthetic:3", results_dir=tmp_path, methods=("rrc",), **kw)
    assert calls == ["synthetic/000002", "synthetic/000002"]  # warm-up + the one image not done
    assert df["image_id"].tolist() == [f"synthetic/00000{i}" for i in range(3)]
    assert not list((tmp_path / "memo").glob("*.partial.parquet"))


def test_memo_table_rejects_bad_settings(tmp_path):
    for bad in ({"methods": ["zoom"]}, {"k": 0}, {"seeds": []}, {"max_images": 0}, {"interpolation": "nearest"}):
        with pytest.raises(ValueError):
            study.memo_table(MODEL, "synthetic:2", results_dir=tmp_path, **{**MEMO_KW, **bad})
    assert not (tmp_path / "memo").exists()


def test_memo_summary_exact():
    rows = []
    # 3 images; baseline right on image 0 only; RRC: seed 0 right on 0, 1; seed 1 right on 0, 1, 2; AugMix: 0 only
    for i, (rrc0, rrc1, aug) in enumerate([(True, True, True), (True, True, False), (False, True, False)]):
        for seed, ok in ((0, rrc0), (1, rrc1)):
            rows.append((f"im{i}", i, "memo_rrc", seed, 4, 1, 2, ok, i == 0, 0.5 + i))
        rows.append((f"im{i}", i, "memo_augmix", 0, 4, 1, 2, aug, i == 0, 1.0))
        rows.append((f"im{i}", i, "memo_augmix", 1, 4, 1, 2, aug, i == 0, 3.0))
    df = pd.DataFrame(rows, columns=table5.MEMO_COLUMNS)
    s = table5.memo_summary(df).set_index("key")
    assert list(s["method"]) == ["baseline", "MEMO + AugMix", "MEMO + RRC"]
    b = s.loc["baseline"]
    lo, hi = clopper_pearson(1, 3)
    assert b["accuracy"] == pytest.approx(100 / 3) and (b["lo"], b["hi"]) == pytest.approx((100 * lo, 100 * hi))
    r = s.loc["memo_rrc"]
    assert r["accuracy"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert r["spread"] == pytest.approx(np.std([200 / 3, 100.0], ddof=1))
    assert (r["acc_min"], r["acc_max"]) == pytest.approx((200 / 3, 100.0))
    assert r["seconds_per_image"] == pytest.approx(1.5) and r["seeds"] == 2 and r["n"] == 3
    assert r["delta"] == pytest.approx(r["accuracy"] - 100 / 3)
    assert r["p_value"] == mcnemar_exact(np.array([True, True, False]), np.array([True, False, False]))
    assert r["lo"] <= r["accuracy"] <= r["hi"]
    a = s.loc["memo_augmix"]
    assert a["accuracy"] == pytest.approx(100 / 3) and a["spread"] == 0.0 and a["seconds_per_image"] == 2.0
    one = table5.memo_summary(df[df["seed"] == 0]).set_index("key")
    assert np.isnan(one.loc["memo_rrc", "spread"])
    lo, hi = clopper_pearson(2, 3)
    assert (one.loc["memo_rrc", "lo"], one.loc["memo_rrc", "hi"]) == pytest.approx((100 * lo, 100 * hi))
    with pytest.raises(ValueError, match="missing"):
        table5.memo_summary(df.drop(columns=["seconds"]))


def test_table5_and_speed_comparison(memo_df):
    s = table5.memo_summary(memo_df)
    cmp = table5.table5_comparison(s, memo_df.attrs["settings"])
    assert not cmp["comparable"] and "ORIENTATION" in cmp["caption"]
    assert set(cmp["paper"]["method"]) == {"baseline", "MEMO + AugMix", "MEMO + RRC"}
    resnet = json.loads(json.dumps(memo_df.attrs["settings"]))
    resnet["key"]["model"].update(name="resnet50", source="torchvision", weights_id="ResNet50_Weights.IMAGENET1K_V1")
    resnet["key"]["dataset"]["name"] = "imagenet-a"
    resnet["key"]["memo"].update(crop=224, k=16)
    cmp = table5.table5_comparison(s, resnet)
    assert cmp["comparable"]
    assert cmp["paper"].set_index("method")["top1"]["MEMO + RRC"] == 1.31
    cmp = table5.table5_comparison(s, resnet, paper_model="MoEx+CutMix")
    assert cmp["paper"].set_index("method")["top1"]["MEMO + RRC"] == 13.61
    speed = table5.speed_comparison(s, memo_df.attrs["settings"])
    assert set(speed["ours"]["method"]) == set(paper.MEMO_SPEED["method"])
    assert "K = 2" in speed["caption"]


def test_memo_for_model_uses_the_label_space():
    model = study.open_model(MODEL, pretrained=False, device="cpu", label_space="imagenet-a")
    allowed = set(model.label_space.indices.tolist())
    sample = study.open_data("synthetic:1")[0]
    df = memo.memo_for_model(model, [sample], memo.MemoConfig(k=1, resize=73, crop=64), views=("rrc",))
    assert df.loc[0, "pred"] in allowed and df.loc[0, "baseline_pred"] in allowed
    assert study.dataset_label_space("imagenet-a") == "imagenet-a"
    assert study.dataset_label_space("synthetic:4") == "imagenet1k"


# ================================================================================================
# The notebook, headless
# ================================================================================================
def test_notebook_runs_headless(swept, memo_df, store_dir, tmp_path):
    out = tmp_path / "report"
    # the notebook resolves its profile itself (a known one); every value given here overrides the profile's
    params = {"profile": "offline", "model": MODEL, "pretrained": False, "dataset": f"synthetic:{N_IMAGES}",
              "scales": list(SCALES), "crop": 96, "memo_k": 2, "memo_seeds": [0], "memo_max_images": 2,
              "memo_lr": 0.00025,  # the memo_df fixture's (MEMO's) step, not the offline profile's
              "results_dir": str(store_dir), "report_dir": str(out), "device": "cpu"}
    html = reports.run_notebook(REPO / "notebooks" / "03_test_time_augmentation.ipynb", out, params, cwd=tmp_path,
                                timeout=600)
    text = html.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64") >= 3  # Table 4 bars, the gallery, Table 5 bars
    assert "This report was produced by profile offline" in text
    assert "MEMO + RRC" in text and "FOR ORIENTATION ONLY" in text
    prov = reports.read_provenance(out, "03_test_time_augmentation")
    assert prov["profile"] == "offline" and prov["weights_id"].startswith("random") and prov["n_images"] == N_IMAGES
    assert prov["memo_file"] == memo_df.attrs["path"] and prov["memo_k"] == 2
    assert set(prov["table5"]) == {"baseline", "MEMO + AugMix", "MEMO + RRC"}
    assert len(list(store_dir.glob("*/settings.json"))) == 1  # the notebook reused the sweep above


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(REPO / "notebooks" / "03_test_time_augmentation.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("profile", "model", "checkpoint", "pretrained", "dataset", "root", "scales", "grid", "crop",
                 "max_images", "results_dir", "report_dir", "memo_k", "memo_seeds", "memo_max_images"):
        assert f"\n{name} = " in "\n" + params[0].source
    assert code[-1].source.startswith("steps.record(p, ")  # findings and provenance, written by steps


def test_memo_key_leaves_out_the_device_and_the_data_location():
    """A MEMO table computed on another GPU or from a copy of the data at another path is the same table;
    the config's hyper-parameters are in its key."""
    class Model:
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

        def __init__(self, device):
            self.device = device

        def provenance(self):
            return {"architecture": "torchvision:resnet50", "weights_id": "w", "device": self.device,
                    "weights_source": "/cache"}

    class Data:
        def __init__(self, where):
            self.where = where

        def provenance(self):
            return {"name": "imgs", "fingerprint": "f0", "location": self.where}

    def settings(device, where, config=memo.MemoConfig(k=2)):
        return table5.memo_settings(Model(device), Data(where), config, methods=("rrc",), seeds=(0,), max_images=None)

    a, b = settings("cpu", "/a"), settings("cuda:0", "/b")
    assert a["key_hash"] == b["key_hash"] and b["provenance"] == {"model": {"device": "cuda:0", "weights_source": "/cache"},
                                                                   "dataset": {"location": "/b"}}
    assert settings("cpu", "/a", memo.MemoConfig(k=3))["key_hash"] != a["key_hash"]
    assert a["key"]["memo"]["optimizer"] == "sgd" and "optimizer_kwargs" not in a["key"]["memo"]
    assert "cuda:0" in table5.memo_description({**b, "key": {**b["key"], "dataset": {"name": "imgs"}}})


def test_memo_config_checks_once_and_picks_its_keywords():
    kw = {"k": 4, "lr": 0.01, "methods": ("rrc",)}
    config = memo.MemoConfig.pick(kw)
    assert config == memo.MemoConfig(k=4, lr=0.01) and kw == {"methods": ("rrc",)}
    assert config.prior == 16 / 17 and memo.MemoConfig(prior_n=-1).prior == 1.0
    for bad in ({"k": 0}, {"lr": 0}, {"steps": 0}, {"prior_n": 1.5}, {"interpolation": "nearest"}, {"optimizer": "lbfgs"}):
        with pytest.raises(ValueError):
            memo.MemoConfig(**bad)
    with pytest.raises(TypeError):
        table5.table_arguments(nonsense=1)
