"""The paper as a matrix of sweeps: plan, preflight, run.

The paper is not one sweep but a matrix: Table 1 is 6 models x 7 label columns, the ImageNet-Hard
leaderboard 9 models on one dataset. This module turns that matrix into the list of sweeps a machine
can run (`plan`), says before any compute which datasets were found, which are missing and how to get
them, and what the rest will cost (`preflight`), then runs every sweep it has data for (`run`).

Three facts shape it:

* The 7 columns of Table 1 are 5 sweeps: ReaL and IN+ReaL relabel the ImageNet val images, so they
  are scored from the val result set at analysis time (`data.registry.relabel_results`).
* Each sweep is `study.ensure_results`: stored once under a key of everything that can change a
  number, resumed where it stopped, sharded by `--shard i/n` or torchrun's RANK / WORLD_SIZE (every
  process takes every n-th image of every sweep, so shards stay balanced whatever the datasets).
* A dataset is looked for where `open_dataset` looks (one resolver, `data.registry.find_local`): a
  root given for it, the data folder's `<folder>/` (--data-dir, else $ZOOMSTUDY_DATA, else ./data),
  its environment variable; ImageNet-Hard also on the hub at its pinned commit. Each dataset is
  opened once, in the preflight, so a copy with the wrong row count stops the run before any model
  is loaded, and `run` sweeps the source the preflight opened.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from zoomstudy.analysis import paper
from zoomstudy.provenance import is_random_weights
from zoomstudy.keyed import atomic_write, settings_key

#: Table 1's models: paper name -> model spec (`models.MODELS`).
TABLE1_MODELS: dict[str, str] = dict(paper.MODEL_KEYS)
#: Table 1's columns: paper name -> registry name (ReaL and IN+ReaL are the val sweep relabelled).
TABLE1_DATASETS: dict[str, str] = dict(paper.DATASET_KEYS)
#: The ImageNet-Hard leaderboard's models (SPEC section 7): paper name -> model spec (`paper.MODEL_ALIASES`).
HARD_MODELS: dict[str, str] = {m: paper.MODEL_ALIASES[m][0] for m in paper.IMAGENET_HARD["model"]}
HARD = "imagenet-hard"
#: Views the sweep adds per image for Table 4's 5-crop / 10-crop groups.
TTA_VIEWS = 10


# ================================================================================================
# Plan
# ================================================================================================
@dataclass(frozen=True)
class Job:
    """One sweep of the matrix: a model over a swept dataset, serving one or more paper columns."""

    model: str  # paper name
    spec: str  # model spec for `study.ensure_results`
    dataset: str  # registry name that is swept
    columns: tuple[str, ...]  # paper columns this sweep fills (IN, ReaL, IN+ReaL share one)
    kind: str = "sweep"  # "sweep" (Table 1) or "plain" (ImageNet-Hard leaderboard)


def plan(models: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
         hard_models: Sequence[str] | None = None) -> list[Job]:
    """The paper's jobs: Table 1 sweeps (one per model and *swept* dataset) then ImageNet-Hard plain runs.

    models / datasets: paper names (or model specs / registry names) to keep; None keeps all of
    Table 1's; a {row name: spec} dict names the rows itself. hard_models: the leaderboard's models to
    evaluate, the same way (None: all 9; [] skips ImageNet-Hard).
    """
    from zoomstudy.data.registry import dataset_spec, swept_dataset

    model_map = _select(TABLE1_MODELS, models, "model")
    data_map = _select(TABLE1_DATASETS, datasets, "dataset")
    for name in data_map.values():
        if dataset_spec(name) is None:
            raise ValueError(f"unknown dataset {name!r}; known: {sorted(TABLE1_DATASETS.values())}")
    swept: dict[str, list[str]] = {}
    for col, name in data_map.items():
        swept.setdefault(swept_dataset(name), []).append(col)
    jobs = [Job(m, spec, d, tuple(cols)) for m, spec in model_map.items() for d, cols in swept.items()]
    hard_map = _select(HARD_MODELS, hard_models, "ImageNet-Hard model")
    jobs += [Job(m, spec, HARD, ("ImageNet-Hard",), kind="plain") for m, spec in hard_map.items()]
    return jobs


def _select(table: Mapping[str, str], keep, what: str) -> dict[str, str]:
    if keep is None:
        return dict(table)
    if isinstance(keep, Mapping):  # {row name: spec}, e.g. local stand-ins for the paper's models
        return dict(keep)
    keep = [keep] if isinstance(keep, str) else list(keep)
    out = {}
    for k in keep:
        hit = [p for p, v in table.items() if k in (p, v)]
        if hit:
            out[hit[0]] = table[hit[0]]
        elif what != "dataset":  # any other model spec is a row of its own
            out[k] = k
        else:
            raise ValueError(f"unknown {what} {k!r}; known: {sorted(table)} or {sorted(table.values())}")
    return out


# ================================================================================================
# Locating the data
# ================================================================================================
@dataclass
class DatasetStatus:
    """Where a dataset was found (or why not), and what opening it gave."""

    name: str
    found: bool
    root: str | None = None
    via: str = ""  # "given", "$ENV", "data/<name>/", "hub cache", "hub"
    rows: int | None = None
    error: str | None = None
    howto: str = ""
    data_kw: dict = field(default_factory=dict)
    source: object = field(default=None, repr=False)  # the opened source (None when not opened)
    #: paper columns of this copy that cannot be scored, with why (ReaL on a copy without val numbers)
    refused: dict = field(default_factory=dict)


def _hub_cache_has(repo: str) -> str | None:
    """A folder of the Hugging Face caches that holds `repo` (hub snapshots or `datasets`' cache)."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub")).expanduser()
    ds = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets")).expanduser()
    owner, _, name = repo.partition("/")
    for p in (hub / f"datasets--{owner}--{name}", ds / f"{owner}___{name}".lower(), ds / f"{owner}___{name}"):
        if p.exists():
            return str(p)
    return None


def locate(name: str, roots: Mapping[str, str] | None = None, data_dir: str | Path | None = None,
           hard_revision: str | None = None, expected_rows: Mapping[str, int | None] | None = None,
           open_it: bool = True, max_rows: int | None = None) -> DatasetStatus:
    """Find a registry dataset and open it (row count and pin checked, nothing decoded).

    Where: `data.registry.find_local`, the lookup `open_dataset` and the notebooks use too (roots[name],
    then the data folder: data_dir, else $ZOOMSTUDY_DATA, else ./data; then $spec.env); ImageNet-Hard
    also the hub, at its pinned commit or hard_revision (a 40-hex sha, with its row count in
    expected_rows). max_rows: the rows the run reads (a hub dataset then downloads only the files
    holding them). expected_rows: per-dataset override of the registry's count (None accepts a partial copy).
    """
    from zoomstudy.data.registry import data_dir as default_data_dir, dataset_spec, find_local, open_dataset

    spec = dataset_spec(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}")
    howto = cli_flags(spec.instructions, spec)
    kw: dict = {}
    if expected_rows and spec.name in expected_rows:
        kw["expected_rows"] = expected_rows[spec.name]
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    path, via = find_local(spec.name, (roots or {}).get(spec.name) or None, folder)
    root = None if path is None else str(path)
    if root is None and spec.pin is not None:  # the hub at the pinned commit (or hard_revision), only the files read
        kw["data_folder"] = str(folder)  # the hub's files are looked for there first, as here
        via = "hub"
        if hard_revision:
            kw["revision"] = hard_revision
        if max_rows is not None:
            kw["max_rows"] = int(max_rows)
    elif root is None:
        cached = _hub_cache_has(spec.hub_repo) if spec.hub_repo else None
        why = (f"in the hub cache ({cached}) but no pinned revision: pass --hard-revision SHA --hard-rows N"
               if cached else "not found")
        where = [f"--root {spec.name}=PATH", f"{folder / spec.folder}/"] + ([f"${spec.env}"] if spec.env else [])
        return DatasetStatus(spec.name, False, error=why, howto=f"{' or '.join(where)}; {howto}")
    status = DatasetStatus(spec.name, True, root, via, howto=howto, data_kw=kw)
    if open_it:
        try:
            src = open_dataset(spec.name, root=root, **kw)
            status.rows = getattr(src, "hub_rows", None) or len(src)  # a hub prefix: the commit's full count
            status.source = src
        except (ValueError, FileNotFoundError, OSError) as e:
            status.found, status.error = False, cli_advice(str(e).splitlines()[0], spec)
    return status


def cli_advice(message: str, spec) -> str:
    """A data error as `zoomstudy paper` prints it: the CLI flags instead of the Python keywords, and
    without the dataset's instructions (the preflight prints them once, on its 'how:' line)."""
    import re

    message = message.replace(f": {spec.instructions}", "")
    return cli_flags(message, spec)


def cli_flags(message: str, spec) -> str:
    """The Python keywords of a data message (errors and a dataset's instructions) as the CLI's flags."""
    import re

    message = re.sub(r" \(CLI: [^)]*\)", "", message)
    message = message.replace("pass revision=<40-hex sha> together with expected_rows=<its row count>",
                              "pass --hard-revision SHA with --hard-rows N")
    message = message.replace("pass revision=<40-hex sha> with expected_rows=<its row count>",
                              "pass --hard-revision SHA with --hard-rows N")
    return re.sub(r"(pass )?expected_rows=None", f"pass --expected-rows {spec.name}=none", message).replace(
        "pass pass", "pass")


# ================================================================================================
# Preflight: what is there, what is missing, what it costs
# ================================================================================================
@dataclass
class Preflight:
    jobs: list[Job]
    datasets: dict[str, DatasetStatus]
    cost: pd.DataFrame  # model, dataset, images, views_per_image, views, s_per_image, hours, probed_on
    device: str

    @property
    def runnable(self) -> list[Job]:
        return [j for j in self.jobs if self.datasets[j.dataset].found]

    def text(self) -> str:
        """The preflight as the CLI prints it."""
        lines = ["The paper as a matrix of sweeps: preflight", ""]
        found = [s for s in self.datasets.values() if s.found]
        missing = [s for s in self.datasets.values() if not s.found]
        lines.append(f"datasets found ({len(found)}):")
        for s in found:
            lines.append(f"  {s.name:16s} {s.rows} images  via {s.via}  {s.root or ''}".rstrip())
            for col, why in s.refused.items():
                lines.append(f"  {'':16s} {col}: refused: {why}")
        lines.append(f"datasets missing ({len(missing)}):")
        for s in missing:
            lines.append(f"  {s.name:16s} {s.error}")
            lines.append(f"  {'':16s} how: {s.howto}")
        lines.append("")
        lines.append(f"cost on this device ({self.device}; time from a one-batch probe per model, "
                     f"'-' where not probed):")
        if len(self.cost):
            c = self.cost.copy()
            c["hours"] = c["hours"].map(lambda h: "-" if pd.isna(h) else f"{h:.2f}")
            c["s_per_image"] = c["s_per_image"].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
            lines.append(c.drop(columns=["probed_on"]).to_string(index=False))
            total = self.cost["hours"].sum(min_count=1)
            lines.append(f"total: {int(self.cost['views'].sum()):,} views"
                         + ("" if pd.isna(total) else f", about {total:.1f} h on this device"))
        else:
            lines.append("  nothing to run: no dataset of the plan was found")
        return "\n".join(lines)


def probe_seconds_per_image(spec: str, grid, *, device=None, batch_size: int = 512, kind: str = "sweep",
                            label_space: str = "imagenet1k", image_size=(500, 375)) -> float:
    """Seconds one image costs on this device: rendering its views (plus the 10 TTA crops), timed,
    plus one timed forward batch (after a warm-up) scaled to all of its views. Random weights of the
    same architecture: the speed is the same, and nothing is downloaded. kind "plain": one 1-crop
    forward (ImageNet-Hard's plain evaluation)."""
    import torch

    from zoomstudy.models.loading import load_model
    from zoomstudy.views import normalize, render_views, tta_crops

    # the text tower is not what a sweep pays for per image: CLIP's prompts are not encoded at all
    model = load_model(spec, pretrained=False, device=device, label_space=label_space, encode_prompts=False)
    dev = model.device
    dtype = torch.float64  # the sweep's render dtype, on CPU and CUDA
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, image_size[1], image_size[0]), generator=gen, dtype=torch.uint8).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if kind == "plain":
        batch = torch.zeros(1, *model.input_size, device=dev)
        model.logits(batch)  # warm-up: allocators, kernel selection
        sync()
        t0 = time.perf_counter()
        model.logits(batch)
        sync()
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    views = torch.cat([render_views(x, grid, dtype=dtype), tta_crops(x, grid.crop, grid.standard_scale, dtype=dtype)])
    views = normalize(views, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    sync()
    t_render = time.perf_counter() - t0
    # one batch: the sweep's batch on a GPU; on a CPU a short one, scaled (a full image of the
    # paper's grid through VGG-16 takes minutes there)
    n = min(len(views), batch_size if dev.type == "cuda" else 16)
    model.logits(views[:2])  # warm-up
    sync()
    t0 = time.perf_counter()
    model.logits(views[:n])
    sync()
    return t_render + (time.perf_counter() - t0) * len(views) / n


def preflight(jobs: Sequence[Job], *, roots: Mapping[str, str] | None = None, data_dir: str | Path | None = None,
              grid=None, probe: bool = True, device: str | None = None, batch_size: int = 512,
              hard_revision: str | None = None, expected_rows: Mapping[str, int | None] | None = None,
              max_images: int | None = None, probe_fn: Callable | None = None) -> Preflight:
    """Locate and open every dataset of `jobs`, then price the runnable jobs (see `Preflight.text`).

    probe: time one image per model (`probe_seconds_per_image`); False leaves the times empty.
    max_images: price only the first N images of each dataset (as `run` would sweep them).
    """
    from zoomstudy.models.loading import resolve_device
    from zoomstudy.study import make_grid, resolve_label_space

    grid = grid or make_grid()
    dev = resolve_device(device)
    from zoomstudy.data.registry import dataset_spec, real_join_problem

    statuses = {d: locate(d, roots, data_dir, hard_revision, expected_rows, max_rows=max_images)
                for d in dict.fromkeys(j.dataset for j in jobs)}
    for j in jobs:  # ReaL / IN+ReaL join the val sweep by val number: refused now on a copy without one
        st = statuses[j.dataset]
        relabelled = [c for c in j.columns if dataset_spec(TABLE1_DATASETS.get(c, c)) is not None
                      and dataset_spec(TABLE1_DATASETS.get(c, c)).labels != "original"]
        if st.found and st.source is not None and relabelled:
            why = real_join_problem(st.source)
            if why:
                st.refused.update({c: f"{st.root or st.via}: {why}" for c in relabelled})
    probe_fn = probe_fn or probe_seconds_per_image
    speed: dict[tuple[str, str], float] = {}
    rows = []
    for j in jobs:
        st = statuses[j.dataset]
        if not st.found:
            continue
        n = st.rows if max_images is None else min(st.rows, max_images)
        per_image = 1 if j.kind == "plain" else grid.n_views + TTA_VIEWS
        key = (j.spec, j.kind)
        if probe and key not in speed:
            try:
                speed[key] = probe_fn(j.spec, grid, device=str(dev), batch_size=batch_size, kind=j.kind,
                                      label_space=resolve_label_space(j.dataset))
            except Exception as e:  # noqa: BLE001 - an unprobeable model is priced '-', and run says why
                speed[key] = float("nan")
                st_note = f"probe failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                rows.append({"model": j.model, "dataset": j.dataset, "images": n, "views_per_image": per_image,
                             "views": n * per_image, "s_per_image": np.nan, "hours": np.nan, "probed_on": st_note})
                continue
        s = speed.get(key, np.nan)
        rows.append({"model": j.model, "dataset": j.dataset, "images": n, "views_per_image": per_image,
                     "views": n * per_image, "s_per_image": s, "hours": n * s / 3600, "probed_on": str(dev)})
    cost = pd.DataFrame(rows, columns=["model", "dataset", "images", "views_per_image", "views", "s_per_image",
                                       "hours", "probed_on"])
    return Preflight(list(jobs), statuses, cost, str(dev))


