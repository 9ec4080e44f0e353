"""MEMO test-time adaptation (SPEC section 4, Table 5): one entropy-minimisation step per test image.

Why episodic: MEMO adapts to *one* image and must not leak that image into the next prediction, so
every image starts from the original weights (parameters and buffers, restored bit-exactly) with a
fresh optimizer.

What MEMO's public code does (zhangmarvin/memo, imagenet-exps, read for this module):

* `utils/train_helpers._modified_bn_forward` replaces `nn.BatchNorm2d.forward` by: batch statistics of
  the incoming batch, obtained by calling `F.batch_norm(training=True, momentum=1.0)` on throw-away
  running buffers, i.e. the batch mean and the *unbiased* batch variance, computed outside autograd
  (no gradient flows through the batch statistics); then normalisation in eval mode with
  `prior * running + (1 - prior) * batch` for both mean and variance.
* `utils/adapt_helpers.adapt_single` sets `prior = N / (N + 1)` (N = `--prior_strength`, 16) for the
  K-view adaptation forward, in `model.eval()`; `test_single` sets the *same* prior for the prediction
  on the single plain view (Resize 256 bilinear, CenterCrop 224), so the prediction mixes the running
  statistics with the statistics of that one image (over its spatial positions). `prior_strength < 0`
  means prior = 1 (running statistics only). We follow all of this.
* The baseline (`test_initial.py`) is the plain view through the unmodified model in eval mode: our
  `baseline_pred`.
* The BN patch is installed only when `args` has `adapt_prior_strength` / `test_prior_strength`, while
  `test_adapt.py` parses `--prior_strength`: in that version the patch was never installed and BN ran
  on running statistics alone (the bug SPEC section 4 warns about). `prior_n=-1` reproduces it.
* MEMO builds one optimizer for the whole run (stateless for its default SGD, stateful for AdamW);
  we build a fresh optimizer per image as SPEC asks.
* AugMix (`utils/third_party.py`): RandomResizedCrop(224) (bilinear) + RandomHorizontalFlip, then 3
  chains of 1-3 ops drawn from {autocontrast, equalize, rotate, solarize, shear_x, shear_y,
  translate_x, translate_y, posterize} at severity 1 (level ~ U(0.1, 1)), Dirichlet(1,1,1) chain
  weights, Beta(1,1) skip weight. Its geometric ops pass `fillcolor=128` to PIL, which on an RGB
  image means the colour (128, 0, 0), dark red, not grey: `MEMO_AUGMIX_FILL` keeps that.

Our ops are torchvision.transforms.v2 tensor ops on the model's device; against PIL they agree exactly
for translate, equalize, posterize, solarize and within about half a grey level on average for
rotate/shear (bilinear sampling differs slightly). All randomness comes from a CPU torch.Generator, so
the same seed gives the same views on any device.

The hyper-parameters (K, the prior strength N, the learning rate, steps, optimizer and the prediction
view) travel together as one frozen `MemoConfig`, which checks them once and gives the part of a stored
table's key they make. Table 5 over a dataset (stored, resumable, summarised) is `analysis.table5`.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD
from zoomstudy.views import pil_to_tensor, resize_center_crop

VIEW_KINDS = ("rrc", "augmix")
OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
_INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
#: PIL's reading of MEMO's `fillcolor=128` on an RGB image.
MEMO_AUGMIX_FILL = (128, 0, 0)
AUGMIX_OPS = (
    "autocontrast", "equalize", "rotate", "solarize", "shear_x", "shear_y",
    "translate_x", "translate_y", "posterize",
)


# ================================================================================================
# The hyper-parameters
# ================================================================================================
@dataclass(frozen=True)
class MemoConfig:
    """MEMO's hyper-parameters, checked once: every function of the method and the stored table take one.

    k: augmented views per image (16 in the paper's text, 64 in MEMO's code default); prior_n: the
    batch-norm prior strength N (prior N / (N + 1); negative: running statistics only, the bug of
    MEMO's released code that SPEC section 4 warns about); lr, steps, optimizer ('sgd', 'adamw', 'adam'
    or a torch.optim.Optimizer class), optimizer_kwargs: the adaptation (weight decay 0, and momentum 0
    for SGD, unless optimizer_kwargs says else); resize, crop, interpolation: the prediction view
    (Resize 256 bilinear + CenterCrop 224: Table 5's baseline). Raises ValueError on a bad value.
    """

    k: int = 16
    prior_n: int = 16
    lr: float = 0.00025
    steps: int = 1
    optimizer: str | type = "sgd"
    optimizer_kwargs: Mapping | None = None
    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"

    def __post_init__(self):
        if isinstance(self.prior_n, bool) or not isinstance(self.prior_n, (int, np.integer)):
            raise ValueError(f"prior_n must be an int (negative = no batch-norm adaptation), got {self.prior_n!r}")
        _optimizer_class(self.optimizer)
        if self.optimizer_kwargs is not None and not isinstance(self.optimizer_kwargs, Mapping):
            raise ValueError(f"optimizer_kwargs must be a dict or None, got {type(self.optimizer_kwargs).__name__}")
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if int(self.resize) < 1 or int(self.crop) < 1:
            raise ValueError(f"resize and crop must be >= 1, got resize={self.resize}, crop={self.crop}")
        _interp(self.interpolation)
        for name, kind in (("k", int), ("prior_n", int), ("lr", float), ("steps", int), ("resize", int), ("crop", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    @classmethod
    def pick(cls, kw: dict) -> "MemoConfig":
        """The config of the hyper-parameter keywords in `kw` (removed from it; the others stay)."""
        return cls(**{f.name: kw.pop(f.name) for f in fields(cls) if f.name in kw})

    @property
    def prior(self) -> float:
        """The batch-norm prior of `prior_n` (`prior_from_n`)."""
        return prior_from_n(self.prior_n)

    def key(self) -> dict:
        """The hyper-parameters as they enter a stored table's key (JSON; the optimizer by name, its
        keywords only when given, so that the default's key is what it always was)."""
        out = asdict(self)
        cls = self.optimizer
        out["optimizer"] = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        if out["optimizer_kwargs"] is None:
            del out["optimizer_kwargs"]
        else:
            out["optimizer_kwargs"] = dict(self.optimizer_kwargs)
        return out


# ================================================================================================
# Validation helpers
# ================================================================================================
def _check_image(image: torch.Tensor, who: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        desc = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{who} expects a uint8 [3, H, W] tensor, got {desc}")


def _check_mean_std(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ValueError(f"mean and std need 3 entries each with std > 0, got mean={mean}, std={std}")


def _interp(name: str) -> InterpolationMode:
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {tuple(_INTERPOLATIONS)}, got {name!r}")
    return _INTERPOLATIONS[name]


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[..., 3, h, w] in [0, 1] -> ImageNet-normalised float32."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x.float() - m) / s


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    if seed is None:
        raise ValueError("give a seed or a torch.Generator")
    return torch.Generator().manual_seed(int(seed))


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return torch.empty(1).uniform_(low, high, generator=g).item()


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high)."""
    return int(torch.randint(low, high, (1,), generator=g).item())


# ================================================================================================
# View generators
# ================================================================================================
def rrc_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, drawing from `generator` in the same order.

    Returns (top, left, h, w); with the same seed it reproduces torchvision's crop under
    `torch.manual_seed`, so our crops are torchvision's crops.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = _randint(generator, 0, height - h + 1)
            j = _randint(generator, 0, width - w + 1)
            return i, j, h, w
    in_ratio = width / height  # fallback: central crop
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _check_view_args(image, k, size, scale, ratio) -> None:
    _check_image(image, "view generator")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")


def rrc_views(
    image: torch.Tensor,
    k: int = 16,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bicubic",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The paper's zoom-in views: K RandomResizedCrops (bicubic, antialiased), no flip.

    image: uint8 [3, H, W]. Returns normalised float32 [K, 3, size, size] on `device` (default: the
    image's). `generator` (advanced in place) wins over `seed`.
    """
    _check_view_args(image, k, size, scale, ratio)
    _check_mean_std(mean, std)
    mode = _interp(interpolation)
    g = _generator(seed, generator)
    img = image.to(device) if device is not None else image  # uint8 [3, H, W]
    _, H, W = img.shape
    out = torch.empty((k, 3, size, size), dtype=torch.uint8, device=img.device)
    for v in range(k):
        top, left, h, w = rrc_params(H, W, scale, ratio, g)
        out[v] = TF.resized_crop(img, top, left, h, w, [size, size], interpolation=mode, antialias=True)
    return _normalise(out.float() / 255.0, mean, std)  # [K, 3, size, size]


def _augmix_op(x: torch.Tensor, op: str, g: torch.Generator, severity: float, fill: list[float]) -> torch.Tensor:
    """One MEMO AugMix op on uint8 [3, S, S]; random draws in MEMO's order (level, then sign)."""
    size = x.shape[-1]

    def level() -> float:  # MEMO's rand_lvl
        return _uniform(g, 0.1, severity)

    def signed(v):  # MEMO flips the sign when U(0, 1) > 0.5
        return -v if _uniform(g, 0.0, 1.0) > 0.5 else v

    bil = InterpolationMode.BILINEAR
    if op == "autocontrast":
        return TF.autocontrast(x)
    if op == "equalize":
        return TF.equalize(x)
    if op == "rotate":
        deg = signed(int(level() * 30 / 10))
        return TF.rotate(x, float(deg), interpolation=bil, fill=fill)
    if op == "solarize":
        threshold = 256 - int(level() * 256 / 10)
        return x if threshold > 255 else TF.solarize(x, threshold)
    if op in ("shear_x", "shear_y"):
        # PIL's affine (1, s, 0, 0, 1, 0) reads input x + s*y: a shear about the top-left corner.
        s = signed(level() * 0.3 / 10)
        deg = math.degrees(math.atan(s))
        shear = [deg, 0.0] if op == "shear_x" else [0.0, deg]
        return TF.affine(x, angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=shear,
                         interpolation=bil, fill=fill, center=[0.0, 0.0])
    if op in ("translate_x", "translate_y"):
        # PIL's (1, 0, t, 0, 1, 0) reads input x + t: content moves by -t.
        t = signed(int(level() * (size / 3) / 10))
        translate = [float(-t), 0.0] if op == "translate_x" else [0.0, float(-t)]
        return TF.affine(x, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0],
                         interpolation=bil, fill=fill)
    if op == "posterize":
        return TF.posterize(x, 4 - int(level() * 4 / 10))
    raise ValueError(f"unknown AugMix op {op!r}")


def _preaugment(img: torch.Tensor, g: torch.Generator, size: int) -> torch.Tensor:
    """MEMO's preaugment: RandomResizedCrop(size) (bilinear, antialiased) then a flip with p = 0.5."""
    _, H, W = img.shape
    top, left, h, w = rrc_params(H, W, (0.08, 1.0), (3 / 4, 4 / 3), g)
    x = TF.resized_crop(img, top, left, h, w, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.horizontal_flip(x) if _uniform(g, 0.0, 1.0) < 0.5 else x


def augmix_views(
    image: torch.Tensor,
    k: int = 16,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    size: int = 224,
    width: int = 3,
    max_depth: int = 3,
    severity: float = 1.0,
    fill: Sequence[int] = MEMO_AUGMIX_FILL,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """MEMO's AugMix views: RandomResizedCrop(size, bilinear) + flip, then `width` chains of
    1..max_depth random ops, Dirichlet(1,...,1) chain weights and a Beta(1,1) skip mix.

    The mixing is linear and its weights sum to one, so it is done on [0, 1] pixels and normalised
    once at the end (the same as MEMO's mixing of normalised tensors).
    image: uint8 [3, H, W]. Returns normalised float32 [K, 3, size, size].
    """
    _check_view_args(image, k, size, (0.08, 1.0), (3 / 4, 4 / 3))
    _check_mean_std(mean, std)
    if width < 1 or max_depth < 1:
        raise ValueError(f"width and max_depth must be >= 1, got {width}, {max_depth}")
    if not severity > 0.1:
        raise ValueError(f"severity must be > 0.1 (levels are drawn from U(0.1, severity)), got {severity}")
    if len(fill) != 3:
        raise ValueError(f"fill must be an RGB triple, got {fill}")
    g = _generator(seed, generator)
    img = image.to(device) if device is not None else image  # uint8 [3, H, W]
    fill_f = [float(f) for f in fill]
    out = torch.empty((k, 3, size, size), dtype=torch.float32, device=img.device)
    for v in range(k):
        x0 = _preaugment(img, g, size)  # uint8 [3, S, S]
        # Dirichlet(1,..,1) = normalised Exp(1) draws; Beta(1, 1) = U(0, 1).
        e = torch.empty(width).exponential_(1.0, generator=g)
        wts = (e / e.sum()).tolist()
        m = _uniform(g, 0.0, 1.0)
        mix = torch.zeros((3, size, size), dtype=torch.float32, device=img.device)
        for c in range(width):
            x = x0
            for _ in range(_randint(g, 1, max_depth + 1)):
                x = _augmix_op(x, AUGMIX_OPS[_randint(g, 0, len(AUGMIX_OPS))], g, severity, fill_f)
            mix += wts[c] * (x.float() / 255.0)
        out[v] = m * (x0.float() / 255.0) + (1.0 - m) * mix  # [3, S, S] in [0, 1]
    return _normalise(out, mean, std)


def plain_view(
    image: torch.Tensor,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int = 256,
    crop: int = 224,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """The prediction view: shorter side -> `resize` (antialiased), CenterCrop `crop`.

    Bilinear by default: MEMO's `transforms.Resize(256)` and the TTA baseline 76.13 of Table 5.
    Returns normalised float32 [1, 3, crop, crop] on the image's device.
    """
    _check_image(image, "plain_view")
    _check_mean_std(mean, std)
    if resize < 1 or crop < 1:
        raise ValueError(f"resize and crop must be >= 1, got {resize}, {crop}")
    x = resize_center_crop(image, resize, crop, interpolation=_interp(interpolation))  # uint8 [3, crop, crop]
    return _normalise(x.float() / 255.0, mean, std).unsqueeze(0)


# ================================================================================================
# Batch-norm prior
# ================================================================================================
@contextmanager
def batchnorm_prior(model: nn.Module, prior: float):
    """Within the block every BatchNorm2d (with running statistics) normalises with
    prior * running + (1 - prior) * batch, mean and variance, as MEMO's patched forward does.

    Implemented with hooks that swap the running buffers for the mixed statistics during each
    forward and put the very same buffer tensors back afterwards, so it also covers BatchNorm2d
    subclasses with their own forward (timm's BatchNormAct2d). The batch statistics are the mean and
    unbiased variance over (N, H, W), detached from autograd (MEMO computes them as running-stat
    updates). A layer that sees a single value per channel has no variance; it keeps its running
    statistics (MEMO's code would raise there). The model must be in eval mode for this to apply.
    """
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be in [0, 1], got {prior}")
    saved: dict[nn.Module, list] = {}

    def pre(mod: nn.BatchNorm2d, args):
        x = args[0].detach()  # [N, C, H, W]
        rm, rv = mod.running_mean, mod.running_var
        saved.setdefault(mod, []).append((rm, rv))
        if x.numel() // x.shape[1] < 2:
            return None
        var, mu = torch.var_mean(x, dim=(0, 2, 3), correction=1)  # [C] each
        mod._buffers["running_mean"] = prior * rm + (1 - prior) * mu.to(rm.dtype)
        mod._buffers["running_var"] = prior * rv + (1 - prior) * var.to(rv.dtype)
        return None

    def post(mod: nn.BatchNorm2d, args, output):
        rm, rv = saved[mod].pop()
        mod._buffers["running_mean"], mod._buffers["running_var"] = rm, rv
        return None

    handles = []
    try:
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d) and mod.running_mean is not None and mod.running_var is not None:
                handles.append(mod.register_forward_pre_hook(pre))
                handles.append(mod.register_forward_hook(post))
        yield len(handles) // 2
    finally:
        for h in handles:
            h.remove()
        for mod, stack in saved.items():  # a forward that raised midway leaves entries behind
            while stack:
                mod._buffers["running_mean"], mod._buffers["running_var"] = stack.pop()


def prior_from_n(prior_n: int) -> float:
    """MEMO's prior strength: N / (N + 1); a negative N switches the adaptation off (prior 1)."""
    return 1.0 if prior_n < 0 else prior_n / (prior_n + 1)


def count_batchnorm(model: nn.Module) -> int:
    """How many BatchNorm2d layers the prior would act on (0 for SqueezeNet or a ViT)."""
    return sum(isinstance(m, nn.BatchNorm2d) and m.running_mean is not None for m in model.modules())


# ================================================================================================
# Loss
# ================================================================================================
def marginal_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy of the mean of the K softmaxes, in log space so that saturated softmaxes stay finite.

    logits: [K, C]. Returns (entropy scalar, log of the marginal [C]). MEMO's formula: log-softmax,
    logsumexp over views minus log K, clamp at the dtype's most negative value (so 0 * -inf never
    happens), -sum p log p.
    """
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"marginal_entropy expects logits [K, C] with K >= 1, got {tuple(logits.shape)}")
    logp = logits - logits.logsumexp(dim=-1, keepdim=True)  # [K, C]
    avg = logp.logsumexp(dim=0) - math.log(logp.shape[0])  # [C]
    avg = avg.clamp(min=torch.finfo(avg.dtype).min)
    return -(avg * avg.exp()).sum(dim=-1), avg


# ================================================================================================
# Episodic state and the adaptation step
# ================================================================================================
def snapshot_state(model: nn.Module) -> dict:
    """Copies of every parameter and buffer, the grads and the train/eval flags, for an exact reset."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers() if b is not None},
        "training": {n: m.training for n, m in model.named_modules()},
    }


@torch.no_grad()
def restore_state(model: nn.Module, snapshot: dict) -> None:
    """Copy the snapshot back in place (bit-exact; tensor identities unchanged)."""
    for n, p in model.named_parameters():
        p.copy_(snapshot["params"][n])
        p.grad = snapshot["grads"][n]
    for n, b in model.named_buffers():
        if b is not None:
            b.copy_(snapshot["buffers"][n])
    for n, m in model.named_modules():
        m.training = snapshot["training"][n]


def _optimizer_class(optimizer: str | type) -> type:
    cls = OPTIMIZERS.get(optimizer) if isinstance(optimizer, str) else optimizer
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer must be one of {tuple(OPTIMIZERS)} or a torch.optim.Optimizer class, got {optimizer!r}"
        )
    return cls


