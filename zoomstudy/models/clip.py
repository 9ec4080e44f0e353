"""CLIP zero-shot as an ImageNet-1k classifier (SPEC sections 5 and 6).

The paper scores OpenAI CLIP ViT-L/14 (and OpenCLIP ViT-bigG-14 on ImageNet-Hard) as if it were a
1000-way classifier: each class is a text embedding, logits = 100 * cos(image, class). Making that a
plain `nn.Module` that maps a normalised image batch to logits [B, 1000] lets the sweep, MEMO-free
evaluation and ImageNet-Hard treat CLIP exactly like a torchvision model.

Protocol (SPEC section 5, OpenAI's zero-shot notebook):

* class embedding = mean over the 80 OpenAI ImageNet prompt templates of the L2-normalised text
  embeddings of "template(class name)", renormalised to unit length;
* logits = 100 * normalised image embedding . class embeddings (100 is the scale of the SPEC, equal to
  the learned `logit_scale.exp()` of OpenAI's checkpoints; it does not change the argmax).

Class names: open_clip's `IMAGENET_CLASSNAMES` (OpenAI's curated list) names two pairs of classes
identically, so one class of each pair gets exactly the logits of the other and, with argmax taking
the first, can never be predicted (the authors' code has this defect, SPEC section 8). Duplicates are
detected in code (case-insensitively, as the CLIP tokenizer lowercases) and the class that is *not* the
WordNet owner of the name is renamed to its first WordNet lemma (timm's `imagenet_synset_to_lemma.txt`)
that is not already a class name. With open_clip's list this changes exactly two indices:

* 744 n04008634 "missile" -> "projectile" (WordNet "projectile, missile": a thrown weapon, not
  self-propelled); 657 n03773504, whose WordNet lemma is "missile", keeps "missile".
* 836 n04355933 "sunglasses" -> "sunglass" (WordNet "sunglass": a burning lens); 837 n04356056,
  WordNet "sunglasses, dark glasses, shades", keeps "sunglasses". The two prompts stay close in CLIP's
  text space, which is fair: ImageNet's n04355933 images are mostly sunglasses (known label noise).

Text embeddings of 1000 classes x 80 templates are expensive for large text towers (ViT-bigG), so they
are cached on disk as .npz, keyed by model name, pretrained tag and a hash of names + templates.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoomstudy.data.labels import N_IMAGENET_CLASSES
from zoomstudy.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from zoomstudy.keyed import atomic_write

#: SPEC section 5: logits = 100 * cosine.
LOGIT_SCALE = 100.0


# ================================================================================================
# Class names and templates
# ================================================================================================
def find_duplicates(names: Sequence[str]) -> dict[str, list[int]]:
    """{name: [indices]} of every name used more than once (case- and whitespace-insensitive).

    Case-insensitive because the CLIP tokenizer lowercases: "Crane" and "crane" are the same prompt.
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(_name_key(name), []).append(i)
    return {names[idx[0]]: idx for idx in groups.values() if len(idx) > 1}


