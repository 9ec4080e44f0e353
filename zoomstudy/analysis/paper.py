"""The numbers the paper reports (SPEC section 7) and the real-data kit's reference figures, as tidy
DataFrames, so a notebook can put a reproduction next to its target with one merge.

Tables are kept as the text they were transcribed from and parsed at import: the literal rows are easy
to check against SPEC.md line by line (the tests do so when SPEC.md is at hand). All values are top-1 %.
Dataset and model names follow the paper's table headers; `DATASET_KEYS` and `MODEL_ALIASES` are the one
table from this package's names to the paper's (`to_paper_names`, `paper_model_name`, `paper_names`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

DATASETS: tuple[str, ...] = ("IN", "ReaL", "IN+ReaL", "IN-A", "IN-R", "IN-Sketch", "ObjectNet")
MODELS: tuple[str, ...] = ("AlexNet", "VGG-16", "ResNet-18", "ResNet-50", "ViT-B/32", "CLIP ViT-L/14")
#: Paper name -> this package's dataset registry key (`data.DATASETS`).
DATASET_KEYS: dict[str, str] = {
    "IN": "imagenet-val", "ReaL": "imagenet-real", "IN+ReaL": "imagenet+real", "IN-A": "imagenet-a",
    "IN-R": "imagenet-r", "IN-Sketch": "imagenet-sketch", "ObjectNet": "objectnet",
}
#: The one table of model names: paper name -> the identifiers (torchvision, timm, open_clip) that name
#: it. The first is the spec this package loads it with (`study.open_model`: a `models.loading.MODELS`
#: name, "torchvision:NAME", "timm:NAME.TAG" or a CLIP entry);
#: `paper_model_name` matches all of them ignoring case and punctuation. Only weights at the paper's
#: resolution: timm's tf_efficientnet_l2.ns_jft_in1k_475 is the 475 px variant, not the paper's 800 px
#: model, so it is deliberately absent.
MODEL_ALIASES: dict[str, tuple[str, ...]] = {
    "AlexNet": ("alexnet",),
    "VGG-16": ("vgg16",),
    "VGG-19": ("torchvision:vgg19", "vgg19", "vgg19.tv_in1k"),
    "ResNet-18": ("resnet18", "resnet18.tv_in1k"),
    "ResNet-50": ("resnet50", "resnet50.tv_in1k"),
    "ViT-B/32": ("vit_b_32",),
    "EfficientNet-B0": ("efficientnet_b0", "tf_efficientnet_b0"),
    "EfficientNet-L2-NS": ("timm:tf_efficientnet_l2.ns_jft_in1k", "tf_efficientnet_l2_ns",
                           "tf_efficientnet_l2.ns_jft_in1k", "efficientnet-l2-ns (800 px)"),
    "CLIP ViT-L/14": ("clip-vit-l-14", "ViT-L-14", "ViT-L-14/openai", "openai/ViT-L-14", "clip_vit_l_14",
                      "ViT-L-14@openai", "clip:ViT-L-14@openai"),
    "OpenCLIP ViT-bigG-14": ("openclip-vit-bigg-14", "ViT-bigG-14", "ViT-bigG-14/laion2b_s39b_b160k",
                             "ViT-bigG-14@laion2b_s39b_b160k", "clip:ViT-bigG-14@laion2b_s39b_b160k"),
}
#: Paper name -> this package's model key, for the models of Table 1 (`MODELS`).
MODEL_KEYS: dict[str, str] = {m: MODEL_ALIASES[m][0] for m in MODELS}

# SPEC section 7, Table 1 (standard 1-crop / upper bound N = 324), verbatim.
_TABLE1_MD = """
| AlexNet | 56.16 / 90.03 | 62.67 / 93.85 | 61.76 / 93.48 | 1.75 / 42.23 | 21.10 / 55.52 | 10.05 / 29.53 | 14.23 / 59.65 |
| VGG-16 | 71.37 / 95.30 | 78.90 / 97.90 | 78.52 / 97.66 | 2.69 / 58.27 | 26.98 / 60.88 | 16.78 / 39.90 | 28.32 / 71.85 |
| ResNet-18 | 69.45 / 95.15 | 76.94 / 97.76 | 76.47 / 97.55 | 1.37 / 58.87 | 32.14 / 66.89 | 19.41 / 43.68 | 27.59 / 71.44 |
| ResNet-50 | 75.75 / 96.78 | 82.63 / 98.62 | 82.97 / 98.57 | 0.21 / 66.68 | 35.39 / 68.84 | 22.91 / 47.64 | 36.18 / 76.83 |
| ViT-B/32 | 75.75 / 97.19 | 81.89 / 98.75 | 82.59 / 98.91 | 9.64 / 78.03 | 41.29 / 75.58 | 26.83 / 55.99 | 30.89 / 79.28 |
| CLIP ViT-L/14 | 75.03 / 96.78 | 80.68 / 98.69 | 81.95 / 98.80 | 71.28 / 98.45 | 87.74 / 99.20 | 58.23 / 89.00 | 66.32 / 93.13 |
"""

# Table 1, upper bound N = 36 (greedy cover selected on the test set), in DATASETS order.
_TABLE1_TOP36 = {
    "ResNet-50": (94.46, 97.36, 97.40, 55.68, 61.42, 41.71, 69.60),
    "ViT-B/32": (95.05, 97.61, 97.88, 68.43, 68.77, 49.10, 70.30),
}

# Per-anchor bound of ResNet-50, rows top to bottom (image layout).
_PER_ANCHOR = {
    "IN": "80.57 85.18 81.09 / 85.56 89.90 85.81 / 81.74 86.16 82.22",
    "IN-A": "15.80 18.68 16.12 / 19.41 36.27 18.51 / 17.07 20.43 16.93",
    "ObjectNet": "35.87 36.84 35.85 / 54.45 64.62 54.99 / 37.50 39.03 37.36",
}

# Table 5 (ResNet-50 / DeepAugment+AugMix / MoEx+CutMix), verbatim.
TABLE5_MODELS: tuple[str, ...] = ("ResNet-50", "DeepAugment+AugMix", "MoEx+CutMix")
_TABLE5_DATASETS: tuple[str, ...] = ("IN", "IN-A", "IN-R", "IN-Sketch", "ObjectNet")
_TABLE5_MD = """
| baseline | 76.13 / 75.82 / 79.04 | 0.00 / 3.87 / 7.97 | 36.17 / 46.77 / 35.52 | 24.09 / 32.62 / 23.96 | 35.92 / 34.81 / 38.59 |
| MEMO + AugMix | 77.27 / 76.27 / 79.38 | 0.83 / 5.35 / 11.21 | 41.28 / 50.79 / 40.65 | 27.63 / 35.70 / 27.07 | 38.38 / 36.42 / 40.62 |
| MEMO + RRC | 77.50 / 76.38 / 79.49 | 1.31 / 5.76 / 13.61 | 40.81 / 50.88 / 40.41 | 27.53 / 35.65 / 26.80 | 38.85 / 36.64 / 41.43 |
"""


def _md_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.strip().splitlines()]


def _slash_table(md: str, header: Sequence[str]) -> list[tuple[str, str, list[float]]]:
    """Parse '| key | a / b | ... |' rows into (key, column, [a, b, ...]) records."""
    records = []
    for cells in _md_rows(md):
        key, values = cells[0], cells[1:]
        if len(values) != len(header):
            raise ValueError(f"row {key!r} has {len(values)} cells, expected {len(header)}")
        for col, cell in zip(header, values):
            parts = [float(x) for x in cell.split("/")]
            records.append((key, col, parts))
    return records


def _table1() -> pd.DataFrame:
    rows = [
        {"model": m, "dataset": d, "standard": v[0], "upper_324": v[1]}
        for m, d, v in _slash_table(_TABLE1_MD, DATASETS)
    ]
    return pd.DataFrame(rows)


def _table1_top36() -> pd.DataFrame:
    rows = [{"model": m, "dataset": d, "upper_36": x} for m, vals in _TABLE1_TOP36.items() for d, x in zip(DATASETS, vals)]
    return pd.DataFrame(rows)


def _per_anchor() -> pd.DataFrame:
    rows = []
    for d, text in _PER_ANCHOR.items():
        for r, line in enumerate(text.split("/")):
            for c, x in enumerate(line.split()):
                rows.append({"model": "ResNet-50", "dataset": d, "row": r, "col": c, "bound": float(x)})
    return pd.DataFrame(rows)


def _table5() -> pd.DataFrame:
    rows = [
        {"method": meth, "model": model, "dataset": d, "top1": x}
        for meth, d, vals in _slash_table(_TABLE5_MD, _TABLE5_DATASETS)
        for model, x in zip(TABLE5_MODELS, vals)
    ]
    return pd.DataFrame(rows)


#: Table 1: model, dataset, standard (1-crop %), upper_324 (any of the 324 views %).
TABLE1: pd.DataFrame = _table1()
#: Table 1, N = 36 greedy bound (reported for ResNet-50 and ViT-B/32 only): model, dataset, upper_36.
TABLE1_TOP36: pd.DataFrame = _table1_top36()
#: Per-anchor bound heatmaps of ResNet-50: model, dataset, row (0 = top), col (0 = left), bound.
PER_ANCHOR: pd.DataFrame = _per_anchor()
#: Share of the top-36 views at the centre anchor, averaged over datasets and models (uniform: 100/9).
CENTER_SHARE_TOP36: float = 26.65
#: Table 4 (test-time aggregation without training, ViT-B/32): model, dataset, group, aggregation, top1.
#: 'mean' = argmax of the averaged softmax, 'max' = the most confident single view; 1-crop has none.
TABLE4: pd.DataFrame = pd.DataFrame(
    [
        ("ViT-B/32", "IN", "1-crop", "none", 75.75),
        ("ViT-B/32", "IN", "zoom_in", "mean", 79.31),
        ("ViT-B/32", "IN", "zoom_in", "max", 74.35),
        ("ViT-B/32", "IN", "zoom_out", "mean", 69.47),
        ("ViT-B/32", "IN", "5-crop", "mean", 77.73),
        ("ViT-B/32", "IN", "10-crop", "mean", 77.87),
        ("ViT-B/32", "IN-A", "1-crop", "none", 9.64),
        ("ViT-B/32", "IN-A", "zoom_in", "max", 24.69),
    ],
    columns=["model", "dataset", "group", "aggregation", "top1"],
)
#: Table 5 (MEMO test-time adaptation): method, model, dataset, top1. The baseline uses bilinear
#: Resize 256 (76.13 on IN), the sweep bicubic (75.75).
TABLE5: pd.DataFrame = _table5()
#: MEMO speed reported in the text (hardware not stated): method, seconds_per_image.
MEMO_SPEED: pd.DataFrame = pd.DataFrame(
    [("MEMO + RRC", 0.65), ("MEMO + AugMix", 1.15)], columns=["method", "seconds_per_image"]
)
#: ImageNet-Hard size (final Hugging Face revision).
IMAGENET_HARD_SIZE: int = 10_980
#: ImageNet-Hard top-1 %: model, top1, input (px; EfficientNet-L2-NS at 800, CLIP models with their own).
IMAGENET_HARD: pd.DataFrame = pd.DataFrame(
    [
        ("AlexNet", 7.34, 224),
        ("VGG-19", 11.99, 224),
        ("ResNet-18", 10.86, 224),
        ("ResNet-50", 14.74, 224),
        ("ViT-B/32", 18.52, 224),
        ("EfficientNet-B0", 16.57, 224),
        ("EfficientNet-L2-NS", 39.00, 800),
        ("CLIP ViT-L/14", 1.86, 224),
        ("OpenCLIP ViT-bigG-14", 15.93, 224),
    ],
    columns=["model", "top1", "input"],
)

#: The real-data kit's reference figures (/work/shared/realdata/README.md): SqueezeNet 1.0 (Deep
#: Compression) on its 100 ImageNet images, the paper's 324 views. Tidy: metric, row, col, value;
#: row / col are set only for the per-anchor bound. `cover_length` is the number of views after which
#: the greedy cover is complete; the centre share is of those views (5 of 14, printed as 35.7).
REALDATA_REFERENCE: pd.DataFrame = pd.DataFrame(
    [("standard", None, None, 61.0), ("upper_324", None, None, 94.0), ("upper_36", None, None, 94.0),
     ("cover_length", None, None, 14.0), ("cover_center_views", None, None, 5.0),
     ("center_share", None, None, 35.7)]
    + [
        ("anchor_bound", r, c, float(x))
        for r, line in enumerate("57.0 76.0 61.0 / 68.0 83.0 67.0 / 51.0 63.0 54.0".split("/"))
        for c, x in enumerate(line.split())
    ],
    columns=["metric", "row", "col", "value"],
).astype({"row": "Int64", "col": "Int64"})
REALDATA_MODEL = "SqueezeNet 1.0 (Deep Compression)"
REALDATA_DATASET = "imagenet-sample-100"


def anchor_grid(table: pd.DataFrame, value: str = "bound", **where) -> np.ndarray:
    """float [g, g] heatmap (row 0 = top) from a tidy per-anchor table, e.g. anchor_grid(PER_ANCHOR, dataset='IN')."""
    sel = table
    for k, v in where.items():
        sel = sel[sel[k] == v]
    sel = sel.dropna(subset=["row", "col"])
    if sel.empty:
        raise ValueError(f"no per-anchor rows match {where}")
    g = int(sel["row"].max()) + 1
    out = np.full((g, int(sel["col"].max()) + 1), np.nan)
    out[sel["row"].astype(int).to_numpy(), sel["col"].astype(int).to_numpy()] = sel[value].to_numpy(float)
    return out


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def paper_model_name(name: str, among: Iterable[str] | None = None) -> str | None:
    """The paper's name of a model identifier ("resnet50" -> "ResNet-50", `MODEL_ALIASES`), None when
    the paper has no such model (or, with `among`, none of those paper names)."""
    key = _name_key(name)
    allowed = None if among is None else set(among)
    for paper, aliases in MODEL_ALIASES.items():
        if allowed is not None and paper not in allowed:
            continue
        if key == _name_key(paper) or key in {_name_key(a) for a in aliases}:
            return paper
    return None


def paper_names(settings: Mapping) -> tuple[str, str]:
    """(model, dataset) of a stored run's settings in the paper's names (`to_paper_names`; names the
    paper does not use are kept)."""
    key = settings["key"]
    names = to_paper_names(pd.DataFrame({"model": [key["model"].get("name")], "dataset": [key["dataset"].get("name")]}))
    return str(names.loc[0, "model"]), str(names.loc[0, "dataset"])


def paper_weights(model: Mapping) -> bool:
    """A model provenance record names the torchvision V1 weights the paper used (not random weights,
    not a checkpoint)."""
    return model.get("source") == "torchvision" and str(model.get("weights_id")).endswith("IMAGENET1K_V1")


def to_paper_names(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with registry keys in the 'model' / 'dataset' columns renamed to the paper's names, so
    results keyed like the sweep line up with these tables in `report.plots.compare_frame` (unknown names
    are kept). Exact keys only (`MODEL_KEYS`, `DATASET_KEYS`); `paper_model_name` matches aliases loosely."""
    out = table.copy()
    for col, keys in (("model", MODEL_KEYS), ("dataset", DATASET_KEYS)):
        if col in out.columns:
            back = {v: k for k, v in keys.items()}
            out[col] = out[col].map(lambda x: back.get(x, x))
    return out