def make_optimizer(
    params: Iterable[nn.Parameter],
    optimizer: str | type = "sgd",
    lr: float = 0.00025,
    optimizer_kwargs: dict | None = None,
) -> torch.optim.Optimizer:
    """MEMO's optimizer: weight decay 0 (and momentum 0 for SGD) unless `optimizer_kwargs` says else."""
    cls = _optimizer_class(optimizer)
    kwargs = {"weight_decay": 0.0}
    kwargs.update(optimizer_kwargs or {})
    return cls(list(params), lr=lr, **kwargs)


def memo_adapt_step(
    model: nn.Module,
    views: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    prior: float,
    class_subset: Sequence[int] | None = None,
) -> float:
    """One MEMO step: forward the K views with the BN prior, marginal entropy, backward, step.

    views: float [K, 3, h, w] on the model's device. The model is put in eval mode (as MEMO does:
    no dropout, BN through the prior). Returns the loss before the step.
    """
    model.eval()
    optimizer.zero_grad(set_to_none=True)
    with batchnorm_prior(model, prior):
        logits = model(views)  # [K, 1000]
    if class_subset is not None:
        logits = logits[:, list(class_subset)]  # [K, C']
    loss, _ = marginal_entropy(logits)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, prior: float | None, subset: list[int] | None):
    """Softmax over the (restricted) classes of the plain view [1, 3, h, w] -> probs [C'] on CPU."""
    model.eval()
    if prior is None:
        logits = model(x)
    else:
        with batchnorm_prior(model, prior):
            logits = model(x)  # [1, 1000]
    if subset is not None:
        logits = logits[:, subset]
    return logits.float().softmax(dim=-1)[0].cpu()  # [C']


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        raise ValueError("MEMO needs a model with parameters") from None


