"""Zoom test-time augmentation as one module for inference code: `ZoomTTA`, and its policy file.

A sweep says which views help (`analysis.budget`); `ZoomTTA` ships them. It renders exactly the chosen
views (S, r, c) of each image with the sweep's renderer (`views.render_windows`, PIL's bicubic
arithmetic, the grid's anchor geometry), in the sweep's dtype and normalisation, on the model's device,
forwards all views of the batch at once and aggregates like the store does: "mean" is the argmax of the
averaged softmax, "max" the class of the single most confident view. So on the images of a sweep it
gives the store's aggregated predictions, view for view (tests/test_budget.py checks it on the kit).

A policy is a small JSON file: the views, the aggregation, the grid geometry and normalisation, and
the model, data and cross-validated accuracy it was chosen with (`analysis.budget.make_policy`, the CLI
`zoomstudy tta-policy`). `ZoomTTA.from_policy(model, path)` rebuilds the module from it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import ViewGrid, normalize, pil_to_tensor, render_windows

AGGREGATES = ("mean", "max")
POLICY_FORMAT = "zoomstudy-tta-policy"
POLICY_VERSION = 1


class ZoomTTA(nn.Module):
    """Aggregated logits over a fixed set of zoom views: ``ZoomTTA(model, views=[(S, r, c), ...])``.

    model: a `LoadedModel` (its label space and device are used) or any `nn.Module` mapping normalised
    [B, 3, crop, crop] to [B, classes] logits. views: (scale, anchor row, anchor column) triples of a
    `grid` x `grid` anchor grid with `crop` x `crop` windows (the paper: 3 and 224). aggregate: "mean" or
    "max". mean, std: the normalisation (default ImageNet's, the sweep's default). render_dtype: float64
    on CPU (PIL-exact, the sweep's CPU default), float32 elsewhere (the sweep's CUDA default).

    forward(images): a uint8 [B, 3, H, W] or [3, H, W] tensor, a PIL image, or a list of those (sizes
    may differ). Returns float32 [B, classes] log-probabilities: log of the averaged softmax ("mean") or
    the log-softmax of the most confident view ("max"); their argmax is the aggregated prediction.
    """

    def __init__(self, model, views: Sequence[Sequence[int]], aggregate: str = "mean", *, grid: int = 3,
                 crop: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD, render_dtype: torch.dtype | None = None):
        super().__init__()
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        self.views = _check_views(views, grid)
        self.aggregate, self.grid, self.crop = aggregate, int(grid), int(crop)
        self.mean, self.std = tuple(float(x) for x in mean), tuple(float(x) for x in std)
        self._loaded = model if hasattr(model, "logits") and hasattr(model, "module") else None
        self.model = model.module if self._loaded is not None else model
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"model must be a LoadedModel or a torch.nn.Module, got {type(model).__name__}")
        self.render_dtype = render_dtype
        # the geometry: scales in order of first use, and per scale the anchor rows and columns needed
        self._by_scale: dict[int, list[int]] = {}
        for i, (s, _, _) in enumerate(self.views):
            self._by_scale.setdefault(s, []).append(i)

    @property
    def device(self) -> torch.device:
        if self._loaded is not None:
            return self._loaded.device
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @classmethod
    def from_policy(cls, model, policy: str | Path | Mapping, **kw) -> "ZoomTTA":
        """The module of a policy (a dict or the path of its JSON file, see `load_policy`)."""
        pol = load_policy(policy) if not isinstance(policy, Mapping) else check_policy(policy)
        g = pol["grid"]
        norm = pol.get("normalization") or {}
        return cls(model, pol["views"], pol["aggregate"], grid=g["grid"], crop=g["crop"],
                   mean=norm.get("mean", IMAGENET_MEAN), std=norm.get("std", IMAGENET_STD), **kw)

    def render(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [k, 3, crop, crop]: this module's views of one uint8 [3, H, W] image, on its device."""
        device = self.device
        dtype = self.render_dtype or (torch.float64 if device.type == "cpu" else torch.float32)
        x = image.to(device)
        _, h0, w0 = x.shape
        src = x.to(dtype)
        out = torch.empty((len(self.views), 3, self.crop, self.crop), dtype=torch.uint8, device=device)
        one = ViewGrid(scales=(1,), grid=self.grid, crop=self.crop)
        for s, idx in self._by_scale.items():
            tops, lefts, _, _ = one.windows(w0, h0, s)
            rows = sorted({self.views[i][1] for i in idx})
            cols = sorted({self.views[i][2] for i in idx})
            crops = render_windows(src, s, [tops[r] for r in rows], [lefts[c] for c in cols], self.crop)
            for i in idx:
                _, r, c = self.views[i]
                out[i] = crops[rows.index(r), cols.index(c)].to(torch.uint8)
        return out

    def forward(self, images) -> torch.Tensor:
        batch = _as_images(images)
        k = len(self.views)
        views = torch.cat([self.render(im) for im in batch])  # uint8 [B k, 3, crop, crop]
        x = normalize(views, self.mean, self.std)
        if self._loaded is not None:
            logits = self._loaded.logits(x)
        else:
            logits = self.model(x.to(self.device)).float()
        probs = logits.softmax(-1).reshape(len(batch), k, -1)  # [B, k, C]
        if self.aggregate == "mean":
            return probs.mean(1).log()
        conf = probs.max(-1).values  # [B, k]
        best = conf.argmax(1)  # the first most confident view, as the store's argmax
        return probs[torch.arange(len(batch), device=probs.device), best].log()

    def predict(self, images) -> torch.Tensor:
        """int64 [B]: the aggregated class of each image."""
        return self(images).argmax(-1)

    def extra_repr(self) -> str:
        return f"views={self.views}, aggregate={self.aggregate!r}, grid={self.grid}, crop={self.crop}"


