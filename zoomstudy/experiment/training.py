"""Small models trained on the procedural world, one per training regime, cached on disk.

The controlled experiment needs models whose training distribution of position and scale we chose
(world.py), measured with the paper's own views. They must be cheap (CPU, seconds to a minute) and
reproducible, so they are built in code, trained with fixed seeds on batches rasterised on the fly,
and cached under a key that hashes every setting that changes the weights.

The models take ImageNet-normalised input (SPEC 1.4: the sweep normalises every model that way) at
the world's `image_size` and output `n_classes` logits; they carry `mean`, `std`, `input_size`,
`num_classes` and a timm-like `pretrained_cfg` so that the package's model loader can wrap them.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoomstudy.keyed import atomic_write, key_of
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import normalize
from zoomstudy.experiment.world import WORLD_VERSION, WorldSpec, derive_seed, render_batch

#: Bump when a change alters the weights that the same settings produce (it keys the cache).
TRAIN_VERSION = 1
CODE_VERSION = f"world{WORLD_VERSION}-train{TRAIN_VERSION}"
ARCHS = ("cnn", "vit")
#: Optimiser defaults per architecture (the ViT wants a lower rate and stronger decay).
ARCH_DEFAULTS = {"cnn": {"lr": 4e-3, "weight_decay": 5e-4}, "vit": {"lr": 2e-3, "weight_decay": 0.05}}
#: Hex digits of the world caches' keys (trainings and world-hard sets): 20, as they were keyed before
#: `keyed.key_of` was their rule, so stored trainings are found again.
KEY_LENGTH = 20


# ================================================================================================
# Models
# ================================================================================================
class _WorldModel(nn.Module):
    """Shared metadata: what the package's model loader reads to preprocess views."""

    def _set_meta(self, n_classes: int, image_size: int, arch: str) -> None:
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.input_size = (3, image_size, image_size)
        self.num_classes = n_classes
        self.arch = arch
        self.pretrained_cfg = {
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": self.input_size,
            "num_classes": n_classes, "interpolation": "bicubic", "crop_pct": 224 / 256,
        }


POOLS = ("max", "avg")


class WorldCNN(_WorldModel):
    """Four 3x3 conv layers (stride-2 stem, two max-pools) and global pooling.

    Global pooling makes the head position-agnostic; what position sensitivity the model has must come
    from its convolutions (and their zero padding), i.e. from what it learned, which is the point.
    Max pooling is the default because it learns the augmented regimes far faster on a CPU budget
    (after 8,192 images: 69% / 49% on "anywhere" / "multiscale" against 24% / 20% with average
    pooling, which dilutes a small object among clutter); "avg", the ResNet choice, is an option.
    Either way the centre-trained model stays centre-biased: the bias comes from the data.
    """

    def __init__(self, n_classes: int, image_size: int, width: int = 24, pool: str = "max"):
        super().__init__()
        if n_classes < 2 or image_size < 8 or width < 4:
            raise ValueError(
                f"WorldCNN: need n_classes >= 2, image_size >= 8, width >= 4, got {n_classes}, {image_size}, {width}"
            )
        if pool not in POOLS:
            raise ValueError(f"WorldCNN: pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        c = width

        def block(i: int, o: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, c, stride=2),  # [c, S/2, S/2]
            nn.MaxPool2d(2),  # [c, S/4, S/4]
            *block(c, 2 * c),  # [2c, S/4, S/4]
            nn.MaxPool2d(2),  # [2c, S/8, S/8]
            *block(2 * c, 4 * c),  # [4c, S/8, S/8]
            *block(4 * c, 4 * c),  # [4c, S/8, S/8]
        )
        self.head = nn.Linear(4 * c, n_classes)
        self._set_meta(n_classes, image_size, "cnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # [B, 4c, S/8, S/8]
        f = f.amax((2, 3)) if self.pool == "max" else f.mean((2, 3))  # [B, 4c]
        return self.head(f)  # [B, n_classes]


class TinyViT(_WorldModel):
    """A small ViT with learned absolute position embeddings: unlike the CNN, position is an input it
    can use directly, the other way a network can become centre-biased. A two-conv stem (as in hybrid
    ViTs) makes the 7 x 7 tokens; a patchify stem does not learn this world on a CPU budget."""

    def __init__(self, n_classes: int, image_size: int, dim: int = 64, depth: int = 3, heads: int = 4):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"TinyViT: image_size {image_size} must be a multiple of 8")
        if dim % heads:
            raise ValueError(f"TinyViT: dim {dim} must be a multiple of heads {heads}")
        n_tokens = (image_size // 8) ** 2
        self.embed = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),  # [32, S/2, S/2]
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, dim, 3, stride=2, padding=1, bias=False),  # [dim, S/4, S/4]
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 2, stride=2),  # [dim, S/8, S/8]: one token per 8 x 8 pixels
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)
        self._set_meta(n_classes, image_size, "vit")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)  # [B, tokens, dim]
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos  # [B, tokens + 1, dim]
        return self.head(self.norm(self.blocks(t)[:, 0]))  # [B, n_classes]


