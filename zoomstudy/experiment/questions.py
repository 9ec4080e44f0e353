"""The practitioners' questions, answered causally on the procedural world, each with an interval.

Each question compares models that differ in one thing we set (where objects were in training, how
large, whether the context decides the class), several seeds per setting, measured on the same
images. `answer_*` returns an `Answer`: the question in plain words, a sentence generated from the
measured numbers with a 95% interval, the numbers, and the table its figure draws (`plot_answer`).

Intervals: a bootstrap over seeds x images (`bootstrap`). Each replicate resamples, independently
per arm, the seeds (models) with replacement, and resamples the images with replacement (the same
image indices for every arm when the arms were measured on the same images: a paired comparison).
It covers both sources of variation: which images were drawn and how training happened to go. With
three seeds the seed part is coarse, which widens the intervals honestly rather than hiding it.
A difference whose interval contains zero is reported as "no detectable difference".

The arms (`ARMS`): training regimes of world.py (centered, anywhere, multiscale, rrc, left) and the
context worlds (multiscale training, so that zoom alone does not hurt, in a world where a companion
beside the object decides the class, "context", or is present but irrelevant, "object-only").
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from zoomstudy.experiment.runs import Training, world_grid
from zoomstudy.experiment.world import WorldSource, WorldSpec, derive_seed, render_scenes, sample_scenes

#: arm name -> (training regime, WorldSpec changes): the models the questions compare.
ARMS: dict[str, tuple[str, dict]] = {
    "centered": ("centered", {}),
    "anywhere": ("anywhere", {}),
    "multiscale": ("multiscale", {}),
    "rrc": ("rrc", {}),
    "left": ("left", {}),
    # scale-augmented, so that zooming in costs nothing by itself and only the lost context can
    "context": ("multiscale", {"context": "decides"}),
    "object-only": ("multiscale", {"context": "present"}),
}
#: The arms each question needs.
QUESTION_ARMS = {
    "zoom": ("centered", "multiscale", "rrc"),
    "centre_bias": ("centered", "anywhere"),
    "positions": ("left", "anywhere"),
    "fixres": ("rrc", "centered"),
    "context": ("context", "object-only"),
}


@dataclass(frozen=True)
class Design:
    """Sizes of the experiment. seeds: models per arm; n_test: measurement images; n_probe: scenes per
    position of the position map, on a positions x positions grid; sizes: test resolutions of the
    FixRes curve (the training size is image_size = 56); n_boot: bootstrap replicates."""

    seeds: tuple[int, ...] = (0, 1, 2)
    training: Training = Training()
    n_test: int = 48
    n_probe: int = 48
    positions: int = 5
    sizes: tuple[int, ...] = (32, 40, 48, 56, 64, 72, 80, 96, 112)
    n_boot: int = 1000
    alpha: float = 0.05

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Design: seeds must be distinct and non-empty, got {self.seeds}")
        if self.n_test < 2 or self.n_probe < 2 or self.positions < 2:
            raise ValueError("Design: n_test, n_probe and positions must be >= 2")
        if not self.sizes or min(self.sizes) < 8:
            raise ValueError(f"Design: sizes must be >= 8, got {self.sizes}")
        if self.n_boot < 100 or not 0 < self.alpha < 1:
            raise ValueError(f"Design: need n_boot >= 100 and 0 < alpha < 1, got {self.n_boot}, {self.alpha}")


def arm_spec(arm: str, seed: int) -> WorldSpec:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {sorted(ARMS)}")
    regime, kw = ARMS[arm]
    return WorldSpec(regime=regime, seed=int(seed), **kw)


# ================================================================================================
# Training (parallel, cached)
# ================================================================================================
def _train_one(job: tuple, keep: dict | None = None) -> dict:
    """Worker: train (or load) one model with one thread; returns its metrics and CPU seconds (and puts
    the model in `keep` under (arm, seed) when given, so that the caller need not load it again)."""
    from zoomstudy.experiment.training import get_or_train

    arm, seed, training, cache = job
    t0, c0 = time.perf_counter(), time.process_time()
    model, metrics = get_or_train(arm_spec(arm, seed), training.config(seed), cache=cache, threads=1)
    if keep is not None:
        keep[(arm, int(seed))] = model
    return {"arm": arm, "seed": int(seed), "cache": metrics["cache"], "val_accuracy": metrics["val_accuracy"],
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "path": metrics["path"]}


def train_arms(arms: Iterable[str], design: Design = Design(), *, workers: int | None = None, cache=None,
               log: Callable[[str], None] | None = None) -> tuple[dict, pd.DataFrame]:
    """Train (or load from the cache) every (arm, seed) model: ({(arm, seed): module}, timing table).

    Models missing from the cache train in `workers` processes of one thread each (default: the CPU
    count, at most 2): batches of 32 small images gain little from a second thread, two processes
    gain nearly 2x. The table has per model: cache hit/miss, accuracy on its own regime, wall and
    CPU seconds (CPU seconds of one thread = the wall time on an idle core).
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    from zoomstudy.experiment.training import get_or_train, weights_path

    arms = list(dict.fromkeys(arms))
    for a in arms:
        arm_spec(a, 0)  # validates the name before any training
    jobs = [(a, s, design.training, cache) for a in arms for s in design.seeds]
    # only the models missing from the cache go to the worker processes; the cached ones load once, below
    missing = [j for j in jobs if not weights_path(arm_spec(j[0], j[1]), j[2].config(j[1]), cache=cache).exists()]
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    rows = {}
    if workers > 1 and len(missing) > 1:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for r in pool.map(_train_one, missing):
                rows[(r["arm"], r["seed"])] = r
                if log:
                    log(f"{r['arm']} seed {r['seed']}: {r['cache']}, {r['cpu_s']:.1f} s CPU")
    models = {}
    for job in jobs:  # trained by the workers or cached: load each once here (or train it here, one worker)
        a, s = job[0], int(job[1])
        if (a, s) in rows:
            m, _ = get_or_train(arm_spec(a, s), design.training.config(s), cache=cache)
        else:
            rows[(a, s)] = _train_one(job, keep=models)
            m = models.pop((a, s))
        models[(a, s)] = m.eval()
    return models, pd.DataFrame([rows[(a, int(s))] for a, s, _, _ in jobs])


