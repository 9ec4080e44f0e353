"""The procedural world and its trained models: determinism, geometry, cache, and the controlled
experiment's direction on a CI-sized run (centre-trained models are centre-biased and scale-narrow;
position / scale augmentation flattens both)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from factories import one_thread
from zoomstudy.experiment import training as T
from zoomstudy.experiment.runs import Training
from zoomstudy.data import Sample
from zoomstudy.data.labels import class_name
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import ViewGrid
from zoomstudy.experiment.world import (
    CLASS_NAMES, REGIMES, WorldSource, WorldSpec, _rrc_windows, render_batch, render_object_image,
    render_scenes, sample_scenes,
)

SPEC = WorldSpec()


def _pixels(source) -> list[np.ndarray]:
    return [np.asarray(s.image) for s in source]


# ================================================================================================
# World
# ================================================================================================
def test_spec_validates_and_round_trips():
    d = SPEC.to_dict()
    assert WorldSpec.from_dict(json.loads(json.dumps(d))) == SPEC
    assert SPEC.standard_scale == ViewGrid.scaled(SPEC.image_size).standard_scale == 64
    for bad in ({"regime": "random"}, {"n_classes": 1}, {"n_classes": 99}, {"source_size": 60},
                {"scale_range": (2.0, 1.0)}, {"rrc_scale": (0.5, 1.5)}, {"clutter": -1}):
        with pytest.raises(ValueError):
            WorldSpec(**bad)


def test_source_is_deterministic_per_seed():
    a, b = WorldSource(SPEC, 5, "test", seed=3), WorldSource(SPEC, 5, "test", seed=3)
    pa, pb = _pixels(a), _pixels(b)
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb))
    assert [s.labels for s in a] == [s.labels for s in b] == a.labels
    other = _pixels(WorldSource(SPEC, 5, "test", seed=4))
    assert not any(np.array_equal(x, y) for x, y in zip(pa, other))
    train = list(WorldSource(SPEC, 5, "train", seed=3))  # another split is another stream
    assert [s.meta["rotation_deg"] for s in train] != [s.meta["rotation_deg"] for s in a]


def test_samples_ids_shapes_and_provenance():
    src = WorldSource(SPEC, 4, "test", seed=0)
    samples = list(src)
    assert len(src) == 4 and src.name == "world-test"
    assert [s.image_id for s in samples] == [f"world-test-{i:06d}" for i in range(4)]
    for s in samples:
        assert isinstance(s, Sample) and s.image.mode == "RGB" and s.image.size == (72, 72)
        assert len(s.labels) == 1 and 0 <= s.labels[0] < SPEC.n_classes
        assert s.meta["class_name"] == CLASS_NAMES[s.labels[0]]
    prov = json.loads(json.dumps(src.provenance()))
    assert prov["spec"] == SPEC.to_dict() and prov["split"] == "test" and prov["n"] == 4
    train = list(WorldSource(SPEC.replace(regime="rrc"), 2, "train"))
    assert train[0].image.size == (56, 56) and train[0].image_id == "world-train-000000"


def test_shard_holds_the_same_pixels():
    full = WorldSource(SPEC, 8, "test", seed=1)
    shard = full.shard(1, 3)
    assert len(shard) == 3 and [s.image_id for s in shard] == [f"world-test-{i:06d}" for i in (1, 4, 7)]
    ref = _pixels(full)
    assert all(np.array_equal(x, ref[i]) for x, i in zip(_pixels(shard), (1, 4, 7)))
    assert len(full.shard(0, 2).shard(1, 2)) == 2  # shards of shards keep positions
    with pytest.raises(ValueError):
        full.shard(3, 3)


def test_test_split_is_the_same_for_every_regime():
    ref = _pixels(WorldSource(SPEC, 3, "test", seed=5))
    for regime in REGIMES[1:]:
        other = _pixels(WorldSource(SPEC.replace(regime=regime), 3, "test", seed=5))
        assert all(np.array_equal(x, y) for x, y in zip(ref, other))


@pytest.mark.parametrize("class_id", range(len(CLASS_NAMES)))
def test_rendered_object_has_the_requested_box(class_id):
    spec = WorldSpec(n_classes=len(CLASS_NAMES))
    rng = np.random.default_rng(class_id)
    cx, cy, size = 40.0 + class_id, 33.0, 30.0
    image, mask = render_object_image(class_id, center_xy=(cx, cy), size=size, rng=rng, image_size=(90, 70),
                                      spec=spec, rotation=0.0, return_mask=True)
    assert image.size == (90, 70) and mask.shape == (70, 90)
    ys, xs = np.nonzero(mask > 0.02)  # any coverage: thin tips (crescent horns) are less than half-covered
    # the class shape's bounding box is the requested box (to a pixel)
    assert abs(xs.min() - (cx - size / 2)) <= 1 and abs(xs.max() + 1 - (cx + size / 2)) <= 1
    assert abs(ys.min() - (cy - size / 2)) <= 1 and abs(ys.max() + 1 - (cy + size / 2)) <= 1


def test_rendered_object_is_the_requested_class():
    """Coverage areas are the classes' own: a disc covers pi/4 of its box, a square all of it, a ring
    pi/4 (1 - 0.55^2), and two different classes never draw the same mask."""
    spec = WorldSpec(n_classes=len(CLASS_NAMES))
    masks = {}
    for c in range(len(CLASS_NAMES)):
        _, m = render_object_image(c, center_xy=(36, 36), size=40, rng=np.random.default_rng(0), spec=spec,
                                   rotation=0.0, return_mask=True)
        masks[CLASS_NAMES[c]] = m
    area = {k: m.sum() / 40**2 for k, m in masks.items()}
    assert area["disc"] == pytest.approx(math.pi / 4, abs=0.02)
    assert area["square"] == pytest.approx(1.0, abs=0.02)
    assert area["ring"] == pytest.approx(math.pi / 4 * (1 - 0.55**2), abs=0.03)
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(masks[a] - masks[b]).mean() > 0.02, (a, b)


def test_rotated_object_stays_in_its_rotated_box():
    rng = np.random.default_rng(0)
    for deg in (-15.0, 10.0, 45.0):
        _, mask = render_object_image(3, center_xy=(36, 36), size=30, rng=rng, rotation=deg, return_mask=True)
        ys, xs = np.nonzero(mask > 0.02)
        half = 15 * (abs(math.cos(math.radians(deg))) + abs(math.sin(math.radians(deg))))  # the frame is symmetric
        assert abs(xs.min() - (36 - half)) <= 1 and abs(xs.max() + 1 - (36 + half)) <= 1


def test_meta_geometry_matches_the_pixels():
    # test images: object centred at the typical size; its standard view shows it as the centered regime does
    for s in WorldSource(SPEC, 6, "test", seed=2):
        assert s.meta["center_xy"] == pytest.approx([36.0, 36.0]) and s.meta["size"] == pytest.approx(SPEC.base_size)
        assert s.meta["visible_fraction"] == pytest.approx(1.0, abs=0.06)  # bilinear edges: ~0.96-1
        x0, y0, x1, y1 = s.meta["bbox"]
        rot = math.radians(s.meta["rotation_deg"])
        half = SPEC.base_size / 2 * (abs(math.cos(rot)) + abs(math.sin(rot)))  # the rotated box's half extent
        assert 36 - half - 1 <= x0 and x1 <= 36 + half + 1 and 36 - half - 1 <= y0 and y1 <= 36 + half + 1
    standard = SPEC.base_size * SPEC.standard_scale / SPEC.source_size
    assert standard == pytest.approx(SPEC.object_size * SPEC.image_size)
    for s in WorldSource(SPEC, 3, "train"):  # centered regime at the model's input size
        assert s.meta["center_xy"] == pytest.approx([28.0, 28.0]) and s.meta["size"] == pytest.approx(standard)
    # anywhere: the box centre moves, at most a quarter of the object leaves the frame
    for s in WorldSource(SPEC.replace(regime="anywhere"), 20, "train", seed=1):
        cx, cy = s.meta["center_xy"]
        q = s.meta["size"] / 4
        assert q - 1e-3 <= cx <= 56 - q + 1e-3 and q - 1e-3 <= cy <= 56 - q + 1e-3
        x0, y0, x1, y1 = s.meta["bbox"]
        assert x0 <= cx <= x1 and y0 <= cy <= y1
        assert 0.3 < s.meta["visible_fraction"] <= 1.03


def test_multiscale_sizes_and_rrc_windows():
    g = torch.Generator().manual_seed(0)
    spec = SPEC.replace(regime="multiscale")
    sizes = sample_scenes(spec, 2000, g).obj[:, 2] / spec.base_size
    assert sizes.min() >= spec.scale_range[0] - 1e-6 and sizes.max() <= spec.scale_range[1] + 1e-6
    assert sizes.log().std() > 0.4  # log-uniform over (0.35, 2): std of log = 1.74 / sqrt(12) = 0.50
    win = _rrc_windows(SPEC, 2000, g)  # [n, 4] x0, y0, w, h
    side = SPEC.source_size
    assert (win[:, :2] >= 0).all() and (win[:, 0] + win[:, 2] <= side).all() and (win[:, 1] + win[:, 3] <= side).all()
    frac = win[:, 2] * win[:, 3] / side**2
    assert frac.min() >= 0.07 and frac.max() <= 1.0 and frac.median() < 0.7
    ratio = win[:, 2] / win[:, 3]
    assert ratio.min() >= 3 / 4 * 0.85 and ratio.max() <= 4 / 3 / 0.85  # whole-pixel rounding


def test_photo_left_and_context_worlds():
    g = torch.Generator().manual_seed(0)
    photo = sample_scenes(SPEC, 2000, g, regime="photo")
    side, half = SPEC.source_size, SPEC.source_size / 2
    off = (photo.obj[:, :2] - half) / side
    assert off.abs().max() <= 0.35 + 1e-6 and 0.1 < off.std() < 0.2  # centre preference, not centred
    assert (off.abs() < 0.15).float().mean() > 0.5
    size = photo.obj[:, 2] / SPEC.base_size
    assert size.min() >= 0.4 - 1e-6 and size.max() <= 2.0 + 1e-6 and size.log().std() > 0.3
    assert torch.equal(photo.view[0], torch.tensor([0.0, 0.0, side, side]))
    left = sample_scenes(SPEC.replace(regime="left"), 2000, g)
    assert (left.obj[:, 0] <= half + 1e-6).all() and (left.obj[:, 0] < half - 10).any()
    assert left.obj[:, 1].min() < half - 10 < half + 10 < left.obj[:, 1].max()  # any height
    ctx = SPEC.replace(context="decides")
    assert ctx.n_shapes == 6 and ctx.class_names[0] == "disc+sun" and ctx.class_names[6] == "disc+bars"
    scenes = sample_scenes(ctx, 500, g, regime="test")
    k = ctx.n_shapes
    assert torch.equal(scenes.shape, scenes.cls % k) and torch.equal(scenes.comp[:, 0].long(), scenes.cls // k)
    dist = (scenes.comp[:, 1:3] - scenes.obj[:, :2]).norm(dim=1) / scenes.obj[:, 2]
    assert torch.allclose(dist, torch.full_like(dist, 0.9), atol=1e-4)
    free = sample_scenes(SPEC.replace(context="present"), 500, g, regime="test")
    assert torch.equal(free.shape, free.cls) and set(free.comp[:, 0].long().tolist()) == {0, 1}
    # the default world draws no companion and keeps its cache keys (context absent from the dict)
    assert sample_scenes(SPEC, 4, g).comp is None and "context" not in SPEC.to_dict()
    assert WorldSpec.from_dict(ctx.to_dict()) == ctx
    with pytest.raises(ValueError):
        WorldSpec(context="decides", n_classes=11)
    names = [s.meta["class_name"] for s in WorldSource(ctx, 4, "test")]
    assert all("+" in n for n in names)
    assert WorldSource(SPEC, 2, "photo").name == "world-photo"


def test_render_batch_is_seeded_and_labelled():
    a, ya = render_batch(SPEC, 8, torch.Generator().manual_seed(7))
    b, yb = render_batch(SPEC, 8, torch.Generator().manual_seed(7))
    c, _ = render_batch(SPEC, 8, torch.Generator().manual_seed(8))
    assert a.dtype == torch.uint8 and a.shape == (8, 3, 56, 56) and ya.shape == (8,)
    assert torch.equal(a, b) and torch.equal(ya, yb) and not torch.equal(a, c)
    assert 0 <= int(ya.min()) and int(ya.max()) < SPEC.n_classes
    scenes = sample_scenes(SPEC, 2, torch.Generator().manual_seed(0), regime="test")
    rgb, cover = render_scenes(scenes, 72, 72)
    assert rgb.shape == (2, 3, 72, 72) and cover.shape == (2, 72, 72) and 0 <= cover.min() and cover.max() <= 1


# ================================================================================================
# Models and cache
# ================================================================================================
TINY = T.TrainConfig(epochs=1, images_per_epoch=64, batch_size=32)


@pytest.mark.parametrize("arch", T.ARCHS)
def test_models_expose_preprocessing_and_classes(arch):
    m = T.build_model(arch, 12, 56)
    assert m.mean == IMAGENET_MEAN and m.std == IMAGENET_STD and m.input_size == (3, 56, 56)
    assert m.num_classes == 12 and m.pretrained_cfg["input_size"] == (3, 56, 56)
    assert m(torch.zeros(2, 3, 56, 56)).shape == (2, 12)
    with pytest.raises(ValueError):
        T.build_model("resnet", 12, 56)


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    tiny3 = dataclasses.replace(TINY, seed=3)
    m1, info1 = T.get_or_train(SPEC, tiny3, cache=tmp_path, val_images=32)
    m2, info2 = T.get_or_train(SPEC, tiny3, cache=tmp_path, val_images=32)
    assert info1["cache"] == "miss" and info2["cache"] == "hit" and info1["path"] == info2["path"]
    assert info2["settings"]["lr"] == T.ARCH_DEFAULTS["cnn"]["lr"] and info2["settings"]["seed"] == 3
    assert len(list(tmp_path.glob("*.pt"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    x = torch.randn(4, 3, 56, 56)
    with torch.no_grad():
        assert torch.allclose(m1(x), m2(x), atol=1e-5)
    m3, _ = T.train_model(SPEC, tiny3, val_images=32)  # a fresh run: same weights
    for k, v in m1.state_dict().items():
        assert torch.allclose(v.float(), m3.state_dict()[k].float(), atol=1e-5), k
    # every weight-changing setting is in the key; the environment variable moves the default folder
    _, info4 = T.get_or_train(SPEC, dataclasses.replace(TINY, seed=4), cache=tmp_path, val_images=32)
    _, info5 = T.get_or_train(SPEC.replace(max_rotation=5.0), tiny3, cache=tmp_path, val_images=32)
    assert info4["cache"] == info5["cache"] == "miss" and len(list(tmp_path.glob("*.pt"))) == 3
    monkeypatch.setenv("ZOOMSTUDY_CACHE", str(tmp_path / "env"))
    assert T.cache_dir() == tmp_path / "env" / "world"
    with pytest.raises(ValueError):
        T.get_or_train(SPEC, T.TrainConfig(epochs=0), cache=tmp_path)


# ================================================================================================
# The controlled experiment, CI-sized
# ================================================================================================
#: CI budget: 8,192 images per regime (15-20 s of one CPU core each). Width 24 (the CNN's default, not the
#: experiment's 16) keeps these small runs well above chance at 2x zoom, which the scale test needs.
CI_TRAINING = Training(epochs=4, images_per_epoch=2048, width=24)
CI_SEED = 0
#: A reduced grid: every anchor at nine of the scaled paper scales around the standard 64.
CI_GRID = ViewGrid(scales=(24, 32, 48, 56, 64, 80, 96, 128, 160), crop=56)
N_TEST = 48


@pytest.fixture(scope="session")
def ci_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world-cache")
    with one_thread():
        return {r: T.get_or_train(SPEC.replace(regime=r), CI_TRAINING.config(CI_SEED), cache=folder)
                for r in ("centered", "anywhere", "multiscale")}


@pytest.fixture(scope="session")
def ci_correct(ci_models, tmp_path_factory):
    """bool [N, scales, 3, 3] per regime: the cached models opened by name and measured by the package's
    sweep, as the experiment measures them (`experiment.runs.run_experiment`). The same training settings
    open the same cached weights: nothing is retrained here (checked by the weights' identity)."""
    from zoomstudy import study
    from zoomstudy.sweep.engine import sweep_to_store

    src = WorldSource(SPEC, N_TEST, "test", seed=1)
    store = tmp_path_factory.mktemp("world-results")
    out = {}
    with one_thread():
        for r, (trained, info) in ci_models.items():
            model = study.open_model(f"world:{r}", seed=CI_SEED, training=CI_TRAINING,
                                     cache=Path(info["path"]).parent, device="cpu")
            for a, b in zip(model.module.module.state_dict().values(), trained.state_dict().values()):
                assert torch.equal(a.cpu(), b.cpu()), "open_model trained another model than the fixture's"
            assert study.model_spec(model) == f"world:{r}"  # reports name it as open_model takes it
            rs = sweep_to_store(model, src, CI_GRID, store, workers=0, progress=False, tta=False)
            # the world's class names travel with the model and its result set (no process-wide default)
            assert rs.settings["class_names"] == list(SPEC.class_names)
            assert class_name(0, names=rs) == class_name(0, names=model) == "disc" and class_name(0) == "tench"
            out[r] = rs.correct().reshape(N_TEST, CI_GRID.n_scales, 3, 3)
    return out


def test_centered_model_learns_its_distribution(ci_models):
    # observed 0.967 (2 seeds) on fresh centred images, in about 15-20 s of one core; chance is 1/12
    _, info = ci_models["centered"]
    assert info["val_accuracy"] > 0.85


def _centre_minus_off(grid: np.ndarray) -> float:
    """[3, 3] accuracies -> centre anchor minus the mean of the 8 others."""
    return float(grid[1, 1] - np.delete(grid.ravel(), 4).mean())


def test_centre_training_makes_centre_bias(ci_correct):
    """Centre anchor minus the 8 others, at the standard scale and for the per-anchor bound (any scale):
    larger for the centre-trained model than for the position-augmented one. Observed over three
    runs: standard 0.70-0.84 against 0.32-0.34; bound 0.49-0.59 against 0.00-0.10."""
    s = CI_GRID.scales.index(CI_GRID.standard_scale)
    centered, anywhere = ci_correct["centered"], ci_correct["anywhere"]
    assert _centre_minus_off(centered[:, s].mean(0)) > _centre_minus_off(anywhere[:, s].mean(0)) + 0.2
    assert _centre_minus_off(centered.any(1).mean(0)) > _centre_minus_off(anywhere.any(1).mean(0)) + 0.25


def test_scale_augmentation_widens_the_scale_window(ci_correct):
    """Centre-view accuracy against scale: the multiscale model's curve is wider (its spread in octaves,
    weighting each scale by accuracy above chance; observed 0.57-0.65 against 0.32-0.40 over six
    runs) and it still recognises the object zoomed in 2x (S = 128: observed 0.41-0.53 against
    0.06-0.11)."""
    octaves = np.log2(CI_GRID.scales)

    def curve(correct):
        return correct[:, :, 1, 1].mean(0)  # [n_scales]

    def spread(correct):
        w = np.maximum(curve(correct) - 1 / SPEC.n_classes, 0)  # accuracy above chance per scale
        mu = (w * octaves).sum() / w.sum()
        return float(np.sqrt((w * (octaves - mu) ** 2).sum() / w.sum()))

    centered, multiscale = ci_correct["centered"], ci_correct["multiscale"]
    assert spread(multiscale) > spread(centered) + 0.1
    s = CI_GRID.scales.index(2 * CI_GRID.standard_scale)
    assert curve(multiscale)[s] > curve(centered)[s] + 0.2
