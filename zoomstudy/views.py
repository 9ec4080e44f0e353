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
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

#: The paper's 36 distinct scales (the authors' list repeats 10).
PAPER_SCALES: tuple[int, ...] = (
    10, 16, 32, 48, 64, 96, 122, 128, 192, 224, 235, 240, 256, 288, 320, 348, 384, 448, 460, 512,
    573, 576, 640, 664, 672, 680, 686, 690, 700, 720, 768, 798, 832, 896, 911, 1024,
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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
    def scaled(cls, crop: int, grid: int = 3) -> "ViewGrid":
        """The paper's grid for another crop size: scales multiplied by crop / 224 (deduplicated)."""
        scales = sorted({max(1, round(s * crop / 224)) for s in PAPER_SCALES})
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


def _band_matrix(in_size: int, out_size: int, starts: list[int], length: int):
    """Weights of output positions [start, start + length) for each start, as dense band blocks.

    Returns (lo, hi, M) with M float64 [len(starts), length, hi - lo]: row i, j holds the fixed-point
    weights with which output position starts[i] + j reads input positions lo..hi-1. Output positions
    outside [0, out_size) get a zero row, which is PIL's black fill of a crop outside the image.
    """
    xmin, k = _pil_coeffs(in_size, out_size)
    ksize = k.shape[1]
    pos = np.asarray(starts)[:, None] + np.arange(length)[None, :]  # [A, length]
    valid = (pos >= 0) & (pos < out_size)
    p = np.clip(pos, 0, out_size - 1)
    first = xmin[p]  # [A, length]
    if valid.any():
        lo = int(first[valid].min())
        hi = int(min(in_size, first[valid].max() + ksize))
    else:
        lo, hi = 0, 1
    cols = first[..., None] + np.arange(ksize) - lo  # [A, length, ksize]
    weights = np.where(valid[..., None], k[p], 0).astype(np.float64)
    keep = (cols >= 0) & (cols < hi - lo) & (weights != 0)
    M = np.zeros((len(starts), length, hi - lo), np.float64)
    a_idx, j_idx, t_idx = np.nonzero(keep)
    M[a_idx, j_idx, cols[a_idx, j_idx, t_idx]] = weights[a_idx, j_idx, t_idx]
    return lo, hi, M


@functools.lru_cache(maxsize=128)
def _plan(width: int, height: int, grid: ViewGrid, scale: int):
    """Per (image size, scale): the horizontal and vertical band matrices of all anchors (cached)."""
    tops, lefts, W, H = grid.windows(width, height, scale)
    x_lo, x_hi, Mx = _band_matrix(width, W, lefts, grid.crop)  # [g, crop, x_hi - x_lo]
    y_lo, y_hi, My = _band_matrix(height, H, tops, grid.crop)  # [g, crop, y_hi - y_lo]
    return (x_lo, x_hi, Mx), (y_lo, y_hi, My)


def _round_shift(acc: torch.Tensor) -> torch.Tensor:
    """PIL's clip8((acc + 2^(P-1)) >> P) on exact integer-valued floats."""
    return torch.floor((acc + float(1 << (_PRECISION_BITS - 1))) * (1.0 / (1 << _PRECISION_BITS))).clamp_(0, 255)


def render_views(
    image: torch.Tensor,
    grid: ViewGrid,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """All views of one decoded image on its own device, in PIL's arithmetic.

    image: uint8 [3, H0, W0] (any device). Returns float [n_views, 3, crop, crop] holding integer
    grey levels 0..255 (the uint8 values PIL would produce), on the image's device.
    dtype: accumulation type. float64 (default on CPU) is bit-exact with PIL; float32 (default on
    CUDA) rounds the fixed-point sums and may differ by one grey level on rare pixels.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"render_views expects a uint8 [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
    device = image.device
    if dtype is None:
        dtype = torch.float64 if device.type == "cpu" else torch.float32
    _, h0, w0 = image.shape
    g, crop = grid.grid, grid.crop
    src = image.to(dtype)
    out = torch.empty((grid.n_scales, g, g, 3, crop, crop), dtype=dtype, device=device)
    for s, scale in enumerate(grid.scales):
        (x_lo, x_hi, Mx), (y_lo, y_hi, My) = _plan(w0, h0, grid, scale)
        mx = torch.as_tensor(Mx, dtype=dtype, device=device)  # [g, crop, nx]
        my = torch.as_tensor(My, dtype=dtype, device=device)  # [g, crop, ny]
        # horizontal pass first (as PIL), on the rows the vertical pass reads, all anchor columns at once:
        rows = src[:, y_lo:y_hi, x_lo:x_hi]  # [3, ny, nx]
        tmp = _round_shift(torch.matmul(rows, mx.reshape(g * crop, -1).T))  # [3, ny, g*crop]
        # vertical pass, all anchor rows at once:
        res = _round_shift(torch.matmul(my.reshape(g * crop, -1), tmp))  # [3, g*crop, g*crop]
        res = res.reshape(3, g, crop, g, crop).permute(1, 3, 0, 2, 4)  # [g_row, g_col, 3, crop, crop]
        out[s] = res
    return out.reshape(grid.n_views, 3, crop, crop)


def normalize(views: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=torch.float32) -> torch.Tensor:
    """uint8 grey levels [..., 3, h, w] -> ToTensor + Normalize (SPEC 1.4); black becomes -mean/std."""
    mean_t = torch.as_tensor(mean, dtype=dtype, device=views.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=views.device).view(3, 1, 1)
    return (views.to(dtype) / 255.0 - mean_t) / std_t


def pil_to_tensor(image) -> torch.Tensor:
    """PIL image -> uint8 [3, H, W] (RGB), without a copy through float."""
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
