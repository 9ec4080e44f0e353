"""The sweep: one model over one dataset and one view grid, computed once, stored, resumable.

Data flows one way: worker processes decode each image once (uint8) -> the main process moves it to
the model's device (pinned, so the copy overlaps) -> its views are made there, on a GPU all at once
from a cached plan (`render_batch`), on CPU one scale at a time (`render_windows`), as `render_views`
does, plus the 10-crop TTA set -> views, waiting as uint8 grey levels, are fed to the model in chunks
whose size the host-memory budget (`max_host_mb`) sets on CPU -> per view the top-5 classes, per
image and view group the averaged-probability and most-confident predictions, computed on the device
and copied back once per part -> the store, in atomic parts. A killed sweep
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
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from zoomstudy import __version__
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.keyed import DATASET_PLACE, MODEL_PLACE, split_place
from zoomstudy.provenance import git_commit
from zoomstudy.data.labels import class_names_of
from zoomstudy.sweep.store import FORMAT_VERSION, ResultSet, new_token, shard_prefix
from zoomstudy.views import (ViewGrid, normalize, pil_to_tensor, plan_cache, render_batch, render_windows,
                             split_layout, tta_crops, view_layout)

#: Normalisation choices (SPEC 1.4: the authors used ImageNet statistics for every model).
NORMALIZATIONS = ("imagenet", "model")
TOPK = 5
#: Default bound (MiB) on the sweep's own host memory: views, model activations on CPU, buffers.
DEFAULT_MAX_HOST_MB = 2048
#: A part is also committed once it has been open this long (seconds), whatever its image count: a
#: killed run loses at most about a minute of work, even where an image takes many seconds (CPU, the
#: paper's grid) and 32 images would be half an hour.
PART_SECONDS = 60.0
#: With a layout-free content key (`Source.provenance()['content']`: one file per image), the fields
#: that describe the folder shape rather than the files and labels: kept outside the key too, so the
#: synset-folder, labels.csv and devkit layouts of the same files share one result set.
_DATASET_LAYOUT = ("kind", "labeling", "classes", "fingerprint", "fingerprint_method", "labels_fingerprint",
                   "csv_sha256", "devkit", "ground_truth_sha256", "revision")


class _Item(NamedTuple):
    """One decoded image as the loader hands it over. A named tuple, not a dataclass: torch's
    `pin_memory` recurses into tuples (and dicts) only, so that the image is pinned and its copy to the
    GPU (`non_blocking=True`) overlaps the work already queued there."""

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


def split_provenance(model, source) -> tuple[dict, dict]:
    """(key, place) of a model's and a source's provenance, each {"model": ..., "dataset": ...}.

    The key holds what can change a number (weights, preprocessing, the data's content, labels, rows);
    place holds where the data lies and which device ran (`keyed.split_place` with `keyed.MODEL_PLACE` and
    `keyed.DATASET_PLACE`, and with a layout-free content key the folder's layout, `_DATASET_LAYOUT`). The
    sweep store and the keyed caches above it (ImageNet-Hard's plain runs) split this way, so a result is found again on another
    GPU, machine or data path (`keyed.settings_key` hashes settings['key'] only).
    """
    model_prov, model_place = split_place(model.provenance(), MODEL_PLACE)
    dataset, dataset_place = split_place(source.provenance(), DATASET_PLACE)
    if "content" in dataset:
        dataset_place.update({k: dataset.pop(k) for k in _DATASET_LAYOUT if k in dataset})
        dataset["fingerprint_method"] = f"{dataset['content']['scheme']}: (file token, labels) in order ({dataset['content']['method']})"
    return {"model": model_prov, "dataset": dataset}, {"model": model_place, "dataset": dataset_place}


def sweep_settings(model, source, grid: ViewGrid, *, normalization: str, render_dtype: torch.dtype, tta: bool) -> dict:
    """The provenance saved next to the results; `key` holds what can change a stored number.

    The key holds the data's content (fingerprint, labels, row count, decoding) and the render dtype;
    where the data lies and which device ran (`keyed.DATASET_PLACE`, `keyed.MODEL_PLACE`) go to `provenance`,
    so that shards on machines with other mount points or other cards write one result set.
    """
    key, place = split_provenance(model, source)
    model_prov, dataset = key["model"], key["dataset"]
    model_place, dataset_place = place["model"], place["dataset"]
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else (model.mean, model.std)
    try:
        rows = len(source)
    except TypeError:
        rows = None
    precision = precision_state(model.device)
    settings = {
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
        "provenance": {"model": model_place, "dataset": dataset_place,
                       "precision": {**precision, "render_dtype": str(render_dtype).removeprefix("torch."),
                                     "amp": model_prov.get("amp_dtype") or "none",
                                     "cudnn_benchmark": model.device.type == "cuda"}},
        "dataset_rows": rows,
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "python": platform.python_version(), "name": socket.gethostname()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    names = class_names_of(model)
    if names:  # a label space's own class names (a world model's) travel with the results, outside the key
        settings["class_names"] = list(names)
    changed = {k: v for k, v in precision.items() if v != _PRECISION_DEFAULTS[k]}
    if changed:  # only then: the keys of runs with torch's defaults stay what they were
        settings["key"]["precision"] = changed
    return settings


#: torch's defaults of the float32 math settings that change a model's outputs (the render is immune:
#: `exact_math`). The amp choice is in the model's provenance (`amp_dtype`), the render dtype in the key.
_PRECISION_DEFAULTS = {"float32_matmul_precision": "highest", "cudnn_tf32": True}


def precision_state(device) -> dict:
    """The float32 math settings in force for a model on `device`: the matmul precision ("highest";
    "high" = TF32 on CUDA, bf16 in oneDNN on CPU) and, on CUDA, cuDNN's TF32 switch."""
    state = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    if torch.device(device).type == "cuda":
        state["cudnn_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    return state


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

    def values(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [V_total, 1000] -> float64 [n_groups, 4]: mean_pred, mean_prob, max_pred, max_prob per
        group (in `index` order), on probs' device: no value leaves the device here (the writer copies
        a whole part back at once). The same arithmetic as the rows of earlier versions, bit for bit."""
        if self._on != probs.device:
            self._dev = {g: i.to(probs.device) for g, i in self.index.items()}
            self._on = probs.device
        out = []
        for idx in self._dev.values():
            p = probs[idx]  # [n, 1000]
            mean_p, mean_c = p.mean(0, keepdim=True).max(1)  # [1]
            conf, cls = p.max(1)  # [n]
            best = conf.argmax().view(1)  # indexing by a tensor would read it on the host: a sync
            out.append(torch.cat([mean_c.double(), mean_p.double(), cls.index_select(0, best).double(),
                                  conf.index_select(0, best).double()]))
        return torch.stack(out)

    _on = None

    def rows(self, image_id: str, probs: torch.Tensor) -> list[tuple]:
        """probs [V_total, 1000] -> (image_id, group, mean_pred, mean_prob, max_pred, max_prob) rows."""
        return _group_rows(image_id, list(self.index), self.values(probs).cpu().numpy())


def _group_rows(image_id: str, names: list[str], values: np.ndarray) -> list[tuple]:
    return [(image_id, g, int(v[0]), float(v[1]), int(v[2]), float(v[3])) for g, v in zip(names, values)]


def sweep_to_store(
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

    The engine under the public door `zoomstudy.ensure_results` (which opens model and data by name).
    model: a LoadedModel (zoomstudy.models.load_model). source: a zoomstudy.data source.
    batch_size: views per forward pass at most (halved automatically on CUDA out-of-memory; on CPU
    also capped by max_host_mb).
    chunk_images: images per stored part (the unit of resume).
    workers: decoding processes (default 4 on CUDA, 1 on CPU; 0 decodes in this process).
    normalization: 'imagenet' (the paper: ImageNet mean/std for every model) or 'model' (its own).
    render_dtype: float64 = PIL-exact (the default on CPU and CUDA); float32 is an opt-in for GPUs
    without fast float64 (measured: up to 2 grey levels on 2.4e-5 of the pixels, see `views`).
    tta: also render the 10-crop set, for the TTA groups.
    shard: (i, n) to run every n-th image starting at i (several GPUs or machines). One process per
    shard at a time (a second one gets ShardBusy); a restarted shard cleans only its own leftovers.
    max_images: stop after this many images of the source (a prefix; quick runs, tests).
    max_host_mb: bound (MiB, default DEFAULT_MAX_HOST_MB) on the sweep's own host memory, whatever
    the image size and the number of images: views wait as uint8, are rendered one scale at a time,
    and on CPU are forwarded in chunks sized from the budget and the model's activations (smaller while
    a large image's float64 copy, 24 bytes per pixel, is alive); the renderer's cached plans take at
    most a tenth of it (10 MiB for a 500 x 375 image's, 234 MiB for a 4000 x 3000 one's), out of the
    40% the chunk plan leaves as headroom. Not counted: the interpreter, libraries
    and weights, the decoding workers, and the decoded image in flight (3 bytes per pixel); an image
    whose rendering alone (about 70 bytes per pixel in float64) exceeds the budget exceeds it.
    """
    grid = grid or ViewGrid.paper()
    device = model.device
    workers = (4 if device.type == "cuda" else 1) if workers is None else workers
    max_host_mb = DEFAULT_MAX_HOST_MB if max_host_mb is None else max_host_mb
    check_sweep_args(batch_size=batch_size, chunk_images=chunk_images, workers=workers, normalization=normalization,
                     shard=shard, max_images=max_images, max_host_mb=max_host_mb, grid=grid)
    render_dtype = torch.float64 if render_dtype is None else render_dtype
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
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = device.type == "cuda"  # one batch shape: let cuDNN pick its kernels once
        cache = plan_cache()
        bounds = dict(cache.max_bytes)
        if device.type == "cpu":  # the renderer's plans are host memory: a tenth of the budget at most
            cache.max_bytes["cpu"] = min(cache.limit("cpu"), int(0.1 * max_host_mb * 2**20))
        try:
            _run(model, source, grid, store, settings, prefix=prefix, token=token, done=done, shard=shard,
                 max_images=max_images, batch_size=batch_size, chunk_images=chunk_images, workers=workers,
                 render_dtype=render_dtype, tta=tta, max_host_mb=max_host_mb, progress=progress)
        finally:
            torch.backends.cudnn.benchmark = benchmark
            cache.max_bytes = bounds
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
    writer = _PartWriter(store, prefix, token, chunk_images, grid, groups=list(groups.index))
    n_total = grid.n_views + (10 if tta else 0)
    fwd = _Forwarder(model, plan, n_total, rk["mean"], rk["std"],
                     done=lambda item, p: writer.add_image(item, p[: grid.n_views], groups.values(p)))

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
                if device.type == "cpu":
                    _trim_host_heap()
            if writer.full(pending=fwd.n_images):  # images still waiting for the model count too
                fwd.flush()
                writer.commit()
            bar.update(1)
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(views_s=f"{n_views_done / dt:.0f}", errors=writer.n_errors, refresh=False)
        fwd.flush()
        writer.commit()


def _trim_host_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim; a no-op elsewhere).

    Why: the cached resampling plans are small tensors that live across images, and the image's
    float64 renders are large ones freed after each scale; glibc raises its mmap threshold after the
    first large free, so the later large buffers come from the heap, and the long-lived plans pinned
    between them keep the freed pages from being returned. Measured on the real-data kit (SqueezeNet,
    paper grid, 2 images of different sizes): RSS 2.07 GB after the sweep without the trim, 0.86 GB
    with it (the plans themselves: 18 MiB); over the kit's 100 sizes it grew past 10 GB. A trim costs
    milliseconds, an image seconds of CPU rendering."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _render_into(fwd: "_Forwarder", item: _Item, grid: ViewGrid, device, render_dtype, tta: bool,
                 method: str | None = None) -> None:
    """All views of one image into the forwarder's queue as uint8 grey levels.

    Equal to `render_views` (+ `tta_crops`) view for view: their integer grey levels 0..255 fit uint8.
    On CPU ("banded") one scale at a time, the host budget's unit. Elsewhere ("batched") all views in
    one `render_batch` from a cached plan: a few operations and no host round trip per image; on
    out-of-memory the layout is cut in twice as many pieces and retried, and grows back after a run
    of successes (`_Halving`).
    """
    x = item.image.to(device, non_blocking=True)  # uint8 [3, H, W]
    _, h0, w0 = x.shape
    slot = fwd.add_image(item)
    src = x.to(render_dtype)  # the image in the accumulation dtype, once
    g, crop = grid.grid, grid.crop
    method = method or _RENDER_METHOD or ("banded" if x.device.type == "cpu" else "batched")
    if method == "batched":
        entries, picks = view_layout(grid, w0, h0, tta)
        views = fwd.render_halving.run(lambda parts: torch.cat([
            render_batch(src, e, p, crop).to(torch.uint8) for e, p in split_layout(entries, picks, parts)]))
        fwd.add_views(slot, 0, views)
        return
    fwd.fit(x.numel() * (1 + src.element_size()) if x.device.type == "cpu" else 0)
    for s, scale in enumerate(grid.scales):
        tops, lefts, _, _ = grid.windows(w0, h0, scale)
        views = render_windows(src, scale, tops, lefts, crop).reshape(g * g, 3, crop, crop).to(torch.uint8)
        fwd.add_views(slot, s * g * g, views)
    if tta:  # from the image already in the accumulation dtype (tta_crops' .to(dtype) is then a no-op)
        views = tta_crops(src, crop, grid.standard_scale, dtype=render_dtype).to(torch.uint8)
        fwd.add_views(slot, grid.n_views, views)
    del src


#: The render method of every sweep when set ("batched" / "banded"); None: by device. Tests set it to
#: run the GPU's code path on CPU.
_RENDER_METHOD: str | None = None


class _Halving:
    """Out-of-memory on the device: retry with the work in twice as many pieces (render) or half the
    batch (forward); after `grow_after` successes in a row, go back one step. CUDA's out-of-memory only
    (torch.cuda.OutOfMemoryError); anything else, or failing at the last step, is raised."""

    def __init__(self, start: int, least: int, most: int, grow_after: int = 16, up: bool = True):
        # up: the value is a number of pieces (grows on OOM); else a size (shrinks on OOM)
        self.value, self.least, self.most, self.grow_after, self.up = start, least, most, grow_after, up
        self.start, self.ok, self.halvings = start, 0, 0

    def _worse(self):
        return min(self.most, self.value * 2) if self.up else max(self.least, self.value // 2)

    def failed(self) -> bool:
        """After an out-of-memory: True when there was a smaller step to take."""
        nxt = self._worse()
        if nxt == self.value:
            return False
        self.value, self.ok = nxt, 0
        self.halvings += 1
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return True

    def succeeded(self) -> None:
        self.ok += 1
        if self.ok >= self.grow_after and self.value != self.start:
            self.value = max(self.start, self.value // 2) if self.up else min(self.start, self.value * 2)
            self.ok = 0

    def run(self, work):
        while True:
            try:
                out = work(self.value)
            except torch.cuda.OutOfMemoryError:
                if not self.failed():
                    raise
                continue
            self.succeeded()
            return out


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


class _Forwarder:
    """Views of the images in flight, queued as uint8 and forwarded `chunk` views at a time; each
    image's softmax rows are gathered in its own [n_total, 1000] buffer and handed to `done` (in the
    order the images were added) once all of its views have been through the model."""

    def __init__(self, model, plan: "_ChunkPlan", n_total: int, mean, std, done):
        self.plan = plan
        self.model, self.n_total, self.mean, self.std, self.done = model, n_total, mean, std, done
        self.queue: list[tuple[int, int, torch.Tensor]] = []  # (slot, first view, uint8 [k, 3, c, c])
        self.n_queued = 0
        self.images: dict[int, list] = {}  # slot -> [item, probs or None, views still to come]
        self.next_slot = 0
        self.halving = _Halving(plan.chunk, 1, plan.chunk, up=False)  # views per forward
        self.render_halving = _Halving(1, 1, 1 << 10)  # pieces of an image's views

    @property
    def chunk(self) -> int:
        return self.halving.value

    @chunk.setter
    def chunk(self, value: int) -> None:
        self.halving.value = value

    def fit(self, image_bytes: int) -> None:
        """Size the chunk for the image now being rendered (its copies are alive meanwhile)."""
        if image_bytes:
            self.halving.value = self.halving.start = self.plan.for_image(image_bytes)

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
        probs = _softmax(self.model, [v for _, _, v in pieces], self)  # float32 [n, 1000]
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


def _slice_pieces(pieces: list[torch.Tensor], start: int, stop: int) -> list[torch.Tensor]:
    """Views [start, stop) of the concatenation of `pieces`, as slices (nothing copied yet)."""
    out, at = [], 0
    for v in pieces:
        lo, hi = max(start - at, 0), min(stop - at, len(v))
        if hi > lo:
            out.append(v[lo:hi])
        at += len(v)
    return out


def _softmax(model, pieces: list[torch.Tensor], fwd: _Forwarder) -> torch.Tensor:
    """Softmax over the label space for uint8 views given in pieces. The concatenation, normalisation
    and forward of each batch are retried with half the batch on CUDA out-of-memory (`_Halving`)."""
    n = sum(len(v) for v in pieces)
    out = []
    i = 0
    while i < n:
        bs = min(fwd.chunk, n - i)
        try:
            part = _slice_pieces(pieces, i, i + bs)
            x = normalize(part[0] if len(part) == 1 else torch.cat(part), fwd.mean, fwd.std)  # float32
            out.append(model.logits(x).softmax(-1))
            del x
        except torch.cuda.OutOfMemoryError:
            if not fwd.halving.failed():
                raise
            continue
        fwd.halving.succeeded()
        i += bs
    return out[0] if len(out) == 1 else torch.cat(out)


class _PartWriter:
    """Buffers the rows of up to `chunk_images` images and writes them as one atomic part.

    Per image the top-5 and the group values stay on the model's device; `commit` copies the part's
    values back in one transfer per table (a host sync per part, not per image)."""

    def __init__(self, store: ResultSet, prefix: str, token: str, chunk_images: int, grid: ViewGrid,
                 groups: list[str] | None = None):
        self.store, self.prefix, self.token, self.chunk, self.grid = store, prefix, token, chunk_images, grid
        self.group_names = groups
        self.n_errors = 0
        self._reset()

    def _reset(self):
        self.images, self.errors, self.groups = [], [], []
        self.view_ids, self.preds, self.probs, self.group_values = [], [], [], []
        self.opened = time.monotonic()

    def full(self, pending: int = 0) -> bool:
        """The part is complete: `chunk_images` images, counting `pending` ones not yet forwarded, or
        open for PART_SECONDS with at least one image."""
        n = len(self.images) + pending
        return n >= self.chunk or (n > 0 and time.monotonic() - self.opened >= PART_SECONDS)

    def add_error(self, item: _Item):
        self.n_errors += 1
        self.errors.append((item.image_id, item.position, item.error))
        self.images.append((item.image_id, item.position, list(item.labels), -1, -1, json.dumps(item.meta, default=str), False))

    def add_image(self, item: _Item, probs: torch.Tensor, group_rows):
        """group_rows: `_Groups.values` (a tensor, on the device) or ready rows (a list of tuples)."""
        p, idx = probs.topk(TOPK, dim=-1)  # [V, 5], on the device
        self.preds.append(idx.to(torch.int16))
        self.probs.append(p.float())
        self.view_ids.append(item.image_id)
        if torch.is_tensor(group_rows):
            self.group_values.append((item.image_id, group_rows))
        else:
            self.groups.extend(group_rows)
        _, h, w = item.image.shape
        self.images.append((item.image_id, item.position, list(item.labels), w, h, json.dumps(item.meta, default=str), True))

    def _copy_back(self):
        """The part's device values as numpy: one transfer per kind."""
        preds = torch.cat(self.preds).cpu().numpy() if self.preds else np.zeros((0, TOPK), np.int16)
        probs = torch.cat(self.probs).cpu().numpy() if self.probs else np.zeros((0, TOPK), np.float32)
        if self.group_values:
            values = torch.stack([v for _, v in self.group_values]).cpu().numpy()  # [images, groups, 4]
            for (image_id, _), vals in zip(self.group_values, values):
                self.groups.extend(_group_rows(image_id, self.group_names, vals))
        return preds, probs

    def commit(self):
        if not self.images:
            return
        import pandas as pd

        v = self.grid.n_views
        preds, probs = self._copy_back()
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
