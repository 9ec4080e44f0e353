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
  bit-identical to PIL, on CPU and on CUDA alike (the default everywhere). float32 is an opt-in for
  GPUs without fast float64 (T4 and other consumer cards): its sums of 22-bit fixed-point products
  round, measured on 10 full-size ImageNet images (3,240 views): 2.4e-5 of the pixels differ by up to
  2 grey levels, 51% of views have at least one differing pixel, 1 top-1 flip in 3,240.

On CUDA (`method="batched"`) all views of an image (all scales, plus the 10-crop set) are made by a
fixed handful of operations: both passes of every scale as two padded batched matrix products and
every anchor window of every scale by one gather, from a plan built once per (device, dtype, image
size, view layout) and kept in a byte-bounded cache (`plan_cache`). On CPU (`method="banded"`) each
scale is resampled with its few taps (less arithmetic; launches cost nothing there). Both run inside
`exact_math`: autocast off and full-precision float32 matmuls, whatever the caller set.
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections import OrderedDict
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


def _plan(width: int, height: int, scale: int, tops: tuple, lefts: tuple, crop: int):
    """Per (image size, scale, windows): both axes' restricted resamplers and PIL's pass order (numpy;
    `render_windows` keeps them on the device through `plan_cache`)."""
    W, H = resized_size(width, height, scale)
    ax = _AxisResample(width, W, list(lefts), crop)
    ay = _AxisResample(height, H, list(tops), crop)
    # Pillow >= 13 (python-pillow/Pillow#9549) resamples vertically first when the height loses
    # more than twice as many pixels as the width: (H0 - H) > 2 (W0 - W). Measured exact on 1,640
    # random size pairs whose two pass orders differ, and at the boundary (see tests/test_views.py).
    # Older Pillows always go horizontal first; `_pil_vertical_first_rule` asks the installed one.
    return ax, ay, _vertical_first(width, height, W, H)


def _vertical_first(width: int, height: int, W: int, H: int) -> bool:
    return H < height and (height - H) > 2 * (width - W) and _pil_vertical_first_rule()


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


@contextlib.contextmanager
def exact_math():
    """Autocast off (CUDA and CPU) and float32 matmuls in full precision (no TF32 on CUDA, no bf16 in
    oneDNN on CPU) inside the block, whatever the caller set; the caller's settings come back after.

    Why: the renderer's sums are exact integers only in float64, or rounded as documented in float32;
    an outer `torch.autocast` or `allow_tf32` / `set_float32_matmul_precision("medium")` would silently
    round them far more (with TF32 on, 7% of pixels differ from PIL). float64 matmuls ignore these
    settings, float32 ones do not.
    """
    precision = torch.get_float32_matmul_precision()  # also holds torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast("cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast("cuda", enabled=False))
            yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


# ---- plans on the device, in a byte-bounded cache --------------------------------------------------
#: Bytes of plans kept per device type ("default": any device type not named). The CPU's share is part
#: of what a CPU sweep's host budget must hold; on a GPU a few image sizes' batched plans fit.
PLAN_CACHE_BYTES: dict[str, int] = {"cpu": 256 * 2**20, "default": 2 * 2**30}


