"""The result store: one folder per result set, named by a hash of everything that produced it.

Layout (all Parquet, readable with `pandas.read_parquet(folder)` too):

    <results_dir>/<key>/settings.json          `key`: what can change a stored number (model and
                                               weights hash, preprocessing, label space, the data's
                                               content fingerprint, grid, render dtype, library
                                               versions); `provenance`: where it came from (data
                                               path, device, host), outside the key
    <results_dir>/<key>/parts/<part>.views.parquet   image_id, view, pred0..4 (int16 ImageNet-1k
                                               indices, best first), prob0..4 (float32 softmax)
    <results_dir>/<key>/parts/<part>.groups.parquet  image_id, group, mean_pred, mean_prob,
                                               max_pred, max_prob (the TTA aggregations)
    <results_dir>/<key>/parts/<part>.errors.parquet  image_id, position, reason
    <results_dir>/<key>/parts/<part>.images.parquet  image_id, position, labels, width, height,
                                               meta (JSON), ok; written LAST: it commits the part
    <results_dir>/<key>/locks/<prefix>.lock    held (flock) by the one process computing a shard
    <results_dir>/<key>/runs/<prefix>-<token>.json   each process's provenance (host, device, paths)

A part is named `<prefix>-<n>-<token>`: prefix = the shard (`shard3of8`, or `part` unsharded), token =
the writing process. The protocol (see `write_part` and `clean_own`):

* a part counts once its `.images` file exists and every other table of it is present (with one
  views row per view of each decoded image); `write_part` checks that before writing `.images`;
* each file is written to a temporary name and renamed (atomic), so a kill at any moment leaves a
  whole part or leftovers of its own process;
* a process cleans only what it owns: leftovers of earlier processes of its own shard, and only
  while it holds that shard's lock (never a file another live process may be writing);
* readers refuse a committed part that lost a table, naming its images and how to recompute them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # views imports torch: the store (and zoomstudy.data, which reads result sets) need not
    from zoomstudy.views import ViewGrid

#: Bump when the stored layout or the meaning of a column changes: old result sets then get new keys.
#: 2: the key holds the data's content, not its path or the device; part names carry a process token.
FORMAT_VERSION = 2
TABLES = ("views", "groups", "errors", "images")
_PART = re.compile(r"^(?P<part>.+)\.(?P<table>views|groups|errors|images)\.parquet$")
#: prefix-n-token (token: the writing process; absent in result sets of format 1)
_PART_NAME = re.compile(r"^(?P<prefix>[A-Za-z0-9_]+?)-(?P<n>\d+)(?:-(?P<token>[0-9a-z]+))?$")


def settings_key(settings: dict) -> str:
    """Hash of the settings that can change a stored number (everything under settings['key'])."""
    blob = json.dumps(settings["key"], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


class IncompleteResults(ValueError):
    """A committed part of a result set lost a table or views: some images have too few views."""


class ShardBusy(ValueError):
    """Another live process holds the lock of the shard this process was asked to compute."""


def shard_prefix(shard: tuple[int, int] | None) -> str:
    """The part-name prefix of a shard: (3, 8) -> 'shard3of8'; None (unsharded) -> 'part'."""
    return f"shard{shard[0]}of{shard[1]}" if shard else "part"


def new_token() -> str:
    """A per-process token for part names (8 hex digits)."""
    return secrets.token_hex(4)


def part_owner(part: str) -> tuple[str | None, str | None]:
    """'shard1of3-000004-9f0c2a1b' -> ('shard1of3', '9f0c2a1b'); a name of format 1 has no token."""
    m = _PART_NAME.match(part)
    return (m["prefix"], m["token"]) if m else (None, None)


def rerun_hint(prefix: str | None) -> str:
    """How to recompute the parts of a prefix: the command line of its shard."""
    m = re.fullmatch(r"shard(\d+)of(\d+)", prefix or "")
    if m:
        return f"rerun shard {m[1]}/{m[2]} of this sweep (zoomstudy sweep ... --shard {m[1]}/{m[2]})"
    return "rerun the sweep without --shard" if prefix == "part" else "rerun the sweep"


@dataclass
class PartInfo:
    """What a scan of the parts folder knows about one part."""

    name: str
    tables: set = field(default_factory=set)  # tables whose final file exists
    temps: list = field(default_factory=list)  # temporary files (a write in progress, or a dead one's)
    status: str = "uncommitted"  # 'complete' | 'uncommitted' (no .images yet) | 'broken' (committed, incomplete)
    problem: str | None = None  # why broken
    positions: list = field(default_factory=list)
    short_images: list = field(default_factory=list)  # decoded images of a broken part lacking views

    @property
    def prefix(self) -> str | None:
        return part_owner(self.name)[0]

    @property
    def token(self) -> str | None:
        return part_owner(self.name)[1]


@dataclass
class ResultSet:
    """One sweep's results (model x dataset x grid x settings), on disk."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        self._scan_cache: tuple | None = None

    # ---- creation and resume --------------------------------------------------------------------
    @classmethod
    def create(cls, results_dir: str | Path, settings: dict) -> "ResultSet":
        """Open the result set for `settings`, creating it; refuse one whose settings differ.

        Only `settings['key']` must agree: a shard on another machine (other paths, other device)
        joins the result set its key names; its own provenance goes to `runs/` (see `record_run`).
        """
        results_dir = Path(results_dir)
        if results_dir.exists() and not results_dir.is_dir():
            raise ValueError(f"results directory {results_dir} is a file, not a directory")
        key = settings_key(settings)
        path = results_dir / key
        (path / "parts").mkdir(parents=True, exist_ok=True)
        settings = {**settings, "key_hash": key, "format_version": FORMAT_VERSION}
        target = path / "settings.json"
        if target.exists():
            old = json.loads(target.read_text())
            if old.get("key") != json.loads(json.dumps(settings["key"], default=str)):
                raise ValueError(f"result set {path} holds other settings (hash collision?); remove it")
        else:  # atomic_write's temporary name is this process's own: shards may create the set at once
            atomic_write(target, json.dumps(settings, indent=2, sort_keys=True, default=str))
        return cls(path)

    @cached_property
    def settings(self) -> dict:
        return json.loads((self.path / "settings.json").read_text())

    @property
    def grid(self) -> ViewGrid:
        from zoomstudy.views import ViewGrid

        return ViewGrid.from_dict(self.settings["key"]["grid"])

    def record_run(self, prefix: str, token: str, info: dict) -> Path:
        """Write one process's provenance (host, device, data location, ...) to runs/<prefix>-<token>.json."""
        folder = self.path / "runs"
        folder.mkdir(exist_ok=True)
        return atomic_write(folder / f"{prefix}-{token}.json", json.dumps(info, indent=2, sort_keys=True, default=str))

    # ---- the protocol: lock, scan, clean, write ---------------------------------------------------
    @contextlib.contextmanager
    def shard_lock(self, prefix: str, holder: dict | None = None):
        """Hold locks/<prefix>.lock (flock) while computing a shard; yields True when locked.

        A second live process asking for the same shard gets ShardBusy (the kernel releases the lock of
        a killed process). Yields False where the file system has no locks: the caller then must not
        delete uncommitted files (they may be another live process's).
        """
        folder = self.path / "locks"
        folder.mkdir(exist_ok=True)
        fh = open(folder / f"{prefix}.lock", "a+")
        locked = False
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX
                fcntl = None
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except BlockingIOError:
                    fh.seek(0)
                    who = fh.read().strip() or "a process that has not said who it is"
                    raise ShardBusy(
                        f"{self.path}: {prefix} is being computed by another live process ({who}); "
                        f"wait for it, or stop it, before starting this shard again"
                    ) from None
                except OSError:  # e.g. ENOLCK: no locks on this mount
                    locked = False
            if locked:
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(holder or {"pid": os.getpid(), "host": socket.gethostname()}))
                fh.flush()
            yield locked
        finally:
            if locked:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def scan(self) -> dict[str, PartInfo]:
        """Every part in parts/, with its status; cached until a file of the folder changes."""
        folder = self.path / "parts"
        entries, vanished = [], False
        if folder.is_dir():
            for e in os.scandir(folder):
                try:
                    st = e.stat()
                except FileNotFoundError:  # renamed or deleted since the listing (another process)
                    vanished = True
                    continue
                entries.append((e.name, st.st_size, st.st_mtime_ns))
        entries.sort()
        if self._scan_cache is not None and self._scan_cache[0] == entries:
            return self._scan_cache[1]
        parts: dict[str, PartInfo] = {}
        for name, _, _ in entries:
            if name.startswith("."):
                continue  # not attributable to a part: never touched
            info = parts.setdefault(name.split(".", 1)[0], PartInfo(name.split(".", 1)[0]))
            m = _PART.match(name)
            if m and m["part"] == info.name:
                info.tables.add(m["table"])
            else:
                info.temps.append(name)
        n_views = self._n_views()
        for info in parts.values():
            if "images" in info.tables:
                self._check_part(info, n_views)
        self._scan_cache = None if vanished else (entries, parts)
        return parts

    def _n_views(self) -> int | None:
        try:
            return self.grid.n_views
        except (KeyError, TypeError, ValueError, FileNotFoundError):
            return None

    def _check_part(self, info: PartInfo, n_views: int | None) -> None:
        import pyarrow.parquet as pq

        try:
            images = pq.read_table(self._file(info.name, "images")).to_pandas()
        except Exception as e:  # noqa: BLE001 - any unreadable commit file makes the part broken
            info.status, info.problem = "broken", f"its images file is unreadable ({type(e).__name__})"
            return
        info.positions = images["position"].tolist() if "position" in images else []
        ok = images["image_id"][images["ok"].astype(bool)] if "ok" in images else images["image_id"]
        ok = [str(x) for x in ok]
        missing = [t for t in TABLES if t not in info.tables]
        if missing:
            info.status, info.problem = "broken", f"its {' and '.join(missing)} file{'s' if len(missing) > 1 else ''} missing"
            info.short_images = ok if "views" in missing else []
            return
        if n_views is not None:
            try:
                rows = pq.read_metadata(self._file(info.name, "views")).num_rows
            except Exception as e:  # noqa: BLE001
                info.status, info.problem, info.short_images = "broken", f"its views file is unreadable ({type(e).__name__})", ok
                return
            if rows != n_views * len(ok):
                counts = pq.read_table(self._file(info.name, "views"), columns=["image_id"]).column(0).to_pandas().value_counts()
                info.short_images = [i for i in ok if counts.get(i, 0) != n_views]
                info.status = "broken"
                info.problem = f"its views file holds {rows} rows, expected {n_views} x {len(ok)} images"
                return
        info.status = "complete"

    def complete_parts(self) -> list[str]:
        """Parts that are committed and whole, in a stable order: the ones whose positions are done."""
        return sorted(p for p, i in self.scan().items() if i.status == "complete")

    def committed_parts(self) -> list[str]:
        """Parts whose `.images` file exists (whole or broken), in a stable order. Readers refuse broken
        ones (`check_complete`); a sweep recomputes them (see `clean_own`)."""
        return sorted(p for p, i in self.scan().items() if i.status != "uncommitted")

    def broken_parts(self) -> list[PartInfo]:
        """Committed parts that lost a table or views since their commit (e.g. deleted by hand, or by
        the cleaner of zoomstudy <= format 1, which deleted other shards' files)."""
        return [i for _, i in sorted(self.scan().items()) if i.status == "broken"]

    def check_complete(self) -> None:
        """IncompleteResults naming the images that lack views and how to recompute them, if any do."""
        broken = self.broken_parts()
        if not broken:
            return
        images = [i for b in broken for i in b.short_images]
        first = broken[0]
        more = f" and {len(broken) - 1} more part(s)" if len(broken) > 1 else ""
        hints = sorted({rerun_hint(b.prefix) for b in broken})
        raise IncompleteResults(
            f"{self.path}: {len(images)} image(s) lack views (e.g. {images[:3]}): part {first.name} has "
            f"{first.problem}{more}; to recompute them, {' and '.join(hints)}: it deletes the broken part and "
            f"computes its images again (or delete parts/{first.name}.* by hand and rerun)"
        )

    def clean_own(self, prefix: str, token: str, *, locked: bool = True) -> list[str]:
        """Delete what earlier processes of shard `prefix` left: uncommitted parts and temporary files
        (only when `locked`, i.e. this process holds the shard's lock, so none of them is being written)
        and broken committed parts (never written again once committed). Files of other shards and of
        this process (`token`) are never touched. Returns the names deleted."""
        folder = self.path / "parts"
        removed = []
        for info in self.scan().values():
            if info.prefix != prefix or info.token == token:
                continue
            if info.status == "broken" or (locked and info.status == "uncommitted"):
                names = [f"{info.name}.{t}.parquet" for t in info.tables] + info.temps
            elif locked:
                names = list(info.temps)
            else:
                names = []
            for name in names:
                (folder / name).unlink(missing_ok=True)
                removed.append(name)
        return removed

    def done_positions(self) -> set[int]:
        """Source positions stored in complete parts (images and recorded errors)."""
        done: set[int] = set()
        for info in self.scan().values():
            if info.status == "complete":
                done.update(int(p) for p in info.positions)
        return done

    def next_part(self, prefix: str, token: str | None = None) -> str:
        """The next part name of `prefix` (numbered after every part of it, committed or not). From the
        file names alone: `scan` would check every committed part, once per part written (quadratic)."""
        folder = self.path / "parts"
        numbers = [int(m["n"]) for name in (os.listdir(folder) if folder.is_dir() else ()) if not name.startswith(".")
                   and (m := _PART_NAME.match(name.split(".", 1)[0])) and m["prefix"] == prefix]
        n = max(numbers, default=-1) + 1
        return f"{prefix}-{n:06d}" + (f"-{token}" if token else "")

    def _before_commit(self, part: str) -> None:
        """Hook between writing a part's tables and its commit (tests interleave other processes here)."""

    def write_part(self, part: str, tables: dict) -> None:
        """Write one part: views, groups and errors; check that they are all there (views: one row per
        view of each decoded image); then `images`, the commit. A part that lost a file in between is
        not committed (IncompleteResults), so its positions stay to do."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        def arrow(frame):
            return frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)

        for name in ("views", "groups", "errors"):
            table = arrow(tables[name])
            atomic_write(self._file(part, name), lambda tmp, table=table: pq.write_table(table, tmp), fsync=True)
        self._before_commit(part)
        images = arrow(tables["images"])
        missing = [t for t in ("views", "groups", "errors") if not self._file(part, t).exists()]
        problem = f"lost its {' and '.join(missing)} file(s)" if missing else None
        n_views = self._n_views()
        if problem is None and n_views is not None:
            n_ok = sum(bool(x) for x in images.column("ok").to_pylist()) if "ok" in images.column_names else images.num_rows
            rows = pq.read_metadata(self._file(part, "views")).num_rows
            if rows != n_views * n_ok:
                problem = f"has {rows} views rows for {n_ok} images of {n_views} views"
        if problem:
            raise IncompleteResults(f"{self.path}: part {part} {problem} before its commit; not committed")
        atomic_write(self._file(part, "images"), lambda tmp: pq.write_table(images, tmp), fsync=True)

    def _file(self, part: str, table: str) -> Path:
        return self.path / "parts" / f"{part}.{table}.parquet"

    # ---- reading --------------------------------------------------------------------------------
    def _read(self, table: str, columns=None):
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.check_complete()
        files = [self._file(p, table) for p in self.committed_parts()]
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

    def _views_per_image(self, ok: list[str], v=None) -> np.ndarray:
        """IncompleteResults unless every decoded image (`ok`) has each view exactly once and nothing else
        has views. v: the views table's image_id and view columns, when already read. Returns each view
        row's image index in `ok` (int64 [rows]), which `predictions` scatters by."""
        if v is None:
            v = self._read("views", ["image_id", "view"])
        n_views = self.grid.n_views
        if not len(v):
            if ok:
                raise IncompleteResults(f"{self.path}: no views stored for {len(ok)} decoded image(s) (e.g. {ok[:3]})")
            return np.zeros(0, np.int64)
        order = {k: i for i, k in enumerate(ok)}
        row = v["image_id"].map(order)
        if row.isna().any():
            stray = sorted(set(v["image_id"][row.isna()]))
            raise IncompleteResults(f"{self.path}: views stored for {len(stray)} image(s) missing from the images "
                                    f"table or recorded as unreadable (e.g. {stray[:3]})")
        view = v["view"].to_numpy().astype(np.int64)
        if ((view < 0) | (view >= n_views)).any():
            raise IncompleteResults(f"{self.path}: view indices outside 0..{n_views - 1}")
        row = row.to_numpy().astype(np.int64)
        cells = np.bincount(row * n_views + view, minlength=len(ok) * n_views)
        cells = cells.reshape(len(ok), n_views)
        bad = np.nonzero((cells != 1).any(1))[0]
        if len(bad):
            ids = [ok[i] for i in bad]
            found = sorted({int(x) for x in cells[bad].sum(1)})
            where = self._parts_of(ids)
            raise IncompleteResults(
                f"{self.path}: {len(bad)} image(s) do not have exactly {n_views} views, each once (found {found} "
                f"rows; e.g. {ids[:3]}, in part {where[0]}); to recompute them, delete parts/{where[0]}.* "
                f"and {rerun_hint(part_owner(where[0])[0])}"
            )
        return row

    def _parts_of(self, image_ids: list[str]) -> list[str]:
        import pyarrow.parquet as pq

        want, out = set(image_ids), []
        for part in self.committed_parts():
            ids = pq.read_table(self._file(part, "images"), columns=["image_id"]).column(0).to_pylist()
            if want & set(ids):
                out.append(part)
        return out or ["?"]

    def predictions(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(image_ids in source order, top1 int16 [N, V], conf float32 [N, V]) for analyses."""
        images = self.images()
        ids = images["image_id"].tolist() if len(images) else []
        ok = [i for i, e in zip(ids, images.get("ok", [True] * len(ids))) if e]
        n_views = self.grid.n_views
        v = self._read("views", ["image_id", "view", "pred0", "prob0"])
        row = self._views_per_image(ok, v)  # checked, and each row's image index
        if not len(v):
            return [], np.zeros((0, n_views), np.int16), np.zeros((0, n_views), np.float32)
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


def provenance(settings: dict, what: str) -> dict:
    """settings['key'][what] together with settings['provenance'][what] (what: 'model' or 'dataset'):
    the content that keys the result set plus where it came from (path, device) on the machine that
    created it. Each process's own provenance is in runs/*.json."""
    return {**settings.get("key", {}).get(what, {}), **settings.get("provenance", {}).get(what, {})}


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
    """Check that the shards of a sharded sweep together hold every image exactly once, each decoded
    image with every view of the grid exactly once.

    Shards of one sweep share the result set (same settings, same key) and write parts under their
    own prefix (`shard3of8-000012-<token>`), so merging is validation: no broken part, no position
    twice, none missing, grid.n_views views per decoded image.
    """
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    result_set.check_complete()
    images = result_set._read("images")
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
    ok = images["image_id"][images["ok"].astype(bool)].tolist() if "ok" in images else images.get("image_id", []).tolist()
    result_set._views_per_image(ok)
    return result_set
