"""Pinned hub datasets read through `huggingface_hub`: resolve the revision, check the layout, read
only the parquet files that hold the rows used.

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

import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .sources import HFSource

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