def _check_run(views: str, class_subset: Sequence[int] | None) -> None:
    """The per-run arguments the config does not hold: the view kind and the class subset."""
    if views not in VIEW_KINDS:
        raise ValueError(f"views must be one of {VIEW_KINDS}, got {views!r}")
    if class_subset is not None and (len(class_subset) == 0 or min(class_subset) < 0):
        raise ValueError("class_subset must be a non-empty list of class indices")


def _memo_episode(model, img, config: MemoConfig, *, views: str, seed: int, mean, std, subset
                  ) -> tuple[torch.Tensor, float]:
    """Adapt in place (the caller restores) and predict; returns (probs [C'], seconds)."""
    device = img.device
    _sync(device)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(int(seed))
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], config.optimizer, config.lr,
                         None if config.optimizer_kwargs is None else dict(config.optimizer_kwargs))
    make = rrc_views if views == "rrc" else augmix_views
    for _ in range(config.steps):
        batch = make(img, config.k, mean=mean, std=std, generator=g, size=config.crop)  # [K, 3, crop, crop]
        memo_adapt_step(model, batch, opt, prior=config.prior, class_subset=subset)
    probs = _predict(model, _plain(img, config, mean, std), config.prior, subset)
    _sync(device)
    return probs, time.perf_counter() - t0


