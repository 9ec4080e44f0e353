"""ImageNet-ReaL (Beyer et al. 2020): the relabelled ImageNet val sets, and the one rule that scores by them.

As timm's `data/real_labels.py`: ReaL gives each of the 50,000 val images a set of correct classes
(3,163 sets are empty: the images ReaL leaves out), indexed by the image's ILSVRC2012_val_XXXXXXXX
number. Two datasets of the paper score the val images by it (SPEC section 2):

* ``"real"`` (imagenet-real): the ReaL set; an image with an empty set is left out (46,837 remain);
* ``"imagenet+real"`` (IN+ReaL): the original label united with the ReaL set; every image is kept.

`real_label_set` is that rule for one image, and both places that relabel call it: opening the
dataset (`registry.open_dataset("imagenet-real")`, through `Source.relabel`) and scoring the val
sweep at analysis time (`registry.relabel_results`, through `ResultSet.relabelled`). Both read the
same table, `real_label_table()`: $ZOOMSTUDY_REAL_LABELS when it names a json in timm's format, else
timm's own `imagenet_real_labels.json`.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .labels import _timm_info

#: Environment variable naming a ReaL label file (a json list of lists, timm's format) to use instead of timm's.
REAL_LABELS_ENV = "ZOOMSTUDY_REAL_LABELS"
#: The rules of `real_label_set`: a `DatasetSpec.labels` value other than "original".
REAL_RULES = ("real", "imagenet+real")
#: The val number in an image id (a file name or a path ending in one); ReaL is indexed by it.
VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})")


@functools.lru_cache(maxsize=1)
def timm_real_labels() -> tuple[tuple[int, ...], ...]:
    """ImageNet-ReaL label sets of the 50,000 val images, in ILSVRC2012_val_00000001.. order.

    From timm's `imagenet_real_labels.json`; 3,163 sets are empty (the images ReaL leaves out).
    """
    raw = json.loads(_timm_info("imagenet_real_labels.json").read_text())
    if len(raw) != 50000:
        raise RuntimeError(f"timm's imagenet_real_labels.json has {len(raw)} entries, expected 50000")
    return tuple(tuple(sorted(set(int(v) for v in s))) for s in raw)


def real_label_table(path: str | os.PathLike | None = None) -> tuple[tuple[int, ...], ...]:
    """ReaL label sets indexed by val number - 1, from a json in timm's format (a list of lists, one
    per ILSVRC2012_val_XXXXXXXX image in number order); default $ZOOMSTUDY_REAL_LABELS, else timm's
    own `imagenet_real_labels.json` (the 50,000 sets of Beyer et al.)."""
    path = path or os.environ.get(REAL_LABELS_ENV)
    if not path:
        return timm_real_labels()
    file = Path(path).expanduser()
    return _read_real_json(str(file), file.stat().st_mtime_ns)  # parsed once per file version


@functools.lru_cache(maxsize=4)
def _read_real_json(path: str, mtime_ns: int) -> tuple[tuple[int, ...], ...]:
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, list) or not all(isinstance(x, list) for x in raw):
        raise ValueError(f"{path}: a ReaL label file is a json list of lists (timm's imagenet_real_labels.json format)")
    return tuple(tuple(sorted({int(v) for v in s})) for s in raw)


def real_table_name() -> str:
    """Where `real_label_table()` reads from now, for provenance notes."""
    return os.environ.get(REAL_LABELS_ENV) or "timm imagenet_real_labels.json"


def val_position(image_id: str) -> int:
    """0-based position of a val image in ReaL's table, from the ILSVRC2012_val_XXXXXXXX number in its id."""
    m = VAL_NUMBER.search(image_id)
    if m is None or not 1 <= int(m.group(1)) <= 50000:
        raise ValueError(f"image id {image_id!r} has no ILSVRC2012_val_XXXXXXXX number; ReaL labels are indexed by it")
    return int(m.group(1)) - 1


def real_label_set(rule: str, image_id: str, labels: Iterable[int], table: Sequence) -> tuple[int, ...]:
    """The label set of one val image under `rule`: "real" its ReaL set (empty: the image is left out),
    "imagenet+real" its original labels united with the ReaL set. table: `real_label_table()`."""
    if rule not in REAL_RULES:
        raise ValueError(f"real_label_set: rule must be one of {REAL_RULES}, got {rule!r}")
    pos = val_position(str(image_id))
    if pos >= len(table):
        raise ValueError(f"{image_id}: no ReaL entry (the ReaL table has {len(table)})")
    real = table[pos]
    return tuple(real) if rule == "real" else tuple(sorted(set(real) | {int(v) for v in labels}))


def real_label_sets(rule: str, image_ids, labels, table: Sequence | None = None
                    ) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """(label sets, keep bool [N]) of val images under `rule` (`real_label_set` for each); keep is False
    where the set is empty. table: default `real_label_table()`."""
    table = real_label_table() if table is None else table
    out = [real_label_set(rule, image_id, lab, table) for image_id, lab in zip(image_ids, labels)]
    return out, np.asarray([bool(s) for s in out], bool)
