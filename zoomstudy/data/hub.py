"""Hugging Face data: `HFSource` (a dataset split through `datasets`, from the hub or local parquet
files) and the pinned hub datasets read through `huggingface_hub` (`plan`, `fetch`, `HubParquetSource`):
resolve the revision, check the layout, read only the parquet files that hold the rows used.

`HFSource` reads images undecoded (`datasets.Image(decode=False)`) and decodes them with
`decode.load_image`, so a broken row gives an error Sample; its row count is checked before any image
is decoded. Pinned reads:

ImageNet-Hard's repository changed size four times (23,845 -> 13,630 -> 11,350 -> 10,980 rows) and
was resharded on the way, so a run is reproducible only if it names a commit and checks what that
commit holds. Here, in order, before any image is decoded:

1. the revision: a 40-hex sha is used as given; a branch ("main") is resolved to the commit it points
   at now (`HfApi.dataset_info(...).sha`), and that sha is what is read and recorded;
2. the layout: the split's parquet files must be one set `data/<split>-0000k-of-0000n-<hash>.parquet`
   with every k of 0..n-1 present, and n the pin's file count (9 for ImageNet-Hard) at the pinned sha.
   A mid-upload snapshot holding two sets (e292574: 5 + 9 files) fails here;
3. the row count: the sum of every file's parquet footer (a ranged read of the last bytes of each
   file, no image bytes fetched), checked against the pin's count;
4. the files: with max_rows=N only the first files that hold rows 0..N-1 are downloaded
   (`hf_hub_download`, the hub cache; one line first saying what and how big, then the hub's progress
   bars). The quick profile's 300 images are one file of ImageNet-Hard (~1,220 rows, ~190 MB), not 6.4 GB.

The source read from the files records the repository, the requested revision, the resolved sha, the
split's full row count and the files read; its fingerprint is over (repo, sha, split, files read), since
a commit sha names fixed content, so machines with other cache paths share one result set.
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from .decode import BadImage
from .fingerprint import DEFAULT_FINGERPRINT, check_fingerprint_method, files_fingerprint
from .labels import check_label_range, parse_labels
from .source import Record, Source, check_unique_ids


# ================================================================================================
# HFSource: a split through `datasets`
# ================================================================================================
#: `datasets` builders that read local files (no hub repository, so no revision to pin).
_PACKAGED_BUILDERS = ("parquet", "arrow", "csv", "json", "imagefolder", "webdataset")
_SHA = re.compile(r"^[0-9a-f]{40}$")


def _expand_data_files(data_files) -> dict[str, list[Path]] | None:
    """Local data_files (a path, a folder of parquet files, a glob, a list of them, or a
    {split: any of those} dict) -> {split: files}; without a dict `datasets` names the split "train"."""
    if data_files is None:
        return None
    per_split = data_files if isinstance(data_files, dict) else {"train": data_files}
    out: dict[str, list[Path]] = {}
    for split, items in per_split.items():
        items = [items] if isinstance(items, (str, os.PathLike)) else list(items)
        files: list[Path] = []
        for item in items:
            p = Path(item).expanduser()
            if p.is_dir():
                files.extend(sorted(p.rglob("*.parquet")))
            elif glob.has_magic(str(p)):
                files.extend(Path(f) for f in sorted(glob.glob(str(p), recursive=True)))
            else:
                files.append(p)
        out[str(split)] = files
    return out


def _split_files(split_files: dict[str, list[Path]] | None, split: str, data_files) -> list[Path] | None:
    """The files of `split` (None for a hub repository), after checking every listed file exists."""
    if split_files is None:
        return None
    if split not in split_files:
        raise ValueError(f"HFSource: split {split!r} not in data_files (splits: {sorted(split_files)})")
    every = [f for fs in split_files.values() for f in fs]
    missing = [str(f) for f in every if not f.is_file()]
    if not split_files[split] or missing:
        raise ValueError(f"HFSource: data files not found: {missing[:3] or data_files}")
    return split_files[split]


def _hf_image_ref(value):
    """A row's image value (Image(decode=False) dict, bytes, path, PIL image) -> load_image input."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise BadImage("row has no image (empty bytes and path)")
    if isinstance(value, (bytes, bytearray, str, Image.Image)):
        return value
    if value is None:
        raise BadImage("row has no image")
    raise BadImage(f"unsupported image value of type {type(value).__name__}")