class PlanCache:
    """Resampling plans as tensors on their device, least recently used out first, at most
    `max_bytes[device type]` bytes per device type (a plan larger than that is used, not kept).

    Why: a plan (PIL's coefficients as gather indices, tap weights or band matrices) costs numpy work
    and one upload per tensor; the sweep used to drop all plans after every scale to bound memory,
    which rebuilt and re-uploaded them for every image (about 137 uploads per image). ImageNet repeats
    a few image sizes (500 x 375 and 375 x 500 are most of it), so a bounded cache keeps those on the
    device and the memory bound stays. `stats` counts builds, hits, uploads (tensors made on a device
    for a plan) and evictions: what tests and benchmarks read.
    """

    def __init__(self, max_bytes: dict[str, int] | None = None):
        self.max_bytes = dict(PLAN_CACHE_BYTES if max_bytes is None else max_bytes)
        self._items: OrderedDict = OrderedDict()  # key -> (plan, nbytes, device type)
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stats = {"builds": 0, "hits": 0, "uploads": 0, "evictions": 0}

    def limit(self, device_type: str) -> int:
        return int(self.max_bytes.get(device_type, self.max_bytes.get("default", 0)))

    def nbytes(self, device_type: str | None = None) -> int:
        """Bytes held (on one device type, or on all)."""
        return sum(self._bytes.values()) if device_type is None else self._bytes.get(device_type, 0)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple, device: torch.device, build):
        """The plan under `key` (which must name the device and dtype), built by `build()` if absent."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.stats["hits"] += 1
                return hit[0]
        plan = build()
        tensors = plan.tensors()
        size = sum(t.numel() * t.element_size() for t in tensors)
        kind = torch.device(device).type
        with self._lock:
            self.stats["builds"] += 1
            self.stats["uploads"] += len(tensors)
            limit = self.limit(kind)
            if size > limit:
                return plan
            for k in [k for k, v in self._items.items() if v[2] == kind]:  # oldest first
                if self._bytes.get(kind, 0) + size <= limit:
                    break
                _, nb, _ = self._items.pop(k)
                self._bytes[kind] -= nb
                self.stats["evictions"] += 1
            self._items[key] = (plan, size, kind)
            self._bytes[kind] = self._bytes.get(kind, 0) + size
        return plan

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes.clear()


_PLANS = PlanCache()


def plan_cache() -> PlanCache:
    """The renderer's one plan cache (bounds in `max_bytes`, counters in `stats`)."""
    return _PLANS


class _BandPlan:
    """`_plan`'s per-scale resamplers with their tensors made on one device in one dtype."""

    def __init__(self, width, height, scale, tops, lefts, crop, device, dtype):
        self.ax, self.ay, self.vertical_first = _plan(width, height, scale, tops, lefts, crop)
        self._tensors = [self.ax._tensors(device, dtype), self.ay._tensors(device, dtype)]
        for a in (self.ax, self.ay):  # the device copies are what `apply` reads; drop the numpy ones
            a.matrix = a.idx = a.w = None

    def tensors(self) -> list[torch.Tensor]:
        return [t for pair in self._tensors for t in pair]


