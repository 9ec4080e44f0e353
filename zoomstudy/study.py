"""Plain-value entry points shared by the CLI and the notebooks: names and numbers in, results out.

A notebook's parameters cell holds strings and numbers (papermill injects them); these functions turn
them into a model, a source and a grid, and run or resume the sweep, so notebooks stay thin and the
logic stays testable.
"""
from __future__ import annotations

from pathlib import Path

from zoomstudy.views import PAPER_SCALES, ViewGrid


def make_grid(scales=None, grid: int = 3, crop: int = 224) -> ViewGrid:
    """scales None -> the paper's 36 scales (rescaled to `crop` when crop != 224)."""
    if scales is None or scales == "paper":
        return ViewGrid.paper() if crop == 224 and grid == 3 else ViewGrid(
            scales=ViewGrid.scaled(crop).scales, grid=grid, crop=crop)
    return ViewGrid(scales=tuple(int(s) for s in scales), grid=int(grid), crop=int(crop))


def open_data(dataset: str, root: str | None = None, **kw):
    """A dataset name of the registry (with an optional local root) or a source spec
    ('csv:DIR', 'folder:DIR', 'hf:REPO@REV:split', 'synthetic:N', 'world:REGIME')."""
    from zoomstudy import data

    if dataset.startswith("world"):  # the controlled experiment's data (world:REGIME, world-photo:N, ...)
        from zoomstudy.experiment.runs import open_world_data

        world = open_world_data(dataset, root, **kw)
        if world is not None:
            return world
    from zoomstudy.data.registry import dataset_spec, swept_dataset

    if dataset_spec(dataset) is not None:  # ReaL / IN+ReaL open the val images they relabel
        return data.open_dataset(swept_dataset(dataset), root=root, **kw)
    return data.open_source(dataset, **kw)


def resolve_label_space(dataset: str | None, label_space: str | None = None) -> str:
    """The label space to score `dataset` in: the explicit one when given, else the dataset's own
    (SPEC section 2: imagenet-a / imagenet-r -> their 200 classes, objectnet -> its 113 classes,
    everything else and csv:/folder: specs -> imagenet1k). One default for the CLI, the notebooks and
    the matrix, so that the same (model, dataset) always lands in the same result set."""
    from zoomstudy.data.registry import dataset_label_space

    if label_space:
        return label_space
    return dataset_label_space(dataset) if dataset else "imagenet1k"


def open_model(model: str, checkpoint: str | None = None, *, label_space: str | None = None,
               device: str | None = None, amp: str | None = None, pretrained: bool = True,
               dataset: str | None = None):
    """label_space None: the dataset's own (see `resolve_label_space`), imagenet1k without a dataset."""
    from zoomstudy.models.loading import load_model

    from zoomstudy.report.tables import use_class_names

    label_space = resolve_label_space(dataset, label_space)

    if model.startswith("world:"):  # a model of the controlled experiment, trained here (cached)
        from zoomstudy.experiment.runs import open_world_model

        m = open_world_model(model, device=device)
    else:
        m = load_model(model, checkpoint=checkpoint, label_space=label_space, device=device, amp=amp,
                       pretrained=pretrained and checkpoint is None)
    use_class_names(m)  # reports name the classes of the model they analyse (the world's: "disc", ...)
    return m


def ensure_results(model: str, dataset: str, *, checkpoint: str | None = None, root: str | None = None,
                   scales=None, grid: int = 3, crop: int = 224, results_dir: str | Path = "results",
                   label_space: str | None = None, max_images: int | None = None, pretrained: bool = True,
                   device: str | None = None, batch_size: int = 512, workers: int | None = None,
                   progress: bool = True, data_kw: dict | None = None, **sweep_kw):
    """Load the model and the data, then run the sweep or resume it (a finished one computes nothing).

    label_space None: the dataset's own. An explicit different one is allowed: the model's label
    space is part of the result set's key and of settings.json, next to the dataset's, so the two can
    be told apart (`label_space_note`). ReaL and IN+ReaL return the val sweep, relabelled at analysis
    time: the 50,000 images are swept once for the three columns.
    data_kw: keywords for the dataset (expected_rows=, revision=, cache_dir=, ...).
    """
    from zoomstudy.data.registry import relabel_results
    from zoomstudy.sweep.engine import sweep

    view_grid = make_grid(scales, grid, crop)  # bad grids fail here, before any loading
    src = open_data(dataset, root, **(data_kw or {}))  # row counts and pins are checked before the model loads
    m = open_model(model, checkpoint, label_space=label_space, device=device, pretrained=pretrained, dataset=dataset)
    rs = sweep(m, src, view_grid, results_dir, max_images=max_images, batch_size=batch_size,
               workers=workers, progress=progress, **sweep_kw)
    return relabel_results(rs, dataset)


def label_space_note(settings: dict) -> str | None:
    """One line when a result set was scored in a label space other than its dataset's default, else None."""
    key = settings.get("key", settings)
    used = (key.get("model", {}).get("label_space") or {}).get("name")
    ds = key.get("dataset", {})
    name = ds.get("swept_as") or ds.get("name")
    default = (ds.get("dataset") or {}).get("label_space") or resolve_label_space(name)
    if used and used != default:
        return f"scored in label space {used!r}, not the dataset's own {default!r} (given explicitly)"
    return None