def _check_views(views, grid: int) -> list[tuple[int, int, int]]:
    try:
        out = [tuple(int(x) for x in v) for v in views]
    except (TypeError, ValueError):
        raise ValueError(f"views must be (scale, row, col) triples of integers, got {views!r}") from None
    if not out:
        raise ValueError("views must hold at least one (scale, row, col) triple")
    for v in out:
        if len(v) != 3 or v[0] < 1 or not (0 <= v[1] < grid and 0 <= v[2] < grid):
            raise ValueError(f"view {v} is not (scale >= 1, row and col in 0..{grid - 1})")
    if len(set(out)) != len(out):
        raise ValueError(f"views repeat: {out}")
    return out


def _as_images(images) -> list[torch.Tensor]:
    """uint8 [3, H, W] tensors from a batch tensor, one tensor, a PIL image, or a list of them."""
    if torch.is_tensor(images):
        if images.ndim == 3:
            images = [images]
        elif images.ndim == 4:
            images = list(images)
        else:
            raise ValueError(f"ZoomTTA expects uint8 [B, 3, H, W] or [3, H, W], got {tuple(images.shape)}")
    elif not isinstance(images, (list, tuple)):
        images = [images]
    out = []
    for im in images:
        if not torch.is_tensor(im):
            if not hasattr(im, "convert"):
                raise ValueError(f"ZoomTTA takes uint8 tensors or PIL images, got {type(im).__name__}")
            im = pil_to_tensor(im)
        if im.dtype != torch.uint8 or im.ndim != 3 or im.shape[0] != 3:
            raise ValueError(f"ZoomTTA expects uint8 [3, H, W] images, got {im.dtype} {tuple(im.shape)}")
        out.append(im)
    if not out:
        raise ValueError("ZoomTTA got no image")
    return out


# ================================================================================================
# the policy file
# ================================================================================================
def check_policy(policy: Mapping) -> dict:
    """ValueError unless `policy` is a version-1 policy with valid views and aggregation; returns a copy."""
    if not isinstance(policy, Mapping) or policy.get("format") != POLICY_FORMAT:
        raise ValueError(f"not a {POLICY_FORMAT} file (its 'format' field is missing or different)")
    if policy.get("version") != POLICY_VERSION:
        raise ValueError(f"policy version {policy.get('version')!r} is not supported (expected {POLICY_VERSION})")
    if policy.get("aggregate") not in AGGREGATES:
        raise ValueError(f"policy aggregate must be one of {AGGREGATES}, got {policy.get('aggregate')!r}")
    g = policy.get("grid") or {}
    if not isinstance(g, Mapping) or not all(isinstance(g.get(k), int) for k in ("grid", "crop")):
        raise ValueError("policy grid must give integer 'grid' and 'crop'")
    out = dict(policy)
    out["views"] = [list(v) for v in _check_views(policy.get("views") or [], g["grid"])]
    return out


def save_policy(policy: Mapping, path: str | Path) -> Path:
    """Write a policy as indented JSON (checked first; the file is replaced atomically)."""
    from zoomstudy.keyed import atomic_write

    pol = check_policy(policy)
    return atomic_write(path, json.dumps(pol, indent=2, default=_plain) + "\n")


def load_policy(path: str | Path) -> dict:
    """Read and check a policy JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    return check_policy(data)


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


__all__ = ["ZoomTTA", "save_policy", "load_policy", "check_policy", "AGGREGATES"]
