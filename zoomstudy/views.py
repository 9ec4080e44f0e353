"""The zoom views of the paper (SPEC section 1): which views exist, and how to render them.

A *view* is (scale S, anchor row r, anchor column c): resize the image so that its shorter side is S
(PIL bicubic, integer truncation of the longer side), then cut a `crop` x `crop` window centred on the
middle of tile (r, c) of a `grid` x `grid` tiling of the resized image, black outside the image.

Two renderers produce the same pixels:

* `render_views_reference` follows the protocol literally with PIL, one resize per scale (slow, the
  authors' way, the ground truth for tests).
* `render_views` decodes nothing and resizes nothing in full: a view is the separable resize
  restricted to its window, so each scale costs two small banded matrix products on the model's
  device for all anchors at once. The resampling weights are PIL's own fixed-point bicubic
  coefficients and both passes round and clamp to 8 bits like PIL, so in float64 the result is
  bit-identical to PIL (float32 is the fast option on GPUs without fast float64: at most one grey
  level off, on a few pixels).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD

#: The paper's 36 distinct scales (the authors' list repeats 10).
PAPER_SCALES: tuple[int, ...] = (
    10, 16, 32, 48, 64, 96, 122, 128, 192, 224, 235, 240, 256, 288, 320, 348, 384, 448, 460, 512,
    573, 576, 640, 664, 672, 680, 686, 690, 700, 720, 768, 798, 832, 896, 911, 1024,
)
#: A compact grid's scales: 12 of the paper's, zoom out to zoom in, with 224 and 256 (the model profile's
#: default: 108 views per image instead of 324).
COMPACT_SCALES: tuple[int, ...] = (16, 32, 64, 128, 192, 224, 256, 320, 448, 576, 768, 1024)

#: View groups of SPEC sections 3 and 4, relative to the crop size.
GROUPS = ("zoom_out", "zoom_224", "zoom_in")


@dataclass(frozen=True)
class ViewGrid:
    """The set of views a sweep renders: scales x grid x grid anchors, crop x crop pixels.

    Views are numbered scale-major, then anchor row (0 = top), then anchor column (0 = left), the
    order of the reference file and of the greedy cover's tie-break.
    """

    scales: tuple[int, ...] = PAPER_SCALES
    grid: int = 3
    crop: int = 224

    def __post_init__(self):
        scales = tuple(int(s) for s in self.scales)
        object.__setattr__(self, "scales", scales)
        if not scales:
            raise ValueError("ViewGrid: scales must not be empty")
        if any(s < 1 for s in scales):
            raise ValueError(f"ViewGrid: scales must be positive integers, got {scales}")
        if len(set(scales)) != len(scales):
            raise ValueError(f"ViewGrid: scales must be distinct, got {scales}")
        if list(scales) != sorted(scales):
            raise ValueError("ViewGrid: scales must be in increasing order")
        if self.grid < 1:
            raise ValueError(f"ViewGrid: grid must be >= 1, got {self.grid}")
        if self.crop < 1:
            raise ValueError(f"ViewGrid: crop must be >= 1, got {self.crop}")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def paper(cls) -> "ViewGrid":
        return cls()

    @classmethod
    def scaled(cls, crop: int, grid: int = 3, base: tuple[int, ...] = PAPER_SCALES) -> "ViewGrid":
        """The paper's grid (or another scale set defined at crop 224, e.g. `COMPACT_SCALES`) for another
        crop size: scales multiplied by crop / 224, rounded, at least 1 (collisions merged)."""
        scales = sorted({max(1, round(s * crop / 224)) for s in base})
        return cls(scales=tuple(scales), grid=grid, crop=crop)

    @classmethod
    def from_dict(cls, d: dict) -> "ViewGrid":
        return cls(scales=tuple(d["scales"]), grid=int(d["grid"]), crop=int(d["crop"]))

    def to_dict(self) -> dict:
        return {"scales": list(self.scales), "grid": self.grid, "crop": self.crop}

    # ---- indexing -------------------------------------------------------------------------------
    @property
    def n_scales(self) -> int:
        return len(self.scales)

    @property
    def n_anchors(self) -> int:
        return self.grid * self.grid

    @property
    def n_views(self) -> int:
        return self.n_scales * self.n_anchors

    def view_index(self, scale: int, row: int, col: int) -> int:
        s = self.scales.index(int(scale))
        return (s * self.grid + row) * self.grid + col

    def view_name(self, v: int) -> str:
        s, r, c = self.unravel(v)
        return f"LOC:{r}_{c}_Size:{self.scales[s]}"

    def unravel(self, v: int) -> tuple[int, int, int]:
        """View index -> (scale position, row, col)."""
        s, rc = divmod(int(v), self.n_anchors)
        r, c = divmod(rc, self.grid)
        return s, r, c

    def names(self) -> list[str]:
        return [self.view_name(v) for v in range(self.n_views)]

    def index_of_name(self, name: str) -> int:
        loc, size = name.split("_Size:")
        r, c = loc.removeprefix("LOC:").split("_")
        return self.view_index(int(size), int(r), int(c))

    @property
    def center(self) -> int:
        return self.grid // 2

    @property
    def standard_scale(self) -> int:
        """The '1-crop' resize: 256 for crop 224 (Resize 256 + CenterCrop 224), scaled otherwise."""
        return round(self.crop * 256 / 224)

    @property
    def standard_view(self) -> int | None:
        """Index of the standard 1-crop view `LOC:1_1_Size:256`, None when the grid lacks it."""
        if self.standard_scale not in self.scales or self.grid % 2 == 0:
            return None
        return self.view_index(self.standard_scale, self.center, self.center)

    def group_of_scale(self, scale: int) -> str:
        return "zoom_in" if scale > self.crop else ("zoom_out" if scale < self.crop else "zoom_224")

    def table(self):
        """One row per view: view, scale, row, col, name, group, is_center (a pandas DataFrame)."""
        import pandas as pd

        v = np.arange(self.n_views)
        s, rc = np.divmod(v, self.n_anchors)
        r, c = np.divmod(rc, self.grid)
        scales = np.asarray(self.scales)[s]
        return pd.DataFrame(
            {
                "view": v.astype(np.int32),
                "scale": scales.astype(np.int32),
                "row": r.astype(np.int8),
                "col": c.astype(np.int8),
                "name": self.names(),
                "group": [self.group_of_scale(x) for x in scales],
                "is_center": (r == self.center) & (c == self.center),
            }
        )

    def group_mask(self, group: str) -> np.ndarray:
        """Boolean [n_views] mask of a zoom group ('zoom_in', 'zoom_out', 'zoom_224')."""
        if group not in GROUPS:
            raise ValueError(f"unknown view group {group!r}; expected one of {GROUPS}")
        per_scale = np.array([self.group_of_scale(s) == group for s in self.scales])
        return np.repeat(per_scale, self.n_anchors)

    # ---- geometry (SPEC section 1) -------------------------------------------------------------
    def resized_size(self, width: int, height: int, scale: int) -> tuple[int, int]:
        """Shorter side -> scale, longer side truncated: returns (W, H)."""
        return resized_size(width, height, scale)

    def windows(self, width: int, height: int, scale: int) -> tuple[list[int], list[int], int, int]:
        """(tops per anchor row, lefts per anchor column, W, H) of the crops in the resized image."""
        W, H = resized_size(width, height, scale)
        tile_x, tile_y = W // self.grid, H // self.grid
        half = self.crop // 2
        lefts = [c * tile_x + tile_x // 2 - half for c in range(self.grid)]
        tops = [r * tile_y + tile_y // 2 - half for r in range(self.grid)]
        return tops, lefts, W, H


def resized_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """SPEC 1.1: the shorter side becomes `scale`, the other is truncated (not rounded)."""
    if width <= height:
        return scale, int(scale * height / width)
    return int(scale * width / height), scale


# ================================================================================================
# Reference renderer: PIL, literally
# ================================================================================================
def render_views_reference(image, grid: ViewGrid) -> torch.Tensor:
    """All views of one PIL image the authors' way: PIL resize per scale, PIL crop (zero fill).

    Returns uint8 [n_views, 3, crop, crop].
    """
    from PIL import Image

    image = image.convert("RGB")
    out = np.empty((grid.n_views, grid.crop, grid.crop, 3), np.uint8)
    v = 0
    for scale in grid.scales:
        tops, lefts, W, H = grid.windows(image.width, image.height, scale)
        resized = image if (W, H) == image.size else image.resize((W, H), Image.BICUBIC)
        for top in tops:
            for left in lefts:
                out[v] = np.asarray(resized.crop((left, top, left + grid.crop, top + grid.crop)))
                v += 1
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# ================================================================================================
# Fast renderer: PIL's fixed-point bicubic, restricted to each window, as banded matrix products
# ================================================================================================
_PRECISION_BITS = 32 - 8 - 2  # PIL Resample.c
_BICUBIC_A = -0.5


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = _BICUBIC_A
    x = np.abs(x)
    return np.where(
        x < 1.0,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
        np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0),
    )


@functools.lru_cache(maxsize=4096)
def _pil_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for bicubic over the full output axis.

    Returns (xmin [out], k [out, ksize]) with k the integer fixed-point weights (int64).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    xx = np.arange(out_size, dtype=np.float64)
    center = (xx + 0.5) * scale
    # C casts (int)(center - support + 0.5) truncate toward zero; then clamp.
    xmin = np.trunc(center - support + 0.5).astype(np.int64)
    xmin = np.maximum(xmin, 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    w = _bicubic((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) / filterscale)
    w = np.where(taps[None, :] < xmax[:, None], w, 0.0)
    ww = w.sum(1, keepdims=True)
    w = np.divide(w, ww, out=np.zeros_like(w), where=ww != 0)
    one = float(1 << _PRECISION_BITS)
    k = np.where(w < 0, np.trunc(-0.5 + w * one), np.trunc(0.5 + w * one)).astype(np.int64)
    return xmin, k


class _AxisResample:
    """One axis of the resize, restricted to the crop windows of all anchors on that axis.

    Only the output positions inside the resized image are computed (the rest of a window is
    PIL's black fill). With few taps (zooming in) a pass is K shifted copies and fused multiply-adds;
    with many taps (zooming out far) it is one dense band matrix product, whichever does less work.
    """

    DENSE_ABOVE_TAPS = 16

    def __init__(self, in_size: int, out_size: int, starts: list[int], crop: int):
        xmin, k = _pil_coeffs(in_size, out_size)
        self.taps = int(np.minimum(xmin + k.shape[1], in_size).sum() - xmin.sum())  # PIL's tap total
        # valid output positions of each window: [lo_a, hi_a) within the window
        self.spans = []  # (window, first offset in window, count, first row in the packed output)
        positions = []
        for a, start in enumerate(starts):
            lo, hi = max(0, -start), min(crop, out_size - start)
            if hi > lo:
                self.spans.append((a, lo, hi - lo, sum(len(p) for p in positions)))
                positions.append(np.arange(start + lo, start + hi))
        pos = np.concatenate(positions) if positions else np.zeros(0, np.int64)
        self.n = len(pos)
        ksize = k.shape[1]
        idx = xmin[pos, None] + np.arange(ksize)[None, :]  # [n, K]
        w = k[pos].astype(np.float64)  # [n, K], zero beyond the image edge
        used = w != 0
        self.lo = int(idx[used].min()) if used.any() else 0
        self.hi = int(idx[used].max()) + 1 if used.any() else 1
        idx = np.clip(idx, self.lo, self.hi - 1) - self.lo
        self.dense = ksize > self.DENSE_ABOVE_TAPS
        if self.dense:
            m = np.zeros((self.n, self.hi - self.lo), np.float64)  # [n, band]
            np.add.at(m, (np.repeat(np.arange(self.n), ksize), idx.ravel()), w.ravel())
            self.matrix = m
        else:
            self.idx, self.w = idx, w

    def _tensors(self, device, dtype):
        """The plan as tensors on the image's device, made once per device and dtype."""
        key = (str(device), dtype)
        cache = self.__dict__.setdefault("_on_device", {})
        if key not in cache:
            if self.dense:
                cache[key] = (torch.as_tensor(self.matrix, dtype=dtype, device=device),)
            else:
                cache[key] = (torch.as_tensor(self.idx.reshape(-1), device=device),  # [n*K]
                              torch.as_tensor(self.w, dtype=dtype, device=device))  # [n, K]
        return cache[key]

    def apply(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """x: [3, rows, cols] restricted to [lo, hi) along `dim` -> same with `n` outputs along dim."""
        if self.dense:
            (m,) = self._tensors(x.device, x.dtype)  # [n, band]
            return torch.matmul(x, m.T) if dim == 2 else torch.matmul(m, x)
        if dim == 2:  # gather whole rows (contiguous copies), not scattered columns
            return self.apply(x.transpose(1, 2).contiguous(), 1).transpose(1, 2).contiguous()
        idx, w = self._tensors(x.device, x.dtype)
        n, k = w.shape
        if x.device.type == "cuda":  # one gather and one reduction: few kernel launches
            taps = x.index_select(1, idx).view(x.shape[0], n, k, x.shape[2])  # [3, n, K, cols]
            return torch.einsum("cnkm,nk->cnm", taps, w)
        idx = idx.view(n, k)  # on CPU K fused multiply-adds over row copies touch less memory
        acc = x.index_select(1, idx[:, 0]) * w[:, 0].view(1, -1, 1)  # [3, n, cols]
        for t in range(1, k):
            acc.addcmul_(x.index_select(1, idx[:, t]), w[:, t].view(1, -1, 1))
        return acc


@functools.lru_cache(maxsize=512)
def _plan(width: int, height: int, scale: int, tops: tuple, lefts: tuple, crop: int):
    """Per (image size, scale, windows): both axes' restricted resamplers and PIL's pass order."""
    W, H = resized_size(width, height, scale)
    ax = _AxisResample(width, W, list(lefts), crop)
    ay = _AxisResample(height, H, list(tops), crop)
    # Pillow >= 13 (python-pillow/Pillow#9549) resamples vertically first when the height loses
    # more than twice as many pixels as the width: (H0 - H) > 2 (W0 - W). Measured exact on 1,640
    # random size pairs whose two pass orders differ, and at the boundary (see tests/test_views.py).
    # Older Pillows always go horizontal first; `_pil_vertical_first_rule` asks the installed one.
    vertical_first = H < height and (height - H) > 2 * (width - W) and _pil_vertical_first_rule()
    return ax, ay, vertical_first


def _resample_axis_int(a: np.ndarray, in_size: int, out_size: int, axis: int) -> np.ndarray:
    """One PIL 8-bit pass over a whole axis of an int64 array (exact fixed-point), for the probe."""
    xmin, k = _pil_coeffs(in_size, out_size)
    a = np.moveaxis(a, axis, 0)
    pad = np.concatenate([a, np.zeros((k.shape[1],) + a.shape[1:], np.int64)])  # taps past the edge have k = 0
    acc = np.full((out_size,) + a.shape[1:], 1 << (_PRECISION_BITS - 1), np.int64)
    for t in range(k.shape[1]):
        acc += pad[xmin + t] * k[:, t].reshape((-1,) + (1,) * (a.ndim - 1))
    return np.moveaxis(np.clip(acc >> _PRECISION_BITS, 0, 255), 0, axis)


@functools.lru_cache(maxsize=1)
def _pil_vertical_first_rule() -> bool:
    """Whether the installed Pillow resamples vertically first when the height shrinks much more
    than the width (Pillow >= 13) rather than always horizontally first (older versions).

    Decided once by resizing a small pseudo-random image whose two pass orders give different pixels.
    """
    from PIL import Image

    src = np.random.default_rng(0).integers(0, 256, (64, 6), dtype=np.uint8)  # [h, w], grey
    W, H = 4, 8  # (64 - 8) > 2 (6 - 4): the vertical-first case
    pil = np.asarray(Image.fromarray(src).resize((W, H), Image.BICUBIC), np.int64)
    a = src.astype(np.int64)
    xy = _resample_axis_int(_resample_axis_int(a, 6, W, 1), 64, H, 0)
    yx = _resample_axis_int(_resample_axis_int(a, 64, H, 0), 6, W, 1)
    if np.array_equal(xy, yx):  # pragma: no cover - the probe image is chosen so they differ
        raise AssertionError("pass-order probe image does not discriminate")
    return bool(np.array_equal(pil, yx))


def _round_shift(acc: torch.Tensor) -> torch.Tensor:
    """PIL's clip8((acc + 2^(P-1)) >> P) on exact integer-valued floats."""
    acc.add_(float(1 << (_PRECISION_BITS - 1))).mul_(1.0 / (1 << _PRECISION_BITS))
    return acc.floor_().clamp_(0, 255)


def render_views(
    image: torch.Tensor,
    grid: ViewGrid,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """All views of one decoded image on its own device, in PIL's arithmetic.

    image: uint8 [3, H0, W0] (any device). Returns float [n_views, 3, crop, crop] holding integer
    grey levels 0..255 (the uint8 values PIL would produce), on the image's device.
    dtype: accumulation type. float64 (default on CPU) reproduces PIL's fixed-point sums exactly;
    float32 (default on CUDA) rounds them and may differ by one grey level on rare pixels.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"render_views expects a uint8 [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
    device = image.device
    if dtype is None:
        dtype = torch.float64 if device.type == "cpu" else torch.float32
    _, h0, w0 = image.shape
    g, crop = grid.grid, grid.crop
    src = image.to(dtype)
    out = torch.zeros((grid.n_scales, g, g, 3, crop, crop), dtype=dtype, device=device)
    for s, scale in enumerate(grid.scales):
        tops, lefts, _, _ = grid.windows(w0, h0, scale)
        out[s] = render_windows(src, scale, tops, lefts, crop)
    return out.reshape(grid.n_views, 3, crop, crop)


def render_windows(src: torch.Tensor, scale: int, tops, lefts, crop: int) -> torch.Tensor:
    """Crops at every (top, left) pair of the image resized to shorter side `scale`.

    src: [3, H0, W0] grey levels in the accumulation dtype. Returns [len(tops), len(lefts), 3, crop,
    crop]. Shared by the view grid and the 5-crop / 10-crop sets of the TTA analysis.
    """
    _, h0, w0 = src.shape
    out = torch.zeros((len(tops), len(lefts), 3, crop, crop), dtype=src.dtype, device=src.device)
    ax, ay, vertical_first = _plan(w0, h0, int(scale), tuple(tops), tuple(lefts), crop)
    if ax.n == 0 or ay.n == 0:
        return out  # every window misses the image: all black
    if vertical_first:
        tmp = _round_shift(ay.apply(src[:, ay.lo:ay.hi, ax.lo:ax.hi], 1))  # [3, ny, band_x]
        res = _round_shift(ax.apply(tmp, 2))  # [3, ny, nx]
    else:
        tmp = _round_shift(ax.apply(src[:, ay.lo:ay.hi, ax.lo:ax.hi], 2))  # [3, band_y, nx]
        res = _round_shift(ay.apply(tmp, 1))  # [3, ny, nx]
    for r, oy, ny, py in ay.spans:
        for c, ox, nx, px in ax.spans:
            out[r, c, :, oy:oy + ny, ox:ox + nx] = res[:, py:py + ny, px:px + nx]
    return out


# ================================================================================================
# Resize, then centre crop: the one home of the classic evaluation view
# ================================================================================================
#: Where a centred crop sits: "torchvision" = CenterCrop's round((H - crop) / 2); "anchor" = the centre
#: anchor of SPEC 1's 3 x 3 arithmetic (for Resize 256 + crop 224 exactly the view `LOC:1_1_Size:256`).
CENTERS = ("torchvision", "anchor")


def center_crop_offsets(width: int, height: int, scale: int, crop: int, center: str = "torchvision") -> tuple[int, int]:
    """(top, left) of the centred crop x crop window in the image resized to shorter side `scale`
    (SPEC 1.1 sizes); the geometry every "Resize, then centre crop" of the package shares."""
    if center not in CENTERS:
        raise ValueError(f"center must be one of {CENTERS}, got {center!r}")
    if center == "anchor":  # the middle window of the 3 x 3 grid
        tops, lefts, _, _ = ViewGrid(scales=(scale,), crop=crop, grid=3).windows(width, height, scale)
        return tops[1], lefts[1]
    W, H = resized_size(width, height, scale)
    return int(round((H - crop) / 2.0)), int(round((W - crop) / 2.0))


def render_center_crop(image: torch.Tensor, scale: int, crop: int, *, center: str = "torchvision",
                       dtype=None) -> torch.Tensor:
    """Resize(scale) + CenterCrop(crop) of a uint8 [3, H, W] image in PIL's exact bicubic arithmetic
    (`render_windows`). Returns grey levels (float, 0..255) [3, crop, crop] on the image's device."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"render_center_crop expects a uint8 [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
    if dtype is None:
        dtype = torch.float64 if image.device.type == "cpu" else torch.float32
    _, h0, w0 = image.shape
    top, left = center_crop_offsets(w0, h0, scale, crop, center)
    return render_windows(image.to(dtype), scale, [top], [left], crop)[0, 0]


def resize_center_crop(image, resize, crop, *, interpolation="bilinear", antialias: bool = True):
    """torchvision's Resize(resize) + CenterCrop(crop) with any of its interpolations, for the plain
    views that follow torchvision rather than the exact renderer (MEMO's bilinear baseline, timm-style
    data configs). image: a PIL image or a uint8 [3, H, W] tensor; returns the same kind.

    resize: an int (shorter side) or (h, w); crop: an int or (h, w); interpolation: a name
    ("bilinear", "bicubic", "nearest", ...) or a `torchvision.transforms.InterpolationMode`.
    """
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    if isinstance(interpolation, str):
        try:
            interpolation = InterpolationMode(interpolation)
        except ValueError:
            raise ValueError(f"unknown interpolation {interpolation!r}") from None
    size = [int(resize)] if np.ndim(resize) == 0 else [int(v) for v in resize]
    box = [int(crop), int(crop)] if np.ndim(crop) == 0 else [int(v) for v in crop]
    x = TF.resize(image, size, interpolation=interpolation, antialias=antialias)
    return TF.center_crop(x, box)


def tta_crops(image: torch.Tensor, crop: int = 224, resize: int = 256, *, dtype=None) -> torch.Tensor:
    """The 10-crop set of SPEC section 4: Resize(resize) then the 4 corners and the centre, then the
    same 5 flipped horizontally. Returns grey levels [10, 3, crop, crop]; the first 5 are the 5-crop.

    The centre is `center_crop_offsets`' (torchvision's CenterCrop, round((size - crop) / 2)).
    """
    if dtype is None:
        dtype = torch.float64 if image.device.type == "cpu" else torch.float32
    _, h0, w0 = image.shape
    W, H = resized_size(w0, h0, resize)
    top, left = center_crop_offsets(w0, h0, resize, crop)
    tops = [0, top, H - crop]
    lefts = [0, left, W - crop]
    g = render_windows(image.to(dtype), resize, tops, lefts, crop)  # [3, 3, 3, crop, crop]
    five = torch.stack([g[0, 0], g[0, 2], g[2, 0], g[2, 2], g[1, 1]])  # tl, tr, bl, br, centre
    return torch.cat([five, five.flip(-1)])


def normalize(views: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=torch.float32) -> torch.Tensor:
    """uint8 grey levels [..., 3, h, w] -> ToTensor + Normalize (SPEC 1.4); black becomes -mean/std."""
    mean_t = torch.as_tensor(mean, dtype=dtype, device=views.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=views.device).view(3, 1, 1)
    return (views.to(dtype) / 255.0 - mean_t) / std_t


def pil_to_tensor(image) -> torch.Tensor:
    """PIL image -> uint8 [3, H, W] (RGB), without a copy through float."""
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
