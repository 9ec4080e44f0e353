"""The view grid and its two renderers (SPEC section 1 and 9).

Geometry is checked against hand-computed numbers, the fast window-restricted renderer against the
literal PIL one (`render_views_reference`, the ground truth) and the 10-crop set against torchvision.
The real-data test (marked realdata/slow) measures the fast renderer on the kit's 100 ImageNet images.
"""
from __future__ import annotations

import csv
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from zoomstudy import views
from zoomstudy.data import SyntheticSource, load_image
from zoomstudy.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_SCALES,
    ViewGrid,
    normalize,
    pil_to_tensor,
    render_views,
    render_views_reference,
    render_windows,
    resized_size,
    tta_crops,
)

TINY = ViewGrid(scales=(32, 64, 96), grid=3, crop=48)
#: SPEC 1: the authors' list (10 appears twice there); the 36 distinct values.
SPEC_SCALES = [10, 16, 32, 48, 64, 96, 122, 128, 192, 224, 235, 240, 256, 288, 320, 348, 384, 448, 460,
               512, 573, 576, 640, 664, 672, 680, 686, 690, 700, 720, 768, 798, 832, 896, 911, 1024]


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """White noise: the hardest case for the renderer (any rounding or pass-order slip shows)."""
    arr = np.random.default_rng([seed, width, height]).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def as_array(view: torch.Tensor) -> np.ndarray:
    """[3, h, w] grey levels -> uint8 [h, w, 3]."""
    return view.permute(1, 2, 0).round().to(torch.uint8).numpy()


# ================================================================================================
# ViewGrid: which views exist and how they are numbered
# ================================================================================================
def test_paper_grid_has_36_scales_and_324_views():
    g = ViewGrid.paper()
    assert list(PAPER_SCALES) == SPEC_SCALES
    assert g.scales == tuple(SPEC_SCALES) and g.grid == 3 and g.crop == 224
    assert (g.n_scales, g.n_anchors, g.n_views) == (36, 9, 324)
    assert len(g.names()) == 324 and len(set(g.names())) == 324
    assert ViewGrid() == g


def test_numbering_is_scale_major_then_row_then_col():
    g = ViewGrid.paper()
    v = 0
    for s, scale in enumerate(g.scales):
        for r in range(3):
            for c in range(3):
                assert g.view_index(scale, r, c) == v
                assert g.unravel(v) == (s, r, c)
                assert g.view_name(v) == f"LOC:{r}_{c}_Size:{scale}"
                v += 1
    assert g.view_name(0) == "LOC:0_0_Size:10"
    assert g.view_name(323) == "LOC:2_2_Size:1024"
    t = g.table()
    assert t["view"].tolist() == list(range(324))
    assert (t["scale"].to_numpy() == np.repeat(SPEC_SCALES, 9)).all()
    assert (t["row"].to_numpy() == np.tile(np.repeat([0, 1, 2], 3), 36)).all()
    assert (t["col"].to_numpy() == np.tile([0, 1, 2], 108)).all()
    assert t["name"].tolist() == g.names()
    assert t["is_center"].sum() == 36 and (t.loc[t["is_center"], ["row", "col"]].to_numpy() == 1).all()


@pytest.mark.parametrize("grid", [ViewGrid.paper(), TINY, ViewGrid(scales=(5, 7), grid=4, crop=9)])
def test_names_round_trip(grid):
    for v in range(grid.n_views):
        assert grid.index_of_name(grid.view_name(v)) == v


def test_standard_view_is_loc_1_1_size_256():
    g = ViewGrid.paper()
    v = g.standard_view
    assert v == g.index_of_name("LOC:1_1_Size:256") == SPEC_SCALES.index(256) * 9 + 4
    assert g.view_name(v) == "LOC:1_1_Size:256"
    assert g.standard_scale == 256
    # a grid without scale 256, or without a centre anchor, has no 1-crop view
    assert ViewGrid(scales=(224, 288)).standard_view is None
    assert ViewGrid(scales=(256,), grid=2).standard_view is None