def _name_key(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def deduplicate_classnames(
    names: Sequence[str], lemmas: Sequence[Sequence[str]]
) -> tuple[list[str], dict[int, tuple[str, str]]]:
    """Give every class a distinct name, renaming only duplicated ones, from their WordNet lemmas.

    lemmas[i]: the WordNet lemmas of class i, most common first. In a group of identical names the
    class whose first lemma is that name keeps it (the lowest index when none or several do); each
    other class takes its first lemma that no class uses yet. Returns (names, {index: (old, new)}).
    """
    if len(lemmas) != len(names):
        raise ValueError(f"deduplicate_classnames: {len(names)} names but {len(lemmas)} lemma lists")
    out = [str(n) for n in names]
    taken = {_name_key(n) for n in out}
    changes: dict[int, tuple[str, str]] = {}
    for name, idx in sorted(find_duplicates(out).items(), key=lambda kv: kv[1][0]):
        owners = [i for i in idx if lemmas[i] and _name_key(lemmas[i][0]) == _name_key(name)]
        keep = owners[0] if len(owners) == 1 else idx[0]
        for i in idx:
            if i == keep:
                continue
            new = next((lem for lem in lemmas[i] if _name_key(lem) not in taken), None)
            if new is None:
                raise ValueError(
                    f"cannot disambiguate class {i} {name!r}: every WordNet lemma {list(lemmas[i])} is taken"
                )
            taken.add(_name_key(new))
            changes[i] = (out[i], new)
            out[i] = new
    return out, changes


def wordnet_lemmas() -> list[list[str]]:
    """The WordNet lemmas of the 1000 ImageNet-1k classes in index order (from timm's metadata)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    # descriptions are "lemma, lemma, ..."; no ImageNet-1k lemma contains a comma itself.
    return [[s.strip() for s in info.index_to_description(i).split(",")] for i in range(N_IMAGENET_CLASSES)]


@functools.cache
def _classnames_and_changes() -> tuple[tuple[str, ...], tuple[tuple[int, str, str], ...]]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names, changes = deduplicate_classnames(list(IMAGENET_CLASSNAMES), wordnet_lemmas())
    if len(names) != N_IMAGENET_CLASSES or find_duplicates(names):
        raise RuntimeError("open_clip's ImageNet class names could not be made 1000 distinct names")
    return tuple(names), tuple((i, old, new) for i, (old, new) in sorted(changes.items()))


def imagenet_classnames() -> list[str]:
    """OpenAI's curated ImageNet-1k class names with the duplicates renamed (see module docstring)."""
    return list(_classnames_and_changes()[0])


def classname_changes() -> dict[int, tuple[str, str]]:
    """{index: (open_clip's name, name used here)} for every renamed class: the provenance record."""
    return {i: (old, new) for i, old, new in _classnames_and_changes()[1]}


def openai_templates() -> list[str]:
    """The 80 OpenAI ImageNet prompt templates as strings with one "{}" for the class name."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return _template_strings(OPENAI_IMAGENET_TEMPLATES)


def _template_strings(templates: Sequence[str | Callable[[str], str]]) -> list[str]:
    # open_clip ships templates as lambdas; strings with "{}" hash and print stably.
    out = [t("{}") if callable(t) else str(t) for t in templates]
    bad = [t for t in out if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' for the class name, got {bad[0]!r}")
    return out


# ================================================================================================
# Text embeddings and their cache
# ================================================================================================
def encode_class_embeddings(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    batch_size: int = 256,
) -> torch.Tensor:
    """float32 [C, D] unit class embeddings: mean of the normalised prompt embeddings, renormalised.

    All C x T prompts are encoded in batches of `batch_size` prompts regardless of class boundaries,
    so the text tower always sees full batches, on the device the tower is on (build it on the target
    device first: ViT-L/14's 80,000 prompts take hours on a CPU). The embeddings stay there until the
    end; the result is on that device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not classnames or not templates:
        raise ValueError("encode_class_embeddings needs at least one class name and one template")
    templates = _template_strings(templates)
    prompts = [t.replace("{}", c) for c in classnames for t in templates]  # class-major: C x T
    device = next(model.parameters()).device
    chunks = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(prompts[start:start + batch_size]).to(device, non_blocking=True)  # [b, context]
            emb = model.encode_text(tokens).float()  # [b, D]
            chunks.append(F.normalize(emb, dim=-1))
    emb = torch.cat(chunks).view(len(classnames), len(templates), -1)  # [C, T, D]
    return F.normalize(emb.mean(dim=1), dim=-1)  # [C, D]


#: open_clip's text-tower attributes (CLIP: transformer ... text_projection; CustomTextCLIP: text).
_TEXT_PARTS = ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection",
               "attn_mask", "text")


def drop_text_tower(clip_model: nn.Module) -> nn.Module:
    """Remove the text tower of an open_clip model in place, once its class embeddings are made: the
    sweep runs only `encode_image`, and for ViT-bigG the text tower is 0.7 B parameters of GPU memory."""
    for name in _TEXT_PARTS:
        if hasattr(clip_model, name):
            delattr(clip_model, name)
    return clip_model


def random_class_embeddings(clip_model: nn.Module, n_classes: int = N_IMAGENET_CLASSES, seed: int = 0) -> torch.Tensor:
    """Unit random class embeddings of the model's width: for a speed probe, which needs the image tower
    and the logits' shape, not the prompts (whose encoding it would otherwise pay for)."""
    dim = int(getattr(getattr(clip_model, "visual", None), "output_dim", 0) or 512)
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n_classes, dim, generator=g), dim=-1)