def _axis_matrix(in_size: int, out_size: int, starts, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """One axis of a scale as a dense matrix: PIL's fixed-point weights [n, in_size] of the distinct
    output positions that some window keeps, and [windows, crop] -> row of it (-1: outside the image)."""
    xmin, k = _pil_coeffs(in_size, out_size)
    offs = np.asarray(starts, np.int64)[:, None] + np.arange(crop)[None, :]  # [A, crop]
    inside = (offs >= 0) & (offs < out_size)
    pos = np.unique(offs[inside])
    m = np.zeros((len(pos), in_size), np.float64)
    if len(pos):
        idx = xmin[pos, None] + np.arange(k.shape[1])[None, :]  # [n, K]
        ok = idx < in_size  # taps past the edge have k = 0
        rows = np.broadcast_to(np.arange(len(pos))[:, None], idx.shape)
        m[rows[ok], idx[ok]] = k[pos][ok]
    mapping = np.full(offs.shape, -1, np.int64)
    mapping[inside] = np.searchsorted(pos, offs[inside])
    return m, mapping


class _BatchPlan:
    """All views of one image size as two padded batched matrix products per pass order and a gather.

    entries: ((scale, tops, lefts), ...) windows to resample; picks: ((entry, row, col, flip), ...)
    the views, in output order. Each entry's two passes are dense matrices over the whole axis,
    zero-padded to one common size (NX, NY) so that all entries of one pass order are one matmul;
    the last padded row and column are always zero, the black of windows outside the image. PIL's
    pass order is per entry, so horizontal-first and vertical-first entries form two groups.
    """

    def __init__(self, width, height, entries, picks, crop, device, dtype):
        per = []
        for scale, tops, lefts in entries:
            W, H = resized_size(width, height, int(scale))
            mx, map_x = _axis_matrix(width, W, lefts, crop)
            my, map_y = _axis_matrix(height, H, tops, crop)
            per.append((mx, map_x, my, map_y, _vertical_first(width, height, W, H)))
        nx = max(p[0].shape[0] for p in per) + 1
        ny = max(p[2].shape[0] for p in per) + 1
        self.nx, self.ny, self.h0, self.w0 = nx, ny, height, width
        order = [e for e, p in enumerate(per) if not p[4]] + [e for e, p in enumerate(per) if p[4]]
        at = {e: i for i, e in enumerate(order)}
        t = functools.partial(torch.as_tensor, device=device)
        self.groups = []  # (vertical first, first-pass matrix, second-pass matrix, n entries)
        for vf in (False, True):
            es = [e for e in order if per[e][4] == vf]
            if not es:
                continue
            if not vf:  # src [3, h0, w0] @ MX [w0, E*nx]; then MY [E, ny, h0] @ [E, 3, h0, nx]
                first = np.zeros((width, len(es) * nx))
                second = np.zeros((len(es), ny, height))
                for j, e in enumerate(es):
                    mx, my = per[e][0], per[e][2]
                    first[:, j * nx:j * nx + len(mx)] = mx.T
                    second[j, :len(my)] = my
            else:  # MY [E*ny, h0] @ src [3, h0, w0]; then [E, 3, ny, w0] @ MX [E, w0, nx]
                first = np.zeros((len(es) * ny, height))
                second = np.zeros((len(es), width, nx))
                for j, e in enumerate(es):
                    mx, my = per[e][0], per[e][2]
                    first[j * ny:j * ny + len(my)] = my
                    second[j, :, :len(mx)] = mx.T
            self.groups.append((vf, t(first, dtype=dtype), t(second, dtype=dtype).unsqueeze(1), len(es)))
        v = len(picks)
        e_idx = np.array([at[e] for e, _, _, _ in picks], np.int64)
        ry = np.stack([per[e][3][r] for e, r, _, _ in picks])  # [V, crop]
        rx = np.stack([per[e][1][c][::-1] if flip else per[e][1][c] for e, _, c, flip in picks])
        ry, rx = np.where(ry < 0, ny - 1, ry), np.where(rx < 0, nx - 1, rx)
        self.index = (t(e_idx.reshape(v, 1, 1, 1)), t(np.arange(3).reshape(1, 3, 1, 1)),
                      t(ry.reshape(v, 1, crop, 1)), t(rx.reshape(v, 1, 1, crop)))

    def tensors(self) -> list[torch.Tensor]:
        return [x for g in self.groups for x in g[1:3]] + list(self.index)

    def apply(self, src: torch.Tensor) -> torch.Tensor:
        """src [3, h0, w0] grey levels -> [V, 3, crop, crop] (the picks)."""
        res = []
        for vf, first, second, n in self.groups:
            if not vf:
                tmp = _round_shift(torch.matmul(src, first))  # [3, h0, E*nx]
                tmp = tmp.view(3, self.h0, n, self.nx).permute(2, 0, 1, 3)  # [E, 3, h0, nx]
                res.append(_round_shift(torch.matmul(second, tmp)))  # [E, 3, ny, nx]
            else:
                tmp = _round_shift(torch.matmul(first, src))  # [3, E*ny, w0]
                tmp = tmp.view(3, n, self.ny, self.w0).transpose(0, 1)  # [E, 3, ny, w0]
                res.append(_round_shift(torch.matmul(tmp, second)))  # [E, 3, ny, nx]
        res = res[0] if len(res) == 1 else torch.cat(res)
        return res[self.index]  # one gather: every window of every scale, flips included


@functools.lru_cache(maxsize=1024)
def view_layout(grid: ViewGrid, width: int, height: int, tta: bool = False) -> tuple[tuple, tuple]:
    """The views of one image size as (entries, picks) for `render_batch`: the grid's views in its
    order (scale-major, row, col), then, with tta, the 10-crop set of `tta_crops`."""
    entries, picks = [], []
    for s, scale in enumerate(grid.scales):
        tops, lefts, _, _ = grid.windows(width, height, scale)
        entries.append((scale, tuple(tops), tuple(lefts)))
        picks.extend((s, r, c, False) for r in range(grid.grid) for c in range(grid.grid))
    if tta:
        e = len(entries)
        tops, lefts = _tta_windows(width, height, grid.crop, grid.standard_scale)
        entries.append((grid.standard_scale, tuple(tops), tuple(lefts)))
        five = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]  # tl, tr, bl, br, centre
        picks.extend((e, r, c, flip) for flip in (False, True) for r, c in five)
    return tuple(entries), tuple(picks)


def split_layout(entries: tuple, picks: tuple, parts: int) -> list[tuple[tuple, tuple]]:
    """(entries, picks) cut into at most `parts` pieces of consecutive entries whose picks, rendered
    piece by piece and concatenated, are the picks in their order (picks must be entry-ordered)."""
    n = len(entries)
    parts = max(1, min(int(parts), n))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        sub = tuple((e - a, r, c, f) for e, r, c, f in picks if a <= e < b)
        if sub:
            out.append((entries[a:b], sub))
    return out