def _plain(img: torch.Tensor, config: MemoConfig, mean, std) -> torch.Tensor:
    """The config's prediction view of an image (`plain_view`)."""
    return plain_view(img, mean=mean, std=std, resize=config.resize, crop=config.crop,
                      interpolation=config.interpolation)


def _as_uint8(image, device: torch.device) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        _check_image(image, "MEMO")
        return image.to(device)
    if hasattr(image, "convert"):  # PIL
        return pil_to_tensor(image).to(device)
    raise ValueError(f"image must be a PIL image or a uint8 [3, H, W] tensor, got {type(image).__name__}")


def memo_predict(
    model: nn.Module,
    image_uint8,
    config: MemoConfig = MemoConfig(),
    *,
    views: str = "rrc",
    seed: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    class_subset: Sequence[int] | None = None,
) -> dict:
    """MEMO on one image; the model is left exactly as it came (weights, buffers, grads, mode).

    image_uint8: uint8 [3, H, W] (or a PIL image). config: the hyper-parameters. class_subset: 1k
    indices to restrict the logits to (ImageNet-A/R, as MEMO does for loss and prediction); predictions
    are reported as 1k indices.
    Returns dict(pred_1k_index, probs_top5 [(1k index, prob)], baseline_pred, seconds), seconds =
    wall time of views + adaptation + adapted prediction (not the baseline forward).
    """
    _check_run(views, class_subset)
    _check_mean_std(mean, std)
    device = _model_device(model)
    img = _as_uint8(image_uint8, device)
    subset = list(class_subset) if class_subset is not None else None
    snap = snapshot_state(model)
    try:
        base = _predict(model, _plain(img, config, mean, std), None, subset)
        probs, seconds = _memo_episode(model, img, config, views=views, seed=seed, mean=mean, std=std, subset=subset)
    finally:
        restore_state(model, snap)
    to_1k = (lambda i: subset[i]) if subset is not None else (lambda i: i)
    top = probs.topk(min(5, probs.numel()))
    return {
        "pred_1k_index": to_1k(int(probs.argmax())),
        "probs_top5": [(to_1k(int(i)), float(p)) for p, i in zip(top.values, top.indices)],
        "baseline_pred": to_1k(int(base.argmax())),
        "seconds": seconds,
    }