def build_model(arch: str, n_classes: int, image_size: int, *, width: int = 24, pool: str = "max") -> nn.Module:
    """An untrained model of the given architecture ('cnn' or 'vit'; width and pool only affect the CNN)."""
    if arch == "cnn":
        return WorldCNN(n_classes, image_size, width, pool)
    if arch == "vit":
        return TinyViT(n_classes, image_size)
    raise ValueError(f"build_model: arch must be one of {ARCHS}, got {arch!r}")


# ================================================================================================
# Training
# ================================================================================================
@contextlib.contextmanager
def _threads(n: int | None):
    """Temporarily use n intra-op threads (None: leave torch.get_num_threads() as the caller set it)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _inputs(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> the normalised float input, exactly as the sweep prepares views."""
    return normalize(rgb).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes a world model's weights, validated when it is made; it produces
    the cache's settings record (`settings`) and its key (`key`). What only changes speed or output
    (val_images, threads, log) stays out: those are `train_model` / `get_or_train` keywords.

    lr / weight_decay None: the architecture's defaults (ARCH_DEFAULTS: AdamW settings that learn this
    world), resolved in `settings` so that the key holds the numbers used.
    """

    epochs: int = 6
    seed: int = 0
    arch: str = "cnn"
    width: int = 24
    pool: str = "max"
    batch_size: int = 32
    images_per_epoch: int = 4096
    lr: float | None = None
    weight_decay: float | None = None
    label_smoothing: float = 0.05

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        lr, weight_decay = self.resolved_optimiser()
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2 or self.images_per_epoch < self.batch_size:
            raise ValueError(f"need batch_size >= 2, images_per_epoch >= batch_size, got {self.batch_size}, "
                             f"{self.images_per_epoch}")
        if not lr > 0 or weight_decay < 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError(f"need lr > 0, weight_decay >= 0, 0 <= label_smoothing < 1, got {lr}, {weight_decay}, "
                             f"{self.label_smoothing}")
        if self.width < 4:
            raise ValueError(f"width must be >= 4, got {self.width}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")

    def resolved_optimiser(self) -> tuple[float, float]:
        """(lr, weight_decay): the given ones, else the architecture's defaults."""
        defaults = ARCH_DEFAULTS.get(self.arch, {})
        lr = defaults.get("lr") if self.lr is None else self.lr
        weight_decay = defaults.get("weight_decay") if self.weight_decay is None else self.weight_decay
        return lr, weight_decay

    def settings(self, spec: WorldSpec) -> dict:
        """The cache's settings record of a training of `spec` (the key hashes exactly this; the dict,
        and so the key, is the one the 14-keyword `train_settings` made before this class)."""
        lr, weight_decay = self.resolved_optimiser()
        return {
            "code_version": CODE_VERSION,
            "spec": spec.to_dict(),
            "epochs": int(self.epochs),
            "seed": int(self.seed),
            "arch": self.arch,
            "width": int(self.width) if self.arch == "cnn" else None,
            "pool": self.pool if self.arch == "cnn" else None,
            "batch_size": int(self.batch_size),
            "images_per_epoch": int(self.images_per_epoch),
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "label_smoothing": float(self.label_smoothing),
        }

    def key(self, spec: WorldSpec) -> str:
        """The cache key of a training of `spec` (`keyed.key_of` of `settings`, 20 hex digits)."""
        return key_of(self.settings(spec), KEY_LENGTH)


