"""Label spaces (SPEC section 2): which ImageNet-1k classes a dataset may be answered with.

Every prediction in this package stays an ImageNet-1k index (0-999), so that every analysis compares
against the same 1k labels whatever the dataset. A dataset with fewer classes (ImageNet-A, -R,
ObjectNet) does not get a smaller head: its `LabelSpace` sets the logits of the classes outside the
subset to -inf *before* softmax and argmax, which is the paper's protocol (without it ResNet-50 scores
about 0% on ImageNet-A, a real number but not the paper's).

ObjectNet. The mapping is ObjectNet's own `mappings/objectnet_to_imagenet_1k.json` (ObjectNet 1.0
release), stored verbatim in `resources/objectnet_to_imagenet_1k.json` from the copy in
mlfoundations/wise-ft (`src/datasets/objectnet_metadata/objectnet_to_imagenet_1k.json`, the file
imagenet-testbed uses too). Its values are ImageNet class names ("; " separates several classes), which
resolve uniquely through timm's synset and lemma files. It holds 113 ObjectNet classes; 104 of them map
to exactly one ImageNet class and 9 to two or three (Alarm clock, Bicycle, Chair, Helmet, Pen, Skirt,
Still Camera, Tie, Wheel), 125 ImageNet classes in all. SPEC section 2 says "the 113 ObjectNet classes
that map to exactly one ImageNet class": with the real file that is 104, so both readings exist:

* ``"objectnet"``: the 113 overlapping ObjectNet classes, logits restricted to their 125 ImageNet
  classes, a prediction correct when it is any ImageNet class of the image's ObjectNet class (the
  imagenet-testbed / wise-ft convention; the default, because "113 classes" is the paper's number).
* ``"objectnet-1to1"``: only the 104 one-to-one classes (104 ImageNet classes).

`objectnet_classes` gives the per-class ImageNet index lists that a dataset needs to score either one.

Label cells. `parse_labels` reads what a CSV cell, a parquet column or a folder holds ("3", "3;5", "[3, 5]")
as a sorted tuple of ImageNet-1k indices, and `check_label_range` refuses an index outside 0-999: the
sources read every label through them.
"""
from __future__ import annotations

import functools
import itertools
import importlib.resources
import importlib.util
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

N_IMAGENET_CLASSES = 1000
OBJECTNET_MAPPING = "objectnet_to_imagenet_1k.json"


