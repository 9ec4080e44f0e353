"""The result store: one folder per result set, named by a hash of everything that produced it.

Layout (all Parquet, readable with `pandas.read_parquet(folder)` too):

    <results_dir>/<key>/settings.json          provenance: model, weights hash, preprocessing, label
                                               space, dataset source + fingerprint, grid, dtype,
                                               device, library versions, git commit; `key` hashes
                                               the part of it that can change a prediction
    <results_dir>/<key>/parts/<shard>-<n>.views.parquet   image_id, view, pred0..4 (int16 ImageNet-1k
                                               indices, best first), prob0..4 (float32 softmax)
    <results_dir>/<key>/parts/<shard>-<n>.groups.parquet  image_id, group, mean_pred, mean_prob,
                                               max_pred, max_prob (the TTA aggregations)
    <results_dir>/<key>/parts/<shard>-<n>.errors.parquet  image_id, position, reason
    <results_dir>/<key>/parts/<shard>-<n>.images.parquet  image_id, position, labels, width, height,
                                               meta (JSON); written LAST: it commits the part

A part counts only once its `.images` file exists (each file is written to a temporary name and
renamed, which is atomic), so a sweep killed at any moment leaves either a whole part or leftovers
that the next run deletes: no lost and no duplicated rows.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from zoomstudy.views import ViewGrid

#: Bump when the stored layout or the meaning of a column changes: old result sets then get new keys.
FORMAT_VERSION = 1
TABLES = ("views", "groups", "errors", "images")
_PART = re.compile(r"^(?P<part>.+)\.(?P<table>views|groups|errors|images)\.parquet$")


def settings_key(settings: dict) -> str:
    """Hash of the settings that can change a stored number (everything under settings['key'])."""
    blob = json.dumps(settings["key"], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], object], *, fsync: bool = False) -> Path:
    """Replace the file at `path` all at once: a reader, or a run killed midway, sees the old file or the
    whole new one, never a part of it. The one way the package writes a file that others may read.

    data: text (written as UTF-8), bytes, or a function that writes a file at the path it is given
    (``lambda tmp: df.to_parquet(tmp)``). The temporary file sits next to `path` (one folder, so the
    rename is atomic), is named ``.<name>.<pid>-<random>.tmp`` (concurrent writers never share one;
    `ResultSet.clean_uncommitted` removes leftovers) and is removed when the write fails.
    fsync: flush the file to disk before the rename (the store's parts, which commit a sweep).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
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


@dataclass
class ResultSet:
    """One sweep's results (model x dataset x grid x settings), on disk."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)

    # ---- creation and resume --------------------------------------------------------------------
    @classmethod
    def create(cls, results_dir: str | Path, settings: dict) -> "ResultSet":
        """Open the result set for `settings`, creating it; refuse one whose settings differ."""
        key = settings_key(settings)
        path = Path(results_dir) / key
        (path / "parts").mkdir(parents=True, exist_ok=True)
        settings = {**settings, "key_hash": key, "format_version": FORMAT_VERSION}
        target = path / "settings.json"
        if target.exists():
            old = json.loads(target.read_text())
            if old.get("key") != json.loads(json.dumps(settings["key"], default=str)):
                raise ValueError(f"result set {path} holds other settings (hash collision?); remove it")
        else:
            atomic_write(target, json.dumps(settings, indent=2, sort_keys=True, default=str))
        return cls(path)

    @cached_property
    def settings(self) -> dict:
        return json.loads((self.path / "settings.json").read_text())

    @property
    def grid(self) -> ViewGrid:
        return ViewGrid.from_dict(self.settings["key"]["grid"])

    def committed_parts(self) -> list[str]:
        """Parts whose `.images` file exists, in a stable order."""
        parts = self.path / "parts"
        if not parts.exists():
            return []
        return sorted(m["part"] for f in os.listdir(parts) if (m := _PART.match(f)) and m["table"] == "images")

    def clean_uncommitted(self) -> int:
        """Delete leftovers of a killed run (files of parts without `.images`, temporary files)."""
        parts = self.path / "parts"
        committed = set(self.committed_parts())
        removed = 0
        for f in os.listdir(parts):
            m = _PART.match(f)
            if f.endswith(".tmp") or (m and m["part"] not in committed):
                (parts / f).unlink(missing_ok=True)
                removed += 1
        return removed

    def done_positions(self) -> set[int]:
        """Source positions already stored (images and recorded errors)."""
        import pyarrow.parquet as pq

        done: set[int] = set()
        for part in self.committed_parts():
            done.update(pq.read_table(self._file(part, "images"), columns=["position"]).column(0).to_pylist())
        return done

    def next_part(self, prefix: str) -> str:
        existing = [p for p in self.committed_parts() if p.startswith(prefix + "-")]
        n = max((int(p.rsplit("-", 1)[1]) for p in existing), default=-1) + 1
        return f"{prefix}-{n:06d}"

    def write_part(self, part: str, tables: dict) -> None:
        """Write one part: every table but `images` first, `images` last (the commit)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for name in ("views", "groups", "errors", "images"):
            frame = tables[name]
            table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
            atomic_write(self._file(part, name), lambda tmp: pq.write_table(table, tmp), fsync=True)

    def _file(self, part: str, table: str) -> Path:
        return self.path / "parts" / f"{part}.{table}.parquet"

    # ---- reading --------------------------------------------------------------------------------
    def _read(self, table: str, columns=None):
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = [self._file(p, table) for p in self.committed_parts()]
        files = [f for f in files if f.exists()]
        if not files:
            return pd.DataFrame(columns=columns) if columns else pd.DataFrame()
        tables = [pq.read_table(f, columns=columns) for f in files]
        # A part without rows in a table (no errors in it, or only bad images) stores its text columns
        # as type null: promote them, or reading parts with and without errors fails.
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except TypeError:  # pyarrow < 14
            table = pa.concat_tables(tables, promote=True)
        return table.to_pandas()

    def images(self):
        """One row per stored image, in source order: image_id, position, labels, width, height, meta."""
        df = self._read("images")
        return df.sort_values("position", kind="stable").reset_index(drop=True) if len(df) else df

    def errors(self):
        return self._read("errors")

    def groups(self):
        return self._read("groups")

    def views(self, columns=None):
        """The tidy table: one row per (image, view) with the grid's columns (scale, row, col, name, group)."""
        df = self._read("views", columns)
        if "view" in df.columns and len(df):
            df = df.merge(self.grid.table(), on="view", how="left")
        return df

    def predictions(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(image_ids in source order, top1 int16 [N, V], conf float32 [N, V]) for analyses."""
        images = self.images()
        ids = images["image_id"].tolist() if len(images) else []
        ok = [i for i, e in zip(ids, images.get("ok", [True] * len(ids))) if e]
        v = self._read("views", ["image_id", "view", "pred0", "prob0"])
        n_views = self.grid.n_views
        if not len(v):
            return [], np.zeros((0, n_views), np.int16), np.zeros((0, n_views), np.float32)
        order = {k: i for i, k in enumerate(ok)}
        row = v["image_id"].map(order).to_numpy()
        if np.isnan(row.astype(float)).any():
            raise ValueError(f"{self.path}: view rows for images missing from the images table")
        counts = np.bincount(row.astype(np.int64), minlength=len(ok))
        if (counts != n_views).any():
            raise ValueError(f"{self.path}: expected {n_views} views per image, found {sorted(set(counts))}")
        top1 = np.empty((len(ok), n_views), np.int16)
        conf = np.empty((len(ok), n_views), np.float32)
        top1[row, v["view"].to_numpy()] = v["pred0"].to_numpy()
        conf[row, v["view"].to_numpy()] = v["prob0"].to_numpy()
        return ok, top1, conf

    def labels(self) -> list[tuple[int, ...]]:
        """Label sets of the stored (successfully decoded) images, in the order of `predictions`."""
        images = self.images()
        images = images[images["ok"]] if "ok" in images else images
        return [tuple(int(x) for x in lab) for lab in images["labels"]]

    def correct(self, labels=None, keep=None) -> np.ndarray:
        """bool [N, V]: top-1 in the image's label set (stored labels unless others are given)."""
        from zoomstudy.analysis.bounds import correctness

        _, top1, _ = self.predictions()
        return correctness(top1.astype(np.int64), self.labels() if labels is None else labels, keep=keep)

    def summary(self) -> dict:
        s = self.settings
        return {
            "path": str(self.path),
            "model": s["key"]["model"].get("name"),
            "dataset": s["key"]["dataset"].get("name"),
            "images": int(len(self.images())),
            "errors": int(len(self.errors())),
        }


def find_results(results_dir: str | Path, *, model: str | None = None, dataset: str | None = None) -> list[ResultSet]:
    """Every result set under `results_dir`, optionally filtered by model and dataset name."""
    out = []
    for settings in sorted(Path(results_dir).glob("*/settings.json")):
        rs = ResultSet(settings.parent)
        key = rs.settings["key"]
        if model and key["model"].get("name") != model:
            continue
        if dataset and key["dataset"].get("name") != dataset:
            continue
        out.append(rs)
    return out


def merge(result_set: ResultSet, shards: int) -> ResultSet:
    """Check that the shards of a sharded sweep together hold every image exactly once.

    Shards of one sweep share the result set (same settings, same key) and write parts under their
    own prefix (`shard3of8-000012`), so merging is validation: no position twice, none missing.
    """
    images = result_set._read("images", ["image_id", "position"])
    positions = images["position"].to_numpy() if len(images) else np.zeros(0, np.int64)
    dup = len(positions) - len(np.unique(positions))
    if dup:
        raise ValueError(f"{result_set.path}: {dup} images stored twice across shards")
    expected = result_set.settings.get("dataset_rows")
    if expected is not None and len(positions) != expected:
        missing = sorted(set(range(expected)) - set(positions.tolist()))[:5]
        raise ValueError(
            f"{result_set.path}: {len(positions)} of {expected} images stored; first missing positions {missing}"
            f" (run the missing shards of {shards})"
        )
    return result_set