@torch.no_grad()
def evaluate(model: nn.Module, spec: WorldSpec, *, n: int = 512, seed: int = 0, regime: str | None = None) -> float:
    """Top-1 accuracy (0..1) on n fresh images of a regime (default spec.regime) at the input size."""
    if n < 1:
        raise ValueError(f"evaluate: n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(derive_seed(spec.seed, "val", seed))
    was_training = model.training
    model.eval()
    hits = 0
    for start in range(0, n, 256):
        rgb, y = render_batch(spec, min(256, n - start), g, regime=regime)
        hits += int((model(_inputs(rgb)).argmax(1) == y).sum())
    model.train(was_training)
    return hits / n


def train_model(spec: WorldSpec, config: TrainConfig = TrainConfig(), *, val_images: int = 512,
                threads: int | None = None, log=None) -> tuple[nn.Module, dict]:
    """Train one model on spec's regime: AdamW with a one-cycle schedule, fresh batches every step.

    The weights depend on spec (its seed draws the images) and config (config.seed: the
    initialisation); `threads` only changes speed. Returns (model in eval mode, metrics: accuracy on
    fresh images of the own regime, losses per epoch, seconds). `log`: optional callable taking a progress line.
    """
    c = config
    settings = c.settings(spec)
    if val_images < 0:
        raise ValueError(f"val_images must be >= 0, got {val_images}")
    with _threads(threads):
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
            torch.manual_seed(derive_seed(c.seed, "init"))
            model = build_model(c.arch, spec.n_classes, spec.image_size, width=c.width, pool=c.pool)
        model = model.to(memory_format=torch.channels_last)  # faster CPU convolutions, same maths
        epochs, batch_size, arch = c.epochs, c.batch_size, c.arch
        steps_per_epoch = c.images_per_epoch // batch_size
        total = epochs * steps_per_epoch
        lr, weight_decay = settings["lr"], settings["weight_decay"]
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
        g = torch.Generator().manual_seed(derive_seed(spec.seed, "train", c.seed))
        model.train()
        losses, train_acc = [], []
        for epoch in range(epochs):
            loss_sum, hits = 0.0, 0
            for _ in range(steps_per_epoch):
                rgb, y = render_batch(spec, batch_size, g)  # [B, 3, S, S] uint8, [B]
                logits = model(_inputs(rgb))  # [B, n_classes]
                loss = F.cross_entropy(logits, y, label_smoothing=c.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach())
                hits += int((logits.argmax(1) == y).sum())
            losses.append(loss_sum / steps_per_epoch)
            train_acc.append(hits / (steps_per_epoch * batch_size))
            if log is not None:
                log(f"{spec.regime}/{arch} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.3f}, "
                    f"train acc {train_acc[-1]:.3f}, {time.perf_counter() - t0:.1f}s")
        train_seconds = time.perf_counter() - t0
        model.eval()
        val = evaluate(model, spec, n=val_images, seed=c.seed) if val_images else None
    metrics = {
        "regime": spec.regime,
        "arch": arch,
        "val_accuracy": val,
        "val_images": val_images,
        "train_accuracy_per_epoch": train_acc,
        "loss_per_epoch": losses,
        "images_seen": total * batch_size,
        "train_seconds": train_seconds,
        "threads": torch.get_num_threads() if threads is None else threads,
        "settings": settings,
    }
    return model, metrics


# ================================================================================================
# Cache
# ================================================================================================
def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder of cached world models: `path` if given, else $ZOOMSTUDY_CACHE/world, else
    ~/.cache/zoomstudy/world."""
    if path is not None:
        return Path(path)
    root = os.environ.get("ZOOMSTUDY_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "zoomstudy") / "world"


def _weights_path(folder: Path, spec: WorldSpec, config: TrainConfig) -> Path:
    return folder / f"{spec.regime}-{config.arch}-{config.key(spec)}.pt"


def weights_path(spec: WorldSpec, config: TrainConfig = TrainConfig(), *, cache: str | os.PathLike | None = None) -> Path:
    """Where `get_or_train(spec, config, cache=cache)` keeps the weights (they may not exist yet): the
    model's identity without loading it."""
    return _weights_path(cache_dir(cache), spec, config)


def get_or_train(spec: WorldSpec, config: TrainConfig = TrainConfig(), *, cache: str | os.PathLike | None = None,
                 retrain: bool = False, val_images: int = 512, threads: int | None = None,
                 log=None) -> tuple[nn.Module, dict]:
    """Load the model these settings produce from the cache, or train it and store it there.

    Files: <cache>/<regime>-<arch>-<key>.pt (state dict) and .json (settings + metrics). The returned
    metrics carry `cache` = "hit" or "miss" and `path`. val_images, threads and log do not change the
    weights, so they are not in the key (a hit returns the metrics measured when it was trained).
    """
    settings = config.settings(spec)
    folder = cache_dir(cache)
    weights = _weights_path(folder, spec, config)
    info = weights.with_suffix(".json")
    if not retrain and weights.exists() and info.exists():
        meta = json.loads(info.read_text())
        if meta.get("settings") != settings:
            raise ValueError(f"get_or_train: cached settings in {info} do not match their key; delete the file")
        model = build_model(config.arch, spec.n_classes, spec.image_size, width=config.width, pool=config.pool)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        return model, {**meta["metrics"], "cache": "hit", "path": str(weights)}
    model, metrics = train_model(spec, config, val_images=val_images, threads=threads, log=log)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(weights, lambda tmp: torch.save(model.state_dict(), tmp))  # parallel workers never read half a file
    atomic_write(info, json.dumps({"settings": settings, "metrics": metrics}, indent=1, sort_keys=True))
    return model, {**metrics, "cache": "miss", "path": str(weights)}
