"""The sweep: one model over one dataset and one view grid, computed once, stored, resumable.

Data flows one way: worker processes decode each image once (uint8) -> the main process moves it to
the model's device -> its views are made there one scale at a time (`render_windows`, as
`render_views` does, plus the 10-crop TTA set) -> views, waiting as uint8 grey levels, are fed to the model in chunks whose size the
host-memory budget (`max_host_mb`) sets on CPU -> per view the top-5 classes, per image and view group
the averaged-probability and most-confident predictions -> the store, in atomic parts. A killed sweep
resumes where it stopped; a restarted shard touches no other shard's files; one bad image is recorded,
not fatal.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import platform
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoomstudy import __version__
from zoomstudy.provenance import git_commit
from zoomstudy.sweep.store import FORMAT_VERSION, ResultSet, new_token, shard_prefix
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import ViewGrid, normalize, pil_to_tensor, render_windows, tta_crops

#: Normalisation choices (SPEC 1.4: the authors used ImageNet statistics for every model).
NORMALIZATIONS = ("imagenet", "model")
TOPK = 5
#: Default bound (MiB) on the sweep's own host memory: views, model activations on CPU, buffers.
DEFAULT_MAX_HOST_MB = 2048
#: Provenance fields that say where something was, not what it was: kept outside the key.
_MODEL_PLACE = ("device", "weights_source")
_DATASET_PLACE = ("location", "csv", "streaming")


@dataclass
class _Item:
    position: int
    image_id: str
    image: torch.Tensor | None  # uint8 [3, H, W]
    labels: tuple
    error: str | None
    meta: dict


def _decode(source, position: int, sample=None) -> _Item:
    """Runs in a DataLoader worker: the image decoded once, as uint8 [3, H, W]."""
    try:
        s = source[position] if sample is None else sample
        if s.image is None:
            return _Item(position, s.image_id, None, tuple(s.labels), s.error or "unreadable", dict(s.meta))
        return _Item(position, s.image_id, pil_to_tensor(s.image), tuple(s.labels), None, dict(s.meta))
    except Exception as e:  # noqa: BLE001 - a bad image must never kill the run
        image_id = getattr(sample, "image_id", None) or f"position-{position}"
        return _Item(position, image_id, None, (), f"{type(e).__name__}: {e}"[:200], {})


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, source, positions):
        self.source, self.positions = source, positions

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i):
        return _decode(self.source, self.positions[i])


class _Streamed(torch.utils.data.IterableDataset):
    """A stream split across DataLoader workers before decoding: each worker reads its own share
    (`source.shard`) and decodes only the positions still to do.

    Positions are those of `source` as given: the k-th item of the worker's share is position
    share_start + share_step * k. Sources without `shard` (a plain iterable) are decoded whole by each
    worker and filtered, the only way to split them.
    """

    def __init__(self, source, shard: tuple[int, int] | None, skip: frozenset, stop: int | None):
        self.source, self.shard, self.skip, self.stop = source, shard, skip, stop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        i0, n = self.shard or (0, 1)
        start, step = i0 + n * wid, n * nw
        src = self.source
        if not hasattr(src, "shard"):
            for position, sample in enumerate(src):
                if self.stop is not None and position >= self.stop:
                    return
                if position % step == start and position not in self.skip:
                    yield _decode(src, position, sample)
            return
        share = src.shard(start, step) if step > 1 else src
        records = getattr(share, "iter_records", None)
        items = records() if records is not None else iter(share)
        for k, item in enumerate(items):
            position = start + step * k
            if self.stop is not None and position >= self.stop:
                return
            if position in self.skip:
                continue
            if records is not None:  # a zoomstudy Source: decode this record only now
                yield _decode_lazy(share, position, item)
            else:
                yield _decode(share, position, item)


def _decode_lazy(source, position: int, record) -> _Item:
    try:
        sample = source.sample(record)
    except Exception as e:  # noqa: BLE001 - a bad image must never kill the run
        return _Item(position, str(getattr(record, "image_id", f"position-{position}")), None,
                     tuple(getattr(record, "labels", ())), f"{type(e).__name__}: {e}"[:200], {})
    return _decode(source, position, sample)


def sweep_settings(model, source, grid: ViewGrid, *, normalization: str, render_dtype: torch.dtype, tta: bool) -> dict:
    """The provenance saved next to the results; `key` holds what can change a stored number.

    The key holds the data's content (fingerprint, labels, row count, decoding) and the render dtype;
    where the data lies and which device ran (`_DATASET_PLACE`, `_MODEL_PLACE`) go to `provenance`,
    so that shards on machines with other mount points or other cards write one result set.
    """
    model_prov = dict(model.provenance())
    model_place = {k: model_prov.pop(k) for k in _MODEL_PLACE if k in model_prov}
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else (model.mean, model.std)
    dataset = dict(source.provenance())
    dataset_place = {k: dataset.pop(k) for k in _DATASET_PLACE if k in dataset}
    try:
        rows = len(source)
    except TypeError:
        rows = None
    return {
        "key": {
            "format_version": FORMAT_VERSION,
            "zoomstudy": __version__,
            "model": model_prov,
            "dataset": dataset,
            "grid": grid.to_dict(),
            "render": {"dtype": str(render_dtype).removeprefix("torch."), "normalization": normalization,
                       "mean": list(mean), "std": list(std)},
            "tta": {"ten_crop": bool(tta), "resize": grid.standard_scale},
            "topk": TOPK,
        },
        "provenance": {"model": model_place, "dataset": dataset_place},
        "dataset_rows": rows,
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "python": platform.python_version(), "name": socket.gethostname()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def check_sweep_args(*, batch_size=512, chunk_images=32, workers=0, normalization="imagenet", shard=None,
                     max_images=None, max_host_mb=None, grid=None) -> None:
    """ValueError (one line) for a sweep parameter that cannot work; nothing is loaded or written.

    The CLI calls this before it loads a model or opens the data; `sweep` calls it again.
    """
    if grid is not None and not isinstance(grid, ViewGrid):
        raise ValueError(f"grid must be a ViewGrid, got {type(grid).__name__}")
    for name, value, least in (("batch_size", batch_size, 1), ("chunk_images", chunk_images, 1),
                               ("workers", workers, 0)):
        if not _is_int(value) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if shard is not None:
        try:
            i, n = shard
        except (TypeError, ValueError):
            raise ValueError(f"shard must be (i, n), got {shard!r}") from None
        if not (_is_int(i) and _is_int(n)) or n < 1 or not 0 <= i < n:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    if max_images is not None and (not _is_int(max_images) or max_images < 1):
        raise ValueError(f"max_images must be an integer >= 1 (or None: every image), got {max_images!r}")
    if max_host_mb is not None and (isinstance(max_host_mb, bool) or not isinstance(max_host_mb, (int, float))
                                    or not max_host_mb >= MIN_HOST_MB):
        raise ValueError(f"max_host_mb must be a number >= {MIN_HOST_MB} (MiB), got {max_host_mb!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: The smallest host-memory budget accepted (MiB): one forward of one view, a scale's views, buffers.
MIN_HOST_MB = 256


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'3/8' -> (3, 8); None -> the torchrun rank when launched under torchrun, else None."""
    if text:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
        return i, n
    from zoomstudy.models.placement import env_shard  # the one placement rule (device and shard alike)

    return env_shard()