def test_group_masks_9_zoom_out_1_at_224_26_zoom_in():
    g = ViewGrid.paper()
    masks = {name: g.group_mask(name) for name in views.GROUPS}
    assert {k: int(m.sum()) // 9 for k, m in masks.items()} == {"zoom_out": 9, "zoom_224": 1, "zoom_in": 26}
    total = sum(m.astype(int) for m in masks.values())
    assert (total == 1).all()  # disjoint and covering
    scale = np.repeat(SPEC_SCALES, 9)
    assert (scale[masks["zoom_out"]] < 224).all() and (scale[masks["zoom_in"]] > 224).all()
    assert (scale[masks["zoom_224"]] == 224).all()
    assert (g.table()["group"].to_numpy()[masks["zoom_in"]] == "zoom_in").all()
    with pytest.raises(ValueError):
        g.group_mask("zoom_sideways")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scales=()),
        dict(scales=(0, 10)),
        dict(scales=(-5, 10)),
        dict(scales=(10, 10, 20)),
        dict(scales=(20, 10)),
        dict(scales=(10,), grid=0),
        dict(scales=(10,), crop=0),
        dict(scales=(10,), crop=-224),
    ],
)
def test_invalid_grids_raise(kwargs):
    with pytest.raises(ValueError):
        ViewGrid(**kwargs)


