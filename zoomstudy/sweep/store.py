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
                                               meta (JSON), ok
    <results_dir>/<key>/parts/<part>.manifest.json   written LAST, it commits the part: each table's
                                               bytes, rows and sha256, and the part's (position,
                                               image_id, decoded) list
    <results_dir>/<key>/layout.json            {"shards": null | n}: fixed by the first sweep
    <results_dir>/<key>/locks/<prefix>.lock    held (flock) by the one process computing a shard
    <results_dir>/<key>/locks/commit.lock      held for the moment a part is checked and committed
    <results_dir>/<key>/runs/<prefix>-<token>.json   each process's provenance (host, device, paths)

A part is named `<prefix>-<n>-<token>`: prefix = the shard (`shard3of8`, or `part` unsharded), token =
the writing process. The protocol (see `write_part`, `clean_own` and `claim_layout`):

* a result set has one layout, fixed when the first sweep writes to it: a sweep of another shard
  count is refused (two layouts would compute the same images twice);
* a part counts once its manifest exists and every table has the size the manifest recorded (the
  cheap check, a `stat` per file: a truncated or missing file of any table makes the part broken);
  `merge --verify` compares the sha256 of every table too and marks a part that differs damaged;
* each file is written to a temporary name and renamed (atomic), so a kill at any moment leaves a
  whole part or leftovers of its own process; the positions a part commits are checked, under the
  commit lock, against every complete part: a position is never committed twice;
* a process cleans only what it owns: leftovers of earlier processes of its own shard, and only
  while it holds that shard's lock (never a file another live process may be writing); broken parts
  of its own shard (and of names outside the layout) it deletes and computes again;
* readers refuse a broken part, naming it, its file, its images and how to recompute them;
* a finished set can be compacted (`compact`, `zoomstudy merge --compact`) into a few large parts per
  shard; a compacted part's manifest lists the parts it replaces, which scans then ignore.

