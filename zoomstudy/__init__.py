"""zoomstudy: how image classifiers handle zoom, position and cropping.

A reproducible study package for "ImageNet-Hard: The Hardest Images Remaining from a Study of the
Power of Zoom and Spatial Biases in Image Classification" (Taesiri et al., NeurIPS 2023). Data flows
one way: data and model -> views -> sweep -> store -> analyses -> figures and reports.

Submodules import lazily, so `import zoomstudy` stays cheap (no torch until it is needed).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_API = {
    # stage 1: data and model
    "open_dataset": "data.registry", "open_source": "data.registry", "DATASETS": "data.registry",
    "load_image": "data.sources", "get_label_space": "data.labels", "load_model": "models.loading",
    # stage 2: views
    "ViewGrid": "views", "PAPER_SCALES": "views", "render_views": "views", "render_views_reference": "views",
    # stages 3-4: sweep and store
    "run_sweep": "sweep.engine:sweep", "ResultSet": "sweep.store", "find_results": "sweep.store",
    # stage 5: analyses
    "summarize": "analysis.bounds", "table1": "analysis.bounds",
    # the one entry layer shared by the CLI and the notebooks
    "ensure_results": "study", "open_model": "study", "open_data": "study", "make_grid": "study",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        module, _, attr = _API[name].partition(":")
        return getattr(importlib.import_module(f".{module}", __name__), attr or name)
    raise AttributeError(f"module 'zoomstudy' has no attribute {name!r}")
