"""The classifiers of the study (SPEC section 6) behind one interface, with their preprocessing.

Why one interface: the sweep and every analysis need, from every model, the same three things: logits
in the ImageNet-1k index space restricted to the dataset's label space (SPEC 2), the preprocessing the
weights were trained with, and a provenance record precise enough to tell two result tables apart.
timm (pretrained_cfg) and torchvision (the weights' transforms) each carry the preprocessing with the
weights; `LoadedModel.data_config()` keeps it next to the module, the way timm's data config does.

Where weights come from, never from a path this module invents:

* ``timm:NAME[.TAG]``: `timm.create_model`; a local file goes through timm's own loader with
  ``pretrained_cfg_overlay=dict(file=path)`` (timm unwraps "state_dict"/"model" and strips "module.").
* ``torchvision:NAME`` + weights tag: `torchvision.models.get_model`, which reads
  ``$TORCH_HOME/hub/checkpoints/<basename of the weights URL>`` before trying to download, so a file
  placed there works offline.
* a torchvision architecture + ``checkpoint=``: a state_dict, or a dict holding one under
  "state_dict"/"model", "module." prefixes stripped, loaded strictly; weights_id is the file's sha256.
* a bare name: the paper's models in `MODELS` (note: the paper's ResNet-50 is IMAGENET1K_V1, while
  torchvision's DEFAULT is V2), anything else is tried as a timm name.

Precision: fp32 by default, for fidelity with the reference numbers. ``amp="bf16"|"fp16"`` runs the
forward under CUDA autocast; on a CPU it is refused with a ValueError rather than ignored, so that a
provenance record never claims a precision that did not run. channels_last is applied on CUDA only
(on CPU it buys nothing and changes kernel choice).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoomstudy.data.labels import N_IMAGENET_CLASSES, LabelSpace, get_label_space
from zoomstudy.constants import IMAGENET_MEAN, IMAGENET_STD

#: amp argument -> autocast dtype (None = plain fp32).
AMP_DTYPES: dict[str | None, torch.dtype | None] = {
    None: None,
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

#: Preprocessing of a torchvision architecture without any weights metadata (the classic recipe).
_FALLBACK_CONFIG = {
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
}


@dataclass(frozen=True)
class ModelEntry:
    """A model of the paper: where it comes from and which weights the paper used."""

    source: str
    name: str
    weights: str | None


#: The paper's models (SPEC section 6) plus the real-data kit's SqueezeNet.
MODELS: dict[str, ModelEntry] = {
    # Table 1: torchvision V1 weights
    "alexnet": ModelEntry("torchvision", "alexnet", "IMAGENET1K_V1"),
    "vgg16": ModelEntry("torchvision", "vgg16", "IMAGENET1K_V1"),
    "resnet18": ModelEntry("torchvision", "resnet18", "IMAGENET1K_V1"),
    "resnet50": ModelEntry("torchvision", "resnet50", "IMAGENET1K_V1"),
    "vit_b_32": ModelEntry("torchvision", "vit_b_32", "IMAGENET1K_V1"),
    # appendix
    "mobilenet_v3_small": ModelEntry("torchvision", "mobilenet_v3_small", "IMAGENET1K_V1"),
    "efficientnet_b0": ModelEntry("torchvision", "efficientnet_b0", "IMAGENET1K_V1"),
    "convnext_base": ModelEntry("torchvision", "convnext_base", "IMAGENET1K_V1"),
    "swin_b": ModelEntry("torchvision", "swin_b", "IMAGENET1K_V1"),
    "maxvit_t": ModelEntry("torchvision", "maxvit_t", "IMAGENET1K_V1"),
    # realdata kit (its weights come as a checkpoint file)
    "squeezenet1_0": ModelEntry("torchvision", "squeezenet1_0", "IMAGENET1K_V1"),
    # CLIP zero-shot (SPEC 5 and 6; needs the `clip` extra): Table 1's row and the ImageNet-Hard leaderboard's
    "clip-vit-l-14": ModelEntry("clip", "ViT-L-14", "openai"),
    "openclip-vit-bigg-14": ModelEntry("clip", "ViT-bigG-14", "laion2b_s39b_b160k"),
}


# ================================================================================================
# The loaded model
# ================================================================================================
@dataclass
class LoadedModel:
    """An eval-mode classifier on its device, with its preprocessing, label space and provenance."""

    module: nn.Module
    name: str
    source: str
    weights_id: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int, int]
    interpolation: str
    crop_pct: float
    label_space: LabelSpace
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    weights_source: str | None = None  # URL, hub id or checkpoint path (informative, not hashed)
    architecture: str = ""  # "timm:NAME" / "torchvision:NAME": what `module` was built as

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x float [B, 3, H, W] (normalised) -> float32 [B, 1000] on the model's device, restricted."""
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            got = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"LoadedModel.logits expects a float [B, 3, H, W] tensor, got {got}")
        x = x.to(self.device, torch.float32, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(
            device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            out = self.module(x)
        if not torch.is_tensor(out) or out.shape != (x.shape[0], N_IMAGENET_CLASSES):
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"{self.name} returned {shape}; expected [{x.shape[0]}, {N_IMAGENET_CLASSES}] ImageNet-1k logits")
        return self.label_space.restrict(out.float())  # [B, 1000]

    def topk(self, x: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices int64 [B, k] in the 1k index space, probabilities float32 [B, k]).

        The softmax runs over the restricted logits, so the probabilities of the label space sum to 1.
        """
        if not 1 <= k <= self.label_space.n_classes:
            raise ValueError(f"k must be in 1..{self.label_space.n_classes} for label space {self.label_space.name!r}, got {k}")
        probs = self.logits(x).softmax(dim=-1)  # [B, 1000], 0 outside the label space
        p, idx = probs.topk(k, dim=-1)  # [B, k]
        return idx.to(torch.int64), p

    def data_config(self) -> dict:
        """The preprocessing that travels with the weights (timm's data-config keys)."""
        return {
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "input_size": tuple(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": float(self.crop_pct),
        }

    def provenance(self) -> dict:
        """Everything that changes the predictions, JSON-serialisable (lists, strings, numbers)."""
        import timm
        import torchvision

        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config().items()}
        device = self.device.type
        if device == "cuda":
            device = f"cuda:{torch.cuda.get_device_name(self.device)}"
        return {
            "name": self.name,
            "source": self.source,
            "architecture": self.architecture or f"{self.source}:{self.name}",
            "weights_id": self.weights_id,
            "weights_source": self.weights_source,
            "data_config": cfg,
            "label_space": self.label_space.to_dict(),
            "device": device,
            "amp_dtype": None if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch."),
            "channels_last": bool(self.channels_last),
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__},
        }


# ================================================================================================
# Checkpoint files
# ================================================================================================
_HASH_CACHE: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file, cached by (path, size, mtime, inode): weights files are large."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _not_a_torch_file(path: str | Path) -> str | None:
    """Why `path` cannot be a file of torch.save (a zip archive, or a pickle of the legacy format), from
    its first bytes; None when it may be one. Random bytes then get this reason, not the weights-only
    unpickler's complaint about pickle globals that the file never had."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return None
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    return (f"it is neither a zip archive nor a pickle, the two formats torch.save writes (its first bytes: "
            f"{head.hex(' ') or 'none, it is empty'})")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state_dict: the file itself or its "state_dict"/"model" entry, "module." stripped.

    A file torch cannot read as weights (random bytes, a pickle of other objects, which the
    weights-only unpickler refuses without running it) is a one-line ValueError.
    """
    why = _not_a_torch_file(path)
    if why:
        raise ValueError(f"checkpoint {path} is not a weights file torch can read (a state_dict saved with "
                         f"torch.save): {why}")
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...: all one answer
        first = " ".join(str(e).split())[:160]
        raise ValueError(f"checkpoint {path} is not a weights file torch can read (a state_dict saved with "
                         f"torch.save): {type(e).__name__}: {first}") from None
    if isinstance(ckpt, dict):
        for key in ("state_dict", "model"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(torch.is_tensor(v) for v in ckpt.values()):
        raise ValueError(f"checkpoint {path} holds no state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def _keys_message(text: str, limit: int = 5) -> str:
    """torch's multi-line load_state_dict error -> one line that keeps the key names (the first few of each kind)."""
    parts = []
    for kind, label in (("Missing key(s)", "missing"), ("Unexpected key(s)", "unexpected")):
        m = re.search(re.escape(kind) + r' in state_dict: (.*?)(?:\.\s*$|\.\s*\n)', text, re.S | re.M)
        if m:
            keys = re.findall(r'"([^"]+)"', m.group(1))
            more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
            parts.append(f"{label} {keys[:limit]}{more}")
    sizes = re.findall(r"size mismatch for ([^:]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from "
                       r"checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)", text)
    if sizes:
        more = f" and {len(sizes) - 3} more" if len(sizes) > 3 else ""
        parts.append("shapes differ: " + ", ".join(f"{k} {a} in the checkpoint, {b} in the model"
                                                   for k, a, b in sizes[:3]) + more)
    return "; ".join(parts) if parts else " ".join(text.split())[:300]


def _load_strict(module: nn.Module, state_dict: dict, what: str) -> None:
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:  # shapes that do not fit
        raise ValueError(f"{what} does not fit the architecture: {_keys_message(str(e))}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{what} does not fit the architecture: missing {result.missing_keys[:5]}"
            f"{'...' if len(result.missing_keys) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
            f"{'...' if len(result.unexpected_keys) > 5 else ''}"
        )


def _fetching(build: Callable[[], nn.Module], what: str, hint: str) -> nn.Module:
    """Run a builder that may download weights; turn a network failure into one clear error."""
    try:
        return build()
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; hub errors subclass these
        raise RuntimeError(f"could not load the weights of {what} ({type(e).__name__}: {e}); {hint}") from e


# ================================================================================================
# Sources: timm and torchvision
# ================================================================================================
@dataclass(frozen=True)
class _Built:
    module: nn.Module
    weights_id: str
    weights_source: str | None
    config: dict  # mean, std, input_size, interpolation, crop_pct


def _split_tag(source: str, name: str, weights: str | None, sep: str) -> tuple[str, str | None]:
    """'resnet50.a1_in1k' (timm, sep '.') -> ('resnet50', 'a1_in1k'), 'ViT-L-14@openai' (clip, sep '@') ->
    ('ViT-L-14', 'openai'); a tag in the name and in `weights` must agree."""
    arch, _, tag = name.partition(sep)
    tag = tag or None
    if tag and weights and tag != weights:
        raise ValueError(f"{source}:{name} names tag {tag!r} but weights={weights!r}")
    return arch, tag or weights


def _timm_check(name: str, weights: str | None) -> None:
    import timm

    arch, tag = _split_tag("timm", name, weights, ".")
    if not timm.is_model(arch):
        raise ValueError(f"unknown timm model {arch!r}")
    if tag and f"{arch}.{tag}" not in timm.list_pretrained(f"{arch}.*"):
        raise ValueError(f"timm has no weights {arch}.{tag}; known: {timm.list_pretrained(f'{arch}.*')}")


def _timm_build(name: str, weights: str | None, pretrained: bool, checkpoint: Path | None, device=None,
                encode_prompts: bool = True) -> _Built:
    import timm
    import timm.data

    arch, tag = _split_tag("timm", name, weights, ".")
    full = f"{arch}.{tag}" if tag else arch
    if checkpoint is not None:
        # timm's own file path: unwraps state_dict/model keys, strips "module.", applies the filter_fn
        why = _not_a_torch_file(checkpoint)
        if why:
            raise ValueError(f"checkpoint {checkpoint} is not a weights file torch can read: {why}")
        try:
            module = timm.create_model(full, pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint)))
        except RuntimeError as e:
            if "state_dict" not in str(e):  # torch could not read the file at all
                raise ValueError(f"checkpoint {checkpoint} is not a weights file torch can read: "
                                 f"{type(e).__name__}: {' '.join(str(e).split())[:160]}") from None
            raise ValueError(f"checkpoint {checkpoint} does not fit timm:{full}: {_keys_message(str(e))}") from None
        except (OSError, ValueError):
            raise
        except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, ...: a file that is no checkpoint
            raise ValueError(f"checkpoint {checkpoint} is not a weights file torch can read: "
                             f"{type(e).__name__}: {' '.join(str(e).split())[:160]}") from None
        weights_id, source = file_sha256(checkpoint), str(checkpoint)
    elif pretrained:
        module = _fetching(
            lambda: timm.create_model(full, pretrained=True),
            f"timm:{full}",
            "offline, pass checkpoint=<local weights file> (loaded through timm's pretrained_cfg_overlay)",
        )
        cfg = module.pretrained_cfg
        weights_id = f"{cfg.get('architecture', arch)}.{cfg.get('tag')}" if cfg.get("tag") else full
        source = cfg.get("hf_hub_id") or cfg.get("url") or weights_id
    else:
        module = timm.create_model(full, pretrained=False)
        weights_id, source = "random", None
    dc = timm.data.resolve_model_data_config(module)
    config = {
        "mean": tuple(float(v) for v in dc["mean"]),
        "std": tuple(float(v) for v in dc["std"]),
        "input_size": tuple(int(v) for v in dc["input_size"]),
        "interpolation": str(dc["interpolation"]),
        "crop_pct": float(dc["crop_pct"]),
    }
    return _Built(module, weights_id, source, config)


def _tv_weights(name: str, tag: str | None):
    """The torchvision weights enum member for a tag ("DEFAULT" resolves to the real member)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    tag = tag or "DEFAULT"
    try:
        w = enum[tag]
    except KeyError:
        raise ValueError(f"torchvision:{name} has no weights {tag!r}; known: {list(enum.__members__)}") from None
    categories = w.meta.get("categories") or []
    if len(categories) != N_IMAGENET_CLASSES:
        raise ValueError(f"{w} is not an ImageNet-1k classifier ({len(categories)} categories)")
    return w


def _tv_check(name: str, weights: str | None) -> None:
    import torchvision
    from torchvision.models import list_models

    if name not in list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision classification model {name!r}")
    if weights is not None:
        _tv_weights(name, weights)


def _tv_config(w) -> dict:
    """Preprocessing of torchvision weights: their ImageClassification transform's parameters."""
    if w is None:
        return dict(_FALLBACK_CONFIG)
    t = w.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    return {
        "mean": tuple(float(v) for v in t.mean),
        "std": tuple(float(v) for v in t.std),
        "input_size": (3, crop, crop),
        "interpolation": t.interpolation.value,
        "crop_pct": crop / resize,
    }


def _tv_build(name: str, weights: str | None, pretrained: bool, checkpoint: Path | None, device=None,
              encode_prompts: bool = True) -> _Built:
    from torchvision.models import get_model

    try:
        meta = _tv_weights(name, weights)  # preprocessing metadata; nothing is downloaded here
    except ValueError:
        if weights is not None:
            raise
        meta = None
    if checkpoint is not None:
        module = get_model(name, weights=None)
        _load_strict(module, read_state_dict(checkpoint), f"checkpoint {checkpoint}")
        return _Built(module, file_sha256(checkpoint), str(checkpoint), _tv_config(meta))
    if pretrained:
        if meta is None:
            raise ValueError(f"torchvision:{name} has no ImageNet-1k weights; pass checkpoint= or pretrained=False")
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(meta.url)
        module = _fetching(
            lambda: get_model(name, weights=meta),
            f"torchvision:{name} ({meta})",
            f"offline, place the file at {cached}",
        )
        return _Built(module, str(meta), meta.url, _tv_config(meta))
    return _Built(get_model(name, weights=None), "random", None, _tv_config(meta))


# ================================================================================================
# Source: CLIP zero-shot (open_clip, the optional `clip` extra)
# ================================================================================================
def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ValueError("CLIP models need open_clip: pip install 'zoomstudy[clip]' (or open_clip_torch)") from None
    return open_clip


def clip_templates() -> list[str]:
    """The prompt templates of CLIP models: OpenAI's 80 (SPEC 5), or the first N when
    $ZOOMSTUDY_CLIP_TEMPLATES=N. The shortcut exists for pipeline checks on a CPU (encoding
    1000 x 80 prompts takes minutes there even for a tiny text tower); the templates enter the prompts
    hash, hence the weights id and the result set's key, so a shortened run never reuses or replaces
    a full one."""
    from zoomstudy.models.clip import openai_templates

    templates = openai_templates()
    n = os.environ.get("ZOOMSTUDY_CLIP_TEMPLATES")
    if n:
        if not n.isdigit() or not 1 <= int(n) <= len(templates):
            raise ValueError(f"ZOOMSTUDY_CLIP_TEMPLATES must be 1..{len(templates)}, got {n!r}")
        templates = templates[: int(n)]
    return templates


def _is_clip_arch(name: str) -> bool:
    """Whether open_clip (when installed) knows this architecture name."""
    try:
        import open_clip
    except ImportError:
        return False
    return name in open_clip.list_models()


def _clip_check(name: str, weights: str | None) -> None:
    arch, tag = _split_tag("clip", name, weights, "@")
    open_clip = _open_clip()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {arch!r}; see open_clip.list_models()")
    if tag and (arch, tag) not in set(open_clip.list_pretrained()):
        known = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise ValueError(f"open_clip has no weights {arch}@{tag}; known: {known}")


def _clip_build(name: str, weights: str | None, pretrained: bool, checkpoint: Path | None, device=None,
                encode_prompts: bool = True) -> _Built:
    """A `ZeroShotClassifier` (SPEC 5: 80 OpenAI templates, logits = 100 cos) with CLIP's own
    preprocessing as its data config. The weights id carries the prompts' hash: class names or
    templates that change give a new result set. The sweep still feeds it ImageNet-normalised views
    by default (normalization='imagenet', SPEC 1.4: the authors did so for every model); the plain
    ImageNet-Hard evaluation uses `data_config()`, i.e. CLIP's own mean, std and bicubic resize.

    The model is built on `device` and the 80,000 prompts are encoded there (on a CPU they take hours
    for ViT-L/14); then the text tower is dropped. encode_prompts=False (speed probes) skips the text
    tower's work: random unit class embeddings, weights id "+prompts-none"."""
    from zoomstudy.models.clip import ZeroShotClassifier, drop_text_tower, preprocess_info, random_class_embeddings

    open_clip = _open_clip()
    arch, tag = _split_tag("clip", name, weights, "@")
    if checkpoint is not None:
        sha = file_sha256(checkpoint)
        model = open_clip.create_model(arch, pretrained=str(checkpoint), device=device)
        key_tag, weights_id, source = f"file-{sha[:16]}", sha, str(checkpoint)
    elif pretrained:
        tag = tag or "openai"
        model = _fetching(
            lambda: open_clip.create_model(arch, pretrained=tag, device=device),
            f"clip:{arch}@{tag}",
            "offline, pass checkpoint=<local open_clip weights file> or place it in the Hugging Face cache",
        )
        key_tag, weights_id, source = tag, f"{arch}@{tag}", tag
    else:
        model = open_clip.create_model(arch, pretrained=None, device=device)
        key_tag, weights_id, source = None, "random", None
    model.eval().requires_grad_(False)
    if encode_prompts:
        module = ZeroShotClassifier.from_open_clip(model, open_clip.get_tokenizer(arch), arch, key_tag,
                                                   templates=clip_templates())
        weights_id = f"{weights_id}+prompts-{module.provenance['prompts_hash']}"
    else:
        module = ZeroShotClassifier(model, random_class_embeddings(model), provenance={"model_name": arch})
        weights_id = f"{weights_id}+prompts-none"
    info = preprocess_info(model)
    drop_text_tower(model)
    config = {k: info[k] for k in ("mean", "std", "input_size", "interpolation", "crop_pct")}
    return _Built(module, weights_id, source, config)


@dataclass(frozen=True)
class _Source:
    check: Callable[[str, str | None], None]  # ValueError for an unknown name or weights tag
    build: Callable[..., _Built]  # (name, tag, pretrained, checkpoint, device, encode_prompts); only CLIP uses the last two


SOURCES: dict[str, _Source] = {
    "timm": _Source(_timm_check, _timm_build),
    "torchvision": _Source(_tv_check, _tv_build),
    "clip": _Source(_clip_check, _clip_build),
}


# ================================================================================================
# load_model
# ================================================================================================
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """This process's device (`placement.placement`): None -> its GPU when CUDA is available, else CPU;
    "cuda" -> cuda:LOCAL_RANK under torchrun (cuda:0 alone); an explicit CUDA request without CUDA
    is an error. Every model load goes through here, so every command places its model alike."""
    from zoomstudy.models.placement import placement

    return placement(device).device


#: Model schemes that later stages add (like timm's register_model): the text before the first ":" of a
#: model name -> opener(spec, *, device=None, **kw) -> `LoadedModel`. The controlled experiment registers
#: "world" at import ("world:REGIME"); the entry layer (`study.open_model`) asks here before `load_model`.
MODEL_SCHEMES: dict[str, Callable[..., "LoadedModel"]] = {}


def register_model_scheme(name: str, opener: Callable[..., "LoadedModel"]) -> None:
    """Let the entry layer open "NAME:REST" model names with `opener`; a loader source (timm,
    torchvision, clip) cannot be shadowed."""
    if name in SOURCES:
        raise ValueError(f"register_model_scheme: {name!r} is already a model source")
    MODEL_SCHEMES[name] = opener


def model_scheme(spec) -> Callable[..., "LoadedModel"] | None:
    """The opener of a registered scheme for "NAME:REST", else None (then `load_model` knows the name or not)."""
    if not isinstance(spec, str) or ":" not in spec:
        return None
    return MODEL_SCHEMES.get(spec.partition(":")[0])


def resolve_spec(spec: str, weights: str | None = None) -> tuple[str, str, str | None]:
    """'source:NAME' or a bare name -> (source, name, weights tag); a bare name's tag from `MODELS`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    if ":" in spec:
        source, _, name = spec.partition(":")
        if source not in SOURCES:
            raise ValueError(f"unknown model source {source!r} in {spec!r}; known: {sorted(SOURCES)}")
        if not name:
            raise ValueError(f"model spec {spec!r} has no model name")
    elif spec in MODELS:
        entry = MODELS[spec]
        source, name, weights = entry.source, entry.name, weights if weights is not None else entry.weights
    else:
        import timm

        if not timm.is_model(spec.partition(".")[0]) and _is_clip_arch(spec.partition("@")[0]):
            source, name = "clip", spec  # a bare open_clip name (ViT-L-14, ViT-L-14@openai)
            SOURCES[source].check(name, weights)
            return source, name, weights
        if not timm.is_model(spec.partition(".")[0]):
            raise ValueError(f"unknown model {spec!r}; use 'timm:NAME', 'torchvision:NAME', 'clip:ARCH@PRETRAINED' "
                             f"(e.g. clip:ViT-L-14@openai) or one of {sorted(MODELS)}")
        source, name = "timm", spec
    SOURCES[source].check(name, weights)
    return source, name, weights


def _state_hash(module: nn.Module) -> str:
    """sha256 prefix of a module's parameters and buffers (identifies random weights)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_model(
    spec: str,
    *,
    weights: str | None = None,
    checkpoint: str | Path | None = None,
    label_space: str | LabelSpace = "imagenet1k",
    device: str | torch.device | None = None,
    amp: str | None = None,
    channels_last: bool = True,
    pretrained: bool = True,
    seed: int = 0,
    encode_prompts: bool = True,
) -> LoadedModel:
    """Build a classifier ready for inference (see the module docstring for specs and weights).

    weights: a weights tag (torchvision "IMAGENET1K_V1", timm "a1_in1k"); a bare name in `MODELS`
    defaults to the paper's tag. checkpoint: a local weights file (excludes `weights`; a timm tag in
    the spec still selects the preprocessing). pretrained=False builds random weights ("random").
    encode_prompts=False: CLIP without its prompts (random class embeddings; speed probes only).
    """
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {list(AMP_DTYPES)}, got {amp!r}")
    dev = resolve_device(device)
    if AMP_DTYPES[amp] is not None and dev.type != "cuda":
        raise ValueError(f"amp={amp!r} needs a CUDA device (got {dev.type}); use amp=None (fp32) on CPU")
    space = get_label_space(label_space)
    if checkpoint is not None and weights is not None:
        raise ValueError("give either weights (a tag) or checkpoint (a file), not both")
    if weights is not None and not pretrained:
        raise ValueError(f"weights={weights!r} contradicts pretrained=False")
    ckpt = None
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise ValueError(f"checkpoint not found: {ckpt}")
    source, name, tag = resolve_spec(spec, weights)

    if pretrained or ckpt is not None:
        built = SOURCES[source].build(name, tag, pretrained, ckpt, dev, encode_prompts)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            built = SOURCES[source].build(name, tag, pretrained, ckpt, dev, encode_prompts)
        built = dataclasses.replace(built, weights_id=f"random-{_state_hash(built.module)}")
    use_cl = bool(channels_last) and dev.type == "cuda"
    module = built.module.eval().to(dev)
    if use_cl:
        module = module.to(memory_format=torch.channels_last)
    cfg = built.config
    return LoadedModel(
        module=module,
        name=name,
        source=source if ckpt is None else "checkpoint",
        weights_id=built.weights_id,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        input_size=tuple(cfg["input_size"]),
        interpolation=cfg["interpolation"],
        crop_pct=float(cfg["crop_pct"]),
        label_space=space,
        device=dev,
        amp_dtype=AMP_DTYPES[amp],
        channels_last=use_cl,
        weights_source=built.weights_source,
        architecture=f"{source}:{name}",
    )