class HFSource(Source):
    """A Hugging Face dataset split (hub repository or local parquet files through `datasets`).

    Hub repositories need a `revision` (commit sha best; a branch such as "main" moves, which is why
    `expected_rows` exists: ImageNet-Hard changed size several times). The row count is checked before
    any image is decoded. Images are read undecoded (`datasets.Image(decode=False)`) and decoded by
    `load_image`, so a broken row gives an error Sample. Image id: the `id_column` value, else the row
    index. Columns other than image and label go to Sample.meta (e.g. ImageNet-Hard's origin).
    A local parquet file or folder works with `repo_id="parquet", data_files=PATH` (split "train"); its
    files enter the fingerprint by `fingerprint` (see `FINGERPRINTS`).
    Streaming shards skip rows of one stream (each shard reads the whole stream's rows, and decodes
    only its own images).
    """

    kind = "hf"

    def __init__(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        split: str = "train",
        image_column: str = "image",
        label_column: str = "label",
        id_column: str | None = None,
        streaming: bool = False,
        expected_rows: int | None = None,
        data_files=None,
        cache_dir: str | os.PathLike | None = None,
        fingerprint: str = DEFAULT_FINGERPRINT,
    ):
        check_fingerprint_method("HFSource", fingerprint)
        self.fingerprint_method = fingerprint
        split_files = _expand_data_files(data_files)
        is_local = split_files is not None or repo_id in _PACKAGED_BUILDERS or Path(repo_id).expanduser().exists()
        if not is_local and not revision:
            raise ValueError(
                f"HFSource({repo_id!r}): pin a revision (a commit sha) for a hub dataset; "
                f"revision=None would read whatever the repository holds today"
            )
        if expected_rows is not None and expected_rows < 0:
            raise ValueError(f"HFSource: expected_rows must be >= 0 or None, got {expected_rows}")
        files = _split_files(split_files, split, data_files)
        import datasets  # lazy: a GPU box without `datasets` still imports zoomstudy.data

        super().__init__(repo_id if files is None else (files[0].parent.name or repo_id))
        self.repo_id, self.revision, self.split = repo_id, revision, split
        self.image_column, self.label_column, self.id_column = image_column, label_column, id_column
        self.streaming, self.expected_rows = streaming, expected_rows
        self._data_files = files
        load_files = None if split_files is None else {k: [str(f) for f in fs] for k, fs in split_files.items()}
        ds = datasets.load_dataset(
            repo_id, revision=revision, split=split, data_files=load_files, streaming=streaming, cache_dir=cache_dir
        )
        ds = self._check_columns(ds, datasets)
        self._rows = self._count_rows(ds)
        self._check_rows()
        self.resolved_revision = revision if (revision and _SHA.match(revision)) else None
        if not is_local and self.resolved_revision is None:
            self.resolved_revision = _resolve_hub_sha(repo_id, revision)
        self._ds_fingerprint = getattr(ds, "_fingerprint", None)
        if streaming:
            self._stream_ds = ds
        else:
            self._index(ds)

    # ---- opening, in __init__'s order -------------------------------------------------------------
    def _check_columns(self, ds, datasets):
        """The dataset with its image column read undecoded, after checking the named columns exist; sets
        the meta columns (every column but image and label; unknown for a stream without features)."""
        features = ds.features
        if features is None:
            self._meta_columns = None  # unknown until rows arrive
            return ds
        id_col = (self.id_column.partition(".")[0],) if self.id_column else ()
        for col in (self.image_column, self.label_column) + id_col:
            if col not in features:
                raise ValueError(f"HFSource({self.repo_id}): no column {col!r} (columns: {list(features)})")
        if isinstance(features[self.image_column], datasets.Image):
            ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        self._meta_columns = [c for c in features if c not in (self.image_column, self.label_column)
                              and not isinstance(features[c], datasets.Image)]
        return ds

    def _check_rows(self) -> None:
        """ValueError unless the row count is `expected_rows` (checked before any image is decoded)."""
        expected = self.expected_rows
        if expected is None:
            return
        where = f"{self.repo_id}@{self.revision or 'local'} split {self.split!r}"
        if self._rows is None:
            raise ValueError(
                f"HFSource: cannot check expected_rows={expected} for {where}: the stream has no row count "
                f"(use streaming=False or expected_rows=None)"
            )
        if self._rows != expected:
            raise ValueError(
                f"HFSource: {where} has {self._rows} rows, expected {expected} "
                f"(pin the revision that has {expected} rows)"
            )

    def _index(self, ds) -> None:
        """The records of an indexed dataset: every small column read once (labels, ids, meta), the
        images left in `ds` to be read by position."""
        other = [c for c in ds.column_names if c != self.image_column]
        nested_id = self.id_column is not None and self.id_column not in ds.column_names
        if nested_id:  # "image.path": a field of a struct column, read alone from the parquet files
            ids = self._nested_column(self.id_column)
            if len(ids) != ds.num_rows:
                raise ValueError(f"HFSource({self.repo_id}): {self.id_column} has {len(ids)} values for "
                                 f"{ds.num_rows} rows")
        rows = ds.select_columns(other).to_list()  # labels, ids, meta: small columns only
        if nested_id:
            for row, value in zip(rows, ids):
                row[self.id_column] = value
        self._images = ds.select_columns([self.image_column])
        records = [self._record(i, row, ref=i) for i, row in enumerate(rows)]
        check_unique_ids(f"HFSource({self.repo_id})", records)
        self._records = records

    def _nested_column(self, name: str) -> list:
        """The values of a struct field ("image.path") in row order, from the parquet files (only that field
        is read: an image's bytes never are)."""
        import pyarrow.parquet as pq

        if not self._data_files or not all(f.suffix == ".parquet" for f in self._data_files):
            raise ValueError(f"HFSource({self.repo_id}): id_column {name!r} (a struct field) needs local parquet files")
        out = []
        for f in self._data_files:
            out.extend(pq.read_table(f, columns=[name]).column(0).to_pylist())
        return out

    def _count_rows(self, ds) -> int | None:
        if not self.streaming:
            return ds.num_rows
        splits = getattr(ds.info, "splits", None)
        if splits and self.split in splits and splits[self.split].num_examples:
            return int(splits[self.split].num_examples)
        if self._data_files and all(f.suffix == ".parquet" for f in self._data_files):
            import pyarrow.parquet as pq

            return sum(pq.ParquetFile(f).metadata.num_rows for f in self._data_files)
        return None

    def _record(self, position: int, row: dict, ref) -> Record:
        image_id = str(row[self.id_column]) if self.id_column else str(position)
        try:
            labels = parse_labels(row[self.label_column])
        except ValueError as e:
            raise ValueError(f"HFSource({self.repo_id}): row {position}: {e}") from None
        check_label_range(labels, f"HFSource({self.repo_id}): row {position}")
        skip = (self.image_column, self.label_column)
        keep = self._meta_columns
        meta = {k: v for k, v in row.items() if k not in skip and (keep is None or k in keep)}
        return Record(image_id, ref, labels, meta)

    def _stream(self) -> Iterator[Record]:
        for i, row in enumerate(self._stream_ds):
            yield self._record(i, row, ref=row[self.image_column])

    def _total_rows(self) -> int | None:
        return len(self._records) if self._records is not None else self._rows

    def _read(self, ref):
        value = self._images[ref][self.image_column] if self._records is not None else ref
        return _hf_image_ref(value)

    def _provenance(self) -> dict:
        if self._data_files is not None:
            base = os.path.commonpath([str(f.resolve().parent) for f in self._data_files])
            files = [(os.path.relpath(f.resolve(), base), f) for f in self._data_files]
            location = [str(f.resolve()) for f in self._data_files]
            method = f"sha256 over sorted (relative data file, {self.fingerprint_method})"
            digest = files_fingerprint(files, self.fingerprint_method)
        else:
            location = self.repo_id
            key = [self.repo_id, self.resolved_revision or self.revision, self.split, self._rows, self._ds_fingerprint]
            method = "sha256 over (repo, resolved revision, split, rows, datasets fingerprint)"
            digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()
        return {
            "location": location,
            "revision": self.revision,
            "resolved_revision": self.resolved_revision,
            "split": self.split,
            "streaming": self.streaming,
            "fingerprint_method": method,
            "fingerprint": digest,
        }


