"""The images a report shows: which rows to pick, and the pixels to draw them with.

`pick_example` and `example_rows` choose instructive images from a correctness matrix (those zoom
rescues first); `centre_views` renders one image's centre view at every scale with the sweep's own
arithmetic (`views.render_views`), and `thumbnails` makes small square previews of decoded images
(the explorer's and the ImageNet-Hard gallery's).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoomstudy.views import ViewGrid


def pick_example(correct: np.ndarray, standard_view: int | None = None, shown: Sequence[int] | None = None) -> int:
    """Row of an instructive image: wrong at the 1-crop view but right in some view (zoom rescues it),
    preferring one whose `shown` views (e.g. the centre view at each scale, as a gallery shows them)
    are partly right and partly wrong; else right in some view but not all; else the first image."""
    correct = np.asarray(correct, bool)
    if correct.ndim != 2 or correct.shape[0] == 0:
        raise ValueError(f"pick_example: expected a non-empty [N, V] matrix, got {correct.shape}")
    some, every = correct.any(axis=1), correct.all(axis=1)
    rescued = some & ~correct[:, standard_view] if standard_view is not None else some & ~every
    candidates = []
    if shown is not None and len(shown):
        sub = correct[:, list(shown)]
        mixed = sub.any(axis=1) & ~sub.all(axis=1)
        candidates += [rescued & mixed, mixed]
    candidates += [rescued, some & ~every, some]
    for mask in candidates:
        if mask.any():
            return int(np.flatnonzero(mask)[0])
    return 0


def example_rows(correct: np.ndarray, standard_view: int | None, n: int) -> list[int]:
    """Up to n image rows to show: those zoom rescues (wrong at the 1-crop view, right in some view)
    first, then those right at the 1-crop view, then the rest; source order within each kind."""
    correct = np.asarray(correct, bool)
    some = correct.any(axis=1)
    std = correct[:, standard_view] if standard_view is not None else np.zeros(len(correct), bool)
    kinds = [some & ~std, std, ~some]
    rows = [int(i) for mask in kinds for i in np.flatnonzero(mask)]
    return rows[: max(0, int(n))]


def centre_views(image, grid: ViewGrid):
    """The centre-anchor view of one image at every scale of the grid, rendered with
    `views.render_views` one scale at a time (the whole grid at once would hold all views in memory).

    image: a PIL image or a uint8 [3, H, W] tensor. Returns (grey levels float [S, 3, crop, crop],
    the view indices of those views in `grid`).
    """
    import torch

    from zoomstudy.views import pil_to_tensor, render_views

    x = image if torch.is_tensor(image) else pil_to_tensor(image)
    c = grid.center
    out = []
    for s in grid.scales:
        one = ViewGrid(scales=(s,), grid=grid.grid, crop=grid.crop)
        out.append(render_views(x, one)[c * grid.grid + c])
    return torch.stack(out), [grid.view_index(s, c, c) for s in grid.scales]


def thumbnails(images: Sequence, size: int = 128):
    """PIL images -> uint8 tensor [N, 3, size, size]: shorter side resized to `size`, centre crop."""
    import torch
    from PIL import Image

    out = np.zeros((len(images), size, size, 3), np.uint8)
    for i, im in enumerate(images):
        if im is None:
            continue
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        out[i] = np.asarray(im.crop((left, top, left + size, top + size)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
