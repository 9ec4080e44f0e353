"""world-hard: the world's ImageNet-Hard, built the way ImageNet-Hard was, stored the way it is stored.

ImageNet-Hard gathers, from several test sets of different distributions (its `origin` column),
the images that models fail on. Here the candidates come from several world test sets (`ORIGINS`:
centred objects, photo-like framing, heavy clutter, small objects), and an image is kept when every
*builder* model misclassifies its plain 1-crop view (Resize 64 + CenterCrop 56, the world's
Resize 256 + CenterCrop 224). The builders are the seed-1 models of four training regimes; the
leaderboard then measures the seed-0 models (and any other), which did not choose the images, so
their accuracy is low but not zero by construction, like the models ImageNet-Hard was not filtered
with.

The set is written as one parquet file with the hub dataset's columns (`image` as an HF Image,
`label` a list of class indices, `origin`, `english_label`), in a folder named `world-hard`, and
read back with the package's parquet loading (data.hub.HFSource), so notebook 04 measures it
with exactly the pipeline it uses for ImageNet-Hard. The folder is keyed by every setting that
changes the selection (candidates, builders' training settings), so a changed setting builds a
new set instead of reusing a stale one.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from zoomstudy.experiment.runs import Training
from zoomstudy.experiment.world import WORLD_VERSION, WorldSource, WorldSpec

#: origin -> (split of WorldSource, WorldSpec changes): the source sets of the candidates.
ORIGINS: dict[str, tuple[str, dict]] = {
    "world_test": ("test", {}),
    "world_photo": ("photo", {}),
    "world_clutter": ("photo", {"clutter": 30}),
    "world_small": ("photo", {"object_size": 0.25}),
}
#: The models that choose the images: (regime, seed).
BUILDERS: tuple[tuple[str, int], ...] = (("centered", 1), ("anywhere", 1), ("multiscale", 1), ("rrc", 1))
#: Candidates are drawn from this item seed (the questions measure seed 1, training never uses items).
CANDIDATE_SEED = 2
HARD_VERSION = 1


def hard_settings(n_per_origin: int, builders=BUILDERS, training: Training = Training()) -> dict:
    if n_per_origin < 1:
        raise ValueError(f"world-hard: n_per_origin must be >= 1, got {n_per_origin}")
    if not builders:
        raise ValueError("world-hard: need at least one builder model")
    return {"version": HARD_VERSION, "world_version": WORLD_VERSION, "n_per_origin": int(n_per_origin),
            "origins": {k: [v[0], v[1]] for k, v in ORIGINS.items()}, "candidate_seed": CANDIDATE_SEED,
            "builders": [[r, int(s)] for r, s in builders], "training": training.key_fields()}


def plain_inputs(images: list, spec: WorldSpec = WorldSpec()) -> torch.Tensor:
    """The plain 1-crop view (Resize round(56 * 256 / 224) + CenterCrop 56, bicubic, the renderer of
    analysis.resolution) of each PIL image, normalised: float [n, 3, 56, 56], rendered once for all models."""
    from zoomstudy.analysis.resolution import render_center_crop
    from zoomstudy.views import normalize, pil_to_tensor

    return torch.stack([normalize(render_center_crop(pil_to_tensor(im), spec.image_size)) for im in images])


@torch.no_grad()
def plain_predictions(module: torch.nn.Module, images, spec: WorldSpec = WorldSpec()) -> np.ndarray:
    """Top-1 class of each image's plain 1-crop view: int [n]. images: PIL images or `plain_inputs`' tensor."""
    x = images if isinstance(images, torch.Tensor) else plain_inputs(images, spec)
    return module(x).argmax(1).numpy()


def build_world_hard(folder, n_per_origin: int = 400, *, builders=BUILDERS, training: Training = Training(),
                     cache=None) -> Path:
    """Write <folder>/world-hard.parquet (+ settings.json): the candidates of every origin that all
    builders misclassify at 1-crop. Returns the parquet path; an existing set with the same settings
    is reused (the file is written atomically)."""
    import datasets

    from zoomstudy.experiment.training import get_or_train

    settings = hard_settings(n_per_origin, builders, training)
    folder = Path(folder)
    target, info = folder / "world-hard.parquet", folder / "settings.json"
    if target.exists() and info.exists() and json.loads(info.read_text()).get("settings") == settings:
        return target
    models = [get_or_train(WorldSpec(regime=r, seed=s), training.config(s), cache=cache)[0].eval()
              for r, s in builders]
    names = WorldSpec().class_names
    rows = {"image": [], "label": [], "origin": [], "english_label": []}
    counts = {}
    for origin, (split, kw) in ORIGINS.items():
        samples = list(WorldSource(WorldSpec(**kw), n_per_origin, split, seed=CANDIDATE_SEED))
        images = [s.image for s in samples]
        labels = np.array([s.labels[0] for s in samples])
        wrong = np.ones(len(samples), bool)
        x = plain_inputs(images)  # [n, 3, 56, 56], once for all builders
        for m in models:
            wrong &= plain_predictions(m, x) != labels
        counts[origin] = {"candidates": len(samples), "kept": int(wrong.sum())}
        for i in np.flatnonzero(wrong):
            buf = io.BytesIO()
            images[i].save(buf, format="PNG")
            rows["image"].append({"bytes": buf.getvalue(), "path": f"{origin}-{i:05d}.png"})
            rows["label"].append([int(labels[i])])
            rows["origin"].append(origin)
            rows["english_label"].append(names[int(labels[i])])
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Sequence(datasets.Value("int64")),
                                  "origin": datasets.Value("string"), "english_label": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(rows, features=features)
    folder.mkdir(parents=True, exist_ok=True)
    from zoomstudy.keyed import atomic_write

    atomic_write(target, lambda tmp: ds.to_parquet(str(tmp)))
    atomic_write(info, json.dumps({"settings": settings, "rows": len(ds), "per_origin": counts}, indent=1))
    return target


def world_hard_folder(n_per_origin: int = 400, *, builders=BUILDERS, training: Training = Training(), cache=None,
                      root=None) -> Path:
    """Where the set of these settings lives: <root or world cache>/hard/<key>/world-hard."""
    from zoomstudy.experiment.training import KEY_LENGTH, cache_dir
    from zoomstudy.keyed import key_of

    key = key_of(hard_settings(n_per_origin, builders, training), KEY_LENGTH)
    base = Path(root) if root is not None else cache_dir(cache) / "hard"
    return base / key / "world-hard"


def open_world_hard(n_per_origin: int = 400, *, root=None, cache=None, builders=BUILDERS,
                    training: Training = Training()):
    """The world-hard set as a parquet source (built first when missing), its row count checked."""
    from zoomstudy.data.hub import HFSource

    folder = world_hard_folder(n_per_origin, builders=builders, training=training, cache=cache, root=root)
    path = build_world_hard(folder, n_per_origin, builders=builders, training=training, cache=cache)
    rows = json.loads((folder / "settings.json").read_text())["rows"]
    return HFSource("parquet", data_files=str(path), split="train", expected_rows=rows)


#: The training regimes whose seed-0 models make the world-hard leaderboard.
LEADERBOARD_ARMS = ("centered", "anywhere", "multiscale", "rrc", "left")


def world_hard_leaderboard(source, arms=LEADERBOARD_ARMS, seed: int = 0, *,
                           training: Training = Training(), alpha: float = 0.05, cache=None):
    """Plain 1-crop accuracy of world models on a world-hard source with analysis.hard's pipeline
    (evaluate_plain with the world models' data config, leaderboard, per_origin_accuracy).

    Returns (leaderboard, per-origin table with a `model` column)."""
    import pandas as pd

    from zoomstudy.analysis import hard
    from zoomstudy.experiment.runs import world_model

    samples = list(source)
    results, per_origin = {}, []
    for arm in arms:
        m = world_model(arm, seed=seed, training=training, cache=cache, device="cpu")
        df = hard.evaluate_plain(m.logits, samples, m.data_config())
        results[m.name] = df
        per_origin.append(hard.per_origin_accuracy(df, alpha=alpha).assign(model=m.name))
    return hard.leaderboard(results, alpha=alpha), pd.concat(per_origin, ignore_index=True)