def _resolve_hub_sha(repo_id: str, revision: str | None) -> str | None:
    """The commit a branch or tag points at now (recorded in provenance); None when offline."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception:  # offline, gated, or no huggingface_hub: provenance keeps the requested revision
        return None


# ================================================================================================
# Pinned hub reads: resolve, check the layout, count the rows, fetch only the files needed
# ================================================================================================
#: A sharded parquet file of the hub's layout: data/validation-00003-of-00009-<hash>.parquet.
_SHARD = re.compile(r"^(?:.*/)?(?P<split>[^/]+?)-(?P<index>\d{5})-of-(?P<count>\d{5})(?:-[^/]*)?\.parquet$")
#: Bytes read from the end of a remote parquet file to find its footer (one request covers most).
_TAIL = 64 * 1024


@dataclass(frozen=True)
class HubFile:
    path: str  # in the repository
    size: int | None  # bytes
    rows: int | None = None  # from the parquet footer


def _api():
    from huggingface_hub import HfApi

    return HfApi()


def resolve_revision(repo: str, revision: str) -> str:
    """The commit sha a branch or tag points at now (a 40-hex sha is returned as it is)."""
    if re.fullmatch(r"[0-9a-f]{40}", revision or ""):
        return revision
    sha = _api().dataset_info(repo, revision=revision).sha
    if not sha:
        raise ValueError(f"the hub gave no commit sha for {repo}@{revision}")
    return sha


def split_files(repo: str, sha: str, split: str) -> list[HubFile]:
    """The split's parquet files at commit `sha`, with sizes (one API call)."""
    info = _api().dataset_info(repo, revision=sha, files_metadata=True)
    out = []
    for s in info.siblings or []:
        m = _SHARD.match(s.rfilename)
        if s.rfilename.endswith(".parquet") and (m is None or m["split"] == split) and (
                m is not None or f"/{split}" in f"/{s.rfilename}"):
            out.append(HubFile(s.rfilename, s.size))
    return sorted(out, key=lambda f: f.path)


