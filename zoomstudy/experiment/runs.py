"""The controlled experiment: models trained on known position/scale distributions, measured by the
same sweep and analyses as the paper's models.

The paper can only observe pretrained models. Here the training distribution is a setting (a
`world.WorldSpec` regime), so a difference in centre bias or scale window between regimes is caused
by what the model saw. A trained world model becomes a `LoadedModel` whose 12 classes occupy
ImageNet-1k indices 0..11 (the rest of the 1000 logits is masked by its label space), so the sweep,
the store and every analysis run on it unchanged. Its label space carries the world's own class
names (`WorldLabelSpace`), so reports say "disc", not the ImageNet class that shares index 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from zoomstudy.data.labels import N_IMAGENET_CLASSES, LabelSpace
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import ViewGrid


class _OneThousand(nn.Module):
    """Place a world model's n class logits at indices 0..n-1 of a [B, 1000] logit vector."""

    def __init__(self, module: nn.Module, n_classes: int):
        super().__init__()
        self.module, self.n_classes = module, n_classes

    def forward(self, x):
        z = self.module(x)  # [B, n]
        out = z.new_full((z.shape[0], N_IMAGENET_CLASSES), -1e4)  # masked by the label space anyway
        out[:, : self.n_classes] = z
        return out


@dataclass(frozen=True, eq=False)  # LabelSpace's own equality and hash (name + indices)
class WorldLabelSpace(LabelSpace):
    """A world model's label space: ImageNet indices 0..n-1 as the sweep needs, plus the world's own
    names of those classes (what the reports print). The names are not part of the sweep's key: the
    name "world-N[-ctx-...]" and the indices already identify the space."""

    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if self.class_names and len(self.class_names) != self.n_classes:
            raise ValueError(f"WorldLabelSpace: {len(self.class_names)} names for {self.n_classes} classes")


def world_label_space(spec) -> WorldLabelSpace:
    ctx = spec.context_tag
    return WorldLabelSpace(f"world-{spec.n_classes}{ctx}", np.arange(spec.n_classes), class_names=spec.class_names)


@dataclass(frozen=True)
class Training:
    """The training settings of the experiment's models (the cache keys hash them).

    width 16 (not the CNN's default 24) halves the training cost (about 12 s of one core per model
    instead of 24 s) for 3-5 points of accuracy on the model's own regime, which is what lets the
    experiment train three seeds per regime within the main job's budget.
    """

    epochs: int = 6
    images_per_epoch: int = 4096
    arch: str = "cnn"
    width: int = 16

    def config(self, seed: int):
        """The `training.TrainConfig` of one seed's model (the other settings: TrainConfig's defaults)."""
        from zoomstudy.experiment.training import TrainConfig

        return TrainConfig(epochs=self.epochs, seed=int(seed), arch=self.arch, images_per_epoch=self.images_per_epoch,
                           width=self.width)

    def key_fields(self) -> dict:
        """These settings for a cache key of models of every seed (world-hard's builders): seed None."""
        return {"epochs": self.epochs, "seed": None, "arch": self.arch, "images_per_epoch": self.images_per_epoch,
                "width": self.width}


def world_grid(spec) -> ViewGrid:
    """The paper's grid scaled to the world's input size: its 36 scales times image_size / 224,
    deduplicated after rounding (at 56 px, 686 and 690 both give 172: 35 distinct scales)."""
    return ViewGrid.scaled(spec.image_size)