def default_cache_dir() -> Path:
    """$ZOOMSTUDY_CACHE/clip when set (the package's cache root), else ~/.cache/zoomstudy/clip."""
    root = os.environ.get("ZOOMSTUDY_CACHE")
    return Path(root).expanduser() / "clip" if root else Path.home() / ".cache" / "zoomstudy" / "clip"


def prompts_hash(classnames: Sequence[str], templates: Sequence[str]) -> str:
    """16 hex digits of sha256 over names + templates: any change of either gives a new cache file."""
    payload = json.dumps({"classnames": list(classnames), "templates": _template_strings(templates)})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def cache_path(model_name: str, pretrained: str, classnames, templates, cache_dir=None) -> Path:
    """Where the class embeddings of (model, pretrained tag, names, templates) are cached."""
    slug = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", str(s))  # noqa: E731  (file-name safe)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{slug(model_name)}__{slug(pretrained)}__{prompts_hash(classnames, templates)}.npz"


def cached_class_embeddings(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    model_name: str,
    pretrained: str,
    classnames: Sequence[str],
    templates: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, Path]:
    """Class embeddings [C, D] from the cache file, or encoded and written there. Returns (emb, path).

    The file also stores the names and templates; a file whose content does not match (a hash
    collision, a hand-edited file) is re-encoded rather than trusted.
    """
    if not model_name or not pretrained:
        raise ValueError("cached_class_embeddings needs a model name and a pretrained tag to key the cache")
    templates = _template_strings(templates)
    path = cache_path(model_name, pretrained, classnames, templates, cache_dir)
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            ok = (
                list(f["classnames"]) == list(classnames)
                and list(f["templates"]) == templates
                and f["embeddings"].shape[0] == len(classnames)
            )
            if ok:
                return torch.from_numpy(f["embeddings"].astype(np.float32)), path
        warnings.warn(f"CLIP text cache {path} does not match its key; re-encoding", stacklevel=2)
    emb = encode_class_embeddings(model, tokenizer, classnames, templates, batch_size).cpu()  # [C, D]
    path.parent.mkdir(parents=True, exist_ok=True)
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(
                fh,
                embeddings=emb.numpy(),
                classnames=np.array(list(classnames), dtype=str),
                templates=np.array(templates, dtype=str),
                model_name=np.array(str(model_name)),
                pretrained=np.array(str(pretrained)),
            )

    # write then rename: a crashed or concurrent run never leaves a truncated file under the key.
    atomic_write(path, write)
    return emb, path