def check_layout(files: list[HubFile], split: str, expected_files: int | None) -> list[HubFile]:
    """The files in shard order when they form one complete set of the expected size, else a one-line
    ValueError saying what was found."""
    sets: dict[int, dict[int, HubFile]] = {}
    stray = []
    for f in files:
        m = _SHARD.match(f.path)
        if m is None:
            stray.append(f.path)
        else:
            sets.setdefault(int(m["count"]), {})[int(m["index"])] = f
    found = "; ".join([f"{len(v)} of a {n}-file set" for n, v in sorted(sets.items())] +
                      ([f"{len(stray)} other parquet file(s) ({stray[0]})"] if stray else [])) or "no parquet files"
    want = f"{expected_files}-file set {split}-0000k-of-{expected_files:05d}-<hash>.parquet" if expected_files \
        else f"one complete set {split}-0000k-of-0000n-<hash>.parquet"
    if stray or len(sets) != 1:
        raise ValueError(f"found {found}; expected one {want}")
    (count, members), = sets.items()
    if sorted(members) != list(range(count)) or (expected_files and count != expected_files):
        raise ValueError(f"found {found}; expected one {want}")
    return [members[i] for i in range(count)]


def _footer_rows(repo: str, sha: str, path: str) -> int:
    """Rows of a remote parquet file from its footer: a ranged GET of the last bytes (two when the
    footer is larger than _TAIL), parsed by pyarrow. No row data is fetched."""
    import pyarrow.parquet as pq
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, path, repo_type="dataset", revision=sha)

    def tail(n: int) -> bytes:
        r = get_session().get(url, headers={**build_hf_headers(), "Range": f"bytes=-{n}"}, follow_redirects=True)
        r.raise_for_status()
        return r.content

    data = tail(_TAIL)
    if data[-4:] != b"PAR1":
        raise ValueError(f"{path}: not a parquet file (no PAR1 footer)")
    meta_len = int.from_bytes(data[-8:-4], "little")
    if meta_len + 8 > len(data):
        data = tail(meta_len + 8)
    return pq.ParquetFile(io.BytesIO(b"PAR1" + data[-(meta_len + 8):])).metadata.num_rows


