"""Test resolution against accuracy at a fixed framing: the FixRes effect (Touvron et al. 2019).

A CNN trained with RandomResizedCrop at 224 px sees objects larger during training than at test time
under Resize(256) + CenterCrop(224); testing at a higher resolution with the *same framing* (the same
crop-to-resize ratio, 224 / 256) enlarges the objects back and often raises accuracy. The curve here
makes that measurable for any model and any folder of images:

    for each input size s: Resize(round(s * 256 / 224)) (PIL bicubic, shorter side) + CenterCrop(s)

so every size sees the same part of the image, only with more or fewer pixels. The pixels come from
the package's exact renderer (`views.render_windows`, PIL's fixed-point bicubic restricted to the
window), then ToTensor + ImageNet normalisation (SPEC 1.4) and the model. The crop offsets are
torchvision's CenterCrop (round((H - s) / 2)), so at s = 224 this is exactly torchvision's classic
eval transform with bicubic interpolation; the sweep's `LOC:1_1_Size:256` view uses the anchor
arithmetic of SPEC 1 instead and may sit one pixel away (SPEC 1, "may differ by a pixel"; center=
"anchor" uses that arithmetic). A one-pixel shift is not nothing: it flips 4 of the first 20 kit
images' predictions of the real-data kit's SqueezeNet.

Each image is decoded once for all sizes. A size the model cannot take (a ViT with a fixed position
embedding raises on anything but its own size) is probed once with a blank batch before any image is
read, and skipped: its row has NaN accuracy and a `note` saying why.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from zoomstudy import views
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import CENTERS, normalize, pil_to_tensor

#: The default input sizes: 128 to 448 px, the training size 224 in the middle.
RESOLUTION_SIZES: tuple[int, ...] = (128, 160, 192, 224, 256, 288, 320, 384, 448)
#: The fixed framing: crop / resize of the standard eval transform (224 / 256).
CROP_PCT = 224 / 256
COLUMNS = ["size", "resize", "accuracy", "lo", "hi", "n", "note"]


def resize_for(size: int, crop_pct: float = CROP_PCT) -> int:
    """The shorter side the image is resized to before the centre crop of `size` (256 for 224)."""
    if crop_pct == CROP_PCT:
        return int(round(size * 256 / 224))  # exact rational arithmetic for the default framing
    return int(round(size / crop_pct))


def render_center_crop(image: torch.Tensor, size: int, crop_pct: float = CROP_PCT, *, center: str = "torchvision",
                       dtype=None) -> torch.Tensor:
    """Resize(resize_for(size)) + CenterCrop(size) of a uint8 [3, H, W] image, PIL-exact
    (`views.render_center_crop` at the curve's fixed framing).

    Returns grey levels (float, 0..255) [3, size, size] on the image's device.
    """
    return views.render_center_crop(image, resize_for(size, crop_pct), size, center=center, dtype=dtype)


def _check_sizes(sizes) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        raise ValueError(f"resolution sizes must be integers, got {sizes!r}") from None
    if not out or any(s < 1 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"resolution sizes must be distinct positive integers, got {sizes!r}")
    return tuple(sorted(out))


def probe_sizes(model, sizes: Sequence[int]) -> dict[int, str | None]:
    """size -> None when the model accepts a [1, 3, size, size] input, else a one-line reason."""
    notes: dict[int, str | None] = {}
    for s in sizes:
        try:
            model.logits(torch.zeros((1, 3, s, s), dtype=torch.float32))
            notes[s] = None
        except Exception as e:  # noqa: BLE001 - any refusal of the model means: not this size
            text = " ".join(str(e).split()) or type(e).__name__
            notes[s] = f"skipped: the model rejects {s}x{s} inputs ({type(e).__name__}: {text[:160]})"
    return notes


def resolution_curve(
    model,
    source,
    sizes: Sequence[int] = RESOLUTION_SIZES,
    *,
    max_images: int | None = None,
    crop_pct: float = CROP_PCT,
    normalization: str = "imagenet",
    center: str = "torchvision",
    batch_size: int = 32,
    alpha: float = 0.05,
    render_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Top-1 accuracy (%) against the input size at the fixed framing crop_pct (default 224 / 256).

    model: a `LoadedModel`. source: a `zoomstudy.data` source (or a source spec string).
    Returns one row per size: size, resize (the shorter side before the crop), accuracy, lo, hi
    (Clopper-Pearson, 1 - alpha), n (images scored) and note (None, or why the size was skipped;
    skipped sizes have NaN accuracy). Images that cannot be decoded and images with an empty label
    set are left out (the same images for every size). max_images: the first N images of the source.
    normalization: 'imagenet' (SPEC 1.4, as the sweep) or 'model' (the weights' own mean / std).
    center: 'torchvision' (CenterCrop's offsets, the default) or 'anchor' (SPEC 1's centre anchor:
    the curve then passes exactly through the sweep's 1-crop view at size 224). The two can sit one
    pixel apart, and a one-pixel shift alone flips some predictions of many CNNs.
    """
    sizes = _check_sizes(sizes)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if center not in CENTERS:
        raise ValueError(f"center must be one of {CENTERS}, got {center!r}")
    if normalization not in ("imagenet", "model"):
        raise ValueError(f"normalization must be 'imagenet' or 'model', got {normalization!r}")
    if isinstance(source, str):  # analyses take objects: names are opened by the entry layer
        raise TypeError(f"resolution_curve takes a source, not the name {source!r}: "
                        f"pass zoomstudy.open_data({source!r})")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else (model.mean, model.std)
    if render_dtype is None:
        render_dtype = torch.float64 if model.device.type == "cpu" else torch.float32

    notes = probe_sizes(model, sizes)
    it = iter(source)
    if max_images is not None:
        import itertools

        it = itertools.islice(it, max(0, int(max_images)))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, unit="img", desc=f"resolution {model.name}")
    view = dict(crop_pct=crop_pct, center=center, dtype=render_dtype, mean=mean, std=std)
    top1, labels = _top1_per_size(model, it, [s for s in sizes if notes[s] is None], view, batch_size)
    return _curve_table(sizes, notes, top1, labels, crop_pct, alpha)