class _Groups:
    """View groups of one image's forward pass: the grid's zoom groups, plus 5-crop and 10-crop."""

    def __init__(self, grid: ViewGrid, tta: bool):
        v = grid.n_views
        self.index = {g: torch.from_numpy(np.nonzero(grid.group_mask(g))[0]) for g in ("zoom_in", "zoom_out", "zoom_224")}
        self.index = {g: i for g, i in self.index.items() if len(i)}
        self.index["all_views"] = torch.arange(v)
        if tta:
            self.index["five_crop"] = torch.arange(v, v + 5)
            self.index["ten_crop"] = torch.arange(v, v + 10)

    def rows(self, image_id: str, probs: torch.Tensor) -> list[tuple]:
        """probs [V_total, 1000] -> (image_id, group, mean_pred, mean_prob, max_pred, max_prob) rows."""
        out = []
        for name, idx in self.index.items():
            p = probs[idx.to(probs.device)]  # [n, 1000]
            mean_p, mean_c = p.mean(0).max(0)
            conf, cls = p.max(1)  # [n]
            best = int(conf.argmax())
            out.append((image_id, name, int(mean_c), float(mean_p), int(cls[best]), float(conf[best])))
        return out


def sweep(
    model,
    source,
    grid: ViewGrid | None = None,
    results_dir: str | Path = "results",
    *,
    batch_size: int = 512,
    chunk_images: int = 32,
    workers: int | None = None,
    normalization: str = "imagenet",
    render_dtype: torch.dtype | None = None,
    tta: bool = True,
    shard: tuple[int, int] | None = None,
    max_images: int | None = None,
    max_host_mb: float | None = None,
    progress: bool = True,
) -> ResultSet:
    """Run (or resume) one model over one source and one grid; returns the stored ResultSet.

    model: a LoadedModel (zoomstudy.models.load_model). source: a zoomstudy.data source.
    batch_size: views per forward pass at most (halved automatically on CUDA out-of-memory; on CPU
    also capped by max_host_mb).
    chunk_images: images per stored part (the unit of resume).
    workers: decoding processes (default 4 on CUDA, 1 on CPU; 0 decodes in this process).
    normalization: 'imagenet' (the paper: ImageNet mean/std for every model) or 'model' (its own).
    render_dtype: float64 = PIL-exact (CPU default), float32 (CUDA default).
    tta: also render the 10-crop set, for the TTA groups.
    shard: (i, n) to run every n-th image starting at i (several GPUs or machines). One process per
    shard at a time (a second one gets ShardBusy); a restarted shard cleans only its own leftovers.
    max_images: stop after this many images of the source (a prefix; quick runs, tests).
    max_host_mb: bound (MiB, default DEFAULT_MAX_HOST_MB) on the sweep's own host memory, whatever
    the image size and the number of images: views wait as uint8, are rendered one scale at a time,
    and on CPU are forwarded in chunks sized from the budget and the model's activations (smaller while
    a large image's float64 copy, 24 bytes per pixel, is alive). Not counted: the interpreter, libraries
    and weights, the decoding workers, and the decoded image in flight (3 bytes per pixel); an image
    whose rendering alone (about 70 bytes per pixel in float64) exceeds the budget exceeds it.
    """
    grid = grid or ViewGrid.paper()
    device = model.device
    workers = (4 if device.type == "cuda" else 1) if workers is None else workers
    max_host_mb = DEFAULT_MAX_HOST_MB if max_host_mb is None else max_host_mb
    check_sweep_args(batch_size=batch_size, chunk_images=chunk_images, workers=workers, normalization=normalization,
                     shard=shard, max_images=max_images, max_host_mb=max_host_mb, grid=grid)
    if render_dtype is None:
        render_dtype = torch.float64 if device.type == "cpu" else torch.float32
    settings = sweep_settings(model, source, grid, normalization=normalization, render_dtype=render_dtype, tta=tta)
    store = ResultSet.create(results_dir, settings)
    store.claim_layout(shard[1] if shard else None)  # one layout per result set: no image computed twice
    prefix, token = shard_prefix(shard), new_token()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with store.shard_lock(prefix, holder) as locked:
        store.clean_own(prefix, token, locked=locked)
        store.record_run(prefix, token, {
            **holder, "shard": list(shard) if shard else None, "provenance": settings["provenance"],
            "host_info": settings["host"], "git_commit": settings["git_commit"], "workers": workers,
            "batch_size": batch_size, "max_host_mb": max_host_mb, "max_images": max_images})
        done = store.done_positions()
        others = [b for b in store.broken_parts() if b.prefix != prefix and store.in_layout(b.prefix)]
        if others:  # their shard recomputes them (reading refuses the result set until then)
            warnings.warn(f"{store.path}: {len(others)} broken part(s) of other shards (e.g. {others[0].name}); "
                          f"their images are left to their own shard", stacklevel=2)
            done = done | {int(p) for b in others for p in b.positions}
        _run(model, source, grid, store, settings, prefix=prefix, token=token, done=done, shard=shard,
             max_images=max_images, batch_size=batch_size, chunk_images=chunk_images, workers=workers,
             render_dtype=render_dtype, tta=tta, max_host_mb=max_host_mb, progress=progress)
    return store