def _mb(n: int | None) -> str:
    return "? MB" if n is None else f"{n / 1e6:,.1f} MB"


def fetch(repo: str, sha: str, files: list[HubFile], cache_dir=None, *, what: str = "") -> list[Path]:
    """Local paths of `files` at commit `sha`, downloaded into the hub cache when not there yet.
    One line first (what, how many, how big, how much is cached already), then the hub's progress bars."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = [isinstance(try_to_load_from_cache(repo, f.path, cache_dir=cache_dir, revision=sha, repo_type="dataset"),
                         str) for f in files]
    todo = [f for f, c in zip(files, cached) if not c]
    if todo:
        size = sum(f.size or 0 for f in todo) if all(f.size is not None for f in todo) else None
        print(f"downloading {len(todo)} parquet file(s), {_mb(size)}, of {repo}@{sha[:7]}{what}"
              f"{f'; {sum(cached)} already cached' if any(cached) else ''}", file=sys.stderr, flush=True)
    return [Path(hf_hub_download(repo, f.path, repo_type="dataset", revision=sha, cache_dir=cache_dir)) for f in files]


class HubParquetSource(HFSource):
    """An `HFSource` over the parquet files of a hub commit read so far (all, or the first few for a
    prefix): rows are those of the files read, in repository order, so position p is the dataset's
    row p. Provenance names the repository, both revisions, the full row count and the files read."""

    def __init__(self, repo: str, revision: str, sha: str, split: str, files: list[HubFile], local: list[Path],
                 total_rows: int, **kw):
        super().__init__("parquet", data_files=local, split="train", **kw)
        self.repo_id, self.revision, self.split = repo, revision, split
        self.resolved_revision = sha
        self.hub_files, self.hub_rows = files, total_rows

    def _provenance(self) -> dict:
        read = [f.path for f in self.hub_files]
        key = [self.repo_id, self.resolved_revision, self.split, self.hub_rows, read]
        return {
            "location": self.repo_id,
            "revision": self.revision,
            "resolved_revision": self.resolved_revision,
            "split": self.split,
            "streaming": False,
            "hub_rows": self.hub_rows,
            "hub_files_read": read,
            "hub_bytes_read": sum(f.size or 0 for f in self.hub_files),
            "fingerprint_method": "sha256 over (repo, commit sha, split, full row count, files read)",
            "fingerprint": hashlib.sha256(json.dumps(key).encode()).hexdigest(),
        }


@dataclass(frozen=True)
class HubPlan:
    """What a pinned read will fetch: the resolved sha, every file of the split (with rows), the
    full row count and the files needed for the rows asked for. rows_from: how the full count was
    had ("parquet footers", or "the pin" when offline with only some files cached)."""

    repo: str
    revision: str
    sha: str
    split: str
    files: tuple[HubFile, ...]
    needed: tuple[HubFile, ...]
    total_rows: int | None = None
    rows_from: str = "parquet footers"

    @property
    def rows(self) -> int:
        return self.total_rows if self.total_rows is not None else sum(f.rows for f in self.files)


def _cached(repo: str, sha: str, path: str, cache_dir) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, path, cache_dir=cache_dir, revision=sha, repo_type="dataset")
    return Path(hit) if isinstance(hit, str) else None


def _local_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _choose(files: list[HubFile], max_rows: int | None) -> list[HubFile]:
    needed, have = [], 0
    for f in files:
        if max_rows is not None and have >= max_rows:
            break
        needed.append(f)
        have += f.rows
    return needed


def _offline_plan(repo: str, sha: str, split: str, expected_files: int | None, pin_rows: int | None,
                  max_rows: int | None, cache_dir, why: BaseException) -> HubPlan:
    """The hub cannot be reached: the files of `sha` already in the hub cache, when they are the first
    files of the pinned set and hold the rows asked for; the full count is then the pin's."""
    from huggingface_hub import constants

    owner, _, name = repo.partition("/")
    snap = Path(cache_dir or constants.HF_HUB_CACHE) / f"datasets--{owner}--{name}" / "snapshots" / sha
    cached = sorted(str(p.relative_to(snap)) for p in snap.rglob("*.parquet")) if snap.is_dir() else []
    mine = [c for c in cached if (m := _SHARD.match(c)) and m["split"] == split]
    if not mine or expected_files is None or pin_rows is None:
        raise ConnectionError(f"the hub is unreachable ({type(why).__name__}) and the cache holds no files of "
                              f"the pinned commit {sha[:7]}") from why
    counts = {int(_SHARD.match(c)["count"]) for c in mine}
    index = sorted(int(_SHARD.match(c)["index"]) for c in mine)
    if counts != {expected_files} or index != list(range(len(index))):
        raise ConnectionError(f"the hub is unreachable and the cached files of {sha[:7]} are not the first files "
                              f"of its {expected_files}-file set") from why
    files = [HubFile(c, (snap / c).stat().st_size, _local_rows(snap / c)) for c in mine]
    needed = _choose(files, max_rows)
    if max_rows is None or sum(f.rows for f in needed) < max_rows:
        if len(files) < expected_files:
            raise ConnectionError(f"the hub is unreachable and only {len(files)} of the {expected_files} files of "
                                  f"{sha[:7]} are cached ({sum(f.rows for f in files):,} rows)") from why
    return HubPlan(repo, sha, sha, split, tuple(files), tuple(needed), pin_rows, "the pin (offline, cached files)")


