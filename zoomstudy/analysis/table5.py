"""Table 5: MEMO over a dataset, stored and resumable, and its summaries beside the paper's.

`memo_table` runs MEMO (`analysis.memo`) over the first images of a source with a `MemoConfig`, and stores
the per-image table as <results_dir>/memo/<hash>.parquet next to <hash>.json. The JSON's `key` holds
every setting that can change a number (model and weights, the data's content, methods, seeds, images,
the config's `key()`) and the hash covers it; where the table was computed (the device, the data's
path: `keyed.split_place`) goes to the JSON's `provenance`, outside the key, so a table computed on
another GPU or from a copy of the data at another path is found again. A rerun with the same settings
reads the file, any change computes a new one, and an interrupted run resumes from
<hash>.partial.parquet.

`memo_summary` reduces it to Table 5's rows (accuracy averaged over seeds, the seed spread, an interval
and seconds per image); with several seeds the interval resamples images (a percentile bootstrap of the
per-image share of seeds that are correct), with one seed it is the exact Clopper-Pearson interval.
`table5_comparison` and `speed_comparison` put it next to the paper.
"""
from __future__ import annotations

import inspect
import itertools
import json
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zoomstudy import __version__
from zoomstudy.analysis import memo, paper
from zoomstudy.analysis.memo import VIEW_KINDS, MemoConfig
from zoomstudy.analysis.stats import accuracy_with_ci, bootstrap_ci, clopper_pearson, mcnemar_exact
from zoomstudy.keyed import DATASET_PLACE, MODEL_PLACE, atomic_write, settings_key, split_place
from zoomstudy.provenance import git_commit, stored

#: Bump when the MEMO table's layout or meaning changes: old files then get new hashes.
MEMO_FORMAT = 1
#: View kind -> the method name of `paper.TABLE5` / `paper.MEMO_SPEED`.
MEMO_METHODS: dict[str, str] = {"augmix": "MEMO + AugMix", "rrc": "MEMO + RRC"}
BASELINE = "baseline"
MEMO_COLUMNS = ["image_id", "position", "method", "seed", "k", "pred", "baseline_pred", "correct",
                "baseline_correct", "seconds"]


def _norm_methods(methods) -> tuple[str, ...]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in VIEW_KINDS]
    if not methods or bad:
        raise ValueError(f"methods must name one or more of {VIEW_KINDS}, got {methods}")
    return tuple(m for m in VIEW_KINDS if m in methods)  # canonical order: a reordering is the same run


def _norm_seeds(seeds) -> tuple[int, ...]:
    seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    if not seeds or any(isinstance(s, bool) or not float(s).is_integer() for s in seeds):
        raise ValueError(f"seeds must be one or more integers, got {seeds}")
    return tuple(sorted({int(s) for s in seeds}))


def _check_max_images(max_images) -> None:
    if max_images is not None and int(max_images) < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}")


