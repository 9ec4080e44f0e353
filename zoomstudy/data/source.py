"""The source contract: every dataset yields Samples with a stable id, an RGB image and a label set.

Sources (`folders.ImageFolderSource`, `folders.CsvSource`, `folders.DevkitValSource`,
`folders.ObjectNetSource`, `hub.HFSource`, `synthetic.SyntheticSource`) subclass `Source` and share one
interface: iterate `Sample`s (an undecodable image gives `Sample(image=None, error=reason)`, it does not
stop a 50,000-image sweep), `len()`, `name`, `provenance()` (JSON: kind, location, revision, rows and a
fingerprint that changes when the data changes: by default each file's size, modification time and the
sha256 of its first and last 64 KiB, see `fingerprint.FINGERPRINTS`) and `shard(index, count)` (every
count-th item, so that N workers split a dataset without coordination and the union is the whole).
A source knows its items as `Record`s (id, labels, how to read it) before decoding any (`decode.load_image`).

Labels are always ImageNet-1k indices (0-999, sorted-synset order, `labels.imagenet_synsets`); the label
space of a dataset (e.g. the 200 classes of ImageNet-A) says which logits evaluation keeps, it does
not renumber labels.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PIL import Image, ImageFile

from .decode import BadImage, DecodeOptions, load_image
from .fingerprint import CONTENT_KEY, FINGERPRINTS, file_token
from .labels import parse_labels


@dataclass
class Sample:
    """One image of a dataset. `image` is None when it could not be decoded; `error` says why.

    labels: ImageNet-1k indices (0-999) of every correct class (one for single-label sets, several
    for ReaL / ImageNet-Hard, possibly empty for ReaL images the paper leaves out).
    """

    image_id: str
    image: Any  # PIL.Image.Image in mode RGB, or None
    labels: tuple[int, ...]
    error: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Record:
    """What a source knows about an item before decoding it: id, labels, and how to read it."""

    image_id: str
    ref: Any  # source-specific: a path, a row position, an image value
    labels: tuple[int, ...]
    meta: dict = field(default_factory=dict)



class Source:
    """Base of every source: an ordered list of Records (or a stream of them) plus a reader.

    Subclasses fill `self._records` (indexed sources) or override `_stream` and `_total_rows`
    (streaming sources), implement `_read(ref)` and describe themselves in `_provenance`.
    """

    kind = "source"

    def __init__(self, name: str):
        self.name = name
        self._records: list[Record] | None = None  # None: a stream
        self._shard: tuple[int, int] = (0, 1)
        self._decode = DecodeOptions()
        self._relabels: list[str] = []
        self._extra: dict = {}
        self._tokens: dict = {}  # (method, path) -> file token, shared by the fingerprints (copies share it)

    # ---- hooks -------------------------------------------------------------------------------
    def _read(self, ref):
        """ref -> something `load_image` accepts (a path by default); BadImage when unreadable."""
        return ref

    def _stream(self) -> Iterator[Record]:
        return iter(self._records)

    def _total_rows(self) -> int | None:
        return None if self._records is None else len(self._records)

    def _provenance(self) -> dict:
        """kind-specific fields: at least location, revision, fingerprint, fingerprint_method."""
        raise NotImplementedError

    # ---- the interface -----------------------------------------------------------------------
    def _iter_records(self) -> Iterator[Record]:
        index, count = self._shard
        if self._records is not None:
            return iter(self._records[index::count])
        return itertools.islice(self._stream(), index, None, count)

    def iter_records(self) -> Iterator[Record]:
        """This shard's records in order, without decoding anything (streaming sources too); pass one to
        `sample` to decode it. How a DataLoader worker decodes only its own share of a stream."""
        return self._iter_records()

    def sample(self, record: Record) -> Sample:
        """The Sample of one record of this source (decodes its image; an unreadable one gives error)."""
        return self._sample(record)

    def records(self) -> list[Record]:
        """This shard's records (ids, labels, meta) without decoding anything; indexed sources only."""
        if self._records is None:
            raise ValueError(f"{self.name}: records() needs an indexed source; this one streams")
        index, count = self._shard
        return self._records[index::count]

    def __iter__(self) -> Iterator[Sample]:
        for rec in self._iter_records():
            yield self._sample(rec)

    def __len__(self) -> int:
        total = self._total_rows()
        if total is None:
            raise TypeError(f"{self.name}: length unknown (a stream without row-count metadata)")
        index, count = self._shard
        return len(range(index, total, count))

    def __getitem__(self, i: int) -> Sample:
        """Map-style access (torch DataLoader workers): the i-th Sample of this shard."""
        if self._records is None:
            raise ValueError(f"{self.name}: indexing needs an indexed source; this one streams")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name}: index {i} out of range for {n} items")
        index, count = self._shard
        return self._sample(self._records[index + (i % n) * count])

    def __repr__(self) -> str:
        try:
            n = len(self)
        except TypeError:
            n = "?"
        shard = "" if self._shard == (0, 1) else f", shard={self._shard[0]}/{self._shard[1]}"
        return f"{type(self).__name__}(name={self.name!r}, rows={n}{shard})"

    def _sample(self, rec: Record) -> Sample:
        opts = self._decode
        try:
            image = load_image(self._read(rec.ref), exif_transpose=opts.exif_transpose, max_pixels=opts.max_pixels)
        except BadImage as e:
            return Sample(rec.image_id, None, rec.labels, error=e.reason, meta=dict(rec.meta))
        b = opts.crop_border
        if b and image.width > 2 * b and image.height > 2 * b:
            image = image.crop((b, b, image.width - b, image.height - b))
        return Sample(rec.image_id, image, rec.labels, meta=dict(rec.meta))

    def shard(self, index: int, count: int) -> "Source":
        """Items index, index + count, index + 2 count, ... by position (shards of shards compose)."""
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard: need count >= 1 and 0 <= index < count, got index={index}, count={count}")
        i0, c0 = self._shard
        out = copy.copy(self)
        out._shard = (i0 + c0 * index, c0 * count)
        return out

    def with_decoding(
        self,
        *,
        exif_transpose: bool | None = None,
        crop_border: int | None = None,
        max_pixels: int | None = None,
    ) -> "Source":
        """A copy decoding differently (None keeps the current setting)."""
        if crop_border is not None and crop_border < 0:
            raise ValueError(f"with_decoding: crop_border must be >= 0, got {crop_border}")
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"with_decoding: max_pixels must be >= 1, got {max_pixels}")
        d = self._decode
        out = copy.copy(self)
        out._decode = DecodeOptions(
            exif_transpose=d.exif_transpose if exif_transpose is None else bool(exif_transpose),
            crop_border=d.crop_border if crop_border is None else int(crop_border),
            max_pixels=d.max_pixels if max_pixels is None else int(max_pixels),
        )
        return out

    def relabel(self, fn: Callable[[Record], tuple[int, ...] | None], note: str) -> "Source":
        """A copy whose labels are fn(record); records for which fn returns None are left out.

        Applies to the whole dataset; an existing shard setting is kept and applies afterwards.
        `note` is recorded in the provenance.
        """
        if self._records is None:
            raise ValueError(f"{self.name}: relabel needs an indexed source; this one streams")
        records = []
        for rec in self._records:
            labels = fn(rec)
            if labels is not None:
                records.append(Record(rec.image_id, rec.ref, parse_labels(list(labels)), rec.meta))
        out = copy.copy(self)
        out._records = records
        out._relabels = [*self._relabels, note]
        return out

    def provenance(self) -> dict:
        """JSON-serialisable description: what was read, from where, at which revision, and a
        fingerprint of the content (whole dataset, whatever the shard)."""
        out = {"kind": self.kind, "name": self.name, "rows": self._total_rows()}
        out.update(self._provenance())
        if self._records is not None:
            h = hashlib.sha256()
            for rec in self._records:
                h.update(f"{rec.image_id}\t{','.join(map(str, rec.labels))}\n".encode())
            out["labels_fingerprint"] = h.hexdigest()
            content = self._content_fingerprint()
            if content is not None:
                out["content"] = content
        index, count = self._shard
        try:
            shard_rows = len(self)
        except TypeError:
            shard_rows = None
        out["shard"] = {"index": index, "count": count, "rows": shard_rows}
        out["relabel"] = list(self._relabels)
        out["decoding"] = {
            "exif_transpose": self._decode.exif_transpose,
            "crop_border": self._decode.crop_border,
            "max_pixels": self._decode.max_pixels or Image.MAX_IMAGE_PIXELS,
            "pil_load_truncated_images": bool(ImageFile.LOAD_TRUNCATED_IMAGES),
            "pillow": Image.__version__,
        }
        out.update(self._extra)
        return out


    def _content_fingerprint(self) -> dict | None:
        """The layout-free key of a source of one file per image (`CONTENT_KEY`), None for others."""
        method = getattr(self, "fingerprint_method", None)
        if method not in FINGERPRINTS or not self._records or not all(isinstance(r.ref, Path) for r in self._records):
            return None
        h = hashlib.sha256()
        for rec in self._records:
            h.update(f"{file_token(rec.ref, method, self._tokens)}\t{','.join(map(str, rec.labels))}\n".encode())
        return {"scheme": CONTENT_KEY, "method": method, "fingerprint": h.hexdigest()}


def check_unique_ids(owner: str, records: Sequence[Record]) -> None:
    """ValueError naming `owner` at the first image id listed twice (ids key the store and the ReaL join)."""
    seen: set[str] = set()
    for rec in records:
        if rec.image_id in seen:
            raise ValueError(f"{owner}: duplicate image id {rec.image_id!r}")
        seen.add(rec.image_id)


def load_sample(source, position: int):
    """The Sample at `position` of a source: indexed access, or by walking a stream."""
    if getattr(source, "_records", None) is not None:
        return source[position]
    for i, sample in enumerate(itertools.islice(iter(source), position + 1)):
        if i == position:
            return sample
    raise IndexError(f"position {position} is beyond the end of {source!r}")