def render_batch(src: torch.Tensor, entries: tuple, picks: tuple, crop: int) -> torch.Tensor:
    """The views (entries, picks) of `view_layout` in one batched pass, on src's device.

    src: [3, H0, W0] grey levels in the accumulation dtype. Returns [len(picks), 3, crop, crop].
    The plan is built once per (device, dtype, size, layout) and kept in `plan_cache()`.
    """
    _, h0, w0 = src.shape
    key = ("batch", str(src.device), src.dtype, w0, h0, entries, picks, crop)
    plan = _PLANS.get(key, src.device,
                      lambda: _BatchPlan(w0, h0, entries, picks, crop, src.device, src.dtype))
    with exact_math():
        return plan.apply(src)


#: How views are made: "batched" (every view of an image in a few large operations: GPUs) or "banded"
#: (each scale with its few taps: CPUs). None picks by device.
METHODS = ("batched", "banded")


def _method(device: torch.device, method: str | None) -> str:
    if method is None:
        return "banded" if device.type == "cpu" else "batched"
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} or None, got {method!r}")
    return method


def render_views(
    image: torch.Tensor,
    grid: ViewGrid,
    *,
    dtype: torch.dtype | None = None,
    method: str | None = None,
) -> torch.Tensor:
    """All views of one decoded image on its own device, in PIL's arithmetic.

    image: uint8 [3, H0, W0] (any device). Returns float [n_views, 3, crop, crop] holding integer
    grey levels 0..255 (the uint8 values PIL would produce), on the image's device.
    dtype: accumulation type. float64 (the default, CPU and CUDA) reproduces PIL's fixed-point sums
    exactly; float32 (opt-in for GPUs without fast float64) rounds them: measured, up to 2 grey levels
    on 2.4e-5 of the pixels (see the module docstring).
    method: "batched" (default on CUDA) or "banded" (default on CPU); both give the same pixels.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"render_views expects a uint8 [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
    device = image.device
    dtype = torch.float64 if dtype is None else dtype
    _, h0, w0 = image.shape
    g, crop = grid.grid, grid.crop
    src = image.to(dtype)
    if _method(device, method) == "batched":
        entries, picks = view_layout(grid, w0, h0)
        return render_batch(src, entries, picks, crop)
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
    key = ("band", str(src.device), src.dtype, w0, h0, int(scale), tuple(tops), tuple(lefts), crop)
    plan = _PLANS.get(key, src.device, lambda: _BandPlan(w0, h0, int(scale), tuple(tops), tuple(lefts), crop,
                                                         src.device, src.dtype))
    ax, ay, vertical_first = plan.ax, plan.ay, plan.vertical_first
    if ax.n == 0 or ay.n == 0:
        return out  # every window misses the image: all black
    with exact_math():
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
    dtype = torch.float64 if dtype is None else dtype
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
    dtype = torch.float64 if dtype is None else dtype
    _, h0, w0 = image.shape
    tops, lefts = _tta_windows(w0, h0, crop, resize)
    g = render_windows(image.to(dtype), resize, tops, lefts, crop)  # [3, 3, 3, crop, crop]
    five = torch.stack([g[0, 0], g[0, 2], g[2, 0], g[2, 2], g[1, 1]])  # tl, tr, bl, br, centre
    return torch.cat([five, five.flip(-1)])


def _tta_windows(width: int, height: int, crop: int, resize: int) -> tuple[list[int], list[int]]:
    """Tops and lefts of the 10-crop set: the corners and torchvision's centre, after Resize(resize)."""
    W, H = resized_size(width, height, resize)
    top, left = center_crop_offsets(width, height, resize, crop)
    return [0, top, H - crop], [0, left, W - crop]


def normalize(views: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=torch.float32) -> torch.Tensor:
    """uint8 grey levels [..., 3, h, w] -> ToTensor + Normalize (SPEC 1.4); black becomes -mean/std."""
    mean_t = torch.as_tensor(mean, dtype=dtype, device=views.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=views.device).view(3, 1, 1)
    return (views.to(dtype) / 255.0 - mean_t) / std_t


def pil_to_tensor(image) -> torch.Tensor:
    """PIL image -> uint8 [3, H, W] (RGB), without a copy through float."""
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
