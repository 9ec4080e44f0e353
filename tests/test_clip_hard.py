"""CLIP zero-shot classifier (zoomstudy.models.clip) and ImageNet-Hard evaluation (zoomstudy.analysis.hard).

Offline: the CLIP towers are tiny open_clip configurations with random weights, and ImageNet-Hard is a
small parquet in the hub's schema written here, read through zoomstudy.data.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats as st

from factories import write_hard_parquet
from zoomstudy.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from zoomstudy.models import clip
from zoomstudy.analysis import hard
from zoomstudy.data import Sample

try:
    import open_clip
except ImportError:  # the optional "clip" extra: only the CLIP tests need it
    open_clip = None
needs_clip = pytest.mark.skipif(open_clip is None, reason="open_clip_torch (extra 'clip') not installed")

TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer) of a 1-layer CLIP with random weights (seeded)."""
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=TINY_CFG["embed_dim"],
        vision_cfg=open_clip.CLIPVisionCfg(**TINY_CFG["vision_cfg"]),
        text_cfg=open_clip.CLIPTextCfg(**TINY_CFG["text_cfg"]),
    ).eval()
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=TINY_CFG["text_cfg"]["context_length"])
    return model, tokenizer


# ================================================================================================
# Class names
# ================================================================================================
@needs_clip
def test_classnames_are_unique_and_only_duplicates_changed():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    ours = clip.imagenet_classnames()
    theirs = list(IMAGENET_CLASSNAMES)
    assert len(ours) == 1000
    assert len({n.casefold() for n in ours}) == 1000
    dups = clip.find_duplicates(theirs)
    dup_idx = {i for idx in dups.values() for i in idx}
    changed = {i for i in range(1000) if ours[i] != theirs[i]}
    assert changed <= dup_idx
    # each group of k identical names keeps one and renames k - 1
    assert len(changed) == sum(len(idx) - 1 for idx in dups.values())
    assert clip.classname_changes() == {744: ("missile", "projectile"), 836: ("sunglasses", "sunglass")}
    assert ours[657] == "missile" and ours[837] == "sunglasses"


@needs_clip
def test_templates_are_the_80_openai_ones():
    t = clip.openai_templates()
    assert len(t) == 80 == len(set(t))
    assert all(s.count("{}") == 1 for s in t)
    assert "a photo of a {}." in t


def test_deduplicate_rules():
    names = ["crane", "dog", "Crane", "cat", "crane"]
    lemmas = [["crane", "hoist"], ["dog"], ["crane"], ["cat"], ["cat", "crane", "derrick"]]
    # index 0 and 2 both have first lemma "crane": no single owner -> lowest index keeps it;
    # index 2 has no free lemma -> error.
    with pytest.raises(ValueError, match="class 2"):
        clip.deduplicate_classnames(names, lemmas)
    lemmas[0] = ["hoist", "crane"]  # now index 2 is the single owner
    out, changes = clip.deduplicate_classnames(names, lemmas)
    assert out == ["hoist", "dog", "Crane", "cat", "derrick"]  # 4 skips the taken "cat" and "crane"
    assert changes == {0: ("crane", "hoist"), 4: ("crane", "derrick")}
    with pytest.raises(ValueError, match="lemma lists"):
        clip.deduplicate_classnames(names, lemmas[:2])