def plan(repo: str, revision: str, split: str, *, expected_files: int | None, max_rows: int | None,
         cache_dir=None, pin_rows: int | None = None) -> HubPlan:
    """Resolve, list, check the layout, count rows from the footers (local metadata for files already
    cached) and choose the files (see the module docstring); raises ValueError (one line, without the
    dataset's name) when the layout is not the pin's. Offline (the hub unreachable) at a 40-hex sha:
    the files already cached, when they are the pinned set's first and hold the rows asked for
    (`pin_rows` is then the full count)."""
    sha = resolve_revision(repo, revision)
    try:
        listed = split_files(repo, sha, split)
    except Exception as e:  # noqa: BLE001 - offline, DNS, timeouts: try the cache
        if "RepositoryNotFound" in type(e).__name__ or "RevisionNotFound" in type(e).__name__:
            raise
        return _offline_plan(repo, sha, split, expected_files, pin_rows, max_rows, cache_dir, e)
    files = check_layout(listed, split, expected_files)
    out = []
    for f in files:
        local = _cached(repo, sha, f.path, cache_dir)
        out.append(HubFile(f.path, f.size, _local_rows(local) if local else _footer_rows(repo, sha, f.path)))
    return HubPlan(repo, revision, sha, split, tuple(out), tuple(_choose(out, max_rows)))