@dataclass(frozen=True, eq=False)
class LabelSpace:
    """A subset of the ImageNet-1k classes; `indices=None` means all 1000.

    `indices` is stored sorted, unique, int64 and read-only.
    """

    name: str
    indices: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"LabelSpace: name must be a non-empty string, got {self.name!r}")
        if self.indices is None:
            return
        idx = np.asarray(self.indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"LabelSpace {self.name!r}: indices must be a non-empty 1-D integer array")
        if idx.min() < 0 or idx.max() >= N_IMAGENET_CLASSES:
            raise ValueError(f"LabelSpace {self.name!r}: indices must lie in 0..{N_IMAGENET_CLASSES - 1}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"LabelSpace {self.name!r}: indices must be distinct")
        idx = np.sort(idx).astype(np.int64)
        idx.flags.writeable = False
        object.__setattr__(self, "indices", idx)

    # ---- queries --------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return N_IMAGENET_CLASSES if self.indices is None else int(self.indices.size)

    @property
    def is_full(self) -> bool:
        return self.indices is None

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """bool [1000]: True for the classes of the space."""
        m = np.zeros(N_IMAGENET_CLASSES, bool)
        m[self.indices if self.indices is not None else slice(None)] = True
        m.flags.writeable = False
        return m

    @functools.cached_property
    def _mask_tensor(self) -> torch.Tensor:
        import torch  # here, not at the top: labels are read without torch (e.g. by the data sources)

        return torch.from_numpy(self.mask.copy())  # bool [1000], CPU

    def contains(self, label):
        """Whether an ImageNet-1k index (int, or array of them) belongs to the space."""
        lab = np.asarray(label)
        if lab.dtype.kind not in "iu":
            raise ValueError(f"LabelSpace.contains expects integer class indices, got dtype {lab.dtype}")
        inside = (lab >= 0) & (lab < N_IMAGENET_CLASSES)
        out = inside & self.mask[np.where(inside, lab, 0)]
        return bool(out) if out.ndim == 0 else out

    # ---- the restriction --------------------------------------------------------------------------
    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [..., 1000] -> [..., 1000] with the classes outside the space at -inf.

        Stays in the 1k index space so that argmax/top-k return ImageNet-1k indices directly.
        """
        if logits.shape[-1] != N_IMAGENET_CLASSES:
            raise ValueError(f"LabelSpace.restrict expects [..., {N_IMAGENET_CLASSES}] logits, got {tuple(logits.shape)}")
        if self.indices is None:
            return logits
        keep = self._mask_tensor.to(logits.device)  # bool [1000]
        return logits.masked_fill(~keep, float("-inf"))

    # ---- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "n_classes": self.n_classes,
            "indices": None if self.indices is None else self.indices.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSpace":
        return cls(d["name"], None if d.get("indices") is None else np.asarray(d["indices"], np.int64))

    def __eq__(self, other) -> bool:
        if not isinstance(other, LabelSpace):
            return NotImplemented
        if self.name != other.name or (self.indices is None) != (other.indices is None):
            return False
        return self.indices is None or np.array_equal(self.indices, other.indices)

    def __hash__(self) -> int:
        return hash((self.name, None if self.indices is None else self.indices.tobytes()))

    def __repr__(self) -> str:
        return f"LabelSpace({self.name!r}, n_classes={self.n_classes})"


# ================================================================================================
# Label cells: what a CSV, a parquet column or a folder holds, as ImageNet-1k indices
# ================================================================================================
_LABEL_SPLIT = re.compile(r"[;,\s]+")


def parse_labels(value) -> tuple[int, ...]:
    """A label cell -> sorted tuple of distinct non-negative ints.

    Accepts an int, a list/array of ints, None/NaN/"" (empty set), or a string: "3", "3;5", "3 5",
    "3,5" or a JSON list "[3, 5]".
    """
    if value is None:
        return ()
    if isinstance(value, bool):
        raise ValueError(f"label must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        items = [int(value)]
    elif isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ()
        if not float(value).is_integer():
            raise ValueError(f"label must be an integer, got {value!r}")
        items = [int(value)]
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"bad JSON label list {text!r}") from e
            return parse_labels(parsed)
        try:
            items = [int(tok) for tok in _LABEL_SPLIT.split(text) if tok]
        except ValueError as e:
            raise ValueError(f"labels must be integers separated by ';', ',' or spaces, got {text!r}") from e
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = []
        for v in value:
            items.extend(parse_labels(v))
    else:
        raise ValueError(f"cannot read labels from {type(value).__name__} {value!r}")
    if any(v < 0 for v in items):
        raise ValueError(f"labels must be >= 0, got {items}")
    return tuple(sorted(set(items)))


def check_label_range(labels: Sequence[int], where: str) -> tuple[int, ...]:
    """labels unchanged, or ValueError naming `where` when one is not an ImageNet-1k index (0-999)."""
    bad = [v for v in labels if not 0 <= v < N_IMAGENET_CLASSES]
    if bad:
        raise ValueError(f"{where}: label {bad[0]} is outside the label space: labels are ImageNet-1k indices "
                         f"0..{N_IMAGENET_CLASSES - 1}")
    return tuple(labels)


# ================================================================================================
# Files shipped by timm and by this package
# ================================================================================================
def _timm_info(name: str) -> Path:
    """A file of timm's `timm/data/_info` folder (the class lists SPEC section 2 relies on).

    Found through the package path rather than `importlib.resources.files("timm.data")`, which
    imports timm (and torch): seconds spent for a text file.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("timm is not installed: its imagenet_*.txt/json class files are needed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info" / name
    if not path.is_file():
        raise RuntimeError(f"timm has no data/_info/{name} at {path}")
    return path


@functools.lru_cache(maxsize=None)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1k synsets in index order (timm's `imagenet_synsets.txt`): index = label, the
    sorted-synset order every dataset's labels use."""
    synsets = tuple(_timm_info("imagenet_synsets.txt").read_text().split())
    if len(synsets) != N_IMAGENET_CLASSES:
        raise RuntimeError(f"timm's imagenet_synsets.txt has {len(synsets)} entries, expected {N_IMAGENET_CLASSES}")
    return synsets


@functools.lru_cache(maxsize=None)
def synset_index() -> dict[str, int]:
    """Synset ("n01440764") -> ImageNet-1k index, the inverse of `imagenet_synsets`."""
    return {s: i for i, s in enumerate(imagenet_synsets())}


@functools.lru_cache(maxsize=None)
def imagenet_class_names() -> tuple[str, ...]:
    """WordNet lemmas of the 1000 classes ("tench, Tinca tinca"), in index order."""
    text = _timm_info("imagenet_synset_to_lemma.txt").read_text()
    lemmas = dict(line.split("\t", 1) for line in text.splitlines() if line)
    return tuple(lemmas[s].strip() for s in imagenet_synsets())


#: The ILSVRC2012 devkit's files (ILSVRC2012_devkit_t12.tar.gz extracts them to ILSVRC2012_devkit_t12/data/).
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"
DEVKIT_TARBALL = "ILSVRC2012_devkit_t12.tar.gz"


def find_devkit(folder: str | Path) -> Path | None:
    """Where the devkit's ground truth is for a flat val folder: the folder itself, its data/ or
    ILSVRC2012_devkit_t12/data/ (the tarball extracted inside it), or the tarball itself lying there."""
    folder = Path(folder)
    for d in (folder, folder / "data", folder / "ILSVRC2012_devkit_t12" / "data"):
        if (d / DEVKIT_GROUND_TRUTH).is_file():
            return d
    tarball = folder / DEVKIT_TARBALL
    return tarball if tarball.is_file() else None


def devkit_val_labels(devkit: str | Path) -> tuple[int, ...]:
    """The sorted-synset label (0-999) of each val image, by val number - 1, from the ILSVRC2012 devkit.

    The ground-truth file holds one ILSVRC2012_ID (1..1000) per line, in val-number order; those ids
    are NOT in sorted-synset order (id 1 is n02119789, kit fox; the sorted list starts with n01440764,
    tench), so meta.mat's `synsets` table maps each id to its WNID, and the WNID gives this package's
    label. devkit: the folder holding both files, or ILSVRC2012_devkit_t12.tar.gz (read in place).
    """
    import io
    import tarfile

    import scipy.io

    devkit = Path(devkit)
    if devkit.is_file():  # the tarball
        with tarfile.open(devkit) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in (DEVKIT_GROUND_TRUTH, DEVKIT_META) if n not in members]
            if missing:
                raise ValueError(f"{devkit}: no {' or '.join(missing)} in the tarball")
            gt_text = tar.extractfile(members[DEVKIT_GROUND_TRUTH]).read().decode()
            meta_bytes = tar.extractfile(members[DEVKIT_META]).read()
        meta = scipy.io.loadmat(io.BytesIO(meta_bytes), squeeze_me=True)
    else:
        if not (devkit / DEVKIT_META).is_file():
            raise ValueError(f"{devkit}: {DEVKIT_GROUND_TRUTH} is there but not {DEVKIT_META}, which maps its "
                             f"ILSVRC2012_IDs to synsets (both come in ILSVRC2012_devkit_t12/data/)")
        gt_text = (devkit / DEVKIT_GROUND_TRUTH).read_text()
        meta = scipy.io.loadmat(str(devkit / DEVKIT_META), squeeze_me=True)
    if "synsets" not in meta:
        raise ValueError(f"{devkit}: {DEVKIT_META} has no 'synsets' table")
    index = synset_index()
    id_to_label = {}
    for row in np.atleast_1d(meta["synsets"]):
        wnid = str(row["WNID"])
        if wnid in index:  # the 1000 leaves; the other 860 rows are WordNet's inner nodes
            id_to_label[int(row["ILSVRC2012_ID"])] = index[wnid]
    if len(id_to_label) != N_IMAGENET_CLASSES:
        raise ValueError(f"{devkit}: {DEVKIT_META} maps {len(id_to_label)} ILSVRC2012_IDs to ImageNet-1k "
                         f"synsets, expected {N_IMAGENET_CLASSES}")
    out = []
    for line, text in enumerate(gt_text.split(), start=1):
        if not text.isdigit() or int(text) not in id_to_label:
            raise ValueError(f"{devkit}: {DEVKIT_GROUND_TRUTH}:{line}: {text!r} is not an ILSVRC2012_ID of {DEVKIT_META}")
        out.append(id_to_label[int(text)])
    return tuple(out)


def _timm_indices(filename: str) -> np.ndarray:
    return np.asarray([int(x) for x in _timm_info(filename).read_text().split()], np.int64)


def _name_to_index() -> dict[str, int]:
    """Lemma string -> index, for the lemmas that name exactly one class ("crane" names two)."""
    names = imagenet_class_names()
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return {n: i for i, n in enumerate(names) if counts[n] == 1}


def load_objectnet_mapping(path: str | Path | None = None) -> dict[str, str]:
    """ObjectNet's objectnet_to_imagenet_1k.json: ObjectNet class -> "; "-separated ImageNet names.

    path=None reads the copy shipped in zoomstudy/resources (see the module docstring for its source).
    """
    if path is None:
        text = (importlib.resources.files("zoomstudy") / "resources" / OBJECTNET_MAPPING).read_text()
    else:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"ObjectNet mapping not found at {p} (expected ObjectNet's mappings/{OBJECTNET_MAPPING})")
        text = p.read_text()
    mapping = json.loads(text)
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"ObjectNet mapping {path or OBJECTNET_MAPPING} is not a {{class: 'name; name'}} JSON object")
    return mapping