# ================================================================================================
# Text embeddings
# ================================================================================================
@needs_clip
def test_template_averaging_matches_direct_computation(tiny):
    model, tok = tiny
    names = ["tench", "goldfish", "great white shark", "projectile", "sunglass"]
    templates = ["a photo of a {}.", "a bad photo of the {}.", "itap of a {}."]
    # 15 prompts in batches of 4: batches straddle class boundaries
    emb = clip.encode_class_embeddings(model, tok, names, templates, batch_size=4)  # [5, D]
    assert emb.shape == (5, TINY_CFG["embed_dim"]) and emb.dtype == torch.float32
    with torch.no_grad():
        for c, name in enumerate(names):
            per_t = torch.stack([
                F.normalize(model.encode_text(tok([t.format(name)]))[0], dim=-1) for t in templates
            ])  # [T, D]
            expected = per_t.mean(0) / per_t.mean(0).norm()
            torch.testing.assert_close(emb[c], expected, atol=1e-5, rtol=1e-5)
            # the average of normalised embeddings differs from normalising an unnormalised average
    assert torch.allclose(emb.norm(dim=-1), torch.ones(5), atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        clip.encode_class_embeddings(model, tok, names, templates, batch_size=0)
    with pytest.raises(ValueError, match="exactly one"):
        clip.encode_class_embeddings(model, tok, names, ["no placeholder"])


@needs_clip
def test_cache_second_call_reads_file(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    names, templates = ["tench", "goldfish", "projectile"], ["a photo of a {}.", "art of the {}."]
    emb, path = clip.cached_class_embeddings(model, tok, "tiny", "seed0", names, templates, tmp_path)
    assert path.exists() and path.parent == tmp_path and path.name.startswith("tiny__seed0__")

    def boom(*a, **k):
        raise AssertionError("encoder called although the cache holds these embeddings")

    monkeypatch.setattr(clip, "encode_class_embeddings", boom)
    again, path2 = clip.cached_class_embeddings(model, tok, "tiny", "seed0", names, templates, tmp_path)
    assert path2 == path
    torch.testing.assert_close(again, emb)
    # another template set, pretrained tag or name list is another key: the encoder must run
    for args in [(names, templates[:1], "seed0"), (names[::-1], templates, "seed0"), (names, templates, "seed1")]:
        with pytest.raises(AssertionError, match="encoder called"):
            clip.cached_class_embeddings(model, tok, "tiny", args[2], args[0], args[1], tmp_path)
    # a classifier built through the cache does not encode either
    zs = clip.ZeroShotClassifier.from_open_clip(model, tok, "tiny", "seed0", names, templates, cache_dir=tmp_path)
    torch.testing.assert_close(zs.class_embeddings, emb)
    assert zs.provenance["text_cache"] == str(path)


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOOMSTUDY_CACHE", raising=False)
    assert clip.default_cache_dir().parts[-3:] == (".cache", "zoomstudy", "clip")
    monkeypatch.setenv("ZOOMSTUDY_CACHE", str(tmp_path))
    assert clip.default_cache_dir() == tmp_path / "clip"
    p = clip.cache_path("ViT-L/14", "openai", ["a"], ["{}"])
    assert p.parent == tmp_path / "clip" and "/" not in p.name


@needs_clip
def test_logits_shape_and_scale(tiny, tmp_path):
    model, tok = tiny
    zs = clip.ZeroShotClassifier.from_open_clip(
        model, tok, "tiny", None, templates=["a photo of a {}."], cache_dir=tmp_path
    )
    assert not list(tmp_path.iterdir())  # random weights are never cached
    assert zs.class_embeddings.shape == (1000, TINY_CFG["embed_dim"])
    assert zs.provenance["classname_changes"] == clip.classname_changes()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = zs(x)  # [3, 1000]
        img = F.normalize(model.encode_image(x), dim=-1)  # [3, D]
    assert logits.shape == (3, 1000)
    torch.testing.assert_close(logits, 100.0 * img @ zs.class_embeddings.T, atol=1e-4, rtol=1e-5)
    assert logits.abs().max() <= 100.0 + 1e-4
    # the scale is exactly 100 x cosine: the best class's logit is 100 x its cosine
    cos = F.cosine_similarity(img[:, None, :], zs.class_embeddings[None], dim=-1)  # [3, 1000]
    torch.testing.assert_close(logits.max(1).values, 100.0 * cos.max(1).values, atol=1e-4, rtol=1e-5)


@needs_clip
def test_classifier_rejects_bad_inputs(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="unit-norm"):
        clip.ZeroShotClassifier(model, torch.ones(4, 16))
    with pytest.raises(ValueError, match=r"\[C, D\]"):
        clip.ZeroShotClassifier(model, torch.ones(16))
    with pytest.raises(ValueError, match="duplicate"):
        clip.ZeroShotClassifier.from_open_clip(model, tok, "tiny", None, ["a", "b", "A"], ["{}"])


@needs_clip
def test_load_clip_from_registered_config(tmp_path):
    cfg_file = tmp_path / "zoomstudy-tiny-test.json"
    cfg_file.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg_file)
    torch.manual_seed(0)
    module, info = clip.load_clip(
        "zoomstudy-tiny-test", pretrained=None, device="cpu", cache_dir=tmp_path / "c", templates=["a {}."]
    )
    assert info["input_size"] == (3, 32, 32)
    assert info["interpolation"] == "bicubic" and info["crop_pct"] == 1.0
    assert info["mean"] == pytest.approx(OPENAI_CLIP_MEAN) and info["std"] == pytest.approx(OPENAI_CLIP_STD)
    assert info["provenance"]["model_name"] == "zoomstudy-tiny-test"
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    with torch.no_grad():
        assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 1000)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        clip.load_clip("no-such-model", pretrained=None)
    # CLIP's own preprocessing through hard.plain_transform: Resize(32) + CenterCrop(32)
    t = hard.plain_transform(info)
    assert t(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


# ================================================================================================
# ImageNet-Hard scoring
# ================================================================================================
def test_multilabel_correct():
    labels = [[1, 2, 3], [5], [7, 8], [999]]
    pred = np.array([3, 4, 7, -1])
    np.testing.assert_array_equal(hard.multilabel_correct(pred, labels), [True, False, True, False])
    np.testing.assert_array_equal(hard.padded_label_lists(labels)[1], [5, -1, -1])
    with pytest.raises(ValueError, match="row 2 is empty"):
        hard.multilabel_correct(np.array([0, 0, 0, 0]), [[1], [2], [], []])
    with pytest.raises(ValueError, match="row 1 has labels outside"):
        hard.multilabel_correct(np.array([0, 0]), [[1], [1000]])
    with pytest.raises(ValueError, match="row 0 has labels outside"):
        hard.multilabel_correct(np.array([0]), [[-1]])
    with pytest.raises(ValueError, match="2 images but labels has 1"):
        hard.multilabel_correct(np.array([0, 1]), [[1]])
    with pytest.raises(ValueError, match="0..999"):
        hard.multilabel_correct(np.array([1000]), [[1]])
    with pytest.raises(ValueError, match="integer"):
        hard.multilabel_correct(np.array([0.5]), [[1]])


def _clopper_pearson_pct(k, n, alpha=0.05):
    lo = 0.0 if k == 0 else st.beta.ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else st.beta.ppf(1 - alpha / 2, k + 1, n - k)
    return 100 * lo, 100 * hi


def test_per_origin_accuracy():
    df = pd.DataFrame({
        "origin": ["imagenet"] * 10 + ["objectnet"] * 4 + ["imagenet-a"] * 3,
        "correct": [True] * 3 + [False] * 7 + [False] * 4 + [True] * 3,
    })
    out = hard.per_origin_accuracy(df).set_index("origin")
    assert list(out.index) == ["imagenet", "imagenet-a", "objectnet", "all"]
    expected = {"imagenet": (3, 10), "imagenet-a": (3, 3), "objectnet": (0, 4), "all": (6, 17)}
    for origin, (k, n) in expected.items():
        row = out.loc[origin]
        assert row["n"] == n and row["n_correct"] == k
        assert row["accuracy"] == pytest.approx(100 * k / n)
        lo, hi = _clopper_pearson_pct(k, n)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert out.loc["objectnet", "ci_low"] == 0 and out.loc["imagenet-a", "ci_high"] == 100
    with pytest.raises(ValueError, match="columns"):
        hard.per_origin_accuracy(df[["origin"]])
    with pytest.raises(ValueError, match="bool"):
        hard.per_origin_accuracy(df.assign(correct=df["correct"].astype(int)))


def test_leaderboard_beside_paper():
    rng = np.random.default_rng(0)
    res = {
        "resnet50": pd.DataFrame({"correct": rng.random(200) < 0.15}),
        "tf_efficientnet_l2.ns_jft_in1k": pd.DataFrame({"correct": rng.random(50) < 0.4}),
        "tf_efficientnet_l2.ns_jft_in1k_475": pd.DataFrame({"correct": np.ones(10, bool)}),
        "mine": pd.DataFrame({"correct": np.zeros(10_980, bool)}),
    }
    lb = hard.leaderboard(res, paper_names={"mine": "VGG-19"}).set_index("model")
    assert lb.loc["resnet50", "paper_model"] == "ResNet-50" and lb.loc["resnet50", "paper_top1"] == 14.74
    assert lb.loc["tf_efficientnet_l2.ns_jft_in1k", "paper_top1"] == 39.00
    assert pd.isna(lb.loc["tf_efficientnet_l2.ns_jft_in1k_475", "paper_model"])  # 475 px is not the paper's model
    assert math.isnan(lb.loc["tf_efficientnet_l2.ns_jft_in1k_475", "paper_top1"])
    assert lb.loc["mine", "paper_top1"] == 11.99 and lb.loc["mine", "full_set"]
    assert not lb.loc["mine", "paper_in_ci"]  # 0% correct: 11.99 is far outside
    acc = 100 * res["resnet50"]["correct"].mean()
    assert lb.loc["resnet50", "accuracy"] == pytest.approx(acc)
    assert lb.loc["resnet50", "delta"] == pytest.approx(acc - 14.74)
    assert hard.paper_model_name("ViT-L-14") == "CLIP ViT-L/14"
    assert hard.paper_model_name("ViT-B/32") == "ViT-B/32" and hard.paper_model_name("vit_b_32") == "ViT-B/32"
    with pytest.raises(ValueError, match="does not report"):
        hard.leaderboard(res, paper_names={"mine": "VGG-16"})


# ================================================================================================
# Plain evaluation on a local parquet with the hub's schema
# ================================================================================================
def _hub_parquet(path):
    """5 rows: solid-colour images of mixed modes and sizes (red value = the class the fake model
    predicts), one broken image. Returns the expected (pred, correct) per row."""
    images = [
        Image.new("RGB", (300, 200), (10, 0, 0)),
        Image.new("L", (120, 260), 20),
        Image.new("RGBA", (224, 224), (30, 5, 5, 0)),
        None,  # broken bytes
        Image.new("P", (500, 333), 0),  # palette index 0 = black
    ]
    labels = [[10, 11], [7], [1, 2, 3], [4], [0]]
    write_hard_parquet(path, images, labels, origins=["imagenet", "objectnet", "imagenet", "imagenet-r", "objectnet"],
                       english=[["x"] * len(lab) for lab in labels])
    return [10, 20, 30, -1, 0], [True, False, False, False, True]


class RedClassifier:
    """Fake model: logits one-hot at the un-normalised red value (0..255) of the centre pixel."""

    def __init__(self, size):
        self.size, self.calls = size, 0

    def __call__(self, x):
        assert x.shape[1:] == (3, self.size, self.size)
        self.calls += 1
        red = x[:, 0, self.size // 2, self.size // 2] * hard.IMAGENET_STD[0] + hard.IMAGENET_MEAN[0]  # [B]
        return F.one_hot((red * 255).round().long(), 1000).float() * 10  # [B, 1000]


def test_evaluate_plain_on_hub_parquet(tmp_path):
    from zoomstudy import data

    path = tmp_path / "validation-00000-of-00001.parquet"
    pred, correct = _hub_parquet(path)
    hf_cache = str(tmp_path / "hf")
    # the row-count guard of data.py: 5 rows are not the final revision's 10,980
    with pytest.raises(ValueError, match="5 rows, expected 10980"):
        data.open_dataset("imagenet-hard", root=path, cache_dir=hf_cache)
    # and a hub dataset needs a pinned revision (raised before any download)
    with pytest.raises(ValueError, match="pin a revision"):
        data.HFSource("taesiri/imagenet-hard", split="validation")
    src = data.open_dataset("imagenet-hard", root=path, expected_rows=5, cache_dir=hf_cache)
    samples = list(src)
    assert samples[3].image is None and samples[3].error
    assert all(s.image.mode == "RGB" for s in samples if s.image is not None)
    assert samples[1].meta["origin"] == "objectnet"

    model = RedClassifier(224)
    df = hard.evaluate_plain(model, src, batch_size=3)  # streamed straight from the source
    assert model.calls == 2  # 4 decodable images in batches of 3
    assert list(df.columns) == ["image_id", "origin", "labels", "pred", "confidence", "correct", "error"]
    assert df["pred"].tolist() == pred
    assert df["correct"].tolist() == correct
    assert df["image_id"].tolist() == [s.image_id for s in samples]
    assert df["labels"].tolist()[2] == [1, 2, 3]
    assert df["error"].notna().tolist() == [False, False, False, True, False]
    assert np.isnan(df["confidence"][3]) and (df["confidence"].drop(3) > 0.5).all()

    per = hard.per_origin_accuracy(df).set_index("origin")
    assert per.loc["objectnet", "n_correct"] == 1 and per.loc["all", "n"] == 5

    # the model's own data config (e.g. EfficientNet-L2 at 800 px, here 64 px) replaces 256/224
    df64 = hard.evaluate_plain(RedClassifier(64), samples, {"input_size": (3, 64, 64), "crop_pct": 0.96,
                                                           "interpolation": "bicubic"})
    assert df64["pred"].tolist() == pred


def test_evaluate_plain_validates_before_compute():
    def never(x):
        raise AssertionError("model called")

    img = Image.new("RGB", (8, 8))
    bad = [Sample("a", img, (1,), meta={"origin": "o"}), Sample("b", img, (), meta={"origin": "o"})]
    with pytest.raises(ValueError, match="row 1 is empty"):
        hard.evaluate_plain(never, bad, batch_size=1)
    with pytest.raises(ValueError, match="no origin"):
        hard.evaluate_plain(never, [Sample("a", img, (1,))])
    with pytest.raises(ValueError, match="batch_size"):
        hard.evaluate_plain(never, [], batch_size=0)
    with pytest.raises(ValueError, match=r"logits \[B=1, 1000\]"):
        hard.evaluate_plain(lambda x: torch.zeros(len(x), 200), [Sample("a", img, (1,), meta={"origin": "o"})])


def test_plain_transform_sizes():
    t = hard.plain_transform()
    resize = t.transforms[0].keywords  # views.resize_center_crop(resize=..., crop=...)
    assert resize["resize"] == 256 and resize["crop"] == (224, 224)
    assert t(Image.new("RGB", (300, 500))).shape == (3, 224, 224)
    l2 = hard.plain_transform({"input_size": (3, 800, 800), "crop_pct": 0.96, "interpolation": "bicubic"})
    assert l2.transforms[0].keywords["resize"] == 833
    with pytest.raises(ValueError, match="crop_pct"):
        hard.plain_transform({"crop_pct": 1.5})
    with pytest.raises(ValueError, match="interpolation"):
        hard.plain_transform({"interpolation": "cubic-ish"})


# ================================================================================================
# CLIP through load_model / the sweep; the ImageNet-Hard pin
# ================================================================================================
@pytest.fixture()
def tiny_clip_arch(tmp_path, monkeypatch):
    """A registered tiny open_clip config (random weights), 1 prompt template, no network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOOMSTUDY_CLIP_TEMPLATES", "1")
    cfg_file = tmp_path / "zoomstudy-tiny-sweep.json"
    cfg_file.write_text(json.dumps({**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "image_size": 48}}))
    open_clip.add_model_config(cfg_file)
    return "zoomstudy-tiny-sweep"


@needs_clip
def test_clip_source_in_load_model_and_sweep(tiny_clip_arch, tmp_path, monkeypatch):
    from zoomstudy.models.loading import load_model
    from zoomstudy.study import ensure_results

    m = load_model(f"clip:{tiny_clip_arch}", pretrained=False, device="cpu")
    assert m.source == "clip" and m.architecture == f"clip:{tiny_clip_arch}"
    cfg = m.data_config()  # CLIP's own preprocessing travels with the model (used by ImageNet-Hard)
    assert cfg["mean"] == pytest.approx(OPENAI_CLIP_MEAN) and cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 1.0
    assert m.logits(torch.zeros(2, 3, 48, 48)).shape == (2, 1000)
    rs = ensure_results(f"clip:{tiny_clip_arch}", "synthetic:2", scales=[48, 64], crop=48, results_dir=tmp_path / "r",
                        pretrained=False, device="cpu", batch_size=64, workers=0, progress=False)
    render = rs.settings["key"]["render"]
    assert render["normalization"] == "imagenet"  # SPEC 1.4: the authors fed CLIP ImageNet-normalised views
    assert render["mean"] == pytest.approx(list(hard.IMAGENET_MEAN))
    assert len(rs.views()) == 2 * rs.grid.n_views
    # another number of templates is another classifier: another result set, never a stale one
    monkeypatch.setenv("ZOOMSTUDY_CLIP_TEMPLATES", "2")
    rs2 = ensure_results(f"clip:{tiny_clip_arch}", "synthetic:2", scales=[48, 64], crop=48, results_dir=tmp_path / "r",
                         pretrained=False, device="cpu", batch_size=64, workers=0, progress=False)
    assert rs2.path != rs.path


def test_imagenet_hard_pin(tmp_path, monkeypatch):
    from zoomstudy import data
    from zoomstudy.data.registry import IMAGENET_HARD_PIN, is_commit_sha
    from zoomstudy.study import ensure_results

    monkeypatch.delenv("ZOOMSTUDY_IMAGENET_HARD", raising=False)
    monkeypatch.chdir(tmp_path)  # no data/imagenet-hard here
    assert not is_commit_sha("main") and is_commit_sha("0" * 40)
    assert IMAGENET_HARD_PIN.rows == 10980 and IMAGENET_HARD_PIN.pinned  # the hub paths: tests/test_hub.py
    # another commit needs its row count (raised before any hub request)
    with pytest.raises(ValueError, match="expected_rows"):
        data.open_dataset("imagenet-hard", revision="a" * 40)
    monkeypatch.setenv("ZOOMSTUDY_IMAGENET_HARD_REVISION", "b" * 40)  # the environment's pin is checked the same way
    with pytest.raises(ValueError, match="row count is unknown"):
        data.open_dataset("imagenet-hard")
    monkeypatch.delenv("ZOOMSTUDY_IMAGENET_HARD_REVISION")
    path = tmp_path / "validation-00000-of-00001.parquet"
    _hub_parquet(path)
    # the wrong row count stops before any model is built (resnet50 pretrained would need a download)
    with pytest.raises(ValueError) as e:
        ensure_results("resnet50", "imagenet-hard", root=str(path), results_dir=tmp_path / "r", device="cpu",
                       data_kw={"cache_dir": str(tmp_path / "hf")})
    msg = str(e.value)
    assert "5 rows, expected 10980" in msg and "23,845, 13,630, 11,350, 10,980" in msg
    assert "revision=" in msg and "expected_rows=" in msg and "\n" not in msg
    assert not (tmp_path / "r").exists()