def world_model(regime: str = "centered", *, seed: int = 0, training: Training = Training(), device=None,
                cache=None, spec_kw: dict | None = None):
    """Train (or load from the cache) the model of one regime and wrap it as a LoadedModel.

    Callers name it through the entry layer: `study.open_model("world:REGIME", seed=..., training=...)`.
    """
    from zoomstudy.models.loading import LoadedModel, resolve_device
    from zoomstudy.experiment.training import get_or_train
    from zoomstudy.experiment.world import WorldSpec

    spec = WorldSpec(regime=regime, seed=seed, **(spec_kw or {}))
    config = training.config(seed)
    module, _metrics = get_or_train(spec, config, cache=cache)
    dev = resolve_device(device)
    key = config.key(spec)
    ctx = spec.context_tag
    return LoadedModel(
        module=_OneThousand(module, spec.n_classes).eval().to(dev),
        name=f"world-{regime}{ctx}-{training.arch}-s{seed}",
        source="world",
        weights_id=f"world-{key}",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(3, spec.image_size, spec.image_size),
        interpolation="bicubic",
        crop_pct=224 / 256,
        label_space=world_label_space(spec),
        device=dev,
        # the name open_model takes for it (as "timm:NAME" for a timm model), which reports print;
        # the network (training.arch) and the seed are in `name` and the weights id
        architecture=f"world:{regime}" + ("" if spec.context == "none" else f":ctx-{spec.context}"),
    )


def world_test_source(n: int = 48, **spec_kw):
    """The measurement images: the same for every regime (object centred at the typical size);
    "world:centered" of `study.open_data` with n=n and `WorldSpec` fields in spec_kw."""
    from zoomstudy.experiment.world import WorldSource, WorldSpec

    return WorldSource(WorldSpec(regime=spec_kw.pop("regime", "centered"), **spec_kw), n=n, split="test")


def run_experiment(regimes=("centered", "anywhere", "multiscale", "rrc"), seeds=(0,), *, n_test: int = 48,
                   training: Training = Training(), results_dir="results/world", progress: bool = True):
    """Train every (regime, seed) model, sweep it over the test images, return its result sets.

    Returns a DataFrame with one row per (regime, seed): regime, seed, model, result set path.
    """
    import pandas as pd

    from zoomstudy.experiment.world import REGIMES
    from zoomstudy.sweep.engine import sweep_to_store

    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        raise ValueError(f"unknown regimes {bad}; expected some of {REGIMES}")
    if n_test < 1 or not seeds:
        raise ValueError(f"need n_test >= 1 and at least one seed, got n_test={n_test}, seeds={seeds}")
    source = world_test_source(n_test)
    rows = []
    for regime in regimes:
        for seed in seeds:
            model = world_model(regime, seed=int(seed), training=training)
            rs = sweep_to_store(model, source, world_grid(source.spec), results_dir, batch_size=1024, workers=0,
                       progress=progress, tta=False)
            rows.append({"regime": regime, "seed": int(seed), "model": model.name, "result_set": str(rs.path)})
    return pd.DataFrame(rows)


def regime_tables(runs):
    """Per (regime, seed): the analyses of the paper on that model's sweep, as tidy tables.

    Returns (summary, anchors, scales): summary has one row per (regime, seed) with 1-crop accuracy,
    oracle bound, oracle gap and centre bias (centre-anchor bound minus the mean of the 8 others);
    anchors has regime, seed, row, col, value; scales has regime, seed, scale, center, any_anchor.
    """
    import pandas as pd

    from zoomstudy.analysis import bounds as analysis
    from zoomstudy.sweep.store import ResultSet

    summary, anchors, scales = [], [], []
    for r in runs.itertuples():
        rs = ResultSet(r.result_set)
        correct = rs.correct()
        grid = rs.grid
        ab = analysis.anchor_bounds(correct, grid)  # [g, g]
        acc = analysis.bound_metrics(correct, grid, keys=("standard", "upper_all")).set_index("key")["accuracy"]
        std, orc = float(acc["standard"]), float(acc["upper_all"])
        summary.append({"regime": r.regime, "seed": r.seed, "standard": std, "oracle": orc,
                        "oracle_gap": orc - std, "center_bias": analysis.center_bias(ab)[2]})
        for i in range(grid.grid):
            for j in range(grid.grid):
                anchors.append({"regime": r.regime, "seed": r.seed, "row": i, "col": j, "value": ab[i, j]})
        sc = analysis.accuracy_vs_scale(correct, grid)
        sc = sc.assign(regime=r.regime, seed=r.seed)
        scales.append(sc)
    return pd.DataFrame(summary), pd.DataFrame(anchors), pd.concat(scales, ignore_index=True)
