"""The sweep: one model over one dataset and one view grid, computed once, stored, resumable.

Data flows one way: worker processes decode each image once (uint8) -> the main process moves it to
the model's device -> `render_views` makes all of its views there (plus the 10-crop TTA set) ->
views of several images are fed to the model in large batches -> per view the top-5 classes, per
image and view group the averaged-probability and most-confident predictions -> the store, in
atomic parts. A killed sweep resumes where it stopped; one bad image is recorded, not fatal.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoomstudy import __version__
from zoomstudy.provenance import git_commit
from zoomstudy.sweep.store import FORMAT_VERSION, ResultSet
from zoomstudy.views import IMAGENET_MEAN, IMAGENET_STD, ViewGrid, normalize, pil_to_tensor, render_views, tta_crops

#: Normalisation choices (SPEC 1.4: the authors used ImageNet statistics for every model).
NORMALIZATIONS = ("imagenet", "model")
TOPK = 5


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
    """A stream split across workers by position; positions already done or of other shards skipped."""

    def __init__(self, source, todo):
        self.source, self.todo = source, todo

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        k = 0
        for position, sample in enumerate(self.source):
            if self.todo(position):
                if k % nw == wid:
                    yield _decode(self.source, position, sample)
                k += 1


def sweep_settings(model, source, grid: ViewGrid, *, normalization: str, render_dtype: torch.dtype, tta: bool) -> dict:
    """The provenance saved next to the results; `key` holds what can change a stored number."""
    model_prov = dict(model.provenance())
    model_prov.pop("weights_source", None)  # where the file was found does not change predictions
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else (model.mean, model.std)
    dataset = dict(source.provenance())
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
        "dataset_rows": rows,
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _check(grid, batch_size, chunk_images, workers, normalization, shard):
    if not isinstance(grid, ViewGrid):
        raise ValueError(f"grid must be a ViewGrid, got {type(grid).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (views per forward pass), got {batch_size}")
    if chunk_images < 1:
        raise ValueError(f"chunk_images must be >= 1, got {chunk_images}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if shard is not None:
        i, n = shard
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'3/8' -> (3, 8); None -> the torchrun rank when launched under torchrun, else None."""
    if text:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
        return i, n
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


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
    progress: bool = True,
) -> ResultSet:
    """Run (or resume) one model over one source and one grid; returns the stored ResultSet.

    model: a LoadedModel (zoomstudy.models.load_model). source: a zoomstudy.data source.
    batch_size: views per forward pass (halved automatically on CUDA out-of-memory).
    chunk_images: images per stored part (the unit of resume).
    workers: decoding processes (default 4 on CUDA, 1 on CPU; 0 decodes in this process).
    normalization: 'imagenet' (the paper: ImageNet mean/std for every model) or 'model' (its own).
    render_dtype: float64 = PIL-exact (CPU default), float32 (CUDA default).
    tta: also render the 10-crop set, for the TTA groups.
    shard: (i, n) to run every n-th image starting at i (several GPUs or machines).
    max_images: stop after this many images of the source (a prefix; quick runs, tests).
    """
    grid = grid or ViewGrid.paper()
    device = model.device
    workers = (4 if device.type == "cuda" else 1) if workers is None else workers
    _check(grid, batch_size, chunk_images, workers, normalization, shard)
    if render_dtype is None:
        render_dtype = torch.float64 if device.type == "cpu" else torch.float32
    settings = sweep_settings(model, source, grid, normalization=normalization, render_dtype=render_dtype, tta=tta)
    store = ResultSet.create(results_dir, settings)
    store.clean_uncommitted()
    done = store.done_positions()
    prefix = f"shard{shard[0]}of{shard[1]}" if shard else "part"

    def wanted(position: int) -> bool:
        if max_images is not None and position >= max_images:
            return False
        if shard and position % shard[1] != shard[0]:
            return False
        return position not in done

    rk = settings["key"]["render"]
    indexed = getattr(source, "_records", None) is not None
    if indexed:
        total = len(source) if max_images is None else min(len(source), max_images)
        todo = [p for p in range(total) if wanted(p)]
        dataset = _Indexed(source, todo)
        n_todo = len(todo)
    else:
        dataset = _Streamed(source, wanted)
        n_todo = None
    if n_todo == 0:
        return store
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )
    groups = _Groups(grid, tta)
    state = {"batch_size": batch_size}
    writer = _PartWriter(store, prefix, chunk_images, grid)
    pending: list[tuple[_Item, torch.Tensor]] = []  # images whose views wait for the model
    n_pending = 0

    def flush():
        nonlocal pending, n_pending
        if not pending:
            return
        views = torch.cat([v for _, v in pending])  # [sum V_i, 3, crop, crop]
        probs = _forward(model, views, state)  # [sum V_i, 1000] float32
        start = 0
        for item, v in pending:
            p = probs[start:start + len(v)]
            start += len(v)
            writer.add_image(item, p[: grid.n_views], groups.rows(item.image_id, p))
        pending, n_pending = [], 0

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    n_views_done = 0
    with tqdm(total=n_todo, unit="img", disable=not progress, desc=f"sweep {model.name}", smoothing=0.1) as bar:
        for item in loader:
            if item.image is None:
                writer.add_error(item)
            else:
                x = item.image.to(device, non_blocking=True)  # uint8 [3, H, W]
                grey = render_views(x, grid, dtype=render_dtype)  # [V, 3, crop, crop] grey levels
                if tta:
                    grey = torch.cat([grey, tta_crops(x, grid.crop, grid.standard_scale, dtype=render_dtype)])
                pending.append((item, normalize(grey, rk["mean"], rk["std"])))
                n_pending += len(grey)
                n_views_done += grid.n_views
                if n_pending >= state["batch_size"]:
                    flush()
            if writer.full(pending=len(pending)):  # images still waiting for the model count too
                flush()
                writer.commit()
            bar.update(1)
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(views_s=f"{n_views_done / dt:.0f}", errors=writer.n_errors, refresh=False)
        flush()
        writer.commit()
    return store


def _forward(model, views: torch.Tensor, state: dict) -> torch.Tensor:
    """Softmax over the label space for a stack of views, in chunks; halves the chunk on CUDA OOM."""
    out = []
    i = 0
    while i < len(views):
        bs = state["batch_size"]
        try:
            out.append(model.logits(views[i:i + bs]).softmax(-1))
            i += bs
        except torch.cuda.OutOfMemoryError:
            if bs == 1:
                raise
            state["batch_size"] = max(1, bs // 2)
            torch.cuda.empty_cache()
    return torch.cat(out)


class _PartWriter:
    """Buffers the rows of up to `chunk_images` images and writes them as one atomic part."""

    def __init__(self, store: ResultSet, prefix: str, chunk_images: int, grid: ViewGrid):
        self.store, self.prefix, self.chunk, self.grid = store, prefix, chunk_images, grid
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
        self.store.write_part(self.store.next_part(self.prefix), tables)
        self._reset()