def image_seed(seed: int, image_id: str) -> int:
    """Per-image view seed of `run_memo`: a stable hash of (seed, image_id), so an image's views do
    not depend on which other images were run or in what order."""
    digest = hashlib.blake2b(f"{int(seed)}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _unpack(sample) -> tuple[str, object, tuple[int, ...]]:
    if hasattr(sample, "image_id") and hasattr(sample, "labels"):  # data.Sample
        image_id, image, labels = sample.image_id, sample.image, sample.labels
    else:
        image_id, image, labels = sample
    if isinstance(labels, (int,)) or (isinstance(labels, torch.Tensor) and labels.ndim == 0):
        labels = (int(labels),)
    return str(image_id), image, tuple(int(x) for x in labels)


def run_memo(
    model: nn.Module,
    samples: Iterable,
    config: MemoConfig = MemoConfig(),
    *,
    views: Sequence[str] = VIEW_KINDS,
    seed: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    class_subset: Sequence[int] | None = None,
):
    """MEMO over a dataset: one row per (image, view kind), the model reset after every episode.

    samples: (image_id, PIL RGB image or uint8 [3, H, W], labels) tuples or data.Sample objects;
    each image is decoded/moved to the device once and shared by the baseline and every method.
    Images that are None (failed decodes) are skipped with a warning. Views of an image use
    `image_seed(seed, image_id)`; the `seed` column holds the base seed. `seconds` is the MEMO
    episode (views + adaptation + adapted prediction) without the shared baseline forward.
    Returns a DataFrame: image_id, method ('memo_rrc' / 'memo_augmix'), seed, k, pred,
    baseline_pred, correct, baseline_correct, seconds.
    """
    import pandas as pd

    views = tuple(views)
    if not views:
        raise ValueError("views must name at least one of " + str(VIEW_KINDS))
    for v in views:
        _check_run(v, class_subset)
    _check_mean_std(mean, std)
    device = _model_device(model)
    subset = list(class_subset) if class_subset is not None else None
    to_1k = (lambda i: subset[i]) if subset is not None else (lambda i: i)
    snap = snapshot_state(model)
    rows, skipped = [], 0
    try:
        for sample in samples:
            image_id, image, labels = _unpack(sample)
            if image is None:
                skipped += 1
                continue
            img = _as_uint8(image, device)  # uint8 [3, H, W] on the device, once
            base = to_1k(int(_predict(model, _plain(img, config, mean, std), None, subset).argmax()))
            s_img = image_seed(seed, image_id)
            for v in views:
                try:
                    probs, seconds = _memo_episode(model, img, config, views=v, seed=s_img, mean=mean, std=std,
                                                   subset=subset)
                finally:
                    restore_state(model, snap)
                pred = to_1k(int(probs.argmax()))
                rows.append({
                    "image_id": image_id, "method": f"memo_{v}", "seed": int(seed), "k": config.k,
                    "pred": pred, "baseline_pred": base, "correct": pred in labels,
                    "baseline_correct": base in labels, "seconds": seconds,
                })
    finally:
        restore_state(model, snap)
    if skipped:
        warnings.warn(f"run_memo: skipped {skipped} samples without an image")
    columns = ["image_id", "method", "seed", "k", "pred", "baseline_pred", "correct", "baseline_correct", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def memo_for_model(loaded_model, samples: Iterable, config: MemoConfig = MemoConfig(), **kwargs):
    """`run_memo` for a `models.loading.LoadedModel`: its module, its normalisation (mean/std) and its label
    space (the logits restricted to `label_space.indices` for loss and prediction, ImageNet-A/R style).

    kwargs: the other arguments of `run_memo` (views, seed); an explicit mean, std or class_subset
    overrides the model's. The module is adapted in fp32 whatever the model's `amp` setting, and is
    left exactly as it came.
    """
    indices = loaded_model.label_space.indices
    kwargs.setdefault("mean", tuple(loaded_model.mean))
    kwargs.setdefault("std", tuple(loaded_model.std))
    kwargs.setdefault("class_subset", None if indices is None else [int(i) for i in indices])
    return run_memo(loaded_model.module, samples, config, **kwargs)