def _run(model, source, grid, store, settings, *, prefix, token, done, shard, max_images, batch_size,
         chunk_images, workers, render_dtype, tta, max_host_mb, progress):
    device = model.device
    rk = settings["key"]["render"]
    indexed = getattr(source, "_records", None) is not None
    if indexed:
        total = len(source) if max_images is None else min(len(source), max_images)
        todo = [p for p in range(total)
                if not (shard and p % shard[1] != shard[0]) and p not in done]
        dataset = _Indexed(source, todo)
        n_todo = len(todo)
        if n_todo == 0:
            return
    else:
        dataset = _Streamed(source, shard, frozenset(done), max_images)
        n_todo = None
    plan = _ChunkPlan.make(model, grid, batch_size, max_host_mb)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=(4 if device.type == "cuda" else 2) if workers else None,
    )
    groups = _Groups(grid, tta)
    writer = _PartWriter(store, prefix, token, chunk_images, grid)
    n_total = grid.n_views + (10 if tta else 0)
    fwd = _Forwarder(model, plan, n_total, rk["mean"], rk["std"],
                     done=lambda item, p: writer.add_image(item, p[: grid.n_views], groups.rows(item.image_id, p)))

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    n_views_done = 0
    with tqdm(total=n_todo, unit="img", disable=not progress, desc=f"sweep {model.name}", smoothing=0.1) as bar:
        for item in loader:
            if item.image is None:
                writer.add_error(item)
            else:
                _render_into(fwd, item, grid, device, render_dtype, tta)
                n_views_done += grid.n_views
            if writer.full(pending=fwd.n_images):  # images still waiting for the model count too
                fwd.flush()
                writer.commit()
            bar.update(1)
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(views_s=f"{n_views_done / dt:.0f}", errors=writer.n_errors, refresh=False)
        fwd.flush()
        writer.commit()