# ================================================================================================
# Measurements (cached next to the models: the warm path computes nothing)
# ================================================================================================
def _measure_path(kind: str, model_path: str, params: dict, cache=None):
    from zoomstudy.experiment.training import KEY_LENGTH, cache_dir
    from zoomstudy.keyed import key_of

    key = key_of({"kind": kind, "model": os.path.basename(model_path), "params": params}, KEY_LENGTH)
    return cache_dir(cache) / "measure" / f"{kind}-{key}.npy"


def _save(path, arr: np.ndarray) -> None:
    from zoomstudy.keyed import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:  # a file object: np.save would add ".npy" to a path
            np.save(fh, arr)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


@torch.no_grad()
def view_hits(modules: dict, source, grid, centre_only: Iterable = ()) -> dict:
    """{name: bool [n_images, n_scales, g, g]}: every view of the sweep's grid (rendered as the sweep
    renders them, views.render_views) for several models on one source. Each image's views are
    rendered once for all models; models in `centre_only` only see the centre anchor's views (their
    other anchors are False), a ninth of the forward passes when a question needs only zoom."""
    from zoomstudy.experiment.training import _inputs
    from zoomstudy.views import pil_to_tensor, render_views

    g = grid.grid
    centre = np.zeros((grid.n_scales, g, g), bool)
    centre[:, g // 2, g // 2] = True
    centre_idx = torch.from_numpy(np.flatnonzero(centre.ravel()))
    out = {k: [] for k in modules}
    for sample in source:
        views = _inputs(render_views(pil_to_tensor(sample.image), grid))  # [n_views, 3, crop, crop]
        y = int(sample.labels[0])
        for k, m in modules.items():
            if k in centre_only:
                row = np.zeros(grid.n_views, bool)
                row[centre_idx.numpy()] = (m(views[centre_idx]).argmax(1) == y).numpy()
            else:
                row = (m(views).argmax(1) == y).numpy()
            out[k].append(row.reshape(grid.n_scales, g, g))
    return {k: np.stack(v) for k, v in out.items()}


@torch.no_grad()
def position_hits(modules: dict, spec: WorldSpec, positions: int = 5, n: int = 48, seed: int = 0) -> dict:
    """{name: bool [positions (y), positions (x), n]}: the same n scenes with the object moved over a
    grid of positions in the model's input (the standard window, the typical size), centres from the
    far left/top to the far right/bottom of the range the "anywhere" regime trains on. Rendered once
    (one batch) for all models."""
    from zoomstudy.experiment.training import _inputs
    from zoomstudy.experiment.world import Scenes

    g = torch.Generator().manual_seed(derive_seed(seed, "positions"))
    base = sample_scenes(spec, n, g, regime="centered")
    win, half = spec.standard_window, spec.source_size / 2
    margin = win / 2 - spec.base_size / 4
    offs = np.linspace(-margin, margin, positions)
    batch = []
    for oy in offs:
        for ox in offs:
            obj = base.obj.clone()
            obj[:, 0], obj[:, 1] = half + float(ox), half + float(oy)
            comp = None
            if base.comp is not None:
                comp = base.comp.clone()
                comp[:, 1] += float(ox)
                comp[:, 2] += float(oy)
            batch.append(Scenes(**{**base.__dict__, "obj": obj, "comp": comp}))
    rgb, _ = render_scenes(Scenes.cat(batch), spec.image_size, spec.image_size)  # [P*P*n, 3, S, S]
    x = _inputs(rgb)
    y = base.cls.repeat(positions * positions)
    return {k: (torch.cat([m(x[i:i + 1024]).argmax(1) for i in range(0, len(x), 1024)]) == y)
            .numpy().reshape(positions, positions, n) for k, m in modules.items()}


@torch.no_grad()
def resolution_hits(modules: dict, source, sizes) -> dict:
    """{name: bool [n_sizes, n_images]}: Resize(round(s * 256 / 224)) + CenterCrop(s), the FixRes protocol
    of analysis.resolution (the same renderer), at every test size s, each size's batch rendered once for
    all models; the CNN's global pooling takes any size."""
    from zoomstudy.analysis.resolution import render_center_crop
    from zoomstudy.views import normalize, pil_to_tensor

    images, labels = [], []
    for s in source:
        images.append(pil_to_tensor(s.image))
        labels.append(s.labels[0])
    y = torch.tensor(labels)
    out = {k: np.zeros((len(sizes), len(images)), bool) for k in modules}
    for i, size in enumerate(sizes):
        x = torch.stack([normalize(render_center_crop(im, int(size))) for im in images])
        x = x.contiguous(memory_format=torch.channels_last)  # [n, 3, size, size]
        for k, m in modules.items():
            out[k][i] = (m(x).argmax(1) == y).numpy()
    return out


#: The arms measured at every anchor (the others need only the centre anchor's views).
_ALL_ANCHORS = set(QUESTION_ARMS["centre_bias"])


def measure_arms(models: dict, arms: Iterable[str], design: Design = Design(), *, cache=None) -> dict:
    """Every measurement the questions need, per arm, stacked over seeds (cached per model, so a
    rerun computes nothing): {"views": {arm: bool [S, N, scales, 3, 3]}, "positions": {arm: [S, P, P, n]},
    "resolution": {arm: [S, sizes, N]}}. Measurement images: n_test test images of each world (seed
    1, never seen in training; the same for every arm of a world)."""
    from zoomstudy.experiment.training import weights_path

    arms = list(arms)
    grid = world_grid(WorldSpec())
    paths = {(a, int(s)): str(weights_path(arm_spec(a, s), design.training.config(s), cache=cache))
             for a in arms for s in design.seeds}
    kinds = {
        "views": ([a for a in arms if a in QUESTION_ARMS["zoom"] + QUESTION_ARMS["centre_bias"] + QUESTION_ARMS["context"]],
                  {"n": design.n_test, "grid": grid.to_dict()}),
        "positions": ([a for a in arms if a in QUESTION_ARMS["positions"]], {"p": design.positions, "n": design.n_probe}),
        "resolution": ([a for a in arms if a in QUESTION_ARMS["fixres"]], {"n": design.n_test, "sizes": list(design.sizes)}),
    }
    out: dict[str, dict] = {}
    for kind, (kind_arms, params) in kinds.items():
        result = {}
        for ctx in dict.fromkeys(arm_spec(a, 0).context for a in kind_arms):  # one measurement set per world
            test_spec = WorldSpec(context=ctx)
            keys = [(a, int(s)) for a in kind_arms if arm_spec(a, 0).context == ctx for s in design.seeds]
            p = {**params, "centre_only": None}
            files = {}
            for k in keys:
                pk = {**p, "centre_only": kind == "views" and k[0] not in _ALL_ANCHORS}
                files[k] = _measure_path(kind, paths[k], pk, cache)
            todo = {k: models[k] for k in keys if not files[k].exists()}
            if todo:
                src = WorldSource(test_spec, design.n_test, "test", seed=1)
                if kind == "views":
                    got = view_hits(todo, src, grid, centre_only=[k for k in todo if k[0] not in _ALL_ANCHORS])
                elif kind == "positions":
                    got = position_hits(todo, test_spec, design.positions, design.n_probe)
                else:
                    got = resolution_hits(todo, src, design.sizes)
                for k, arr in got.items():
                    _save(files[k], arr)
            for k in keys:
                result[k] = np.load(files[k])
        out[kind] = {a: np.stack([result[(a, int(s))] for s in design.seeds]) for a in kind_arms}
    return out


# ================================================================================================
# Intervals
# ================================================================================================
def bootstrap(arrays: dict[str, np.ndarray], stat: Callable[[dict], float], *, image_axis: int = 1,
              paired: bool = True, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, lo, hi): `stat` of the arrays, and its percentile interval over seeds x images.

    arrays: arm -> array whose axis 0 is the seed and axis `image_axis` the image. Each replicate
    draws seeds with replacement per arm and images with replacement (the same draw for every arm
    when paired, i.e. measured on the same images; independent draws otherwise).
    """
    rng = np.random.default_rng(seed)
    est = float(stat(arrays))
    reps = np.empty(n_boot)
    n_img = {a: x.shape[image_axis] for a, x in arrays.items()}
    if paired and len(set(n_img.values())) != 1:
        raise ValueError(f"bootstrap: paired arms need the same number of images, got {n_img}")
    for b in range(n_boot):
        shared = rng.integers(0, next(iter(n_img.values())), next(iter(n_img.values()))) if paired else None
        res = {}
        for a, x in arrays.items():
            s = rng.integers(0, x.shape[0], x.shape[0])
            img = shared if paired else rng.integers(0, n_img[a], n_img[a])
            res[a] = np.take(x[s], img, axis=image_axis)
        reps[b] = stat(res)
    lo, hi = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return est, float(lo), float(hi)


def _ci(est: float, lo: float, hi: float, unit: str = " pp", fmt: str = "+.1f") -> str:
    return f"{est:{fmt}}{unit} (95% CI {lo:{fmt}} to {hi:{fmt}})"


def _detectable(lo: float, hi: float) -> bool:
    return lo > 0 or hi < 0


def _diff_clause(est, lo, hi, more: str, less: str, unit=" pp", fmt="+.1f") -> str:
    """'X more/less ... (CI)' or 'no detectable difference (CI)'."""
    if not _detectable(lo, hi):
        return f"no detectable difference: {_ci(est, lo, hi, unit, fmt)}"
    return f"{more if est > 0 else less} by {_ci(est, lo, hi, unit, fmt)}"


@dataclass
class Answer:
    """One question's answer: the question, the generated sentence, its numbers and figure table."""

    key: str
    question: str
    sentence: str
    numbers: dict
    table: pd.DataFrame = field(repr=False)

    def _repr_markdown_(self) -> str:
        return f"**{self.question}**\n\n{self.sentence}"


# ================================================================================================
# The questions
# ================================================================================================
def _centre_curve(v: np.ndarray) -> np.ndarray:
    """[S, N, scales, 3, 3] -> mean centre-view accuracy per scale [scales]."""
    return v[:, :, :, 1, 1].mean((0, 1))


def scale_spread(curve: np.ndarray, scales, n_classes: int = 12) -> float:
    """Width of an accuracy-against-zoom curve in octaves: the standard deviation of log2(scale),
    each scale weighted by its accuracy above chance (0 when no scale beats chance)."""
    w = np.maximum(np.asarray(curve, float) - 1 / n_classes, 0)
    if w.sum() <= 0:
        return 0.0
    o = np.log2(np.asarray(scales, float))
    mu = (w * o).sum() / w.sum()
    return float(np.sqrt((w * (o - mu) ** 2).sum() / w.sum()))


def zoom_window(curve: np.ndarray, scales) -> float:
    """Width in octaves of the zoom window: log2 of the largest over the smallest scale at which the
    curve reaches at least half its peak (0 when only one scale does). Unlike a spread weighted by
    accuracy, chance-level accuracy at far zooms does not widen it."""
    curve = np.asarray(curve, float)
    if curve.max() <= 0:
        return 0.0
    ok = np.asarray(scales, float)[curve >= curve.max() / 2]
    return float(np.log2(ok.max() / ok.min()))


def answer_zoom(meas: dict, design: Design = Design()) -> Answer:
    """Q1: does a model trained on un-zoomed images classify zoomed ones; does scale augmentation
    widen the window? Centre views of the sweep's grid, against scale."""
    grid = world_grid(WorldSpec())
    scales = np.asarray(grid.scales)
    v = {a: meas["views"][a].astype(float) for a in QUESTION_ARMS["zoom"]}
    std = int(np.argmin(abs(scales - grid.standard_scale)))
    zin = int(np.argmin(abs(scales - 2 * grid.standard_scale)))
    zout = int(np.argmin(abs(scales - grid.standard_scale / 2)))
    kw = dict(n_boot=design.n_boot, alpha=design.alpha)
    c = {"centered": v["centered"]}
    at_std = bootstrap(c, lambda d: 100 * d["centered"][:, :, std, 1, 1].mean(), **kw)
    drop_in = bootstrap(c, lambda d: 100 * (d["centered"][:, :, zin, 1, 1].mean() - d["centered"][:, :, std, 1, 1].mean()), **kw)
    drop_out = bootstrap(c, lambda d: 100 * (d["centered"][:, :, zout, 1, 1].mean() - d["centered"][:, :, std, 1, 1].mean()), **kw)
    widen = {}
    for other in ("multiscale", "rrc"):
        pair = {"centered": v["centered"], other: v[other]}
        widen[other] = bootstrap(pair, lambda d, o=other: zoom_window(_centre_curve(d[o]), scales)
                                 - zoom_window(_centre_curve(d["centered"]), scales), **kw)
    spreads = {a: zoom_window(_centre_curve(v[a]), scales) for a in v}
    sentence = (
        f"Trained only on centred objects at one size, the model is right on {at_std[0]:.0f}% of centre views at the "
        f"training framing (S={scales[std]}); zoomed in 2x (S={scales[zin]}) accuracy changes by "
        f"{_ci(*drop_in)}, zoomed out 2x (S={scales[zout]}) by {_ci(*drop_out)}. "
        f"The zoom window (the range of scales with at least half the peak accuracy) spans "
        f"{spreads['centered']:.2f} octaves for centred training; multiscale training "
        f"{_diff_clause(*widen['multiscale'], 'widens it', 'narrows it', ' octaves', '+.2f')}; "
        f"RandomResizedCrop training {_diff_clause(*widen['rrc'], 'widens it', 'narrows it', ' octaves', '+.2f')}."
    )
    rows = []
    for a, x in v.items():
        per_seed = x[:, :, :, 1, 1].mean(1)  # [S, scales]
        for k, s in enumerate(scales):
            rows.append({"arm": a, "scale": int(s), "accuracy": 100 * per_seed[:, k].mean(),
                         "lo": 100 * per_seed[:, k].min(), "hi": 100 * per_seed[:, k].max()})
    numbers = {"standard_accuracy": at_std, "zoom_in_2x_change": drop_in, "zoom_out_2x_change": drop_out,
               "window_octaves": spreads, "widening_multiscale": widen["multiscale"], "widening_rrc": widen["rrc"]}
    return Answer("zoom", "Zoom: does a model trained on un-zoomed images classify zoomed ones, and does scale "
                  "augmentation widen the window of scales it recognises?", sentence, numbers, pd.DataFrame(rows))


def _centre_bias(x: np.ndarray) -> float:
    """[S, N, scales, 3, 3] -> (pp) centre anchor's any-scale bound minus the mean of the 8 others."""
    from zoomstudy.analysis.bounds import center_bias

    return center_bias(100 * x.any(2).mean((0, 1)))[2]  # anchors [3, 3]


def answer_centre_bias(meas: dict, design: Design = Design()) -> Answer:
    """Q2: why are models centre-biased? Centre-trained against anywhere-trained models, same images."""
    v = {a: meas["views"][a] for a in QUESTION_ARMS["centre_bias"]}
    kw = dict(n_boot=design.n_boot, alpha=design.alpha)
    bias = {a: bootstrap({a: x}, lambda d, a=a: _centre_bias(d[a]), **kw) for a, x in v.items()}
    diff = bootstrap({"c": v["centered"], "a": v["anywhere"]},
                     lambda d: _centre_bias(d["c"]) - _centre_bias(d["a"]), **kw)
    cause = ("so the bias comes from where objects were in training: training with objects anywhere "
             if _detectable(*diff[1:]) and diff[0] > 0 else "training with objects anywhere ")
    sentence = (
        f"On the same test images, the centre anchor's advantage (its any-scale bound minus the mean of the 8 others) "
        f"is {_ci(*bias['centered'])} for models trained on centred objects and {_ci(*bias['anywhere'])} for models "
        f"trained with objects anywhere; {cause}changes it by "
        f"{_ci(-diff[0], -diff[2], -diff[1])}"
        + ("" if _detectable(*diff[1:]) else " (no detectable difference)") + "."
    )
    rows = []
    for a, x in v.items():
        anchors = x.any(2).mean((0, 1))
        for i in range(3):
            for j in range(3):
                rows.append({"panel": a, "row": i, "col": j, "value": 100 * anchors[i, j]})
    return Answer("centre_bias", "Centre bias: why are models better when the object is in the middle?", sentence,
                  {"centre_bias": bias, "centered_minus_anywhere": diff}, pd.DataFrame(rows))


def answer_positions(meas: dict, design: Design = Design()) -> Answer:
    """Q3: trained with objects only in the left half, is the object recognised elsewhere, how far?"""
    p = {a: meas["positions"][a].astype(float) for a in QUESTION_ARMS["positions"]}  # [S, P, P, n]
    P = design.positions
    left_cols, right_cols = np.arange(P) < (P - 1) / 2, np.arange(P) > (P - 1) / 2
    kw = dict(image_axis=3, n_boot=design.n_boot, alpha=design.alpha)
    l = p["left"]
    acc_l = bootstrap({"l": l}, lambda d: 100 * d["l"][:, :, left_cols].mean(), **kw)
    acc_r = bootstrap({"l": l}, lambda d: 100 * d["l"][:, :, right_cols].mean(), **kw)
    gap = bootstrap({"l": l}, lambda d: 100 * (d["l"][:, :, right_cols].mean() - d["l"][:, :, left_cols].mean()), **kw)
    far = bootstrap({"l": l}, lambda d: 100 * (d["l"][:, :, -1].mean() - d["l"][:, :, 0].mean()), **kw)
    ctrl = bootstrap({"a": p["anywhere"]},
                     lambda d: 100 * (d["a"][:, :, right_cols].mean() - d["a"][:, :, left_cols].mean()), **kw)
    cols = 100 * l.mean((0, 1, 3))  # [P] accuracy per column, left to right
    transfer = "does not fully transfer" if _detectable(*gap[1:]) and gap[0] < 0 else "transfers"
    sentence = (
        f"Trained with objects only in the left half, the model is right on {_ci(*acc_l, unit='%', fmt='.0f')} of "
        f"objects at left positions and {_ci(*acc_r, unit='%', fmt='.0f')} at right positions never seen in training: "
        f"recognition {transfer} (right minus left: {_diff_clause(*gap, 'higher', 'lower')}). By column, left to "
        f"right: {', '.join(f'{c:.0f}%' for c in cols)}; the farthest right column against the farthest left: "
        f"{_ci(*far)}. Models trained with objects anywhere: right minus left {_ci(*ctrl)}."
    )
    rows = []
    for a, x in p.items():
        m = x.mean((0, 3))
        for i in range(P):
            for j in range(P):
                rows.append({"panel": a, "row": i, "col": j, "value": 100 * m[i, j]})
    return Answer("positions", "Unseen positions: trained with objects only in the left half, does recognition "
                  "transfer to positions never seen in training, and how far?", sentence,
                  {"left": acc_l, "right": acc_r, "right_minus_left": gap, "far_right_minus_far_left": far,
                   "anywhere_right_minus_left": ctrl, "per_column": cols.tolist()}, pd.DataFrame(rows))


def _peak(curve: np.ndarray, sizes, train: int) -> int:
    best = np.flatnonzero(curve >= curve.max() - 1e-12)
    return int(min((sizes[i] for i in best), key=lambda s: (abs(math.log(s / train)), s)))


def answer_fixres(meas: dict, design: Design = Design()) -> Answer:
    """Q4: models trained with RandomResizedCrop at 56 px, tested at other resolutions (fixed framing)."""
    sizes = np.asarray(design.sizes)
    train = WorldSpec().image_size
    if train not in sizes:
        raise ValueError(f"answer_fixres: the test sizes must include the training size {train}")
    t = int(np.flatnonzero(sizes == train)[0])
    r = {a: meas["resolution"][a].astype(float) for a in QUESTION_ARMS["fixres"]}  # [S, sizes, N]
    kw = dict(image_axis=2, n_boot=design.n_boot, alpha=design.alpha)
    above = (sizes > train) & (sizes <= 1.5 * train)  # the sizes FixRes predicts to help (up to 1.5x)

    def gain(x):  # mean accuracy just above the training size minus at it (pp); unbiased, either sign
        return 100 * (x[:, above].mean() - x[:, t].mean())

    out = {}
    for a, x in r.items():
        curve = x.mean((0, 2))
        out[a] = {"peak": _peak(curve, sizes, train), "peak_accuracy": 100 * curve.max(), "at_train": 100 * curve[t],
                  "gain_above": bootstrap({a: x}, lambda d, a=a: gain(d[a]), **kw)}
    diff = bootstrap({"r": r["rrc"], "c": r["centered"]}, lambda d: gain(d["r"]) - gain(d["c"]), **kw)
    hi_sizes = f"{sizes[above].min()}-{sizes[above].max()} px"

    def peak_text(a):
        o = out[a]
        where = "above" if o["peak"] > train else "below" if o["peak"] < train else "at"
        return (f"peaks at {o['peak']} px ({where} the training {train} px; {o['peak_accuracy']:.0f}% against "
                f"{o['at_train']:.0f}% at {train} px); testing at {hi_sizes} instead of {train} px: "
                f"{_diff_clause(*o['gain_above'], 'raises accuracy', 'lowers accuracy')}")

    sentence = (
        f"Trained with RandomResizedCrop at {train} px and tested at the same framing (resize, then centre crop) at "
        f"{sizes.min()}-{sizes.max()} px, accuracy {peak_text('rrc')}. Trained without scale augmentation (centred, "
        f"one size), it {peak_text('centered')}. The RandomResizedCrop models gain more from the higher "
        f"resolution than the others: {_diff_clause(*diff, 'yes, more', 'no, less')}."
    )
    rows = []
    for a, x in r.items():
        per_seed = x.mean(2)  # [S, sizes]
        for k, s in enumerate(sizes):
            rows.append({"arm": a, "size": int(s), "accuracy": 100 * per_seed[:, k].mean(),
                         "lo": 100 * per_seed[:, k].min(), "hi": 100 * per_seed[:, k].max()})
    return Answer("fixres", "FixRes: trained with RandomResizedCrop, is a model most accurate at a test resolution "
                  "above its training resolution, and is that different without scale augmentation?", sentence,
                  {**out, "rrc_minus_centered_gain": diff}, pd.DataFrame(rows))


def answer_context(meas: dict, design: Design = Design()) -> Answer:
    """Q5: accuracy as zoom-in crops remove the context, where the context decides vs the object alone."""
    grid = world_grid(WorldSpec())
    scales = np.asarray(grid.scales)
    std = int(np.argmin(abs(scales - grid.standard_scale)))
    # 2x to 2.5x zoom-in: crops of half the standard window or less leave the companion out of view
    # (it starts 0.55 object sizes from the centre), and up to 2.5x the object itself is still mostly
    # in view, so a model that needs only the object can still be right
    zin = (scales >= 2 * grid.standard_scale) & (scales <= 2.5 * grid.standard_scale)
    v = {a: meas["views"][a].astype(float) for a in QUESTION_ARMS["context"]}
    kw = dict(n_boot=design.n_boot, alpha=design.alpha, paired=False)

    def loss(x):
        return 100 * (x[:, :, std, 1, 1].mean() - x[:, :, zin, 1, 1].mean())

    lc = bootstrap({"c": v["context"]}, lambda d: loss(d["c"]), **kw)
    lo_ = bootstrap({"o": v["object-only"]}, lambda d: loss(d["o"]), **kw)
    diff = bootstrap({"c": v["context"], "o": v["object-only"]}, lambda d: loss(d["c"]) - loss(d["o"]), **kw)
    sentence = (
        f"For models trained with scale augmentation: where a companion beside the object decides the class "
        f"(same shape, two classes), zooming in 2x-2.5x "
        f"(S = {int(scales[zin].min())}-{int(scales[zin].max())}: crops that leave the companion out and the object in) costs {_ci(*lc)} of centre-view accuracy "
        f"against the training framing (S={scales[std]}); where the object alone decides, it costs {_ci(*lo_)}. "
        f"The context world loses {_diff_clause(*diff, 'more', 'less')}."
    )
    rows = []
    for a, x in v.items():
        per_seed = x[:, :, :, 1, 1].mean(1)
        for k, s in enumerate(scales):
            rows.append({"arm": a, "scale": int(s), "accuracy": 100 * per_seed[:, k].mean(),
                         "lo": 100 * per_seed[:, k].min(), "hi": 100 * per_seed[:, k].max()})
    return Answer("context", "Context: when the surroundings decide the class, how much does zooming in (which crops "
                  "them away) cost, against a world where the object alone decides?", sentence,
                  {"context_loss": lc, "object_only_loss": lo_, "difference": diff}, pd.DataFrame(rows))


ANSWERS = {"zoom": answer_zoom, "centre_bias": answer_centre_bias, "positions": answer_positions,
           "fixres": answer_fixres, "context": answer_context}


def run_questions(design: Design = Design(), *, questions: Iterable[str] = tuple(QUESTION_ARMS), workers=None,
                  cache=None, log=None):
    """Train (cached), measure (cached) and answer: (answers {key: Answer}, training table)."""
    questions = list(questions)
    bad = [q for q in questions if q not in QUESTION_ARMS]
    if bad:
        raise ValueError(f"unknown questions {bad}; expected some of {list(QUESTION_ARMS)}")
    arms = [a for q in questions for a in QUESTION_ARMS[q]]
    models, timing = train_arms(arms, design, workers=workers, cache=cache, log=log)
    meas = measure_arms(models, dict.fromkeys(arms), design, cache=cache)
    return {q: ANSWERS[q](meas, design) for q in questions}, timing


def answers_table(answers: dict[str, Answer]) -> pd.DataFrame:
    """One row per question: key, question, answer sentence (for the README / provenance)."""
    return pd.DataFrame([{"key": a.key, "question": a.question, "answer": a.sentence} for a in answers.values()])


# ================================================================================================
# Figures
# ================================================================================================
def plot_answer(answer: Answer):
    """The figure of one answer (matplotlib Figure): curves with the seed range, or accuracy maps."""
    import matplotlib.pyplot as plt

    t = answer.table
    if answer.key in ("centre_bias", "positions"):
        panels = list(dict.fromkeys(t["panel"]))
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
        for ax, p in zip(axes[0], panels):
            sub = t[t["panel"] == p]
            n = int(sub["row"].max()) + 1
            m = np.full((n, n), np.nan)
            m[sub["row"].to_numpy(), sub["col"].to_numpy()] = sub["value"].to_numpy()
            im = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", color="w" if m[i, j] < 60 else "k",
                            fontsize=8)
            ax.set_title(p)
            ax.set_xticks([])
            ax.set_yticks([])
        if answer.key == "positions":
            fig.supxlabel("object position in the input: left -> right (training saw only the left half)", fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="accuracy (%)")
        fig.suptitle("per-anchor bound (any scale)" if answer.key == "centre_bias" else
                     "accuracy by object position (left-half training)")
        return fig
    x = "size" if answer.key == "fixres" else "scale"
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for a in dict.fromkeys(t["arm"]):
        sub = t[t["arm"] == a]
        ax.plot(sub[x], sub["accuracy"], marker="o", ms=3, label=a)
        ax.fill_between(sub[x], sub["lo"], sub["hi"], alpha=0.2)
    ax.set_xscale("log", base=2)
    ref = WorldSpec().image_size if x == "size" else world_grid(WorldSpec()).standard_scale
    ax.axvline(ref, ls="--", c="grey", lw=1)
    ax.set_xlabel("test resolution (px)" if x == "size" else "scale S (resize before the 56-px crop)")
    ax.set_ylabel("accuracy (%); band: seed range")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title({"zoom": "centre-view accuracy against zoom", "fixres": "accuracy against test resolution",
                  "context": "centre-view accuracy against zoom: context decides vs object alone"}[answer.key])
    fig.tight_layout()
    return fig