def memo_settings(model, source, config: MemoConfig, *, methods, seeds, max_images) -> dict:
    """The provenance stored next to a MEMO table: `key` holds what can change a stored number (`key_hash`,
    the file name, hashes it), `provenance` where it ran (device, data path; `keyed.split_place`)."""
    model_key, model_place = split_place(model.provenance(), MODEL_PLACE)
    data_key, data_place = split_place(source.provenance(), DATASET_PLACE)
    key = {
        "format": MEMO_FORMAT,
        "zoomstudy": __version__,
        "model": model_key,
        "dataset": data_key,
        "memo": {
            "methods": list(_norm_methods(methods)), **config.key(), "seeds": list(_norm_seeds(seeds)),
            "max_images": None if max_images is None else int(max_images),
            "mean": list(model.mean), "std": list(model.std),
            "episodic": True, "seed_rule": "tta.image_seed(seed, image_id)", "random_init_seed": 0,
        },
    }
    key = json.loads(json.dumps(key, default=str))
    return {
        "key": key,
        "key_hash": settings_key({"key": key}),
        "provenance": json.loads(json.dumps({"model": model_place, "dataset": data_place}, default=str)),
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def memo_paths(results_dir: str | Path, key_hash: str) -> dict[str, Path]:
    folder = Path(results_dir) / "memo"
    return {"table": folder / f"{key_hash}.parquet", "settings": folder / f"{key_hash}.json",
            "partial": folder / f"{key_hash}.partial.parquet"}


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _write_json(obj: dict, path: Path) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def _finish(df: pd.DataFrame, settings: dict, path: Path, reused: bool) -> pd.DataFrame:
    df = df.sort_values(["position", "seed", "method"], kind="stable").reset_index(drop=True)
    df.attrs.update(settings=settings, path=str(path), reused=reused)
    return df


def table_arguments(max_images: int | None = None, **kw) -> dict:
    """`memo_table`'s keywords from flat ones, MEMO's hyper-parameters among them (as `study.memo_table`
    takes them), checked before anything loads: {"config": MemoConfig, "methods", "seeds", "max_images",
    ...}. ValueError for a bad value, TypeError for an unknown keyword."""
    config = MemoConfig.pick(kw)
    args = inspect.signature(memo_table).bind(None, None, config, max_images=max_images, **kw)
    args.apply_defaults()
    _norm_methods(args.arguments["methods"]), _norm_seeds(args.arguments["seeds"]), _check_max_images(max_images)
    return {k: v for k, v in args.arguments.items() if k not in ("model", "source")}


def memo_table(
    model,
    source,
    config: MemoConfig | None = None,
    *,
    results_dir: str | Path = "results",
    methods: Sequence[str] = ("rrc", "augmix"),
    seeds: Sequence[int] = (0,),
    max_images: int | None = None,
    progress: bool = True,
    save_every_s: float = 60.0,
    warmup: bool = True,
) -> pd.DataFrame:
    """MEMO over the first `max_images` images of a source, one row per (image, method, seed), stored.

    model: a `LoadedModel`, its logits restricted to its label space for the loss and the prediction,
    as MEMO does for ImageNet-A/R; source: a zoomstudy.data source. By name: `zoomstudy.memo_table`
    (study.memo_table) opens both. config: the hyper-parameters (default `MemoConfig()`: K = 16,
    N = 16, SGD lr 0.00025, one step, Resize 256 bilinear + CenterCrop 224).
    methods: view kinds ('rrc' = the paper's zoom-in RandomResizedCrop, 'augmix' = MEMO's AugMix);
    seeds: base seeds of the views (each image uses `memo.image_seed(seed, image_id)`).
    Images without a decodable image or without a label are skipped (counted in the settings file).
    Random weights (pretrained=False, no checkpoint) are drawn under torch seed 0, so that a stored
    table and its rerun use the same model. warmup: run one untimed episode per method before the
    first timed one (allocators, kernel selection). save_every_s: how often the partial table is
    written while running (the unit of resume).

    Returns a DataFrame: image_id, position (in the source), method ('memo_rrc' / 'memo_augmix'),
    seed, k, pred, baseline_pred, correct, baseline_correct, seconds (views + adaptation + adapted
    prediction of that episode). attrs: settings (the stored JSON), path (the parquet file), reused
    (True when nothing was computed).
    """
    if isinstance(model, str) or isinstance(source, str):  # analyses take objects: names are the entry layer's
        raise TypeError("analysis.table5.memo_table takes a LoadedModel and a source; "
                        "zoomstudy.memo_table opens them by name")
    config = MemoConfig() if config is None else config
    methods, seeds = _norm_methods(methods), _norm_seeds(seeds)
    _check_max_images(max_images)
    settings = memo_settings(model, source, config, methods=methods, seeds=seeds, max_images=max_images)
    paths = memo_paths(results_dir, settings["key_hash"])
    stored_table = _open_store(paths, settings)
    if stored_table is not None:
        return stored_table
    done = pd.read_parquet(paths["partial"]) if paths["partial"].exists() else pd.DataFrame(columns=MEMO_COLUMNS)
    run = _Run(model, source, config, methods, seeds, paths["partial"], done, save_every_s, warmup)
    run.episodes(max_images, progress)
    table = pd.concat(run.frames + run.rows, ignore_index=True) if run.frames or run.rows else \
        pd.DataFrame(columns=MEMO_COLUMNS)
    table = table[MEMO_COLUMNS].astype({"position": "int64", "seed": "int64", "k": "int64", "pred": "int64",
                                        "baseline_pred": "int64", "correct": bool, "baseline_correct": bool,
                                        "seconds": "float64"})
    _write_parquet(table, paths["table"])
    settings["result"] = {"rows": int(len(table)), "images": int(table["image_id"].nunique()),
                          "skipped": run.skipped, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json(settings, paths["settings"])
    paths["partial"].unlink(missing_ok=True)
    if any(run.skipped.values()):
        warnings.warn(f"memo_table: skipped {run.skipped['unreadable']} unreadable and {run.skipped['unlabelled']} "
                      f"unlabelled images", stacklevel=2)
    return _finish(table, settings, paths["table"], reused=False)


def _open_store(paths: dict, settings: dict) -> pd.DataFrame | None:
    """The stored table of these settings when it is finished (None: compute it); writes the settings
    file of a new table, and refuses a settings file of other settings under the same hash."""
    paths["table"].parent.mkdir(parents=True, exist_ok=True)
    if not paths["settings"].exists():
        _write_json(settings, paths["settings"])
        return None
    old = json.loads(paths["settings"].read_text(encoding="utf-8"))
    if old.get("key") != settings["key"]:
        raise ValueError(f"{paths['settings']} holds other settings (hash collision?); remove it")
    if paths["table"].exists():
        return _finish(pd.read_parquet(paths["table"]), old, paths["table"], reused=True)
    return None


class _Run:
    """The episodes of one table still to compute: rows already done (the partial table of an interrupted
    run) are skipped, new rows are saved to the partial table every `save_every_s` seconds."""

    def __init__(self, model, source, config, methods, seeds, partial: Path, done: pd.DataFrame,
                 save_every_s: float, warmup: bool):
        self.model, self.source, self.config, self.methods, self.seeds = model, source, config, methods, seeds
        self.partial, self.save_every_s, self.warmup = partial, save_every_s, warmup
        self.done = set(zip(done["image_id"], done["seed"].astype(int)))
        self.frames = [done] if len(done) else []
        self.rows: list[pd.DataFrame] = []
        self.skipped = {"unreadable": 0, "unlabelled": 0}

    def save(self) -> None:
        if self.rows:
            _write_parquet(pd.concat(self.frames + self.rows, ignore_index=True), self.partial)

    def episodes(self, max_images: int | None, progress: bool) -> None:
        from tqdm.auto import tqdm

        source = self.source
        try:
            total = len(source) if max_images is None else min(len(source), int(max_images))
        except TypeError:
            total = max_images
        samples = iter(source) if max_images is None else itertools.islice(iter(source), int(max_images))
        last_save = time.monotonic()
        with tqdm(total=total, unit="img", disable=not progress, desc=f"MEMO {self.model.name}") as bar:
            for position, sample in enumerate(samples):
                bar.update(1)
                self.image(position, sample)
                if time.monotonic() - last_save > self.save_every_s:
                    self.save()
                    last_save = time.monotonic()

    def image(self, position: int, sample) -> None:
        """Every seed of one image not done yet (an unreadable or unlabelled image is counted, not run)."""
        if sample.image is None:
            self.skipped["unreadable"] += 1
            return
        if not sample.labels:
            self.skipped["unlabelled"] += 1
            return
        for seed in self.seeds:
            if (sample.image_id, seed) in self.done:
                continue
            if self.warmup:  # one untimed episode per method: lazy initialisation must not count as MEMO's time
                memo.memo_for_model(self.model, [sample], config=self.config, views=self.methods, seed=seed)
                self.warmup = False
            df = memo.memo_for_model(self.model, [sample], config=self.config, views=self.methods, seed=seed)
            df.insert(1, "position", position)
            self.rows.append(df[MEMO_COLUMNS])


def _interval(per_image: np.ndarray, n_seeds: int, alpha: float, seed: int = 0) -> tuple[float, float]:
    """% interval of the mean of per-image shares correct: exact for one seed, bootstrap over images else."""
    if n_seeds == 1:
        lo, hi = clopper_pearson(int(round(per_image.sum())), per_image.size, alpha)
    else:
        lo, hi = bootstrap_ci(per_image.astype(np.float64), np.mean, alpha=alpha, seed=seed)
    return 100.0 * lo, 100.0 * hi


def memo_summary(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Table 5's rows from a `memo_table`: the baseline, then MEMO + AugMix and MEMO + RRC.

    Columns: method (the paper's name), key ('baseline', 'memo_augmix', 'memo_rrc'), n (images), seeds,
    accuracy (%, mean over seeds of the per-seed accuracy), spread (sample std over seeds, points; NaN
    with one seed), acc_min, acc_max (over seeds), lo, hi (% 1 - alpha interval: Clopper-Pearson with
    one seed, else a percentile bootstrap over images of the per-image share of seeds correct),
    seconds_per_image (mean episode time; NaN for the baseline, whose forward is not timed), delta
    (accuracy - baseline, points), p_value (exact McNemar against the baseline, first seed).
    """
    missing = [c for c in ("image_id", "method", "seed", "correct", "baseline_correct", "seconds") if c not in df.columns]
    if missing:
        raise ValueError(f"memo_summary: missing column(s) {missing}")
    if not len(df):
        raise ValueError("memo_summary: the MEMO table is empty")
    images = list(pd.unique(df["image_id"]))
    base = df.drop_duplicates("image_id").set_index("image_id")["baseline_correct"].reindex(images).to_numpy(bool)
    b_acc, b_lo, b_hi = accuracy_with_ci(base, alpha)
    rows = [{"method": BASELINE, "key": BASELINE, "n": len(images), "seeds": np.nan, "accuracy": b_acc,
             "spread": np.nan, "acc_min": b_acc, "acc_max": b_acc, "lo": b_lo, "hi": b_hi,
             "seconds_per_image": np.nan, "delta": 0.0, "p_value": np.nan}]
    for view, name in MEMO_METHODS.items():
        d = df[df["method"] == f"memo_{view}"]
        if not len(d):
            continue
        wide = d.pivot_table(index="image_id", columns="seed", values="correct", aggfunc="first")  # [N, seeds]
        wide = wide.reindex([i for i in images if i in wide.index])
        per_seed = 100.0 * wide.astype(float).mean(axis=0)  # accuracy per seed over its images
        share = wide.astype(float).mean(axis=1).to_numpy()  # per image: share of seeds correct
        n_seeds = wide.shape[1]
        lo, hi = _interval(share, n_seeds, alpha)
        acc = float(per_seed.mean())
        first = wide.iloc[:, 0]
        ok_first = first.notna().to_numpy()
        p = mcnemar_exact(first.to_numpy()[ok_first].astype(bool),
                          pd.Series(base, index=images).reindex(wide.index).to_numpy(bool)[ok_first])
        rows.append({"method": name, "key": f"memo_{view}", "n": int(wide.shape[0]), "seeds": n_seeds,
                     "accuracy": acc, "spread": float(per_seed.std(ddof=1)) if n_seeds > 1 else np.nan,
                     "acc_min": float(per_seed.min()), "acc_max": float(per_seed.max()),
                     "lo": min(lo, acc), "hi": max(hi, acc),
                     "seconds_per_image": float(d.groupby("image_id")["seconds"].mean().mean()),
                     "delta": acc - b_acc, "p_value": p})
    out = pd.DataFrame(rows)
    out["seeds"] = out["seeds"].astype("Int64")
    return out


def table5_comparison(summary: pd.DataFrame, settings: Mapping, paper_model: str | None = None) -> dict:
    """Arguments for `plots.compare_table`: this run's Table 5 rows next to the paper's column.

    paper_model: the column of `paper.TABLE5` this run reproduces ('ResNet-50', 'DeepAugment+AugMix',
    'MoEx+CutMix'); None infers 'ResNet-50' for torchvision resnet50 with its V1 weights. `comparable`
    is True when such a column exists for this run's dataset (IN, IN-A, IN-R, IN-Sketch, ObjectNet)
    and the plain view is crop 224; otherwise ResNet-50 on IN is shown for orientation only.
    Returns dict(ours, paper, on, value_cols, caption, comparable).
    """
    key = settings["key"]
    pm, pdn = paper.paper_names(settings)
    if paper_model is None and pm == "ResNet-50" and paper.paper_weights(key["model"]):
        paper_model = "ResNet-50"
    if paper_model is not None and paper_model not in paper.TABLE5_MODELS:
        raise ValueError(f"paper_model must be one of {paper.TABLE5_MODELS}, got {paper_model!r}")
    datasets = set(paper.TABLE5["dataset"])
    comparable = paper_model is not None and pdn in datasets and key["memo"]["crop"] == 224
    ref_model = paper_model if comparable else "ResNet-50"
    ref_data = pdn if comparable else "IN"
    ref = paper.TABLE5[(paper.TABLE5["model"] == ref_model) & (paper.TABLE5["dataset"] == ref_data)]
    ours = summary[["method", "accuracy"]].rename(columns={"accuracy": "top1"})
    if comparable:
        caption = f"ours vs paper Table 5 ({ref_model}, {ref_data}, K = 16); diff = ours - paper"
        if key["memo"]["k"] != 16:
            caption += f" -- note: this run uses K = {key['memo']['k']}"
    else:
        caption = (f"FOR ORIENTATION ONLY: this run is {pm} ({key['model'].get('weights_id')}) on {pdn}; the paper's "
                   f"column is {ref_model} on {ref_data}; the diff column is not a reproduction error")
    return {"ours": ours.reset_index(drop=True), "paper": ref[["method", "top1"]].reset_index(drop=True),
            "on": ["method"], "value_cols": ["top1"], "caption": caption, "comparable": comparable}


def speed_comparison(summary: pd.DataFrame, settings: Mapping | None = None) -> dict:
    """Arguments for `plots.compare_table`: seconds per image of MEMO + RRC and MEMO + AugMix beside
    the paper's 0.65 s and 1.15 s (`paper.MEMO_SPEED`; the paper does not state its hardware)."""
    ours = summary[summary["key"] != BASELINE][["method", "seconds_per_image"]].reset_index(drop=True)
    where = ""
    if settings is not None:
        m = settings["key"]["memo"]
        where = f" (this run: {stored(settings, 'model').get('device')}, K = {m['k']}, crop {m['crop']})"
    caption = f"seconds per image, ours{where} vs the paper's (hardware not stated); diff = ours - paper"
    return {"ours": ours, "paper": paper.MEMO_SPEED.copy(), "on": ["method"], "value_cols": ["seconds_per_image"],
            "caption": caption}


def memo_description(settings: Mapping) -> str:
    """One sentence on what a MEMO table was computed with."""
    key = settings["key"]
    m = key["memo"]
    model = stored(settings, "model")
    methods = " and ".join(MEMO_METHODS[v] for v in m["methods"])
    seeds = m["seeds"]
    res = settings.get("result") or {}
    n = f"{res['images']} images" if "images" in res else "its images"
    return (f"{methods} on {n} of {key['dataset'].get('name')} with {model.get('architecture')} "
            f"(weights {model.get('weights_id')}, label space {model.get('label_space', {}).get('name')}, "
            f"{model.get('device')}); K = {m['k']}, {len(seeds)} seed(s) {seeds}, prior N = {m['prior_n']}, "
            f"lr {m['lr']}, {m['steps']} step(s), prediction view Resize {m['resize']} {m['interpolation']} + "
            f"CenterCrop {m['crop']}.")