def _render_into(fwd: "_Forwarder", item: _Item, grid: ViewGrid, device, render_dtype, tta: bool) -> None:
    """All views of one image, one scale at a time, into the forwarder's queue as uint8 grey levels.

    Equal to `render_views` (+ `tta_crops`) view for view: the same `render_windows` calls, whose
    outputs are integer grey levels 0..255, so uint8 holds them exactly.
    """
    x = item.image.to(device, non_blocking=True)  # uint8 [3, H, W]
    _, h0, w0 = x.shape
    slot = fwd.add_image(item)
    src = x.to(render_dtype)  # the image in the accumulation dtype, once
    fwd.fit(x.numel() * (1 + src.element_size()) if x.device.type == "cpu" else 0)
    g, crop = grid.grid, grid.crop
    for s, scale in enumerate(grid.scales):
        tops, lefts, _, _ = grid.windows(w0, h0, scale)
        views = render_windows(src, scale, tops, lefts, crop).reshape(g * g, 3, crop, crop).to(torch.uint8)
        _drop_render_plans()
        fwd.add_views(slot, s * g * g, views)
    if tta:  # from the image already in the accumulation dtype (tta_crops' .to(dtype) is then a no-op)
        views = tta_crops(src, crop, grid.standard_scale, dtype=render_dtype).to(torch.uint8)
        _drop_render_plans()
        fwd.add_views(slot, grid.n_views, views)
    del src


def activation_bytes(model, crop: int) -> int:
    """Estimated host bytes one view needs inside the model's forward on CPU (activations alive at
    once, scratch), from one probe forward: the larger of 3 x the largest layer output and a
    3.5th of all layer outputs together. Calibrated on SqueezeNet, ResNet-18/50, ViT-B/32,
    EfficientNet-B0 and MobileNetV3 (measured peak per view: 0.5 to 0.95 of this estimate)."""
    module = getattr(model, "module", None)
    fallback = int(16 * 2**20 * (crop / 224) ** 2)
    if not isinstance(module, torch.nn.Module):
        return fallback
    largest, total = 0, 0

    def hook(_mod, _inp, out):
        nonlocal largest, total
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if torch.is_tensor(t):
                largest = max(largest, t.numel() * t.element_size())
                total += t.numel() * t.element_size()

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        model.logits(torch.zeros(1, 3, crop, crop, device=model.device))
    except Exception:  # noqa: BLE001 - a model the probe cannot run: the conservative default
        return fallback
    finally:
        for h in handles:
            h.remove()
    return max(int(3 * largest), int(total / 3.5), 1) if largest else fallback