Result sets of earlier versions (no manifests, no layout.json) are read as they are: a part with its
images file but no manifest is checked once by reading every table's footer and then gets its
manifest (`_adopt`); the layout is taken from the part names (a set with two layouts must be
repaired first: `zoomstudy merge --repair`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zoomstudy.keyed import atomic_write, settings_key

if TYPE_CHECKING:  # views imports torch: the store (and zoomstudy.data, which reads result sets) need not
    from zoomstudy.views import ViewGrid

#: Bump when the stored layout or the meaning of a column changes: old result sets then get new keys.
#: 2: the key holds the data's content, not its path or the device; part names carry a process token.
FORMAT_VERSION = 2
TABLES = ("views", "groups", "errors", "images")
_PART = re.compile(r"^(?P<part>.+)\.(?:(?P<table>views|groups|errors|images)\.parquet|(?P<kind>manifest|damaged)\.json)$")
#: Version of the part manifest (parts/<part>.manifest.json).
MANIFEST_VERSION = 1
#: The result set's layout (its shard count, or none), fixed by the first sweep that writes to it.
LAYOUT_FILE = "layout.json"
#: prefix-n-token (token: the writing process; absent in result sets of format 1)
_PART_NAME = re.compile(r"^(?P<prefix>[A-Za-z0-9_]+?)-(?P<n>\d+)(?:-(?P<token>[0-9a-z]+))?$")


def _sha256(path: Path) -> str:
    """The data stage's file hash (imported here, not at module level: data.registry imports this module)."""
    from zoomstudy.data.fingerprint import file_sha256

    return file_sha256(path)


class IncompleteResults(ValueError):
    """A committed part of a result set lost a table or views: some images have too few views."""


class LayoutMismatch(ValueError):
    """A sweep of another layout (shard count, or none) than the result set was created with."""


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
    files: dict = field(default_factory=dict)  # kind ('views', ..., 'manifest', 'damaged') -> size in bytes
    temps: list = field(default_factory=list)  # temporary files (a write in progress, or a dead one's)
    status: str = "uncommitted"  # 'complete' | 'uncommitted' (no manifest, no .images) | 'broken' (committed, damaged)
    problem: str | None = None  # why broken
    bad_file: str | None = None  # the file that makes it broken (named in messages)
    positions: list = field(default_factory=list)
    image_ids: list = field(default_factory=list)  # its decoded images (those that have views)
    manifest: dict | None = None

    @property
    def tables(self) -> set:
        return {k for k in self.files if k in TABLES}

    @property
    def short_images(self) -> list:
        """Decoded images of a broken part (they lack trustworthy views)."""
        return self.image_ids if self.status == "broken" else []

    @property
    def prefix(self) -> str | None:
        return part_owner(self.name)[0]

    @property
    def token(self) -> str | None:
        return part_owner(self.name)[1]

    def file_names(self) -> list[str]:
        """Every file of the part (its tables, manifest, damage marker, temporary files)."""
        return [f"{self.name}.{k}.{'json' if k in ('manifest', 'damaged') else 'parquet'}" for k in self.files] + self.temps


@dataclass
class ResultSet:
    """One sweep's results (model x dataset x grid x settings), on disk."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        self._superseded: list[PartInfo] = []
        self._parts: dict[str, tuple] = {}  # part -> (its directory entries, PartInfo): the incremental scan
        self._images_cache: tuple | None = None

    # ---- creation and resume --------------------------------------------------------------------
    @classmethod
    def create(cls, results_dir: str | Path, settings: dict) -> "ResultSet":
        """Open the result set for `settings`, creating it; refuse one whose settings differ.

        Only `settings['key']` must agree: a shard on another machine (other paths, other device)
        joins the result set its key names; its own provenance goes to `runs/` (see `record_run`).
        A settings.json that cannot be read is rewritten from `settings` when its key hashes to the
        folder's name (the folder name is the key's hash, so nothing of the key is lost).
        """
        results_dir = Path(results_dir)
        if results_dir.exists() and not results_dir.is_dir():
            raise ValueError(f"results directory {results_dir} is a file, not a directory")
        key = settings_key(settings)
        path = results_dir / key
        (path / "parts").mkdir(parents=True, exist_ok=True)
        settings = {**settings, "key_hash": key, "format_version": FORMAT_VERSION}
        target = path / "settings.json"
        old = None
        if target.exists():
            try:
                old = json.loads(target.read_text())
                if not isinstance(old, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError):
                old = None  # damaged: the key of this run hashes to the folder's name, so it is this set's
        if old is not None:
            if old.get("key") != json.loads(json.dumps(settings["key"], default=str)):
                raise ValueError(f"result set {path} holds other settings (hash collision?); remove it")
        else:  # atomic_write's temporary name is this process's own: shards may create the set at once
            atomic_write(target, json.dumps(settings, indent=2, sort_keys=True, default=str))
        return cls(path)

    @cached_property
    def settings(self) -> dict:
        target = self.path / "settings.json"
        try:
            settings = json.loads(target.read_text())
            if not isinstance(settings, dict) or not isinstance(settings.get("key"), dict):
                raise ValueError("not a JSON object with a 'key'")
        except FileNotFoundError:
            raise ValueError(f"{self.path} is not a result set (no settings.json)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(
                f"{target} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:80]}); it is rebuilt from the "
                f"sweep's own settings when you rerun the sweep that made it (same model, data and grid: its key "
                f"hashes to {self.path.name}), or restore it from a copy; the parts and runs/*.json are untouched"
            ) from None
        return settings

    @property
    def grid(self) -> ViewGrid:
        from zoomstudy.views import ViewGrid

        return ViewGrid.from_dict(self.settings["key"]["grid"])

    def record_run(self, prefix: str, token: str, info: dict) -> Path:
        """Write one process's provenance (host, device, data location, ...) to runs/<prefix>-<token>.json."""
        folder = self.path / "runs"
        folder.mkdir(exist_ok=True)
        return atomic_write(folder / f"{prefix}-{token}.json", json.dumps(info, indent=2, sort_keys=True, default=str))

    # ---- the layout: one shard count per result set -----------------------------------------------
    def layout(self) -> dict | None:
        """The layout fixed when the first sweep wrote to the set ({'shards': None} unsharded, or
        {'shards': n}); None when no sweep fixed one yet (a new set, or one of zoomstudy <= this format)."""
        target = self.path / LAYOUT_FILE
        try:
            text = target.read_text()
        except FileNotFoundError:
            return None
        try:
            layout = json.loads(text)
            shards = layout["shards"]
            if shards is not None and (not isinstance(shards, int) or isinstance(shards, bool) or shards < 1):
                raise ValueError(f"shards {shards!r}")
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{target} is damaged ({type(e).__name__}); it holds the shard count this result set was created "
                f"with: rewrite it as {{\"shards\": null}} if its parts are named part-*, or {{\"shards\": N}} if they "
                f"are named shardIofN-*"
            ) from None
        return {"shards": shards}

    def _part_layouts(self) -> set:
        """The layouts the committed parts' names say they were written with (None: unsharded)."""
        out = set()
        for info in self.scan().values():
            if info.status == "uncommitted":
                continue
            m = re.fullmatch(r"shard\d+of(\d+)", info.prefix or "")
            out.add(int(m[1]) if m else None)
        return out

    def claim_layout(self, shards: int | None) -> None:
        """Fix the layout at the first sweep; refuse (LayoutMismatch, one line) a sweep of another layout.

        Two layouts on one set compute the same images twice (an unsharded run's part 3 and shard
        1/2's part 1 both hold image 5), which no per-shard lock can see. A set of an older version
        without layout.json takes the layout its parts were written with.
        """
        current = self.layout()
        if current is None:
            found = self._part_layouts()
            if len(found) > 1:
                names = ", ".join(sorted("unsharded" if f is None else f"{f} shards" for f in found))
                raise LayoutMismatch(
                    f"{self.path}: its parts come from sweeps of different layouts ({names}), which store images "
                    f"twice; run `zoomstudy merge {self.path} --shards N --repair` (N: the layout to keep, 1 for "
                    f"unsharded) to remove the duplicates and fix the layout, then rerun"
                )
            want = found.pop() if found else shards
            tmp = self.path / f"{LAYOUT_FILE}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
            tmp.write_text(json.dumps({"shards": want}))
            try:
                os.link(tmp, self.path / LAYOUT_FILE)  # create-if-absent, atomically: the first sweep wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
            current = self.layout()
        if current["shards"] != shards:
            raise LayoutMismatch(self._layout_advice(current["shards"], shards))

    def _layout_advice(self, have: int | None, asked: int | None) -> str:
        asked_text = "without --shard" if asked is None else f"with --shard i/{asked}"
        if have is None:
            how = "run it without --shard (a restarted run resumes it)"
        else:
            how = f"run each of --shard 0/{have} .. {have - 1}/{have}"
        return (f"{self.path} was created by a sweep of {'no shards' if have is None else f'{have} shards'} "
                f"({LAYOUT_FILE}), so a sweep {asked_text} would compute its images twice: {how}, or give this "
                f"sweep another --results-dir")

    def in_layout(self, prefix: str | None) -> bool:
        """Whether parts of `prefix` belong to the set's layout (their shard recomputes them)."""
        layout = self.layout()
        if layout is None:
            return True
        n = layout["shards"]
        return prefix == "part" if n is None else bool(re.fullmatch(rf"shard\d+of{n}", prefix or ""))

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

    @contextlib.contextmanager
    def commit_lock(self):
        """locks/commit.lock, held (blocking flock) while a part's positions are checked and committed,
        and while merge --repair rewrites parts: no two writers, of any shard, commit a position twice.
        Held for milliseconds (a check of new manifests and two small writes)."""
        folder = self.path / "locks"
        folder.mkdir(exist_ok=True)
        with open(folder / "commit.lock", "a+") as fh:
            try:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                locked = True
            except (ImportError, OSError):  # not POSIX, or no locks on this mount
                locked = False
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def scan(self) -> dict[str, PartInfo]:
        """Every part in parts/, with its status. Incremental: a part whose files (names, sizes, times)
        did not change since the last scan keeps its status, so a sweep committing part after part
        checks each new manifest once (a scan of a 50k-image set: one listing plus the changed parts)."""
        folder = self.path / "parts"
        by_part: dict[str, list] = {}
        vanished = set()
        if folder.is_dir():
            for e in os.scandir(folder):
                if e.name.startswith("."):
                    continue  # not attributable to a part: never touched
                part = e.name.split(".", 1)[0]
                try:
                    st = e.stat()
                except FileNotFoundError:  # renamed or deleted since the listing (another process)
                    vanished.add(part)
                    continue
                by_part.setdefault(part, []).append((e.name, st.st_size, st.st_mtime_ns))
        n_views = None
        parts: dict[str, PartInfo] = {}
        cache: dict[str, tuple] = {}
        for part in sorted(by_part):
            entries = tuple(sorted(by_part[part]))
            hit = self._parts.get(part)
            if hit is not None and hit[0] == entries and part not in vanished:
                parts[part] = hit[1]
                cache[part] = hit
                continue
            info = PartInfo(part)
            for name, size, _ in entries:
                m = _PART.match(name)
                if m and m["part"] == part:
                    info.files[m["table"] or m["kind"]] = size
                else:
                    info.temps.append(name)
            if n_views is None:
                n_views = self._n_views()
            self._check_part(info, n_views)
            parts[part] = info
            if part not in vanished:
                cache[part] = (entries, info)
        self._parts = cache
        # A compacted part replaces the parts it was made from (its manifest lists them). Until they are
        # deleted (right after the compacted part's commit; a kill in between leaves them), they are
        # superseded: invisible to readers and sweeps, deleted by `clean_own`, `compact` and `repair`.
        replaced = {name for info in parts.values() if info.manifest for name in info.manifest.get("replaces", ())}
        self._superseded = [parts.pop(name) for name in sorted(replaced & set(parts))]
        return parts

    def _n_views(self) -> int | None:
        try:
            return self.grid.n_views
        except (KeyError, TypeError, ValueError, FileNotFoundError):
            return None

    def _manifest_file(self, part: str) -> Path:
        return self.path / "parts" / f"{part}.manifest.json"

    def _check_part(self, info: PartInfo, n_views: int | None) -> None:
        """The cheap check: the manifest parses and every table has the size it recorded (a truncated,
        grown or missing file of any table fails it). `verify` compares the content hashes too."""
        if "damaged" in info.files:
            try:
                reason = json.loads((self.path / "parts" / f"{info.name}.damaged.json").read_text())["reason"]
            except Exception:  # noqa: BLE001 - the marker's presence is what counts
                reason = "marked damaged"
            self._broken(info, reason, f"{info.name}.damaged.json")
        if "manifest" in info.files:
            mf = self._manifest_file(info.name)
            try:
                m = json.loads(mf.read_text())
                tables = m["tables"]
                sizes = {t: int(tables[t]["bytes"]) for t in TABLES}
                rows = m["images"]
                info.positions = [int(r[0]) for r in rows]
                info.image_ids = [str(r[1]) for r in rows if r[2]]
            except Exception as e:  # noqa: BLE001 - any unreadable manifest makes the part broken
                info.positions, info.image_ids = [], []
                return self._broken(info, f"its manifest is unreadable ({type(e).__name__})", mf.name)
            info.manifest = m
            if info.status == "broken":
                return
            for t in TABLES:
                name = f"{info.name}.{t}.parquet"
                if t not in info.files:
                    return self._broken(info, f"its {t} file is missing", name)
                if info.files[t] != sizes[t]:
                    return self._broken(info, f"its {t} file is {info.files[t]} bytes, its manifest says {sizes[t]} "
                                              f"(truncated or overwritten)", name)
            info.status = "complete"
        elif "images" in info.files and info.status != "broken":
            self._adopt(info, n_views)

    def _broken(self, info: PartInfo, problem: str, bad_file: str) -> None:
        if info.status != "broken":
            info.status, info.problem, info.bad_file = "broken", problem, bad_file

    def _adopt(self, info: PartInfo, n_views: int | None) -> None:
        """A part with its images file but no manifest: one of zoomstudy's earlier versions, or a run
        killed between its images file and its manifest. Its tables are checked once by reading every
        footer (and the views row count); a whole one gets its manifest now (when the folder is
        writable), so later scans check sizes only."""
        import pyarrow.parquet as pq

        name = f"{info.name}.images.parquet"
        try:
            images = pq.read_table(self._file(info.name, "images"), columns=["image_id", "position", "ok"])
            positions = [int(p) for p in images.column("position").to_pylist()]
            ok = [str(i) for i, good in zip(images.column("image_id").to_pylist(), images.column("ok").to_pylist()) if good]
        except Exception as e:  # noqa: BLE001 - any unreadable commit file makes the part broken
            return self._broken(info, f"its images file is unreadable ({type(e).__name__})", name)
        info.positions, info.image_ids = positions, ok
        missing = [t for t in TABLES if t not in info.files]
        if missing:
            return self._broken(info, f"its {' and '.join(missing)} file{'s' if len(missing) > 1 else ''} missing",
                                f"{info.name}.{missing[0]}.parquet")
        rows = {"images": images.num_rows}
        for t in ("views", "groups", "errors"):
            try:
                rows[t] = pq.read_metadata(self._file(info.name, t)).num_rows
            except Exception as e:  # noqa: BLE001
                return self._broken(info, f"its {t} file is unreadable ({type(e).__name__}: truncated?)",
                                    f"{info.name}.{t}.parquet")
        if n_views is not None and rows["views"] != n_views * len(ok):
            return self._broken(info, f"its views file holds {rows['views']} rows, expected {n_views} x {len(ok)} "
                                      f"images", f"{info.name}.views.parquet")
        ok_set = set(ok)
        ids = images.column("image_id").to_pylist()
        manifest = self._manifest(info.name, rows, [(p, str(i), str(i) in ok_set) for p, i in zip(positions, ids)])
        with contextlib.suppress(OSError):  # a read-only copy: checked by footers in each process instead
            atomic_write(self._manifest_file(info.name), json.dumps(manifest))
        info.manifest, info.status = manifest, "complete"

    def _manifest(self, part: str, rows: dict, images: list, replaces: list | None = None) -> dict:
        """The manifest of a part whose tables are written: each table's bytes, rows and sha256, and its
        images (position, image_id, decoded) so that scans never read the images table. replaces: the
        parts a compacted part was made from (see `compact`)."""
        tables = {}
        for t in TABLES:
            f = self._file(part, t)
            tables[t] = {"bytes": f.stat().st_size, "rows": int(rows[t]), "sha256": _sha256(f)}
        out = {"manifest": MANIFEST_VERSION, "part": part, "tables": tables, "images": images}
        if replaces:
            out["replaces"] = list(replaces)
        return out

    def complete_parts(self) -> list[str]:
        """Parts that are committed and whole, in a stable order: the ones whose positions are done."""
        return sorted(p for p, i in self.scan().items() if i.status == "complete")

    def committed_parts(self) -> list[str]:
        """Parts that were committed (whole or broken), in a stable order. Readers refuse broken
        ones (`check_complete`); a sweep recomputes them (see `clean_own`)."""
        return sorted(p for p, i in self.scan().items() if i.status != "uncommitted")

    def broken_parts(self) -> list[PartInfo]:
        """Committed parts that lost or damaged a table since their commit (deleted or truncated by
        hand, a disk fault, or the cleaner of zoomstudy <= format 1, which deleted other shards' files)."""
        return [i for _, i in sorted(self.scan().items()) if i.status == "broken"]

    def check_complete(self, scan: dict | None = None) -> None:
        """IncompleteResults naming the damaged part, its file, its images and how to recompute them.
        scan: a scan just made (one listing serves the check and the read that follows)."""
        scan = self.scan() if scan is None else scan
        broken = [i for _, i in sorted(scan.items()) if i.status == "broken"]
        if not broken:
            return
        images = [i for b in broken for i in b.short_images]
        first = broken[0]
        more = f" (and {len(broken) - 1} more damaged part(s))" if len(broken) > 1 else ""
        hints = sorted({rerun_hint(b.prefix) if self.in_layout(b.prefix) else "rerun the sweep" for b in broken})
        which = (f"{len(images)} image(s) (e.g. {images[:3]})" if images else
                 f"the images of part {first.name}" if first.positions == [] else f"{len(first.positions)} image(s)")
        raise IncompleteResults(
            f"{self.path}: part {first.name} is damaged: {first.problem} (parts/{first.bad_file}){more}; "
            f"{which} must be computed again: {' and '.join(hints)}, which deletes the damaged part and computes "
            f"its images again (or delete parts/{first.name}.* by hand and rerun)"
        )

    def clean_own(self, prefix: str, token: str, *, locked: bool = True) -> list[str]:
        """Delete what earlier processes of shard `prefix` left: uncommitted parts and temporary files
        (only when `locked`, i.e. this process holds the shard's lock, so none of them is being written)
        and broken committed parts (never written again once committed), its own and those of names
        outside the set's layout (no shard of the layout would recompute them). Files of other shards
        and of this process (`token`) are never touched otherwise. Returns the names deleted."""
        folder = self.path / "parts"
        removed = []
        for info in self.scan().values():
            if info.token == token:
                continue
            if info.prefix != prefix:
                if info.status == "broken" and not self.in_layout(info.prefix):
                    names = info.file_names()
                else:
                    continue
            elif info.status == "broken" or (locked and info.status == "uncommitted"):
                names = info.file_names()
            elif locked:
                names = list(info.temps)
            else:
                names = []
            names.sort(key=lambda n: not n.endswith(("manifest.json", "damaged.json")))  # uncommit first
            for name in names:
                (folder / name).unlink(missing_ok=True)
                removed.append(name)
        for info in self._superseded:  # left by a compaction killed before it deleted them
            removed += self._delete(info)
        return removed

    def _delete(self, info: PartInfo) -> list[str]:
        """Delete a part's files, its manifest first (so a kill midway leaves an uncommitted part)."""
        names = sorted(info.file_names(), key=lambda n: not n.endswith(("manifest.json", "damaged.json")))
        for name in names:
            (self.path / "parts" / name).unlink(missing_ok=True)
        return names

    def compact(self, images_per_part: int = 4096) -> list[str]:
        """Rewrite a finished result set as a few large parts (`zoomstudy merge --compact`): each
        shard's complete parts become parts of up to `images_per_part` images, written with row groups
        of 32 images. At the paper's size that is 1,563 parts (7,815 files) -> 13 parts (65 files), so a
        scan lists and checks 65 files, not 7,815 (the cost that grows on network disks).

        Safe at any kill: each new part is committed (its manifest, which lists the parts it
        `replaces`) before those are deleted; a scan ignores replaced parts still on disk, and the next
        compaction or sweep deletes them. Holds every shard's lock (a live sweep of the set makes it
        refuse with ShardBusy) and the commit lock. Returns one line per new part."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if images_per_part < 1:
            raise ValueError(f"images_per_part must be >= 1, got {images_per_part}")
        self.check_complete()
        prefixes = sorted({i.prefix or "part" for i in self.scan().values() if i.status == "complete"})
        out = []
        with contextlib.ExitStack() as stack:
            for prefix in prefixes:
                stack.enter_context(self.shard_lock(prefix, {"pid": os.getpid(), "compacting": True}))
            stack.enter_context(self.commit_lock())
            scan = self.scan()
            for info in self._superseded:
                self._delete(info)
            for prefix in prefixes:
                parts = [i for n, i in sorted(scan.items()) if i.status == "complete" and (i.prefix or "part") == prefix]
                batches, batch, n = [], [], 0
                for info in parts:  # consecutive parts, up to images_per_part images each batch
                    if batch and n + len(info.positions) > images_per_part:
                        batches.append(batch)
                        batch, n = [], 0
                    batch.append(info)
                    n += len(info.positions)
                if batch:
                    batches.append(batch)
                for batch in batches:
                    if len(batch) == 1:
                        continue  # already one part
                    tables = {}
                    for t in TABLES:
                        pieces = [pq.read_table(self._file(i.name, t)) for i in batch]
                        pieces = [x for x in pieces if x.num_rows] or pieces[:1]
                        try:
                            tables[t] = pa.concat_tables(pieces, promote_options="default")
                        except TypeError:  # pyarrow < 14
                            tables[t] = pa.concat_tables(pieces, promote=True)
                    new = self.next_part(prefix, new_token())
                    n_views = self._n_views() or 1
                    self._write_tables(new, tables, ("views", "groups", "errors"),
                                       row_group_size={"views": 32 * n_views})
                    self._commit(new, tables, replaces=[i.name for i in batch])
                    for info in batch:
                        self._delete(info)
                    out.append(f"compacted {len(batch)} parts ({tables['images'].num_rows} images) into part {new}")
        self._parts = {}
        return out

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

    def write_part(self, part: str, tables: dict) -> list[int]:
        """Write one part: views, groups and errors; then, under the commit lock, leave out positions
        that a complete part holds already (whoever committed them), check the tables (views: one row
        per view of each decoded image), write `images`, and last its manifest, the commit. A part that
        lost a file in between is not committed (IncompleteResults), so its positions stay to do.
        Returns the positions left out (committed already)."""
        import pyarrow as pa

        tables = {name: t if isinstance(t, pa.Table) else pa.Table.from_pandas(t, preserve_index=False)
                  for name, t in ((n, tables[n]) for n in TABLES)}
        self._write_tables(part, tables, ("views", "groups", "errors"))
        self._before_commit(part)
        with self.commit_lock():
            taken = sorted(set(int(p) for p in tables["images"].column("position").to_pylist()) & self.done_positions())
            if taken:  # committed meanwhile (by a process this one's lock cannot see): never twice
                tables = _without(tables, taken)
                if tables["images"].num_rows == 0:
                    for name in ("views", "groups", "errors"):
                        self._file(part, name).unlink(missing_ok=True)
                    return taken
                self._write_tables(part, tables, ("views", "groups", "errors"))
            self._commit(part, tables)
        return taken

    def _write_tables(self, part: str, tables: dict, names, row_group_size: dict | None = None) -> None:
        import pyarrow.parquet as pq

        for name in names:
            table, size = tables[name], (row_group_size or {}).get(name)
            atomic_write(self._file(part, name), lambda tmp, table=table, size=size:
                         pq.write_table(table, tmp, row_group_size=size), fsync=True)

    def _commit(self, part: str, tables: dict, replaces: list | None = None) -> None:
        """Check the written tables, write `images` and then the manifest (the caller holds the commit lock)."""
        import pyarrow.parquet as pq

        images = tables["images"]
        missing = [t for t in ("views", "groups", "errors") if not self._file(part, t).exists()]
        problem = f"lost its {' and '.join(missing)} file(s)" if missing else None
        n_views = self._n_views()
        ok = images.column("ok").to_pylist() if "ok" in images.column_names else [True] * images.num_rows
        n_ok = sum(bool(x) for x in ok)
        if problem is None and n_views is not None:
            rows = pq.read_metadata(self._file(part, "views")).num_rows
            if rows != n_views * n_ok:
                problem = f"has {rows} views rows for {n_ok} images of {n_views} views"
        if problem:
            raise IncompleteResults(f"{self.path}: part {part} {problem} before its commit; not committed")
        self._write_tables(part, tables, ("images",))
        rows = {t: tables[t].num_rows for t in TABLES}
        listed = [(int(p), str(i), bool(g)) for p, i, g in
                  zip(images.column("position").to_pylist(), images.column("image_id").to_pylist(), ok)]
        atomic_write(self._manifest_file(part), json.dumps(self._manifest(part, rows, listed, replaces)), fsync=True)

    def verify(self) -> list[PartInfo]:
        """The full check (`zoomstudy merge --verify`): every table's sha256 against its manifest. A part
        that fails is marked damaged (parts/<part>.damaged.json), so readers refuse it and its shard's
        next run deletes and recomputes it. Returns the parts that failed (the broken ones included)."""
        failed = []
        for name, info in sorted(self.scan().items()):
            if info.status != "complete":
                if info.status == "broken":
                    failed.append(info)
                continue
            for t in TABLES:
                f = self._file(name, t)
                if _sha256(f) != info.manifest["tables"][t]["sha256"]:
                    reason = f"its {t} file's content differs from its manifest's sha256"
                    atomic_write(self.path / "parts" / f"{name}.damaged.json",
                                 json.dumps({"reason": reason, "file": f.name}))
                    self._broken(info, reason, f.name)
                    failed.append(info)
                    break
        return failed

    def _file(self, part: str, table: str) -> Path:
        return self.path / "parts" / f"{part}.{table}.parquet"

    # ---- reading --------------------------------------------------------------------------------
    def _read_arrow(self, table: str, columns=None, *, dictionary: bool = False, scan=None, view: int | None = None):
        """One table of every committed part as one Arrow table (None when there is none), in one
        dataset scan (C++, no Python per file: 3x faster than a read per file at 1,563 parts). Parts
        with no rows in it are skipped (their text columns are stored as type null). dictionary: read
        image_id dictionary-encoded (each part's few ids once, not one string per view row). view: only
        the rows of that view (views table; Table 4's standard view)."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        scan = self.scan() if scan is None else scan
        self.check_complete(scan)
        parts = [p for p, i in sorted(scan.items()) if i.status != "uncommitted"
                 and (i.manifest is None or i.manifest["tables"][table]["rows"] > 0)]
        files = [str(self._file(p, table)) for p in parts]
        if not files:
            return None
        try:
            fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
                dictionary_columns={"image_id"} if dictionary else set()))
            where = None if view is None else ds.field("view") == int(view)
            return ds.dataset(files, format=fmt).to_table(columns=columns, filter=where, use_threads=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass  # parts whose schemas differ (an older version's, a column of type null): one by one
        kw = {"read_dictionary": ["image_id"]} if dictionary else {}
        if view is not None:
            kw["filters"] = [("view", "==", int(view))]
        tables = [pq.read_table(f, columns=columns, **kw) for f in files]
        # A part without rows in a table (no errors in it, or only bad images) stores its text columns
        # as type null: promote them, or reading parts with and without errors fails.
        try:
            return pa.concat_tables(tables, promote_options="default")
        except TypeError:  # pyarrow < 14
            return pa.concat_tables(tables, promote=True)

    def _read(self, table: str, columns=None):
        import pandas as pd

        if table == "images" and columns is None:
            return self._images_arrow_pandas()
        t = self._read_arrow(table, columns)
        if t is None:
            return pd.DataFrame(columns=columns) if columns else pd.DataFrame()
        return t.to_pandas()

    def _images_arrow_pandas(self):
        """The images table, read once per process while the set is unchanged (summary, labels,
        predictions and merge all need it)."""
        import pandas as pd

        scan = self.scan()
        self.check_complete(scan)
        signature = tuple((p, tuple(sorted(i.files.items()))) for p, i in sorted(scan.items())
                          if i.status != "uncommitted")
        if self._images_cache is None or self._images_cache[0] != signature:
            t = self._read_arrow("images", scan=scan)
            self._images_cache = (signature, pd.DataFrame() if t is None else t.to_pandas())
        return self._images_cache[1].copy(deep=False)

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
        has views. v: the views table's image_id and view columns (Arrow or pandas), when already read.
        Returns each view row's image index in `ok` (int64 [rows]), which `predictions` scatters by.
        The ids are mapped in Arrow (per part's dictionary, `index_in`), not string by string."""
        import pyarrow as pa

        if v is None:
            v = self._read_arrow("views", ["image_id", "view"], dictionary=True)
        if v is not None and not isinstance(v, pa.Table):
            v = pa.Table.from_pandas(v[["image_id", "view"]], preserve_index=False)
        n_views = self.grid.n_views
        if v is None or not v.num_rows:
            if ok:
                raise IncompleteResults(f"{self.path}: no views stored for {len(ok)} decoded image(s) (e.g. {ok[:3]})")
            return np.zeros(0, np.int64)
        row = _index_in(v.column("image_id"), pa.array(ok, pa.string()))
        if (row < 0).any():
            ids = v.column("image_id").combine_chunks()
            import pyarrow.compute as pc

            stray = sorted({str(x) for x in pc.filter(ids, pa.array(row < 0)).to_pylist()})
            raise IncompleteResults(f"{self.path}: views stored for {len(stray)} image(s) missing from the images "
                                    f"table or recorded as unreadable (e.g. {stray[:3]})")
        view = v.column("view").to_numpy().astype(np.int64)
        if ((view < 0) | (view >= n_views)).any():
            raise IncompleteResults(f"{self.path}: view indices outside 0..{n_views - 1}")
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
        want = set(image_ids)
        out = [p for p, info in sorted(self.scan().items()) if info.status != "uncommitted" and want & set(info.image_ids)]
        return out or ["?"]

    def predictions(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(image_ids in source order, top1 int16 [N, V], conf float32 [N, V]) for analyses."""
        images = self.images()
        ids = images["image_id"].tolist() if len(images) else []
        ok = [i for i, e in zip(ids, images.get("ok", [True] * len(ids))) if e]
        n_views = self.grid.n_views
        v = self._read_arrow("views", ["image_id", "view", "pred0", "prob0"], dictionary=True)
        row = self._views_per_image(ok, v)  # checked, and each row's image index
        if v is None or not v.num_rows:
            return [], np.zeros((0, n_views), np.int16), np.zeros((0, n_views), np.float32)
        top1 = np.empty((len(ok), n_views), np.int16)
        conf = np.empty((len(ok), n_views), np.float32)
        view = v.column("view").to_numpy()
        top1[row, view] = v.column("pred0").to_numpy()
        conf[row, view] = v.column("prob0").to_numpy()
        return ok, top1, conf

    def labels(self) -> list[tuple[int, ...]]:
        """Label sets of the stored (successfully decoded) images, in the order of `predictions`."""
        images = self.images()
        images = images[images["ok"]] if "ok" in images else images
        return [tuple(int(x) for x in lab) for lab in images["labels"]]

    def correct(self, labels=None, keep=None) -> np.ndarray:
        """bool [N, V]: top-1 in the image's label set (stored labels unless others are given)."""
        from zoomstudy.data.labels import correctness

        _, top1, _ = self.predictions()
        return correctness(top1.astype(np.int64), self.labels() if labels is None else labels, keep=keep)

    def relabelled(self, dataset: str, relabel: Callable, note: dict | None = None) -> "RelabelledResultSet":
        """This set read under other labels (ReaL, IN+ReaL): relabel(image_ids, labels) -> (new label
        sets, keep mask). See `data.registry.relabel_results`, which supplies the ReaL rule."""
        return RelabelledResultSet(self.path, dataset, relabel, note)

    def summary(self) -> dict:
        s = self.settings
        return {
            "path": str(self.path),
            "model": s["key"]["model"].get("name"),
            "dataset": s["key"]["dataset"].get("name"),
            "images": int(len(self.images())),
            "errors": int(len(self.errors())),
        }


class RelabelledResultSet(ResultSet):
    """A stored result set read with analysis-time labels (ReaL, IN+ReaL): same files, same key.

    images / labels / predictions / groups / views / errors keep only the images the relabelling
    keeps, with their new label sets; `settings` names the relabelled dataset and records the
    relabelling under 'analysis_relabel' (the on-disk key and path stay the swept set's). The rule
    itself comes from the data stage (`data.registry.relabel_results`), so the store knows no labels.
    """

    def __init__(self, path, dataset: str, relabel: Callable, note: dict | None = None):
        super().__init__(path)
        self.dataset = dataset
        self._relabel, self._note = relabel, dict(note or {})

    @cached_property
    def _base(self) -> ResultSet:
        """The stored result set, opened once (its scan cache then serves every read)."""
        return ResultSet(self.path)

    @cached_property
    def _relabelled(self):
        images = self._base.images()
        if not len(images):
            return images, set()
        new, keep = self._relabel(images["image_id"].tolist(), images["labels"].tolist())
        images = images.assign(labels=[list(x) for x in new])[np.asarray(keep, bool)].reset_index(drop=True)
        return images, set(images["image_id"])

    @cached_property
    def settings(self) -> dict:
        import copy

        s = copy.deepcopy(self._base.settings)
        stored = s["key"]["dataset"].get("name")
        s["key"]["dataset"] = {**s["key"]["dataset"], "name": self.dataset, "swept_as": stored}
        s["analysis_relabel"] = {"dataset": self.dataset, "result_set_dataset": stored, **self._note,
                                 "images_kept": len(self._relabelled[1])}
        return s

    def images(self):
        return self._relabelled[0]

    def _only_kept(self, df):
        if not len(df) or "image_id" not in df.columns:
            return df
        return df[df["image_id"].isin(self._relabelled[1])].reset_index(drop=True)

    def errors(self):
        return self._only_kept(self._base.errors())

    def groups(self):
        return self._only_kept(self._base.groups())

    def views(self, columns=None):
        return self._only_kept(self._base.views(columns))

    def predictions(self):
        ids, top1, conf = self._base.predictions()
        kept = self._relabelled[1]
        keep = np.array([i in kept for i in ids], bool)
        return [i for i, k in zip(ids, keep) if k], top1[keep], conf[keep]


def _index_in(column, values) -> np.ndarray:
    """Each entry's index in `values` (int64, -1 where absent). One hash lookup for the whole column:
    the dictionaries of its dictionary-encoded chunks (a part's few ids each) and its plain chunks are
    looked up together, then each chunk takes by its indices (at 1,563 parts: 0.1 s, not the 12.6 s of
    one lookup per chunk, each hashing all of `values` again)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = list(column.chunks)
    if not chunks:
        return np.zeros(0, np.int64)
    keys = [(c.dictionary if pa.types.is_dictionary(c.type) else c).cast(pa.string()) for c in chunks]
    mapped = pc.index_in(pa.concat_arrays(keys), value_set=values).fill_null(-1)
    mapped = mapped.to_numpy(zero_copy_only=False).astype(np.int64)
    out, start = [], 0
    for chunk, key in zip(chunks, keys):
        own = mapped[start:start + len(key)]
        start += len(key)
        if pa.types.is_dictionary(chunk.type):
            own = own[chunk.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)]
        out.append(own)
    return np.concatenate(out)


def _without(tables: dict, positions) -> dict:
    """A part's tables (Arrow) without the images at `positions` (their views, groups and errors too)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    drop = pa.array(sorted(int(p) for p in positions), pa.int64())
    images = tables["images"]
    gone = pc.is_in(images.column("position").cast(pa.int64()), drop)
    ids = pc.filter(images.column("image_id").cast(pa.string()), gone).unique()
    keep_ids = pc.filter(images.column("image_id").cast(pa.string()), pc.invert(gone)).unique()
    ids = pc.filter(ids, pc.invert(pc.is_in(ids, keep_ids)))  # an id also at a kept position keeps its rows
    out = {"images": images.filter(pc.invert(gone)),
           "errors": tables["errors"].filter(pc.invert(pc.is_in(tables["errors"].column("position").cast(pa.int64()), drop)))}
    for name in ("views", "groups"):
        t = tables[name]
        out[name] = t.filter(pc.invert(pc.is_in(t.column("image_id").cast(pa.string()), ids))) if t.num_rows else t
    return out


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


def repair(result_set: ResultSet, shards: int) -> list[str]:
    """`zoomstudy merge --repair`: make a result set hold each position once, deterministically, and
    fix its layout. Returns one line per change.

    * damaged parts (any name) are deleted: the next sweep of the layout computes their images again;
    * a position held by several complete parts is kept in the first part by name order and removed
      from the later ones: a later part holding nothing else is deleted, one holding other positions
      too is rewritten without them (a new part, committed before the old one is deleted, so a kill in
      between leaves a duplicate that the next repair removes the same way);
    * a set without layout.json gets the layout `shards` (1: unsharded, the default of `sweep`).
    Runs under the commit lock, so no sweep commits in between.
    """
    import pyarrow.parquet as pq

    rs, out = result_set, []
    folder = rs.path / "parts"
    with rs.commit_lock():
        scan = rs.scan()
        for info in rs._superseded:
            rs._delete(info)
            out.append(f"deleted part {info.name}, replaced by a compacted part")
        for info in [i for _, i in sorted(scan.items()) if i.status == "broken"]:
            names = sorted(info.file_names(), key=lambda n: not n.endswith(("manifest.json", "damaged.json")))
            for name in names:
                (folder / name).unlink(missing_ok=True)
            out.append(f"deleted damaged part {info.name} ({info.problem}); the next sweep computes its "
                       f"{len(info.positions) or 'unknown'} image(s) again")
        seen: dict[int, str] = {}
        for name, info in sorted(rs.scan().items()):
            if info.status != "complete":
                continue
            dup = sorted({p for p in info.positions if p in seen})
            if not dup:
                seen.update({p: name for p in info.positions})
                continue
            keep = [p for p in info.positions if p not in seen]
            firsts = sorted({seen[p] for p in dup})
            if keep:
                tables = _without({t: pq.read_table(rs._file(name, t)) for t in TABLES}, dup)
                new = rs.next_part(info.prefix or "part", new_token())
                rs._write_tables(new, tables, ("views", "groups", "errors"))
                rs._commit(new, tables)
                seen.update({p: new for p in keep})
                note = f"; its {len(keep)} other image(s) moved to part {new}"
            else:
                note = ""
            for fname in sorted(info.file_names(), key=lambda n: not n.endswith("manifest.json")):
                (folder / fname).unlink(missing_ok=True)
            out.append(f"removed {len(dup)} duplicate image(s) (positions {dup[:5]}{' ...' if len(dup) > 5 else ''}) "
                       f"from part {name}, kept in {', '.join(firsts[:3])}{note}")
        if rs.layout() is None:
            want = None if shards == 1 else shards
            atomic_write(rs.path / LAYOUT_FILE, json.dumps({"shards": want}))
            out.append(f"fixed the layout: {'unsharded' if want is None else f'{want} shards'} ({LAYOUT_FILE})")
    return out


def merge(result_set: ResultSet, shards: int, *, verify: bool = False) -> ResultSet:
    """Check that the shards of a sharded sweep together hold every image exactly once, each decoded
    image with every view of the grid exactly once.

    Shards of one sweep share the result set (same settings, same key) and write parts under their
    own prefix (`shard3of8-000012-<token>`), so merging is validation: no broken part, no position
    twice, none missing, grid.n_views views per decoded image. verify: also compare every table's
    sha256 with its part's manifest (`ResultSet.verify`; by default only sizes are checked).
    """
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    if verify:
        failed = result_set.verify()
        if failed:
            f = failed[0]
            more = f" and {len(failed) - 1} more part(s)" if len(failed) > 1 else ""
            raise IncompleteResults(
                f"{result_set.path}: part {f.name} fails verification: {f.problem} (parts/{f.bad_file}){more}; "
                f"it is marked damaged: {rerun_hint(f.prefix)} computes its images again"
            )
    result_set.check_complete()
    images = result_set._read("images")
    positions = images["position"].to_numpy() if len(images) else np.zeros(0, np.int64)
    dup = len(positions) - len(np.unique(positions))
    if dup:
        raise ValueError(f"{result_set.path}: {dup} images stored twice across shards; "
                         f"`zoomstudy merge {result_set.path} --shards {shards} --repair` removes the duplicates")
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
