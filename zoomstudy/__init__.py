"""zoomstudy: how image classifiers handle zoom, position and cropping.

A reproducible study package for "ImageNet-Hard: The Hardest Images Remaining from a Study of the
Power of Zoom and Spatial Biases in Image Classification" (Taesiri et al., NeurIPS 2023). Data flows
one way, and the sub-packages follow it (`STAGES` below; tests/test_architecture.py checks every
import against it): the leaves (`provenance`, `constants`, `keyed`) -> data and model (`data`,
`models`) -> views (`views`) -> sweep and store (`sweep`) -> analyses (`analysis`, and the controlled
experiment in `experiment`) -> `study`, the one entry layer that turns names into objects -> `matrix`,
which plans and runs the paper's whole matrix of sweeps -> figures and reports (`report`) -> `cli`.

The public API (``import zoomstudy``; each name loads its sub-module on first use, so the import
itself stays cheap: no torch until a name needs it). One door each: the entry layer's openers accept
everything the lower functions do (`data.registry.open_dataset` / `open_source`, `models.loading.
load_model`, `sweep.engine.sweep_to_store`), which stay their modules' own API, not the package's.

Entry layer (names and numbers in, objects and results out)
    open_model       a model name, a checkpoint, or both -> a `LoadedModel` (study.open_model)
    open_data        a dataset name, a source spec or a folder of images -> a source (study.open_data)
    make_grid        a named scale set ("paper", "compact") or a list of scales -> a `ViewGrid`
    ensure_results   model + data + grid -> the stored sweep, run or resumed (a `ResultSet`)

Stage 1: data and model
    DATASETS         the registry of the paper's datasets (folder, size, label space, how to obtain)
    load_image       decode one image robustly (RGB, 16-bit and float images scaled, clear errors)
    get_label_space  the ImageNet-1k classes a dataset is scored in ("imagenet-a", "objectnet", ...)

Stage 2: views
    ViewGrid         the views of the paper: scales x anchors, crop size, view numbering
    PAPER_SCALES     the paper's 36 scales
    render_views     every view of an image, PIL-exact, on the image's device (fast)

Stages 3 and 4: sweep and store
    ResultSet        one stored sweep: settings, predictions, correctness
    find_results     the result sets under a results folder
    ZoomTTA          a fixed set of zoom views as one torch module: render, forward once, aggregate

Stage 5: analyses
    bound_metrics    the 1-crop, oracle and greedy top-N figures of a correctness matrix, tidy
    summarize        every section-3 number of one correctness matrix (bounds, cover, anchors, groups)
    table1           Table 1 as a tidy DataFrame, one row per (model, dataset)
    tta_table        Table 4: test-time aggregation of a stored sweep, with intervals and tests
    budget_curve     accuracy against the number of views, cross-validated, with intervals (the view budget)
    memo_table       Table 5: MEMO test-time adaptation over a dataset, stored and resumable (by name:
                     study.memo_table opens the model and data for analysis.table5.memo_table)

Stage 6: reports
    profile          one model's zoom and position sensitivity as profile.html + profile.json
    reproduce        run the notebooks headless with one profile and publish the report site
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: The stages in data-flow order: a module may import its own stage and the stages before it, never a
#: later one, not even lazily (tests/test_architecture.py walks every import against this). The leaves
#: come first: provenance, the normalisation constants and the atomic writes / keyed caches.
STAGES: tuple[tuple[str, ...], ...] = (
    ("provenance", "constants", "keyed"),
    ("data", "models"),
    ("views",),
    ("sweep",),
    ("analysis", "experiment"),
    ("study",),
    ("matrix",),
    ("report",),
    ("cli",),
)

#: public name -> "sub-module" or "sub-module:attribute" that defines it (in the docstring's order).
_API = {
    # entry layer
    "open_model": "study", "open_data": "study", "make_grid": "study", "ensure_results": "study",
    # stage 1: data and model
    "DATASETS": "data.registry", "load_image": "data.decode", "get_label_space": "data.labels",
    # stage 2: views
    "ViewGrid": "views", "PAPER_SCALES": "views", "render_views": "views",
    # stages 3-4: sweep and store
    "ResultSet": "sweep.store", "find_results": "sweep.store",
    "ZoomTTA": "sweep.zoomtta",
    # stage 5: analyses
    "bound_metrics": "analysis.bounds", "summarize": "analysis.bounds", "table1": "analysis.bounds",
    "tta_table": "analysis.tta", "budget_curve": "analysis.budget", "memo_table": "study",
    # stage 6: reports
    "profile": "report.model_profile", "reproduce": "report.notebooks",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        module, _, attr = _API[name].partition(":")
        value = getattr(importlib.import_module(f".{module}", __name__), attr or name)
        globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'zoomstudy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