# ================================================================================================
# Run
# ================================================================================================
def run(pre: Preflight, *, results_dir: str | Path = "results/paper", grid=None, checkpoints: Mapping[str, str] | None = None,
        pretrained: bool = True, device: str | None = None, batch_size: int = 512, workers: int | None = None,
        shard: tuple[int, int] | None = None, max_images: int | None = None, tta: bool = True, progress: bool = True,
        log: Callable[[str], None] = print, amp: str | None = None) -> pd.DataFrame:
    """Every runnable job of a preflight: sweeps (stored once under their key, resumed where they
    stopped) and ImageNet-Hard plain runs (`hard_plain`, stored once). A failing job is reported and
    the others still run. checkpoints: paper model name or spec -> local weights file.

    Jobs run model by model, and each model is loaded once: the weights are shared by all of its
    datasets, only the label space (a mask on the logits, SPEC 2) changes per dataset. The data is
    opened before the model, so a wrong row count or revision stops a job before any weights load: it
    is the preflight's source (`DatasetStatus.source`), opened once for all of its jobs.
    Returns one row per job: model, dataset, kind, status ("done", "skipped: ...", "failed: ..."),
    path, seconds.
    """
    import dataclasses

    from zoomstudy.data.labels import get_label_space
    from zoomstudy.study import open_data, open_model, resolve_label_space
    from zoomstudy.sweep.engine import sweep_to_store

    grid = grid or _default_grid()
    checkpoints = dict(checkpoints or {})
    loaded: dict[tuple, object] = {}

    def model_for(job: Job, ckpt, space: str):
        key = (job.spec, ckpt)
        if key not in loaded:
            _release(loaded)  # one model in memory at a time: the previous one goes before the next loads
            loaded[key] = open_model(job.spec, ckpt, label_space="imagenet1k", device=device,
                                     pretrained=pretrained and ckpt is None, amp=amp)
        return dataclasses.replace(loaded[key], label_space=get_label_space(space))

    rows = []
    model = None
    for j in sorted(pre.jobs, key=lambda j: j.spec):  # stable: a model's sweeps, then its plain run
        model = None  # no reference to the previous job's model survives into `model_for`
        st = pre.datasets[j.dataset]
        row = {"model": j.model, "dataset": j.dataset, "kind": j.kind, "status": "", "path": None, "seconds": np.nan}
        if not st.found:
            row["status"] = "skipped: no data"
            rows.append(row)
            continue
        ckpt = checkpoints.get(j.model) or checkpoints.get(j.spec)
        t0 = time.perf_counter()
        try:
            src = st.source if st.source is not None else open_data(j.dataset, st.root, **st.data_kw)
            if j.kind == "plain":
                df = hard_plain(j.spec, model=model_for(j, ckpt, "imagenet1k"), source=src, results_dir=results_dir,
                                max_images=max_images, shard=shard, paper_model=j.model)
                row["path"] = df.attrs.get("path")
            else:
                model = model_for(j, ckpt, resolve_label_space(j.dataset))
                rs = sweep_to_store(model, src, grid, results_dir, batch_size=batch_size, workers=workers, shard=shard,
                           max_images=max_images, tta=tta, progress=progress)
                row["path"] = str(rs.path)
            row["status"] = "done"
        except Exception as e:  # noqa: BLE001 - one job's failure is reported, the matrix goes on
            row["status"] = f"failed: {type(e).__name__}: {' '.join(str(e).split())}"  # whole: paths included
        row["seconds"] = time.perf_counter() - t0
        log(f"{j.model} x {j.dataset} ({j.kind}): {row['status']} ({row['seconds']:.1f} s)")
        rows.append(row)
    return pd.DataFrame(rows)