def views_per_forward(model, grid: ViewGrid, batch_size: int, max_host_mb: float) -> int:
    """Views per forward pass: batch_size, and on CPU at most what max_host_mb holds (see `_ChunkPlan`)."""
    return _ChunkPlan.make(model, grid, batch_size, max_host_mb).chunk


class _ChunkPlan:
    """How many views one forward pass may take.

    On CPU the budget, less the fixed buffers (one scale's views in the render dtype, a few images'
    probabilities), is shared by the views of one forward: each needs its float32 input, its activations
    (`activation_bytes`) and its uint8 copy waiting in the queue; 60% of it is planned, the rest is
    headroom (allocator, the tables being written). While an image is rendered its copy in the render
    dtype is alive too: `for_image` takes it out of the views' share (a 12-Mpx image in float64: 288 MB).
    On CUDA the views and activations live on the device: batch_size, halved on out-of-memory.
    """

    def __init__(self, chunk: int, per_view: float = 0.0, usable: float = 0.0):
        self.chunk, self.per_view, self.usable = chunk, per_view, usable

    @classmethod
    def make(cls, model, grid: ViewGrid, batch_size: int, max_host_mb: float) -> "_ChunkPlan":
        if model.device.type != "cpu":
            return cls(batch_size)
        crop = grid.crop
        view_u8 = 3 * crop * crop
        fixed = 4 * grid.grid ** 2 * view_u8 * 8 + 4 * (grid.n_views + 10) * 1000 * 4
        per_view = view_u8 * 4 + activation_bytes(model, crop) + view_u8 + 1000 * 4 * 3
        usable = 0.6 * (max_host_mb * 2**20 - fixed)
        return cls(int(max(1, min(batch_size, math.floor(usable / per_view)))), per_view, usable)

    def for_image(self, image_bytes: int) -> int:
        if not self.per_view:
            return self.chunk
        return int(max(1, min(self.chunk, math.floor((self.usable - image_bytes) / self.per_view))))


def _drop_render_plans() -> None:
    """Forget the renderer's cached resampling plans (`views._plan`, an LRU of up to 512): a plan holds
    dense float64 band matrices as large as (3 x crop) x the image's side, twice (numpy and torch), so a
    cache of them grows with image size and with the number of distinct sizes (measured: +340 MB for the
    36 scales of one 500 x 375 image, +1.1 GB for one 4000 x 3000 image). Rebuilding the plans of an
    image takes about 10 ms (its coefficients stay cached, they are small)."""
    from zoomstudy import views

    views._plan.cache_clear()


class _Forwarder:
    """Views of the images in flight, queued as uint8 and forwarded `chunk` views at a time; each
    image's softmax rows are gathered in its own [n_total, 1000] buffer and handed to `done` (in the
    order the images were added) once all of its views have been through the model."""

    def __init__(self, model, plan: "_ChunkPlan", n_total: int, mean, std, done):
        self.plan = plan
        self.chunk = self.plan.chunk
        self.model, self.n_total, self.mean, self.std, self.done = model, n_total, mean, std, done
        self.queue: list[tuple[int, int, torch.Tensor]] = []  # (slot, first view, uint8 [k, 3, c, c])
        self.n_queued = 0
        self.images: dict[int, list] = {}  # slot -> [item, probs or None, views still to come]
        self.next_slot = 0

    def fit(self, image_bytes: int) -> None:
        """Size the chunk for the image now being rendered (its copies are alive meanwhile)."""
        if image_bytes:
            self.chunk = self.plan.for_image(image_bytes)

    @property
    def n_images(self) -> int:
        return len(self.images)

    def add_image(self, item) -> int:
        slot, self.next_slot = self.next_slot, self.next_slot + 1
        self.images[slot] = [item, None, self.n_total]
        return slot

    def add_views(self, slot: int, first: int, views: torch.Tensor) -> None:
        self.queue.append((slot, first, views))
        self.n_queued += len(views)
        while self.n_queued >= self.chunk:
            self._forward(self.chunk)

    def flush(self) -> None:
        while self.n_queued:
            self._forward(min(self.chunk, self.n_queued))

    def _take(self, n: int) -> list[tuple[int, int, torch.Tensor]]:
        out, left = [], n
        while left:
            slot, first, views = self.queue[0]
            if len(views) <= left:
                out.append(self.queue.pop(0))
                left -= len(views)
            else:
                out.append((slot, first, views[:left]))
                self.queue[0] = (slot, first + left, views[left:])
                left = 0
        self.n_queued -= n
        return out

    def _forward(self, n: int) -> None:
        pieces = self._take(n)
        x = normalize(torch.cat([v for _, _, v in pieces]), self.mean, self.std)  # float32 [n, 3, c, c]
        probs = _softmax(self.model, x, self)  # float32 [n, 1000]
        del x
        start = 0
        for slot, first, views in pieces:
            entry = self.images[slot]
            if entry[1] is None:
                entry[1] = torch.empty((self.n_total, probs.shape[1]), dtype=probs.dtype, device=probs.device)
            entry[1][first:first + len(views)] = probs[start:start + len(views)]
            start += len(views)
            entry[2] -= len(views)
        while self.images:
            slot = next(iter(self.images))
            item, p, left = self.images[slot]
            if left:
                break
            del self.images[slot]
            self.done(item, p)


