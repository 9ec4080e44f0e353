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
    "ViewGrid": "views", "PAPER_SCALES": "views", "render_views": "views", "render_views_reference": "views",
    "load_model": "models", "LoadedModel": "models", "MODELS": "models",
    "LabelSpace": "labels", "get_label_space": "labels", "LABEL_SPACES": "labels",
    "open_source": "data", "open_dataset": "data", "DATASETS": "data", "load_image": "data",
    "sweep": "sweep", "ResultSet": "store", "find_results": "store",
    "summarize": "analysis", "table1": "analysis",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'zoomstudy' has no attribute {name!r}")