def objectnet_classes(path: str | Path | None = None, *, one_to_one: bool = False) -> dict[str, tuple[int, ...]]:
    """ObjectNet class -> its ImageNet-1k indices (sorted); one_to_one keeps the single-class ones."""
    lookup = _name_to_index()
    out: dict[str, tuple[int, ...]] = {}
    for objectnet_name, imagenet_names in load_objectnet_mapping(path).items():
        names = [n.strip() for n in imagenet_names.split(";")]
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise ValueError(f"ObjectNet class {objectnet_name!r}: unknown or ambiguous ImageNet class names {unknown}")
        if one_to_one and len(names) != 1:
            continue
        out[objectnet_name] = tuple(sorted(lookup[n] for n in names))
    return out


def objectnet_label_space(path: str | Path | None = None, *, one_to_one: bool = False) -> LabelSpace:
    """The ImageNet classes of the ObjectNet classes (all 113, or the 104 one-to-one)."""
    classes = objectnet_classes(path, one_to_one=one_to_one)
    indices = np.unique(np.fromiter((i for ids in classes.values() for i in ids), np.int64))
    return LabelSpace("objectnet-1to1" if one_to_one else "objectnet", indices)


# ================================================================================================
# Registry
# ================================================================================================
LABEL_SPACES: dict[str, Callable[[], LabelSpace]] = {
    "imagenet1k": lambda: LabelSpace("imagenet1k"),
    "imagenet-a": lambda: LabelSpace("imagenet-a", _timm_indices("imagenet_a_indices.txt")),
    "imagenet-r": lambda: LabelSpace("imagenet-r", _timm_indices("imagenet_r_indices.txt")),
    "objectnet": lambda: objectnet_label_space(),
    "objectnet-1to1": lambda: objectnet_label_space(one_to_one=True),
}