def _softmax(model, views: torch.Tensor, fwd: _Forwarder) -> torch.Tensor:
    """Softmax over the label space for a stack of views; on CUDA out-of-memory the chunk is halved."""
    out = []
    i = 0
    while i < len(views):
        bs = fwd.chunk
        try:
            out.append(model.logits(views[i:i + bs]).softmax(-1))
            i += bs
        except torch.cuda.OutOfMemoryError:
            if bs == 1:
                raise
            fwd.chunk = max(1, bs // 2)
            torch.cuda.empty_cache()
    return out[0] if len(out) == 1 else torch.cat(out)


class _PartWriter:
    """Buffers the rows of up to `chunk_images` images and writes them as one atomic part."""

    def __init__(self, store: ResultSet, prefix: str, token: str, chunk_images: int, grid: ViewGrid):
        self.store, self.prefix, self.token, self.chunk, self.grid = store, prefix, token, chunk_images, grid
        self.n_errors = 0
        self._reset()

    def _reset(self):
        self.images, self.errors, self.groups = [], [], []
        self.view_ids, self.preds, self.probs = [], [], []

    def full(self, pending: int = 0) -> bool:
        """The part is complete: `chunk_images` images, counting `pending` ones not yet forwarded."""
        return len(self.images) + pending >= self.chunk

    def add_error(self, item: _Item):
        self.n_errors += 1
        self.errors.append((item.image_id, item.position, item.error))
        self.images.append((item.image_id, item.position, list(item.labels), -1, -1, json.dumps(item.meta, default=str), False))

    def add_image(self, item: _Item, probs: torch.Tensor, group_rows: list):
        p, idx = probs.topk(TOPK, dim=-1)  # [V, 5]
        self.preds.append(idx.to(torch.int16).cpu().numpy())
        self.probs.append(p.float().cpu().numpy())
        self.view_ids.append(item.image_id)
        self.groups.extend(group_rows)
        _, h, w = item.image.shape
        self.images.append((item.image_id, item.position, list(item.labels), w, h, json.dumps(item.meta, default=str), True))

    def commit(self):
        if not self.images:
            return
        import pandas as pd

        v = self.grid.n_views
        preds = np.concatenate(self.preds) if self.preds else np.zeros((0, TOPK), np.int16)
        probs = np.concatenate(self.probs) if self.probs else np.zeros((0, TOPK), np.float32)
        views = {"image_id": np.repeat(np.asarray(self.view_ids, dtype=object), v),
                 "view": np.tile(np.arange(v, dtype=np.int16), len(self.view_ids))}
        views.update({f"pred{k}": preds[:, k] for k in range(TOPK)})
        views.update({f"prob{k}": probs[:, k] for k in range(TOPK)})
        tables = {
            "views": pd.DataFrame(views),
            "groups": pd.DataFrame(self.groups, columns=["image_id", "group", "mean_pred", "mean_prob", "max_pred", "max_prob"]),
            "errors": pd.DataFrame(self.errors, columns=["image_id", "position", "reason"]).astype({"position": "int64", "reason": "str"}),
            "images": pd.DataFrame(self.images, columns=["image_id", "position", "labels", "width", "height", "meta", "ok"]),
        }
        self.store.write_part(self.store.next_part(self.prefix, self.token), tables)
        self._reset()
