"""Atomic writes and keyed caches: the two file primitives every stage uses (the sweep store, MEMO,
the profile's caches, training, the reports). A leaf below every stage: it imports nothing of zoomstudy.

A keyed cache stores a result under the hash of what can change it (`settings_key` of
``settings['key']``), and records where and on what it ran separately (``settings['provenance']``),
so the same result is found again on another machine, GPU or data path. `split_place` is that split
for a model's or a dataset's provenance (`MODEL_PLACE`, `DATASET_PLACE`: the fields that say where,
not what).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

#: Provenance fields that say where something was, not what it was: kept outside a key.
MODEL_PLACE = ("device", "weights_source")
DATASET_PLACE = ("location", "csv", "streaming")


def key_of(value, length: int = 16) -> str:
    """The first `length` hex digits of the sha256 of `value` as compact JSON with sorted keys (values
    JSON cannot hold are written with str()): the one hash rule of every keyed cache. `length` only
    exists so that caches keyed before this rule (the world's trainings and world-hard sets: 20) keep
    their keys, and so their stored files."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def settings_key(settings: dict) -> str:
    """Hash of the settings that can change a stored number (everything under settings['key']; what
    sits under settings['provenance'], where and on what it ran, stays out)."""
    return key_of(settings["key"])


def split_place(record: Mapping, place: Iterable[str]) -> tuple[dict, dict]:
    """(what, where) of a provenance record: the record without the `place` fields (for a key), and
    those fields (for the provenance beside it). E.g. ``split_place(model.provenance(), MODEL_PLACE)``."""
    what = dict(record)
    where = {k: what.pop(k) for k in place if k in what}
    return what, where


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], object], *, fsync: bool = False) -> Path:
    """Replace the file at `path` all at once: a reader, or a run killed midway, sees the old file or the
    whole new one, never a part of it. The one way the package writes a file that others may read.

    data: text (written as UTF-8), bytes, or a function that writes a file at the path it is given
    (``lambda tmp: df.to_parquet(tmp)``). The temporary file sits next to `path` (one folder, so the
    rename is atomic), is named ``<name>.<pid>-<random>.tmp`` (concurrent writers never share one; its
    name starts with the target's, so the shard that owns a part cleans its leftovers and nobody
    else's) and is removed when the write fails.
    fsync: flush the file to disk before the rename (the store's parts, which commit a sweep).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