@functools.lru_cache(maxsize=None)
def _registered(name: str) -> LabelSpace:
    return LABEL_SPACES[name]()


def get_label_space(name_or_space: str | LabelSpace) -> LabelSpace:
    """A registered label space by name, or the given `LabelSpace` unchanged."""
    if isinstance(name_or_space, LabelSpace):
        return name_or_space
    if not isinstance(name_or_space, str) or name_or_space not in LABEL_SPACES:
        raise ValueError(f"unknown label space {name_or_space!r}; known: {sorted(LABEL_SPACES)}")
    return _registered(name_or_space)


# ================================================================================================
# Label sets and correctness (SPEC section 2): top-1 in the image's label set
# ================================================================================================
def padded_labels(labels) -> np.ndarray:
    """Label sets -> int64 [N, L] padded with -1 (L >= 1), the vectorisable form of a multi-label set.

    Accepts an int array [N] (one label each, -1 = none), an int array [N, L] already padded with -1,
    or a sequence of label sets (tuples / lists / arrays, or bare ints for single labels).
    """
    if isinstance(labels, np.ndarray) and labels.dtype != object:
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"label array must be integer, got {labels.dtype}")
        if labels.ndim not in (1, 2):
            raise ValueError(f"label array must be [N] or [N, L], got shape {labels.shape}")
        padded = labels.astype(np.int64).reshape(labels.shape[0], -1)  # [N, L]
        if padded.shape[1] == 0:
            padded = np.full((padded.shape[0], 1), -1, np.int64)
        if padded.size and padded.min() < -1:
            raise ValueError("labels must be class indices >= 0, or -1 for padding")
        return padded
    sets = [(int(t),) if np.ndim(t) == 0 else tuple(int(x) for x in t) for t in labels]
    n = len(sets)
    lengths = np.fromiter((len(t) for t in sets), np.int64, n)  # [N]
    flat = np.fromiter(itertools.chain.from_iterable(sets), np.int64, int(lengths.sum()))
    if flat.size and flat.min() < 0:
        raise ValueError("labels must be class indices >= 0")
    width = max(int(lengths.max()) if n else 0, 1)
    padded = np.full((n, width), -1, np.int64)  # [N, L]
    padded[np.arange(width)[None, :] < lengths[:, None]] = flat  # row-major fill keeps each set's order
    return padded