def _release(loaded: dict) -> None:
    """Drop the models in `loaded` and give their device memory back before another model loads, so
    that two models never sit on one GPU (a ViT-bigG and the next model would not fit together)."""
    import gc

    import torch

    loaded.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _default_grid():
    from zoomstudy.study import make_grid

    return make_grid()


# ================================================================================================
# ImageNet-Hard plain evaluation, stored once
# ================================================================================================
def hard_plain(spec: str, *, checkpoint: str | None = None, pretrained: bool = True, device: str | None = None,
               results_dir: str | Path = "results/paper", root: str | None = None, data_kw: Mapping | None = None,
               max_images: int | None = None, shard: tuple[int, int] | None = None,
               batch_size: int = 32, model=None, source=None, paper_model: str | None = None) -> pd.DataFrame:
    """The plain 1-crop top-1 of a model on ImageNet-Hard with the model's own preprocessing (SPEC 5:
    CLIP with CLIP's), all 1000 logits, stored under results_dir/hard/<key>.parquet.

    The key hashes the model's provenance, its data config and the dataset's provenance (revision,
    rows, fingerprint): a stored table is reused only for the same model, weights and data. Where it
    ran (device, data path) is recorded beside the key, not in it (`sweep.engine.split_provenance`, the
    sweep store's split), so the same table is found again on another GPU or path. The data
    is opened first, so a wrong revision or row count stops before the model loads. With a shard,
    only shard 0 computes (one process is enough for a 1-crop pass) and the others return the
    stored table when it exists, else an empty one. model / source: already loaded ones (the matrix
    shares a model between its jobs). paper_model: the leaderboard row it fills (kept with the table).
    """
    from zoomstudy.analysis.hard import plain_from_model
    from zoomstudy.study import open_data, open_model
    from zoomstudy.sweep.engine import split_provenance

    src = source if source is not None else open_data(HARD, root, **dict(data_kw or {}))
    if model is None:
        model = open_model(spec, checkpoint, label_space="imagenet1k", device=device,
                           pretrained=pretrained and checkpoint is None)
    elif not model.label_space.is_full:
        raise ValueError("hard_plain: ImageNet-Hard is scored on all 1000 classes; got a restricted model")
    key_part, place = split_provenance(model, src)
    settings = {"key": {"model": key_part["model"],
                        "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config().items()},
                        "dataset": key_part["dataset"], "max_images": max_images, "protocol": "plain-1crop-v1"},
                "provenance": place}
    key = settings_key(settings)
    folder = Path(results_dir) / "hard"
    path = folder / f"{key}.parquet"
    if path.exists():
        df = pd.read_parquet(path)
    elif shard is not None and shard[0] != 0:
        df = pd.DataFrame(columns=["image_id", "origin", "labels", "pred", "confidence", "correct", "error"])
    else:
        df = plain_from_model(model, src, max_images=max_images, batch_size=batch_size)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"spec": spec, "model": model.name, "paper_model": paper_model, "key": key, "settings": settings,
                "rows": len(df)}
        (folder / f"{key}.json").write_text(json.dumps(meta, indent=2, default=str))
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))  # the table last: it commits the result
    df.attrs.update(path=str(path), spec=spec, model=model.name, key=key)
    return df