def test_scaled_grid():
    assert ViewGrid.scaled(224) == ViewGrid.paper()
    g = ViewGrid.scaled(112)
    expected = sorted({max(1, round(s * 112 / 224)) for s in SPEC_SCALES})
    assert list(g.scales) == expected and g.crop == 112 and g.grid == 3
    assert g.standard_scale == 128 and g.view_name(g.standard_view) == "LOC:1_1_Size:128"
    # groups are relative to the crop: 224 -> 112 keeps 9 / 1 / 26 scales
    assert [int(g.group_mask(k).sum()) // 9 for k in ("zoom_out", "zoom_224", "zoom_in")] == [9, 1, 26]
    small = ViewGrid.scaled(16)  # collisions after rounding are merged, scales stay distinct and >= 1
    assert len(small.scales) < 36 and len(set(small.scales)) == len(small.scales) and min(small.scales) >= 1
    assert ViewGrid.scaled(96, grid=5).n_anchors == 25
    for grid in (g, small, TINY):
        assert ViewGrid.from_dict(grid.to_dict()) == grid


# ================================================================================================
# Geometry (SPEC 1.1 - 1.3)
# ================================================================================================
@pytest.mark.parametrize(
    "w, h, s, expected",
    [
        (500, 375, 256, (341, 256)),  # 341.33
        (375, 500, 256, (256, 341)),
        (300, 300, 224, (224, 224)),
        (5, 3, 10, (16, 10)),  # 16.67: truncated, not rounded
        (3, 5, 10, (10, 16)),
        (7, 4, 10, (17, 10)),  # 17.5: truncated
        (333, 501, 97, (97, 145)),  # 145.94
        (1, 1, 10, (10, 10)),
        (10000, 50, 10, (2000, 10)),
    ],
)
def test_resized_size_truncates(w, h, s, expected):
    assert resized_size(w, h, s) == expected
    assert ViewGrid.paper().resized_size(w, h, s) == expected


def test_anchor_arithmetic_by_hand():
    g = ViewGrid.paper()
    # 500 x 375 at S = 256: (341, 256); tiles 113 x 85; anchors x 56, 169, 282; y 42, 127, 212
    assert g.windows(500, 375, 256) == ([-70, 15, 100], [-56, 57, 170], 341, 256)
    # odd sizes: 333 x 501 at S = 97 -> (97, 145); tiles 32 x 48; anchors x 16, 48, 80; y 24, 72, 120
    assert g.windows(333, 501, 97) == ([-88, -40, 8], [-96, -64, -32], 97, 145)
    # 500 x 375 at S = 1024: (1365, 1024); tiles 455 x 341; anchors x 227, 682, 1137; y 170, 511, 852
    assert g.windows(500, 375, 1024) == ([58, 399, 740], [115, 570, 1025], 1365, 1024)
    # another crop: half = crop // 2 = 23 for crop 47; 64 x 48 at S = 48 is unchanged (64, 48)
    odd = ViewGrid(scales=(48,), grid=3, crop=47)
    assert odd.windows(64, 48, 48) == ([-15, 1, 17], [-13, 8, 29], 64, 48)


@pytest.mark.parametrize("size", [(341, 256), (256, 341), (101, 77)])
def test_views_at_the_native_size_are_plain_crops_with_zero_fill(size):
    """Shorter side already == S: no resampling, so every view must be the window of SPEC 1.2-1.3 cut
    out of the original pixels, black outside; checks the anchor arithmetic end to end."""
    w, h = size
    s = min(w, h)
    grid = ViewGrid(scales=(s,), grid=3, crop=224)
    im = noise_image(w, h, seed=1)
    arr = np.asarray(im)
    tops, lefts, W, H = grid.windows(w, h, s)
    assert (W, H) == (w, h)
    fast = render_views(pil_to_tensor(im), grid, dtype=torch.float64)
    ref = render_views_reference(im, grid)
    padded = np.zeros((h + 448, w + 448, 3), np.uint8)
    padded[224:224 + h, 224:224 + w] = arr
    for r, top in enumerate(tops):
        for c, left in enumerate(lefts):
            want = padded[224 + top:224 + top + 224, 224 + left:224 + left + 224]
            v = grid.view_index(s, r, c)
            assert np.array_equal(as_array(fast[v]), want)
            assert np.array_equal(ref[v].permute(1, 2, 0).numpy(), want)


def test_window_far_outside_is_black_and_normalizes_to_minus_mean_over_std():
    src = pil_to_tensor(noise_image(60, 40)).to(torch.float64)
    out = render_windows(src, 40, [500, -300], [-400, 1000], 32)  # every window misses the image
    assert out.shape == (2, 2, 3, 32, 32) and (out == 0).all()
    ref = np.asarray(noise_image(60, 40).crop((1000, 500, 1032, 532)))
    assert (ref == 0).all()  # PIL's crop agrees: zero fill
    z = normalize(out)
    want = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(z, want.view(3, 1, 1).expand_as(z), atol=1e-6)
    assert not torch.allclose(z, torch.zeros_like(z))  # black is not 0 after normalisation
    # white -> (1 - mean) / std
    w = normalize(torch.full((3, 2, 2), 255.0))
    assert torch.allclose(w[:, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD), atol=1e-6)


def test_tiny_scale_makes_a_thumbnail_on_black():
    """S = 10 on a 500 x 375 image: a 13 x 10 thumbnail; each view is black except exactly where the
    thumbnail falls, and the 9 views are the same thumbnail shifted by whole tiles (4 x 3 pixels)."""
    arr = np.random.default_rng(0).integers(60, 200, (375, 500, 3), dtype=np.uint8)  # never near black
    im = Image.fromarray(arr)
    grid = ViewGrid(scales=(10,), grid=3, crop=224)
    tops, lefts, W, H = grid.windows(500, 375, 10)
    assert (W, H) == (13, 10) and tops == [-111, -108, -105] and lefts == [-110, -106, -102]
    fast = render_views(pil_to_tensor(im), grid, dtype=torch.float64)
    assert torch.equal(fast, render_views_reference(im, grid).to(torch.float64))
    thumb = np.asarray(im.resize((13, 10), Image.BICUBIC))
    for r, top in enumerate(tops):
        for c, left in enumerate(lefts):
            v = as_array(fast[grid.view_index(10, r, c)])
            lit = v.any(axis=2)
            assert lit.sum() == 13 * 10
            assert np.array_equal(v[-top:-top + 10, -left:-left + 13], thumb)
    # neighbouring views differ by a few pixels of shift, not by content
    v00, v11 = as_array(fast[0]), as_array(fast[4])
    assert np.array_equal(v00[111:121, 110:123], v11[108:118, 106:119])


def test_largest_scale_tiles_are_wider_than_the_crop():
    """S = 1024 on 500 x 375: tiles of 455 x 341 > 224, so the nine windows do not touch (gaps), all lie
    inside the image (no black), and no two views share pixels."""
    grid = ViewGrid(scales=(1024,), grid=3, crop=224)
    tops, lefts, W, H = grid.windows(500, 375, 1024)
    assert W // 3 > 224 and H // 3 > 224
    for a, b in zip(lefts, lefts[1:]):
        assert b - a > 224  # a gap between horizontally adjacent windows
    for a, b in zip(tops, tops[1:]):
        assert b - a > 224
    assert min(tops) >= 0 and min(lefts) >= 0 and max(tops) + 224 <= H and max(lefts) + 224 <= W
    im = noise_image(500, 375, seed=2)
    fast = render_views(pil_to_tensor(im), grid, dtype=torch.float64)
    ref = render_views_reference(im, grid).to(torch.float64)
    assert torch.equal(fast, ref)
    big = np.asarray(im.resize((W, H), Image.BICUBIC))
    assert np.array_equal(as_array(fast[8]), big[tops[2]:tops[2] + 224, lefts[2]:lefts[2] + 224])


# ================================================================================================
# Fast renderer == PIL reference
# ================================================================================================
SHAPES = [(1, 1), (7, 300), (300, 7), (17, 33), (64, 48), (99, 101), (250, 333), (333, 250),
          (40, 81), (33, 250), (301, 140), (96, 96)]


@pytest.mark.parametrize("size", SHAPES, ids=[f"{w}x{h}" for w, h in SHAPES])
def test_fast_renderer_equals_pil_reference(size):
    """float64: bit-identical to PIL on every pixel (white noise, odd and extreme shapes, zoom in and out,
    the no-resample case S == shorter side, tall images that Pillow >= 13 resamples vertically first)."""
    w, h = size
    grid = ViewGrid(scales=tuple(sorted({10, 32, 48, 96, min(w, h)} - {0})), grid=3, crop=48)
    im = noise_image(w, h)
    ref = render_views_reference(im, grid)
    fast = render_views(pil_to_tensor(im), grid, dtype=torch.float64)
    assert fast.shape == ref.shape == (grid.n_views, 3, 48, 48)
    assert fast.dtype == torch.float64
    diff = (fast - ref.to(torch.float64)).abs()
    assert diff.max().item() == 0, f"{int((diff > 0).sum())} pixels differ, max {diff.max().item()}"


def test_fast_renderer_on_a_very_wide_image():
    im = noise_image(10000, 50, seed=3)
    grid = ViewGrid(scales=(10, 50, 64), grid=3, crop=32)
    fast = render_views(pil_to_tensor(im), grid, dtype=torch.float64)
    assert torch.equal(fast, render_views_reference(im, grid).to(torch.float64))


def test_fast_renderer_on_random_shapes_float64_exact_float32_within_one_level():
    """Random sizes 1..400 on a side (a third of them taller than 2:1). Prints the measured fidelity."""
    grid = ViewGrid(scales=(10, 32, 48, 96), grid=3, crop=40)
    rng = np.random.default_rng(11)
    stats = {"float64": [0, 0, 0.0, 0], "float32": [0, 0, 0.0, 0]}  # pixels, differing, abs sum, max
    for i in range(9):
        if i % 3:
            w, h = int(rng.integers(1, 401)), int(rng.integers(1, 401))
        else:  # taller than 2:1, shrunk at most scales: Pillow >= 13's vertical-first case
            w = int(rng.integers(11, 150))
            h = 2 * w + int(rng.integers(1, 100))
        im = noise_image(w, h, seed=i)
        ref = render_views_reference(im, grid).to(torch.float64)
        x = pil_to_tensor(im)
        for name, dt in (("float64", torch.float64), ("float32", torch.float32)):
            d = (render_views(x, grid, dtype=dt).to(torch.float64) - ref).abs()
            st = stats[name]
            st[0] += d.numel()
            st[1] += int((d > 0).sum())
            st[2] += float(d.sum())
            st[3] = max(st[3], float(d.max()))
    for name, (n, nd, s, mx) in stats.items():
        print(f"\n{name}: {nd} of {n} pixels differ ({nd / n:.2e}), mean abs {s / n:.2e}, max {mx:.0f}")
    assert stats["float64"][1] == 0
    n, nd, s, mx = stats["float32"]
    assert mx <= 1 and nd / n < 1e-3


@pytest.mark.parametrize("h", [79, 80, 81, 82])
def test_pass_order_follows_the_installed_pillow(h):
    """A 40 x h image at S = 20 -> (20, h // 2 ...): Pillow >= 13 resamples vertically first exactly when
    the height loses more than twice the pixels the width loses; h = 80 / 81 straddle that boundary.
    Both pass orders are computed, shown to differ, and PIL must equal the one the renderer picks."""
    w, s = 40, 20
    W, H = resized_size(w, h, s)
    im = noise_image(w, h, seed=h)
    a = np.asarray(im).astype(np.int64)
    xy = views._resample_axis_int(views._resample_axis_int(a, w, W, 1), h, H, 0)
    yx = views._resample_axis_int(views._resample_axis_int(a, h, H, 0), w, W, 1)
    assert not np.array_equal(xy, yx)  # the test can tell the orders apart
    pil = np.asarray(im.resize((W, H), Image.BICUBIC)).astype(np.int64)
    tops, lefts, _, _ = ViewGrid(scales=(s,), crop=48).windows(w, h, s)
    _, _, vertical_first = views._plan(w, h, s, tuple(tops), tuple(lefts), 48)
    assert np.array_equal(pil, yx if vertical_first else xy)
    if views._pil_vertical_first_rule():
        assert vertical_first == ((h - H) > 2 * (w - W))
    grid = ViewGrid(scales=(s,), grid=3, crop=48)
    assert torch.equal(render_views(pil_to_tensor(im), grid, dtype=torch.float64),
                       render_views_reference(im, grid).to(torch.float64))


def test_render_views_rejects_bad_input():
    with pytest.raises(ValueError):
        render_views(torch.zeros(3, 8, 8), TINY)  # float, not uint8
    with pytest.raises(ValueError):
        render_views(torch.zeros(8, 8, 3, dtype=torch.uint8), TINY)  # HWC
    with pytest.raises(ValueError):
        render_views(torch.zeros(1, 8, 8, dtype=torch.uint8), TINY)  # one channel


def test_synthetic_source_images_render_identically():
    """The smooth synthetic images the sweep tests use, mixed sizes, on the tiny test grid."""
    src = SyntheticSource(4, size=((20, 140), (20, 140)), seed=5)
    for sample in src:
        ref = render_views_reference(sample.image, TINY)
        assert torch.equal(render_views(pil_to_tensor(sample.image), TINY, dtype=torch.float64),
                           ref.to(torch.float64))


# ================================================================================================
# 10-crop set == torchvision Resize(256, bicubic) + FiveCrop(224)
# ================================================================================================
@pytest.mark.parametrize("size", [(500, 375), (375, 500), (257, 300), (300, 900), (300, 300)])
def test_tta_crops_match_torchvision_five_crop(size):
    from torchvision import transforms as T

    w, h = size
    im = SyntheticSource(1, size=size, seed=w + h)[0].image
    tv = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.FiveCrop(224)])
    five = [np.asarray(c) for c in tv(im)]  # tl, tr, bl, br, centre
    ten = tta_crops(pil_to_tensor(im), 224, 256, dtype=torch.float64)
    assert ten.shape == (10, 3, 224, 224)
    for k in range(5):
        assert np.array_equal(as_array(ten[k]), five[k]), f"crop {k}"
        assert np.array_equal(as_array(ten[5 + k]), five[k][:, ::-1]), f"flipped crop {k}"
    # against TenCrop (crops of the flipped image): the corners are the same set; the centre too
    # when the centring is symmetric ((resized width - 224) even)
    flipped = [np.asarray(c) for c in T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
                                                  T.TenCrop(224)])(im)][5:]
    ours = [as_array(ten[5 + k]) for k in range(5)]
    assert np.array_equal(ours[0], flipped[1]) and np.array_equal(ours[1], flipped[0])
    assert np.array_equal(ours[2], flipped[3]) and np.array_equal(ours[3], flipped[2])
    W, _ = resized_size(w, h, 256)
    if (W - 224) % 2 == 0:
        assert np.array_equal(ours[4], flipped[4])


