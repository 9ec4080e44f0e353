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
    if dataset in data.DATASETS:
        return data.open_dataset(dataset, root=root, **kw)
    return data.open_source(dataset, **kw)


def open_model(model: str, checkpoint: str | None = None, *, label_space: str = "imagenet1k",
               device: str | None = None, amp: str | None = None, pretrained: bool = True):
    from zoomstudy.models.loading import load_model

    from zoomstudy.report.tables import use_class_names

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
                   label_space: str = "imagenet1k", max_images: int | None = None, pretrained: bool = True,
                   device: str | None = None, batch_size: int = 512, workers: int | None = None,
                   progress: bool = True, **sweep_kw):
    """Load the model and the data, then run the sweep or resume it (a finished one computes nothing)."""
    from zoomstudy.sweep.engine import sweep

    view_grid = make_grid(scales, grid, crop)  # bad grids fail here, before any loading
    m = open_model(model, checkpoint, label_space=label_space, device=device, pretrained=pretrained)
    src = open_data(dataset, root)
    return sweep(m, src, view_grid, results_dir, max_images=max_images, batch_size=batch_size,
                 workers=workers, progress=progress, **sweep_kw)