def stored_hard_tables(results_dir: str | Path) -> dict[str, pd.DataFrame]:
    """{model spec: per-image table} of every stored ImageNet-Hard plain run under results_dir/hard."""
    out = {}
    for meta_file in sorted((Path(results_dir) / "hard").glob("*.json")):
        meta = json.loads(meta_file.read_text())
        table = meta_file.with_suffix(".parquet")
        if table.exists():
            df = pd.read_parquet(table)
            df.attrs.update(path=str(table), spec=meta["spec"], model=meta["model"], settings=meta["settings"],
                            paper_model=meta.get("paper_model"))
            out[meta["spec"]] = df
    return out


# ================================================================================================
# Finding a cell's result set
# ================================================================================================
def model_name(spec: str) -> str:
    """The name a stored result set gives a model spec (settings key model.name), without a CLIP tag."""
    from zoomstudy.models.loading import MODELS

    if spec in MODELS:
        return MODELS[spec].name
    return spec.split(":", 1)[-1].partition("@")[0]


def find_cell(results_dir: str | Path, spec: str, dataset: str):
    """The result set of (model spec, registry dataset) under results_dir, relabelled for ReaL and
    IN+ReaL; None when there is none. Several candidates (other grids, other weights): the paper's
    grid first, then pretrained weights over random ones, then the most images."""
    from zoomstudy.data.registry import relabel_results, swept_dataset
    from zoomstudy.sweep.store import find_results
    from zoomstudy.views import ViewGrid

    want = model_name(spec)
    found = [rs for rs in find_results(results_dir, dataset=swept_dataset(dataset))
             if str(rs.settings["key"]["model"].get("name", "")).partition("@")[0] == want and rs.committed_parts()]
    if not found:
        return None

    def rank(rs):
        key = rs.settings["key"]
        random = is_random_weights(key["model"])
        return (key["grid"] == ViewGrid.paper().to_dict(), not random, len(rs.images()))

    return relabel_results(max(found, key=rank), dataset)


def parse_assignments(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """['imagenet-a=/data/a', ...] -> {'imagenet-a': '/data/a'} (CLI --root / --checkpoint)."""
    out = {}
    for item in items or []:
        k, sep, v = str(item).partition("=")
        if not sep or not k or not v:
            raise ValueError(f"{what} expects NAME=VALUE, got {item!r}")
        out[k] = v
    return out