# ================================================================================================
# Resize, then centre crop: the one home of the classic evaluation view
# ================================================================================================
@pytest.mark.parametrize("size", [(500, 375), (375, 500), (257, 300), (90, 60)])
def test_center_crop_matches_torchvision_and_the_other_renderers(size):
    from torchvision import transforms as T

    w, h = size
    im = SyntheticSource(1, size=size, seed=w * h)[0].image
    x = pil_to_tensor(im)
    # exact bicubic: torchvision's Resize + CenterCrop on the PIL image, the 10-crop set's centre, the
    # sweep's centre anchor up to the one-pixel difference of the two centrings
    tv = np.asarray(T.Compose([T.Resize(64, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(56)])(im))
    grey = views.render_center_crop(x, 64, 56, dtype=torch.float64)
    assert np.array_equal(as_array(grey), tv)
    assert torch.equal(grey, tta_crops(x, 56, 64, dtype=torch.float64)[4])
    anchor = views.render_center_crop(x, 64, 56, center="anchor", dtype=torch.float64)
    grid = ViewGrid(scales=(64,), grid=3, crop=56)
    assert torch.equal(anchor, render_views(x, grid, dtype=torch.float64)[grid.standard_view])
    # any interpolation, on a PIL image or a uint8 tensor: torchvision's own pixels
    for mode in ("bilinear", "bicubic", "nearest"):
        interp = T.InterpolationMode(mode)
        pil = views.resize_center_crop(im, 64, 56, interpolation=mode)
        assert np.array_equal(np.asarray(pil), np.asarray(T.CenterCrop(56)(T.Resize(64, interpolation=interp)(im))))
        ten = views.resize_center_crop(x, 64, (56, 40), interpolation=interp)
        assert ten.dtype == torch.uint8 and ten.shape == (3, 56, 40)
    with pytest.raises(ValueError, match="interpolation"):
        views.resize_center_crop(im, 64, 56, interpolation="cubic-ish")
    with pytest.raises(ValueError, match="center"):
        views.center_crop_offsets(w, h, 64, 56, center="middle")


# ================================================================================================
# Real data: the kit's 100 ImageNet images on the paper grid
# ================================================================================================
def _kit_files(realdata):
    root = realdata / "imagenet-sample"
    with open(root / "labels.csv", newline="") as fh:
        return [root / row["file"] for row in csv.DictReader(fh)]


@pytest.mark.realdata
@pytest.mark.slow
def test_realdata_fast_renderer_matches_pil_on_the_paper_grid(realdata):
    """Every 5th kit image (20 by default; ZOOMSTUDY_REALDATA_STRIDE=1 for all 100), all 324 views:
    float64 fast renderer vs the PIL reference, pixel by pixel. Views whose pixels differ anywhere are
    classified by the real SqueezeNet both ways (identical pixels give identical top-1 trivially);
    the top-1 must agree on >= 99.5% of (image, view) pairs. Prints MAE and identical-pixel share."""
    from zoomstudy.models.loading import load_model

    stride = int(os.environ.get("ZOOMSTUDY_REALDATA_STRIDE", "5"))
    files = _kit_files(realdata)[::stride]
    grid = ViewGrid.paper()
    model = None
    n_px = n_diff = 0
    abs_sum = 0.0
    max_diff = 0.0
    pairs = agree = views_differ = 0
    t0 = time.perf_counter()
    for f in files:
        im = load_image(f)
        ref = render_views_reference(im, grid).to(torch.float64)
        fast = render_views(pil_to_tensor(im), grid, dtype=torch.float64)
        d = (fast - ref).abs()
        n_px += d.numel()
        n_diff += int((d > 0).sum())
        abs_sum += float(d.sum())
        max_diff = max(max_diff, float(d.max()))
        bad = torch.nonzero(d.flatten(1).amax(1) > 0).flatten()
        pairs += grid.n_views
        agree += grid.n_views - len(bad)
        views_differ += len(bad)
        if len(bad):
            if model is None:
                model = load_model("torchvision:squeezenet1_0", checkpoint=realdata / "weights" /
                                   "squeezenet1_0_deepcompression.pt", pretrained=False, device="cpu")
            a = model.logits(normalize(fast[bad])).argmax(1)
            b = model.logits(normalize(ref[bad])).argmax(1)
            agree += int((a == b).sum())
    mae = abs_sum / n_px
    print(f"\nkit images {len(files)} x {grid.n_views} views, {time.perf_counter() - t0:.0f} s: MAE {mae:.3g} grey "
          f"levels, identical pixels {100 * (1 - n_diff / n_px):.4f}%, max diff {max_diff:.0f}, views with any "
          f"difference {views_differ}, same top-1 {100 * agree / pairs:.2f}% of {pairs} pairs")
    assert mae < 1.0  # < 1/255 in [0, 1] units
    assert agree / pairs >= 0.995