def has_labels(labels) -> np.ndarray:
    """bool [N]: the image has a non-empty label set (ReaL leaves the others out: 46,837 of 50,000)."""
    return (padded_labels(labels) >= 0).any(axis=1)


def correctness(top1: np.ndarray, labels, keep: np.ndarray | None = None) -> np.ndarray:
    """bool [N, V] (or [N]): top-1 prediction in the image's label set (SPEC section 2).

    top1: int [N, V] or [N], class indices >= 0. labels: see `padded_labels`.
    An image with an empty label set has no defined correctness, so it is an error unless `keep`
    (bool [N], e.g. `has_labels(labels)`) leaves it out; the result then has keep.sum() rows.
    """
    top1 = np.asarray(top1)
    if not np.issubdtype(top1.dtype, np.integer) or top1.ndim not in (1, 2):
        raise ValueError(f"top1 must be an integer array [N, V] or [N], got {top1.dtype} {top1.shape}")
    padded = padded_labels(labels)  # [N, L]
    if padded.shape[0] != top1.shape[0]:
        raise ValueError(f"top1 has {top1.shape[0]} images but labels has {padded.shape[0]}")
    if top1.size and top1.min() < 0:
        raise ValueError("top1 must hold class indices >= 0")  # -1 would match the padding
    labelled = (padded >= 0).any(axis=1)  # [N]
    if keep is None:
        if not labelled.all():
            raise ValueError(
                f"{int((~labelled).sum())} of {labelled.size} images have an empty label set; "
                "pass keep=has_labels(labels) to leave them out (the ReaL protocol)"
            )
    else:
        keep = np.asarray(keep)
        if keep.dtype != bool or keep.shape != labelled.shape:
            raise ValueError(f"keep must be a bool [N={labelled.size}] mask, got {keep.dtype} {keep.shape}")
        if (keep & ~labelled).any():
            raise ValueError(f"keep selects {int((keep & ~labelled).sum())} images with an empty label set")
        top1, padded = top1[keep], padded[keep]
    target = padded if top1.ndim == 1 else padded[:, None, :]  # [N, L] or [N, 1, L]
    out = np.zeros(top1.shape, bool)
    for j in range(padded.shape[1]):  # L is small (<= 10 for ImageNet-Hard); vectorised over images x views
        out |= top1 == target[..., j]
    return out


# ================================================================================================
# Class names: the names reports print for class indices
# ================================================================================================
def class_names_of(obj) -> tuple[str, ...] | None:
    """The class names that travel with `obj`, or None for ImageNet-1k's own.

    obj: a model (its label space's names), a label space (a world's `WorldLabelSpace` carries its
    own: "disc", ...), a result set or its settings dict (the sweep records a label space's own names
    as settings['class_names'], outside the key), or a sequence of names. No process-wide default:
    a report names the classes of the model or result set it is given.
    """
    if obj is None:
        return None
    settings = getattr(obj, "settings", None)
    if isinstance(settings, dict):  # a ResultSet (or a notebook's sweep holding one)
        obj = settings
    if isinstance(obj, dict):
        obj = obj.get("class_names")
        if obj is None:
            return None
    obj = getattr(obj, "label_space", obj)
    names = getattr(obj, "class_names", None) if hasattr(obj, "indices") else obj  # a LabelSpace or names
    if names is None or isinstance(names, str):
        return None
    names = tuple(str(n) for n in names)
    return names or None


def class_name(index: int, short: bool = True, names=None) -> str:
    """Class name of an index, '#i' if unknown: from `names` (a model, label space, result set,
    settings or sequence: `class_names_of`) when it has its own, else ImageNet-1k's (the first lemma
    when short)."""
    own = class_names_of(names)
    try:
        if own is not None:
            return own[int(index)] if int(index) >= 0 else f"#{index}"
        name = imagenet_class_names()[int(index)]
    except (IndexError, ValueError, TypeError):
        return f"#{index}"
    return name.split(",")[0].strip() if short else name