def _top1_per_size(model, samples, accepted: list[int], view: dict, batch_size: int
                   ) -> tuple[dict[int, np.ndarray], list[tuple[int, ...]]]:
    """({size: top-1 int [n]}, labels of the n decodable labelled images): each image decoded once
    and rendered at every accepted size (`render_center_crop` with view's crop_pct / center / dtype,
    normalised by view's mean / std), forwarded in batches of batch_size per size."""
    top1: dict[int, list[np.ndarray]] = {s: [] for s in accepted}
    pending: dict[int, list[torch.Tensor]] = {s: [] for s in accepted}
    labels: list[tuple[int, ...]] = []

    def flush(s: int) -> None:
        if pending[s]:
            x = torch.stack(pending[s])  # [B, 3, s, s]
            top1[s].append(model.logits(x).argmax(-1).cpu().numpy())
            pending[s] = []

    for sample in samples:
        if sample.image is None or not sample.labels:
            continue
        labels.append(tuple(sample.labels))
        if not accepted:
            continue
        x = pil_to_tensor(sample.image).to(model.device)  # decoded once, used for every size
        for s in accepted:
            grey = render_center_crop(x, s, view["crop_pct"], center=view["center"], dtype=view["dtype"])
            pending[s].append(normalize(grey, view["mean"], view["std"]))
            if len(pending[s]) >= batch_size:
                flush(s)
    for s in accepted:
        flush(s)
    return {s: np.concatenate(top1[s]).astype(np.int64) if top1[s] else np.zeros(0, np.int64) for s in accepted}, labels


def _curve_table(sizes, notes: dict, top1: dict, labels: list, crop_pct: float, alpha: float) -> pd.DataFrame:
    """The curve's rows (`COLUMNS`): accuracy with its interval per scored size, NaN and a note per skipped one."""
    from zoomstudy.analysis.bounds import correctness
    from zoomstudy.analysis.stats import accuracy_with_ci

    rows = []
    n = len(labels)
    for s in sizes:
        note = notes[s]
        if note is None and n == 0:
            note = "no decodable labelled images"
        if note is not None:
            rows.append((s, resize_for(s, crop_pct), math.nan, math.nan, math.nan, n if notes[s] is None else 0, note))
            continue
        hits = correctness(top1[s], labels)
        acc, lo, hi = accuracy_with_ci(hits, alpha)
        rows.append((s, resize_for(s, crop_pct), acc, lo, hi, n, None))
    return pd.DataFrame(rows, columns=COLUMNS)


def peak(curve: pd.DataFrame, prefer: int | None = None) -> tuple[int | None, float]:
    """(size, accuracy %) of the best scored size; ties go to the size nearest `prefer` (the training
    size), then to the smaller size. (None, NaN) when no size was scored."""
    scored = curve.dropna(subset=["accuracy"])
    if scored.empty:
        return None, math.nan
    best = scored["accuracy"].max()
    top = scored[scored["accuracy"] == best]
    ref = prefer if prefer is not None else int(top["size"].iloc[0])
    size = min(top["size"].astype(int), key=lambda s: (abs(math.log(s / ref)), s))
    return int(size), float(best)
