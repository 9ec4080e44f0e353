"""The one entry layer: plain names and numbers in, a model, a source, a grid and results out.

The CLI, the notebooks, the model profile (`report.model_profile`) and the controlled experiment
(`experiment.runs`) all turn what a user typed into objects here, so there is one way to do it:

* `open_model`: a model name ("torchvision:resnet50", "timm:NAME.TAG", a paper model, or a name of a
  registered model scheme such as the experiment's "world:REGIME"), with or without a checkpoint (its
  file name may tell the architecture), or a loaded model as it is;
* `open_data`: a dataset of the registry, a source spec ("csv:DIR", "folder:DIR", "hf:REPO@REV:split",
  "synthetic:N"), a name of a registered data scheme ("world:REGIME", "world-hard:N"), a folder of
  images (with an optional labels CSV), or a source as it is;
* `make_grid`: a view grid from a named scale set ("paper", "compact") or a list of scales;
* `dataset_label_space`: the label space a dataset is scored in;
* `ensure_results`: all of that, then the sweep, run or resumed (a finished one computes nothing).

Each text is parsed here once: the CLI's checks (`check_data`, `check_model_name`, `make_grid`) and
the openers share `route_data` and `make_grid`, so a name that passes the check is the one that opens.
The schemes of later stages are not named here: this module imports the experiment package, which
registers its names in `data.registry` and `models.loading` (like timm's register_model).

A notebook's parameters cell holds strings and numbers (papermill injects them), so the notebooks stay
thin and the logic stays testable.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import zoomstudy.experiment  # noqa: F401 (fills the data and model scheme registries: "world:", ...)
from zoomstudy.data.registry import dataset_label_space  # noqa: F401 (study.dataset_label_space: one home, the registry)
from zoomstudy.views import COMPACT_SCALES, PAPER_SCALES, ViewGrid

#: Named scale sets of `make_grid`, defined at crop 224 (rescaled by crop / 224 for other crops).
NAMED_SCALES: dict[str, tuple[int, ...]] = {"paper": PAPER_SCALES, "compact": COMPACT_SCALES}
#: The CLI's bound on a scale (`make_grid(max_scale=)`): a scale of s renders an s x s image, about 70 bytes
#: per pixel in float64 on CPU (4096 -> 1.2 GB); the paper's largest is 1024.
MAX_SCALE = 4096


# ================================================================================================
# The view grid
# ================================================================================================
def make_grid(scales=None, grid: int = 3, crop: int = 224, *, default: str = "paper",
              max_scale: int | None = None) -> ViewGrid:
    """A `ViewGrid` from plain values; bad values fail here, before anything is loaded. The one parser
    of scales: the CLI's --scales is checked by calling it (with max_scale=MAX_SCALE).

    scales: None (the `default` named set), a name of `NAMED_SCALES` ("paper": the paper's 36,
    "compact": 12 of them from zoom-out to zoom-in, 224 and 256 included), both multiplied by
    crop / 224 (rounded, merged when they collide) for another crop; or integers, as a list or a
    string ("48,96 160"), taken as given (sorted, duplicates merged). max_scale: the largest scale
    accepted (None: no bound). A `ViewGrid` is returned as it is (grid and crop are then its own), so
    that a caller that checked its grid first (the CLI) passes that grid on.
    """
    if isinstance(scales, ViewGrid):
        return scales
    grid, crop = int(grid), int(crop)
    if scales is None:
        scales = default
    if isinstance(scales, str) and scales in NAMED_SCALES:
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        return ViewGrid.scaled(crop, grid, NAMED_SCALES[scales])
    if isinstance(scales, str):
        if not scales.strip():
            raise ValueError("scales is empty; leave it out for the paper's 36 scales, or give integers such as "
                             "128,224,448")
        scales = scales.replace(",", " ").split()
    try:
        values = sorted({int(s) for s in scales})
    except (TypeError, ValueError):
        raise ValueError(f"scales must be integers separated by commas or one of {sorted(NAMED_SCALES)}, "
                         f"got {scales!r}") from None
    if values and values[0] < 1:
        raise ValueError(f"scales must be positive, got {values[0]}")
    if max_scale is not None and values and values[-1] > max_scale:
        raise ValueError(f"scales must be <= {max_scale} (a view of scale s renders an s x s image, about 70 bytes "
                         f"per pixel on CPU; the paper's largest is 1024), got {values[-1]}")
    return ViewGrid(scales=tuple(values), grid=grid, crop=crop)


# ================================================================================================
# Data
# ================================================================================================
def _is_source(obj) -> bool:
    from zoomstudy import data

    return isinstance(obj, data.Source) or (hasattr(obj, "provenance") and hasattr(obj, "shard"))  # e.g. WorldSource


@dataclass(frozen=True)
class DataRoute:
    """Which door a dataset text opens (`route_data`), found without opening anything.

    kind: "scheme" (a registered data scheme: name is the scheme), "registry" (name: the registry
    name), "folder" (an existing folder of images), "source" (a source spec: name is its scheme,
    "csv", "folder", "hf", "synthetic"), or "unknown"."""

    kind: str
    name: str


def route_data(text: str) -> DataRoute:
    """The one routing of dataset texts, shared by `open_data` and `check_data` (the CLI's check).
    In order: a registered data scheme, a registry name or alias, an existing folder, a source spec."""
    from zoomstudy.data.registry import SOURCE_SCHEMES, data_scheme, dataset_spec

    text = str(text)
    scheme = data_scheme(text)
    if scheme is not None:
        return DataRoute("scheme", scheme.name)
    spec = dataset_spec(text)
    if spec is not None:
        return DataRoute("registry", spec.name)
    if Path(text).expanduser().is_dir():
        return DataRoute("folder", text)
    head, sep, _ = text.partition(":")
    if sep and head in SOURCE_SCHEMES:
        return DataRoute("source", head)
    return DataRoute("unknown", text)


def check_data(dataset: str) -> DataRoute:
    """`route_data`, with the cheap checks of what it names (no listing, no decoding): a csv: / folder:
    spec's folder exists, and an unknown text is refused naming what is known. Raises ValueError."""
    from zoomstudy.data.registry import DATA_SCHEMES, DATASETS

    text = str(dataset)
    route = route_data(text)
    if route.kind == "source" and route.name in ("csv", "folder"):
        rest = text.partition(":")[2]
        folder = rest if route.name == "folder" or Path(rest).exists() else rest.partition(":")[0]
        if not folder or not Path(folder).expanduser().is_dir():
            raise ValueError(f"dataset {text}: folder {folder or '(none)'} does not exist")
    if route.kind == "unknown":
        schemes = "".join(f", {name}:..." for name in DATA_SCHEMES)
        raise ValueError(f"unknown dataset {text!r}: give a registry name ({', '.join(sorted(DATASETS))}), csv:DIR, "
                         f"folder:DIR, hf:REPO@REV:split, synthetic:N{schemes} or a folder of images")
    return route


def open_data(dataset, root: str | os.PathLike | None = None, *, labels_csv: str | os.PathLike | None = None,
              max_images: int | None = None, **kw):
    """A `zoomstudy.data` source from what a user has at hand.

    dataset: a source object (returned as it is, e.g. a `WorldSource`); a name of the registry
    (`data.DATASETS`, read from root, data/<folder> or $ZOOMSTUDY_DATA/<folder>, its environment
    variable or the hub); a name of a registered data scheme (`data.registry.register_data_scheme`: the
    controlled experiment's "world:REGIME", "world-hard:N", ..., kw to its opener); a folder of images
    (with labels_csv: `CsvSource(folder, labels_csv)`; with a labels.csv inside: `CsvSource`; else class sub-folders: `ImageFolderSource`, labels from synset folder names,
    integer names or sorted order); or a source spec ("csv:DIR", "folder:DIR", "hf:REPO@REV:split",
    "synthetic:N"). kw go to the source's constructor. max_images: the caller reads at most the first
    max_images images: a hub dataset then downloads only the files holding them (`open_dataset`'s max_rows).
    """
    from zoomstudy import data

    if _is_source(dataset):
        if labels_csv is not None:
            raise ValueError("labels_csv applies to a folder of images, not to a source object")
        return dataset
    if dataset is None:
        raise ValueError("no images given: name a dataset, a source spec or a folder")
    text = str(dataset)
    path = Path(text).expanduser()
    if labels_csv is not None:
        if not path.is_dir():
            raise ValueError(f"{text} is not a folder of images (needed with a labels CSV)")
        return data.CsvSource(path, labels_csv, **kw)
    from zoomstudy.data.registry import DATA_SCHEMES, swept_dataset

    route = route_data(text)
    if route.kind == "scheme":
        return DATA_SCHEMES[route.name].opener(text, root, **kw)
    if route.kind == "registry":  # ReaL / IN+ReaL open the val images they relabel
        if max_images is not None:
            kw = {"max_rows": int(max_images), **kw}
        return data.open_dataset(swept_dataset(text), root=root, **kw)
    if route.kind == "folder":
        return data.open_source(str(path), **kw)
    if isinstance(dataset, os.PathLike) or (os.sep in text and ":" not in text):
        raise ValueError(f"image folder {text} does not exist")
    return data.open_source(text, **kw)



def resolve_label_space(dataset: str | None, label_space: str | None = None) -> str:
    """The label space to score `dataset` in: the explicit one when given, else the dataset's own
    (SPEC section 2: imagenet-a / imagenet-r -> their 200 classes, objectnet -> its 113 classes,
    everything else and csv:/folder: specs -> imagenet1k). One default for the CLI, the notebooks and
    the matrix, so that the same (model, dataset) always lands in the same result set."""
    if label_space:
        return label_space
    return dataset_label_space(dataset) if dataset else "imagenet1k"


# ================================================================================================
# Models
# ================================================================================================
def guess_architecture(checkpoint: str | os.PathLike) -> str:
    """'torchvision:NAME' for a checkpoint whose file name contains a torchvision classifier name
    (the longest that matches: squeezenet1_0_deepcompression.pt -> torchvision:squeezenet1_0).

    Only a guess from the name: loading is strict, so a wrong guess fails with the mismatching keys.
    Raises ValueError when no name matches (then pass the model explicitly).
    """
    import torchvision
    from torchvision.models import list_models

    stem = Path(checkpoint).name.lower()
    names = list_models(module=torchvision.models)
    # a name counts only as a whole token: resnet50 must not match resnet50_2's "resnet5"
    hits = [n for n in names if re.search(rf"(?<![a-z0-9]){re.escape(n)}(?![0-9])", stem)]
    if not hits:
        raise ValueError(f"cannot tell the architecture of {Path(checkpoint).name} from its name; "
                         "pass --model (e.g. torchvision:resnet50) with --checkpoint")
    return f"torchvision:{max(hits, key=len)}"


def model_spec(model, checkpoint: str | os.PathLike | None = None) -> str:
    """The name a model argument of `open_model` stands for: the name given, a loaded model's
    architecture, or the architecture guessed from the checkpoint's file name (model None)."""
    from zoomstudy.models.loading import LoadedModel

    if isinstance(model, LoadedModel):
        return model.architecture or f"{model.source}:{model.name}"
    if model is None:
        if checkpoint is None:
            raise ValueError("give a model name, a checkpoint, or both")
        return guess_architecture(checkpoint)
    if not isinstance(model, str):
        raise ValueError(f"model must be a name or a LoadedModel, got {type(model).__name__}")
    return model


def check_model_name(spec: str) -> None:
    """A model name `open_model` can open, checked without building anything: a registered scheme's
    ("world:REGIME") or one the loader resolves (`models.loading.resolve_spec`). Raises ValueError."""
    from zoomstudy.models.loading import model_scheme, resolve_spec

    if model_scheme(spec) is None:
        resolve_spec(spec)


def open_model(model, checkpoint: str | os.PathLike | None = None, *, label_space: str | None = None,
               device: str | None = None, amp: str | None = None, pretrained: bool = True,
               dataset: str | None = None, **scheme_kw):
    """A `LoadedModel` from a name, a checkpoint or both, or a loaded model as it is.

    model: "torchvision:NAME", "timm:NAME.TAG", a paper model ("resnet50"), a name of a registered
    model scheme (`models.loading.register_model_scheme`; the controlled experiment's "world:REGIME",
    trained here and cached; scheme_kw go to its opener: seed, training, cache, spec_kw of
    `experiment.runs.world_model`), a `LoadedModel` (returned unchanged), or None with a checkpoint
    whose file name tells the architecture (`guess_architecture`). pretrained=False (and no
    checkpoint) builds random weights. label_space None: the dataset's own (`resolve_label_space`),
    imagenet1k without a dataset. A model's class names travel with its label space (the world's:
    "disc", ...; `data.labels.class_names_of`).
    """
    from zoomstudy.models.loading import LoadedModel, load_model, model_scheme

    if isinstance(model, LoadedModel):
        if checkpoint is not None:
            raise ValueError("checkpoint applies to a model name, not to a loaded model")
        return model
    spec = model_spec(model, checkpoint)
    opener = model_scheme(spec)
    if opener is not None:  # a later stage's model (the experiment's, trained here and cached)
        return opener(spec, device=device, **scheme_kw)
    if scheme_kw:
        raise ValueError(f"{sorted(scheme_kw)} apply to the models of a registered scheme only (world:REGIME)")
    return load_model(spec, checkpoint=checkpoint, label_space=resolve_label_space(dataset, label_space),
                      device=device, amp=amp, pretrained=pretrained and checkpoint is None)


# ================================================================================================
# Results
# ================================================================================================
def ensure_results(model: str, dataset: str, *, checkpoint: str | None = None, root: str | None = None,
                   scales=None, grid: int = 3, crop: int = 224, results_dir: str | Path = "results",
                   label_space: str | None = None, max_images: int | None = None, pretrained: bool = True,
                   device: str | None = None, batch_size: int = 512, workers: int | None = None,
                   progress: bool = True, data_kw: dict | None = None, amp: str | None = None, **sweep_kw):
    """Load the model and the data, then run the sweep or resume it (a finished one computes nothing).

    label_space None: the dataset's own. An explicit different one is allowed: the model's label
    space is part of the result set's key and of settings.json, next to the dataset's, so the two can
    be told apart (`label_space_note`). ReaL and IN+ReaL return the val sweep, relabelled at analysis
    time: the 50,000 images are swept once for the three columns.
    data_kw: keywords for the dataset (expected_rows=, revision=, cache_dir=, ...).
    amp: "bf16" / "fp16": the forward under CUDA autocast (in the result set's key); None: float32.
    """
    from zoomstudy.data.registry import relabel_results
    from zoomstudy.sweep.engine import sweep_to_store

    view_grid = make_grid(scales, grid, crop)  # bad grids fail here, before any loading
    # row counts and pins are checked before the model loads; a hub dataset fetches only the files it reads
    src = open_data(dataset, root, max_images=max_images, **(data_kw or {}))
    m = open_model(model, checkpoint, label_space=label_space, device=device, pretrained=pretrained, dataset=dataset,
                   amp=amp)
    rs = sweep_to_store(m, src, view_grid, results_dir, max_images=max_images, batch_size=batch_size,
               workers=workers, progress=progress, **sweep_kw)
    return relabel_results(rs, dataset)


def memo_table(model: str, dataset: str, checkpoint: str | None = None, *, root: str | None = None,
               pretrained: bool = True, label_space: str | None = None, device: str | None = None,
               max_images: int | None = None, data_kw: dict | None = None, **memo_kw):
    """Table 5 by name: open the model (in the dataset's label space unless given; random weights drawn
    under torch seed 0, so a stored table and its rerun use the same model) and the data (a hub dataset
    fetches only the files read), then `analysis.table5.memo_table` (stored, resumable)."""
    import torch

    from zoomstudy.analysis import table5

    args = table5.table_arguments(max_images=max_images, **memo_kw)  # bad settings fail here, before anything loads
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = open_model(model, checkpoint, label_space=label_space or dataset_label_space(dataset), device=device,
                       pretrained=pretrained)
    src = open_data(dataset, root, max_images=max_images, **(data_kw or {}))
    return table5.memo_table(m, src, **args)


def label_space_note(settings: dict) -> str | None:
    """One line when a result set was scored in a label space other than its dataset's default, else None."""
    key = settings.get("key", settings)
    used = (key.get("model", {}).get("label_space") or {}).get("name")
    ds = key.get("dataset", {})
    name = ds.get("swept_as") or ds.get("name")
    from zoomstudy.data.registry import scheme_label_space

    default = (scheme_label_space(ds) or (ds.get("dataset") or {}).get("label_space")
               or resolve_label_space(name))
    if used and used != default:
        return f"scored in label space {used!r}, not the dataset's own {default!r} (given explicitly)"
    return None