# ================================================================================================
# The classifier
# ================================================================================================
class ZeroShotClassifier(nn.Module):
    """An open_clip model plus fixed class embeddings: x [B, 3, H, W] (CLIP-normalised) -> logits [B, C].

    Only the image tower runs at inference; the text tower was used once to build the embeddings.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        class_embeddings: torch.Tensor,
        logit_scale: float = LOGIT_SCALE,
        classnames: Sequence[str] | None = None,
        provenance: dict | None = None,
    ):
        super().__init__()
        if class_embeddings.ndim != 2:
            raise ValueError(f"class_embeddings must be [C, D], got shape {tuple(class_embeddings.shape)}")
        if classnames is not None and len(classnames) != class_embeddings.shape[0]:
            raise ValueError(f"{len(classnames)} class names for {class_embeddings.shape[0]} class embeddings")
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        norms = class_embeddings.float().norm(dim=-1)  # [C]
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            raise ValueError("class_embeddings must have unit-norm rows")
        self.clip = clip_model
        self.logit_scale = float(logit_scale)
        self.classnames = list(classnames) if classnames is not None else None
        self.provenance = dict(provenance or {})
        self.register_buffer("class_embeddings", class_embeddings.float().clone())  # [C, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.clip.parameters()).dtype  # fp16 / bf16 towers need inputs of their dtype
        feats = self.clip.encode_image(x.to(dtype)).float()  # [B, D]
        feats = F.normalize(feats, dim=-1)
        return self.logit_scale * feats @ self.class_embeddings.T  # [B, C]

    @classmethod
    def from_open_clip(
        cls,
        clip_model: nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        model_name: str,
        pretrained: str | None,
        classnames: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        batch_size: int = 256,
        logit_scale: float = LOGIT_SCALE,
    ) -> "ZeroShotClassifier":
        """Build the class embeddings (cached unless `use_cache` is False or there is no pretrained tag).

        Randomly initialised towers (pretrained None) are never cached: a name does not identify them.
        """
        classnames = list(classnames) if classnames is not None else imagenet_classnames()
        templates = _template_strings(templates) if templates is not None else openai_templates()
        if find_duplicates(classnames):
            raise ValueError(f"duplicate class names would make classes unpredictable: {find_duplicates(classnames)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = None
        if use_cache and pretrained:
            emb, path = cached_class_embeddings(
                clip_model, tokenizer, model_name, pretrained, classnames, templates, cache_dir, batch_size
            )
        else:
            emb = encode_class_embeddings(clip_model, tokenizer, classnames, templates, batch_size)
        prov = {
            "model_name": model_name,
            "pretrained": pretrained,
            "n_templates": len(templates),
            "prompts_hash": prompts_hash(classnames, templates),
            "classname_changes": classname_changes() if classnames == imagenet_classnames() else {},
            "logit_scale": float(logit_scale),
            "text_cache": str(path) if path is not None else None,
        }
        return cls(clip_model, emb, logit_scale=logit_scale, classnames=classnames, provenance=prov)


def preprocess_info(clip_model: nn.Module) -> dict:
    """CLIP's own preprocessing as a timm-style data config (input_size, interpolation, mean, std, ...).

    open_clip evaluates with Resize(shorter side = size) + CenterCrop(size): crop_pct = 1.0.
    """
    import open_clip

    cfg = dict(open_clip.get_model_preprocess_cfg(clip_model))
    size = cfg.get("size", 224)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return {
        "input_size": (3, int(h), int(w)),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "mean": tuple(float(m) for m in cfg.get("mean", OPENAI_CLIP_MEAN)),
        "std": tuple(float(s) for s in cfg.get("std", OPENAI_CLIP_STD)),
        "crop_pct": 1.0,
        "crop_mode": "center",
        "resize_mode": cfg.get("resize_mode", "shortest"),
    }


def load_clip(
    model_name: str = "ViT-L-14",
    pretrained: str | None = "openai",
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    templates: Sequence[str] | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
) -> tuple[ZeroShotClassifier, dict]:
    """An open_clip model as a 1000-way ImageNet zero-shot classifier, in eval mode, without gradients,
    built on `device` and its prompts encoded there; only the image tower is kept.

    Returns (module, preprocess info); the info is `preprocess_info` plus the model's provenance.
    pretrained=None builds random weights (tests); open_clip downloads the named weights otherwise.
    """
    if not model_name:
        raise ValueError("load_clip needs a model name, e.g. 'ViT-L-14'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    import open_clip

    if ":" not in model_name and model_name not in open_clip.list_models():  # "hf-hub:..." etc. pass
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = open_clip.create_model(model_name, pretrained=pretrained, device=device, precision=precision)
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    module = ZeroShotClassifier.from_open_clip(
        model, tokenizer, model_name, pretrained, templates=templates, cache_dir=cache_dir, batch_size=batch_size
    ).to(device)  # built and encoded on `device` already: a no-op but for the class embeddings
    drop_text_tower(module.clip)
    module.eval()
    info = preprocess_info(model)
    info["provenance"] = dict(module.provenance)
    return module, info
