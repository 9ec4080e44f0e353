"""Image sources: every dataset yields Samples with a stable id, an RGB image and a label set.

Two layers, in this module because they share one contract (the `Sample`), and the registry on top:

* `load_image` decodes one image robustly. The authors did `Image.open(path).convert("RGB")`; that is
  the default here too, with the failure modes made explicit: a file that cannot be decoded raises
  `BadImage` with a short reason (truncated, empty, not an image, decompression bomb) instead of a
  PIL exception deep inside a worker, and the decode is forced (`img.load()`) so a truncated JPEG
  fails here and not later inside a resize. Two deliberate departures from a bare `.convert("RGB")`:
  16-bit and 32-bit grey images are scaled to 8 bits (PIL's convert clips them to 0..255, so almost
  every pixel of a 16-bit image becomes white) and float images are mapped from 0..1. Alpha is
  dropped exactly as `.convert("RGB")` drops it (the stored colour is kept, nothing is composited on
  a background), because that is what the paper's numbers were computed on.
* Sources (`ImageFolderSource`, `CsvSource`, `HFSource`, `ObjectNetSource`, `SyntheticSource`) share
  one interface: iterate `Sample`s (an undecodable image gives `Sample(image=None, error=reason)`,
  it does not stop a 50,000-image sweep), `len()`, `name`, `provenance()` (JSON: kind, location,
  revision, rows and a fingerprint that changes when the data changes: by default each file's size,
  modification time and the sha256 of its first and last 64 KiB, see `FINGERPRINTS`) and
  `shard(index, count)`
  (every count-th item, so that N workers split a dataset without coordination and the union is
  the whole).
* `DATASETS` (in `registry`), the registry of the paper's datasets (SPEC sections 2 and 5): label
  space, expected row count, data folder, hub repository when there is one, and how to point the
  package at a local copy when the data is gated. `open_dataset(name, root)` checks the row count
  before anything is decoded.

Labels are always ImageNet-1k indices (0-999, sorted-synset order, `labels.imagenet_synsets`); the label
space of a dataset (e.g. the 200 classes of ImageNet-A) says which logits evaluation keeps, it does
not renumber labels.
"""
from __future__ import annotations

import copy
import csv as _csv
import functools
import glob
import hashlib
import io
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .labels import N_IMAGENET_CLASSES, _timm_info, synset_index


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


# ================================================================================================
# Decoding
# ================================================================================================
class BadImage(ValueError):
    """An image that cannot be decoded; `reason` is short enough for a results table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    """Map PIL's many exception types to the few reasons a user can act on."""
    if isinstance(exc, Image.DecompressionBombError):
        return f"decompression bomb ({_short(exc)})"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if "truncated" in str(exc).lower():
        return f"truncated file ({_short(exc)})"
    return f"decode error ({_short(exc)})"


def _open(src) -> tuple[Image.Image, bool]:
    """Open (header only) a path, bytes, file object or PIL image. Returns (image, opened_here)."""
    if isinstance(src, Image.Image):
        return src, False
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise BadImage("empty file (0 bytes)")
        fp, what = io.BytesIO(bytes(src)), "bytes"
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        try:
            if path.stat().st_size == 0:
                raise BadImage("empty file (0 bytes)")
        except FileNotFoundError:
            raise BadImage(f"file not found: {path}") from None
        except OSError as e:
            raise BadImage(f"unreadable file ({_short(e)})") from e
        fp, what = path, str(path)
    elif hasattr(src, "read"):
        fp, what = src, "file object"
    else:
        raise ValueError(f"load_image: src must be a path, bytes, a file or a PIL image, got {type(src).__name__}")
    try:
        return Image.open(fp), True
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error... by format
        raise BadImage(_reason(e)) from e


def _sixteen_bit_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit grey (I;16*): the top byte, as a 16-to-8-bit conversion should (PIL's convert clips)."""
    arr = np.asarray(im).astype(np.uint32)  # [H, W], 0..65535
    return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")


def _int32_to_rgb(im: Image.Image) -> Image.Image:
    """Mode I: 16-bit PNG/TIFF decode to I in older Pillows, so values within 0..65535 are taken as
    16-bit samples (>> 8); anything else (negative or wider) is stretched from its min..max."""
    arr = np.asarray(im).astype(np.int64)  # [H, W]
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= 65535:
        out = arr >> 8
    else:
        span = max(hi - lo, 1)
        out = ((arr - lo) * 255 + span // 2) // span  # integer rounding, half up
    return Image.fromarray(out.astype(np.uint8), "L").convert("RGB")


def _float_to_rgb(im: Image.Image) -> Image.Image:
    """Mode F: intensities in 0..1 when the maximum is at most 1, else grey levels 0..255 (clipped);
    NaN and infinities become 0."""
    arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)  # [H, W]
    if arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L").convert("RGB")


def _palette_to_rgb(im: Image.Image) -> Image.Image:
    """Same pixels as `.convert("RGB")` (palette colours, transparency ignored); going through RGBA
    only avoids PIL's warning about palette transparency given as bytes."""
    if "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


#: Modes that need more than PIL's `.convert("RGB")`; every other mode (L, 1, LA, RGBA, CMYK,
#: YCbCr, ...) goes through `.convert("RGB")`, the authors' conversion.
_TO_RGB: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": lambda im: im,
    "I;16": _sixteen_bit_to_rgb,
    "I;16L": _sixteen_bit_to_rgb,
    "I;16B": _sixteen_bit_to_rgb,
    "I;16N": _sixteen_bit_to_rgb,
    "I": _int32_to_rgb,
    "F": _float_to_rgb,
    "P": _palette_to_rgb,
}


def _to_rgb(im: Image.Image) -> Image.Image:
    convert = _TO_RGB.get(im.mode)
    if convert is not None:
        return convert(im)
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise BadImage(f"unsupported image mode {im.mode!r}") from e


def load_image(src, *, exif_transpose: bool = False, max_pixels: int | None = None) -> Image.Image:
    """Decode `src` (path, bytes, binary file object or PIL image) fully into a new RGB image.

    exif_transpose: False (default) keeps the stored pixel orientation, as the authors'
    `Image.open().convert("RGB")` did; True applies the EXIF orientation tag (what a viewer shows).
    max_pixels: width * height above which the image is refused as a decompression bomb; None uses
    PIL's `Image.MAX_IMAGE_PIXELS` (89,478,485). PIL itself refuses twice its limit at open time, so a
    larger `max_pixels` also needs a larger `Image.MAX_IMAGE_PIXELS`.
    Raises BadImage (a ValueError) with a short reason. Note: if some library has set
    `PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`, PIL pads truncated files with grey instead of
    failing; `Source.provenance()` records that flag.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"load_image: max_pixels must be >= 1 or None, got {max_pixels}")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    im, opened_here = _open(src)
    try:
        w, h = im.size
        if w < 1 or h < 1:
            raise BadImage(f"empty image ({w}x{h})")
        if limit is not None and w * h > limit:
            raise BadImage(f"decompression bomb ({w}x{h} = {w * h} pixels > {limit})")
        try:
            im.load()  # the full decode: truncated and corrupt data fail here
            oriented = ImageOps.exif_transpose(im) if exif_transpose else im
            rgb = _to_rgb(oriented)
        except BadImage:
            raise
        except Exception as e:
            raise BadImage(_reason(e)) from e
        # never hand back the caller's object or one tied to an open file
        return rgb.copy() if rgb is im else rgb
    finally:
        if opened_here:
            im.close()


# ================================================================================================
# Labels
# ================================================================================================
_LABEL_SPLIT = re.compile(r"[;,\s]+")


def parse_labels(value) -> tuple[int, ...]:
    """A label cell -> sorted tuple of distinct non-negative ints.

    Accepts an int, a list/array of ints, None/NaN/"" (empty set), or a string: "3", "3;5", "3 5",
    "3,5" or a JSON list "[3, 5]".
    """
    if value is None:
        return ()
    if isinstance(value, bool):
        raise ValueError(f"label must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        items = [int(value)]
    elif isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ()
        if not float(value).is_integer():
            raise ValueError(f"label must be an integer, got {value!r}")
        items = [int(value)]
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"bad JSON label list {text!r}") from e
            return parse_labels(parsed)
        try:
            items = [int(tok) for tok in _LABEL_SPLIT.split(text) if tok]
        except ValueError as e:
            raise ValueError(f"labels must be integers separated by ';', ',' or spaces, got {text!r}") from e
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = []
        for v in value:
            items.extend(parse_labels(v))
    else:
        raise ValueError(f"cannot read labels from {type(value).__name__} {value!r}")
    if any(v < 0 for v in items):
        raise ValueError(f"labels must be >= 0, got {items}")
    return tuple(sorted(set(items)))


def check_label_range(labels: Sequence[int], where: str) -> tuple[int, ...]:
    """labels unchanged, or ValueError naming `where` when one is not an ImageNet-1k index (0-999)."""
    bad = [v for v in labels if not 0 <= v < N_IMAGENET_CLASSES]
    if bad:
        raise ValueError(f"{where}: label {bad[0]} is outside the label space: labels are ImageNet-1k indices "
                         f"0..{N_IMAGENET_CLASSES - 1}")
    return tuple(labels)


@functools.lru_cache(maxsize=1)
def real_labels() -> tuple[tuple[int, ...], ...]:
    """ImageNet-ReaL label sets of the 50,000 val images, in ILSVRC2012_val_00000001.. order.

    From timm's `imagenet_real_labels.json`; 3,163 sets are empty (the images ReaL leaves out).
    """
    raw = json.loads(_timm_info("imagenet_real_labels.json").read_text())
    if len(raw) != 50000:
        raise RuntimeError(f"timm's imagenet_real_labels.json has {len(raw)} entries, expected 50000")
    return tuple(tuple(sorted(set(int(v) for v in s))) for s in raw)


def real_label_sets(original_labels: Sequence[int]) -> list[tuple[int, ...]]:
    """IN+ReaL (SPEC 2): each val image's original label united with its ReaL set, all 50,000.

    original_labels: the 50,000 original val labels in ILSVRC2012_val_00000001.. order. For ReaL
    alone use `real_labels()` and leave out the empty sets (46,837 remain).
    """
    real = real_labels()
    if len(original_labels) != len(real):
        raise ValueError(f"real_label_sets: need {len(real)} original labels in val order, got {len(original_labels)}")
    return [tuple(sorted(set(r) | {int(o)})) for o, r in zip(original_labels, real)]


# ================================================================================================
# Fingerprints
# ================================================================================================
def _size_token(path: Path) -> str:
    return str(path.stat().st_size)


#: Bytes hashed at each end of a file by the default ("quick") fingerprint.
EDGE_BYTES = 64 * 1024


def _quick_token(path: Path) -> str:
    """size, mtime (ns) and the sha256 of the first and last EDGE_BYTES (the whole file up to 128 KiB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        h.update(f.read(EDGE_BYTES))
        if st.st_size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, st.st_size - EDGE_BYTES))
            h.update(f.read(EDGE_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:32]}"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (the 'sha256' fingerprint; the store's manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: How a file enters a content fingerprint.
#: "quick" (default): size + modification time (ns) + sha256 of the first and last 64 KiB. Sees any
#:   replacement or edit that changes the size, the time, or either end (every byte of a file up to
#:   128 KiB); misses only a same-size edit confined to the middle of a larger file whose modification
#:   time was put back. Copies share it only when they keep modification times (rsync -a, cp -p, tar).
#: "sha256": every byte; exact, copies always share it, reads the whole dataset.
#: "size": one stat; misses any same-size replacement (kept for old result sets).
FINGERPRINTS: dict[str, Callable[[Path], str]] = {"quick": _quick_token, "sha256": file_sha256, "size": _size_token}
DEFAULT_FINGERPRINT = "quick"


def _file_token(path: Path, method: str, cache: dict | None = None) -> str:
    """One file's token by `method` ('missing' when unreadable), memoised in `cache` (a source's own:
    its path fingerprint and its content fingerprint read each file once)."""
    if cache is not None and (method, path) in cache:
        return cache[(method, path)]
    try:
        tok = FINGERPRINTS[method](path)
    except OSError:
        tok = "missing"
    if cache is not None:
        cache[(method, path)] = tok
    return tok


def _files_fingerprint(files: Iterable[tuple[str, Path]], method: str, prefix: bytes = b"",
                       cache: dict | None = None) -> str:
    """sha256 over sorted (relative path, file token) lines; a missing file hashes as 'missing'."""
    h = hashlib.sha256(prefix)
    for rel, path in sorted(files, key=lambda t: t[0]):
        h.update(f"{rel}\t{_file_token(path, method, cache)}\n".encode())
    return h.hexdigest()


#: What `Source.provenance()['content']` is: the key of a dataset read from one file per image,
#: whatever folder shape holds the files (synset folders, a flat folder with labels.csv or the
#: devkit's ground truth). Version 1: sha256 over the records in position order of
#: "<file token>\t<labels>" lines (`FINGERPRINTS`). The path of a file is not in it, so moving the
#: files between layouts keeps the key; the order is (`registry.canonical_order` sorts a registry
#: dataset's records by file name, so every layout of ImageNet val lists them by val number).
CONTENT_KEY = "files-in-order-v1"


def _check_fingerprint_method(owner: str, method: str) -> None:
    if method not in FINGERPRINTS:
        raise ValueError(f"{owner}: fingerprint must be one of {sorted(FINGERPRINTS)}, got {method!r}")


# ================================================================================================
# Sources
# ================================================================================================
@dataclass
class Record:
    """What a source knows about an item before decoding it: id, labels, and how to read it."""

    image_id: str
    ref: Any  # source-specific: a path, a row position, an image value
    labels: tuple[int, ...]
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DecodeOptions:
    """How a source turns stored bytes into the Sample's image (see `load_image`).

    crop_border: pixels cut from every side after decoding (ObjectNet's red frame); images not larger
    than twice the border are left whole.
    """

    exif_transpose: bool = False
    crop_border: int = 0
    max_pixels: int | None = None


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
            h.update(f"{_file_token(rec.ref, method, self._tokens)}\t{','.join(map(str, rec.labels))}\n".encode())
        return {"scheme": CONTENT_KEY, "method": method, "fingerprint": h.hexdigest()}


def _check_unique_ids(owner: str, records: Sequence[Record]) -> None:
    seen: set[str] = set()
    for rec in records:
        if rec.image_id in seen:
            raise ValueError(f"{owner}: duplicate image id {rec.image_id!r}")
        seen.add(rec.image_id)


# ---- image folders ---------------------------------------------------------------------------
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SYNSET = re.compile(r"^n\d{8}$")


def _synset_labels(folders: list[str]) -> dict[str, int]:
    index = synset_index()
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise ValueError(f"folders are not ImageNet-1k synsets: {unknown[:5]}")
    return {f: index[f] for f in folders}


def _integer_labels(folders: list[str]) -> dict[str, int]:
    bad = [f for f in folders if not f.isdigit()]
    if bad:
        raise ValueError(f"folders are not class indices: {bad[:5]}")
    for f in folders:
        check_label_range((int(f),), f"class folder {f!r}")
    return {f: int(f) for f in folders}


def _sorted_labels(folders: list[str]) -> dict[str, int]:
    return {f: i for i, f in enumerate(sorted(folders))}


#: How class folders become labels. "synsets": ImageNet synset folders (nXXXXXXXX; ImageNet val,
#: -A, -R, -Sketch) -> index in timm's sorted-synset list; "integers": folders named by the class
#: index (ImageNet-V2's 0..999); "sorted": position in the sorted folder list (torchvision).
FOLDER_LABELINGS: dict[str, Callable[[list[str]], dict[str, int]]] = {
    "synsets": _synset_labels,
    "integers": _integer_labels,
    "sorted": _sorted_labels,
}


def _auto_labeling(folders: list[str]) -> str:
    if all(_SYNSET.match(f) for f in folders):
        return "synsets"
    if all(f.isdigit() for f in folders):
        return "integers"
    return "sorted"


class ImageFolderSource(Source):
    """root/<class folder>/.../<image>: one class per top-level folder, image id = relative path.

    classes: None picks the labeling from the folder names ("synsets" when every folder is an
    ImageNet synset, "integers" when every folder is a number, else "sorted"); a name of
    `FOLDER_LABELINGS` forces one; a list gives the class order explicitly (label = position).
    fingerprint: how each file enters the content fingerprint, a name of `FINGERPRINTS` ("quick" by
    default: size, modification time, first and last 64 KiB; "sha256": every byte).
    """

    kind = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        classes: Sequence[str] | str | None = None,
        *,
        fingerprint: str = DEFAULT_FINGERPRINT,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"ImageFolderSource: {root} is not a directory")
        _check_fingerprint_method("ImageFolderSource", fingerprint)
        if isinstance(classes, str) and classes not in FOLDER_LABELINGS:
            raise ValueError(
                f"ImageFolderSource: classes must be a list or one of {sorted(FOLDER_LABELINGS)}, got {classes!r}"
            )
        folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise ValueError(f"ImageFolderSource: no class folders in {root}")
        if classes is None or isinstance(classes, str):
            self.labeling = classes or _auto_labeling(folders)
            try:
                class_of = FOLDER_LABELINGS[self.labeling](folders)
            except ValueError as e:
                raise ValueError(f"ImageFolderSource({root}): {e}") from None
        else:
            order = {c: i for i, c in enumerate(classes)}
            missing = [f for f in folders if f not in order]
            if missing:
                raise ValueError(f"ImageFolderSource({root}): folders not in classes: {missing[:5]}")
            self.labeling = "explicit"
            class_of = {f: order[f] for f in folders}
        super().__init__(root.name)
        self.root = root
        self.classes = None if classes is None or isinstance(classes, str) else list(classes)
        self.fingerprint_method = fingerprint
        exts = tuple(e.lower() for e in extensions)
        records = []
        # Links are followed (data sets are often assembled from links), but each directory is walked
        # once, by its resolved path (a loop such as `again -> .` would list its images forever, and
        # two links to one folder twice), and each image is listed once, by its resolved path.
        visited_dirs, seen_files = set(), set()
        for folder in folders:
            for dirpath, dirnames, filenames in os.walk(root / folder, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in visited_dirs:
                    dirnames[:] = []
                    continue
                visited_dirs.add(real)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                     and os.path.realpath(os.path.join(dirpath, d)) not in visited_dirs)
                for fname in sorted(filenames):
                    if fname.lower().endswith(exts) and not fname.startswith("."):
                        path = Path(dirpath) / fname
                        resolved = os.path.realpath(path)
                        if resolved in seen_files:
                            continue
                        seen_files.add(resolved)
                        rel = path.relative_to(root).as_posix()
                        records.append(Record(rel, path, (class_of[folder],), {"folder": folder}))
        if not records:
            raise ValueError(f"ImageFolderSource: no image files ({', '.join(exts)}) under {root}")
        records.sort(key=lambda r: r.image_id)
        self._records = records
        self._files = records  # what the fingerprint covers, whatever relabel() later leaves out

    def _provenance(self) -> dict:
        files = [(r.image_id, r.ref) for r in self._files]
        return {
            "location": str(self.root.resolve()),
            "revision": None,
            "labeling": self.labeling,
            "classes": self.classes,
            "fingerprint_method": f"sha256 over sorted (relative path, {self.fingerprint_method})",
            "fingerprint": _files_fingerprint(files, self.fingerprint_method, cache=self._tokens),
        }


# ---- ObjectNet ------------------------------------------------------------------------------
class ObjectNetSource(Source):
    """The ObjectNet 1.0 release as distributed: root/images/<folder>/*.png and
    root/mappings/folder_to_objectnet_label.json (folder -> ObjectNet class).

    Only the folders whose ObjectNet class overlaps ImageNet are kept (113 classes, or the 104
    one-to-one ones with one_to_one=True); labels are the ImageNet-1k indices of that class
    (`zoomstudy.data.labels.objectnet_classes`, several for 9 classes). Image id = path under images/.
    The red border is not cut here: `open_dataset("objectnet")` crops 2 px (`with_decoding`).
    """

    kind = "objectnet"

    def __init__(self, root: str | os.PathLike, *, one_to_one: bool = False, fingerprint: str = DEFAULT_FINGERPRINT):
        root = Path(root).expanduser()
        folder_map_path = root / "mappings" / "folder_to_objectnet_label.json"
        if not (root / "images").is_dir() or not folder_map_path.is_file():
            raise ValueError(f"ObjectNetSource: {root} needs images/ and mappings/folder_to_objectnet_label.json")
        _check_fingerprint_method("ObjectNetSource", fingerprint)
        from zoomstudy.data.labels import objectnet_classes  # the ObjectNet -> ImageNet mapping lives with the label spaces

        own_mapping = root / "mappings" / "objectnet_to_imagenet_1k.json"
        classes = objectnet_classes(own_mapping if own_mapping.is_file() else None, one_to_one=one_to_one)
        folder_to_class = json.loads(folder_map_path.read_text())
        super().__init__(root.name)
        self.root, self.one_to_one, self.fingerprint_method = root, one_to_one, fingerprint
        images = root / "images"
        records = []
        for folder in sorted(d.name for d in images.iterdir() if d.is_dir()):
            labels = classes.get(folder_to_class.get(folder, ""))
            if labels is None:
                continue
            for path in sorted((images / folder).iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
                    meta = {"objectnet_class": folder_to_class[folder]}
                    records.append(Record(f"{folder}/{path.name}", path, labels, meta))
        if not records:
            raise ValueError(f"ObjectNetSource: no images of ImageNet-overlapping classes under {images}")
        self._records = records
        self._files = records

    def _provenance(self) -> dict:
        return {
            "location": str(self.root.resolve()),
            "revision": None,
            "classes": "104 one-to-one" if self.one_to_one else "113 overlapping",
            "fingerprint_method": f"sha256 over sorted (path under images/, {self.fingerprint_method})",
            "fingerprint": _files_fingerprint([(r.image_id, r.ref) for r in self._files], self.fingerprint_method,
                                              cache=self._tokens),
        }


# ---- folder + CSV ----------------------------------------------------------------------------
class CsvSource(Source):
    """A folder of images plus a CSV listing them: one row per image, in CSV order.

    csv: the CSV path (relative paths are taken inside root); None means root/labels.csv.
    The file column is the path relative to root (it is also the image id); the label column holds
    one index or a multi-label set ("3;5", "3 5" or "[3, 5]"; empty = no label). Other columns go to
    Sample.meta. A listed file that is missing gives an error Sample, not an exception.
    """

    kind = "csv"

    def __init__(
        self,
        root: str | os.PathLike,
        csv: str | os.PathLike | None = None,
        file_column: str = "file",
        label_column: str = "label",
        *,
        fingerprint: str = DEFAULT_FINGERPRINT,
    ):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"CsvSource: {root} is not a directory")
        _check_fingerprint_method("CsvSource", fingerprint)
        csv_path = root / "labels.csv" if csv is None else Path(csv).expanduser()
        if csv is not None and not csv_path.is_absolute() and not csv_path.exists():
            csv_path = root / csv_path  # a CSV named relative to the folder (root/labels.csv is already under it)
        if not csv_path.is_file():
            raise ValueError(f"CsvSource: CSV file {csv_path} not found")
        super().__init__(root.name)
        self.root, self.csv_path = root, csv_path
        self.file_column, self.label_column = file_column, label_column
        self.fingerprint_method = fingerprint
        self._csv_bytes = csv_path.read_bytes()
        reader = _csv.DictReader(io.StringIO(self._csv_bytes.decode("utf-8-sig"), newline=""))
        columns = reader.fieldnames or []
        for col in (file_column, label_column):
            if col not in columns:
                raise ValueError(f"CsvSource: {csv_path} has no column {col!r} (columns: {columns})")
        records = []
        for line, row in enumerate(reader, start=2):
            file = (row[file_column] or "").strip()
            if not file:
                raise ValueError(f"CsvSource: {csv_path}:{line}: empty {file_column!r}")
            try:
                labels = parse_labels(row[label_column])
            except ValueError as e:
                raise ValueError(f"CsvSource: {csv_path}:{line}: {e}") from None
            check_label_range(labels, f"CsvSource: {csv_path}:{line} ({file})")
            meta = {k: v for k, v in row.items() if k not in (file_column, label_column) and k is not None}
            records.append(Record(file, root / file, labels, meta))
        if not records:
            raise ValueError(f"CsvSource: {csv_path} lists no images")
        _check_unique_ids(f"CsvSource({csv_path})", records)
        self._records = records
        self._files = records

    def _provenance(self) -> dict:
        return {
            "location": str(self.root.resolve()),
            "csv": str(self.csv_path.resolve()),
            "csv_sha256": hashlib.sha256(self._csv_bytes).hexdigest(),
            "revision": None,
            "fingerprint_method": f"sha256 over the CSV bytes and sorted (file, {self.fingerprint_method})",
            "fingerprint": _files_fingerprint(
                [(r.image_id, r.ref) for r in self._files], self.fingerprint_method, prefix=self._csv_bytes,
                cache=self._tokens,
            ),
        }


# ---- the ILSVRC2012 val folder as the official tarball extracts ----------------------------------
_VAL_FILE = re.compile(r"^ILSVRC2012_val_(\d{8})\.[A-Za-z]+$")


def is_devkit_val_folder(path: Path) -> bool:
    """A flat folder of ILSVRC2012_val_XXXXXXXX.JPEG files whose labels are the devkit's ground truth."""
    from .labels import find_devkit

    return path.is_dir() and find_devkit(path) is not None and any(
        _VAL_FILE.match(p.name) for p in itertools.islice(path.iterdir(), 2000))


class DevkitValSource(Source):
    """ILSVRC2012_img_val.tar extracted (one flat folder of 50,000 ILSVRC2012_val_XXXXXXXX.JPEG) with the
    devkit's ground truth beside it (`labels.find_devkit`: the folder, its data/ or
    ILSVRC2012_devkit_t12/data/, or ILSVRC2012_devkit_t12.tar.gz there). Labels: the ground truth's
    ILSVRC2012_IDs mapped to synsets by meta.mat (`labels.devkit_val_labels`). Image id: the file name,
    records in val-number order. A folder with only some of the images lists those (a partial copy).
    """

    kind = "devkit"

    def __init__(self, root: str | os.PathLike, *, devkit: str | os.PathLike | None = None,
                 fingerprint: str = DEFAULT_FINGERPRINT):
        from .labels import devkit_val_labels, find_devkit

        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"DevkitValSource: {root} is not a directory")
        _check_fingerprint_method("DevkitValSource", fingerprint)
        self.devkit = Path(devkit).expanduser() if devkit is not None else find_devkit(root)
        if self.devkit is None:
            raise ValueError(f"DevkitValSource: no ILSVRC2012_validation_ground_truth.txt in {root}, its data/ or "
                             f"ILSVRC2012_devkit_t12/data/ (nor ILSVRC2012_devkit_t12.tar.gz)")
        labels = devkit_val_labels(self.devkit)
        super().__init__(root.name)
        self.root, self.fingerprint_method = root, fingerprint
        records = []
        for path in root.iterdir():
            m = _VAL_FILE.match(path.name)
            if m is None or not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            number = int(m.group(1))
            if not 1 <= number <= len(labels):
                raise ValueError(f"DevkitValSource: {path.name}: val number {number} is outside the ground truth "
                                 f"(1..{len(labels)})")
            records.append(Record(path.name, path, (labels[number - 1],), {}))
        if not records:
            raise ValueError(f"DevkitValSource: no ILSVRC2012_val_XXXXXXXX images in {root}")
        records.sort(key=lambda r: r.image_id)
        self._records = records
        self._files = records
        self._truth_sha = hashlib.sha256(",".join(map(str, labels)).encode()).hexdigest()

    def _provenance(self) -> dict:
        return {
            "location": str(self.root.resolve()),
            "devkit": str(self.devkit.resolve()),
            "revision": None,
            "ground_truth_sha256": self._truth_sha,
            "fingerprint_method": f"sha256 over sorted (file name, {self.fingerprint_method})",
            "fingerprint": _files_fingerprint([(r.image_id, r.ref) for r in self._files], self.fingerprint_method,
                                              cache=self._tokens),
        }


# ---- Hugging Face datasets -------------------------------------------------------------------
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
        _check_fingerprint_method("HFSource", fingerprint)
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
        if split_files is not None:
            if split not in split_files:
                raise ValueError(f"HFSource: split {split!r} not in data_files (splits: {sorted(split_files)})")
            every = [f for fs in split_files.values() for f in fs]
            missing = [str(f) for f in every if not f.is_file()]
            if not split_files[split] or missing:
                raise ValueError(f"HFSource: data files not found: {missing[:3] or data_files}")
        files = None if split_files is None else split_files[split]
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
        features = ds.features
        if features is not None:
            for col in (image_column, label_column) + ((id_column.partition(".")[0],) if id_column else ()):
                if col not in features:
                    raise ValueError(f"HFSource({repo_id}): no column {col!r} (columns: {list(features)})")
            if isinstance(features[image_column], datasets.Image):
                ds = ds.cast_column(image_column, datasets.Image(decode=False))
            self._meta_columns = [
                c
                for c in features
                if c not in (image_column, label_column) and not isinstance(features[c], datasets.Image)
            ]
        else:
            self._meta_columns = None  # unknown until rows arrive
        self._rows = self._count_rows(ds)
        if expected_rows is not None:
            where = f"{repo_id}@{revision or 'local'} split {split!r}"
            if self._rows is None:
                raise ValueError(
                    f"HFSource: cannot check expected_rows={expected_rows} for {where}: the stream has no row count "
                    f"(use streaming=False or expected_rows=None)"
                )
            if self._rows != expected_rows:
                raise ValueError(
                    f"HFSource: {where} has {self._rows} rows, expected {expected_rows} "
                    f"(pin the revision that has {expected_rows} rows)"
                )
        self.resolved_revision = revision if (revision and _SHA.match(revision)) else None
        if not is_local and self.resolved_revision is None:
            self.resolved_revision = _resolve_hub_sha(repo_id, revision)
        self._ds_fingerprint = getattr(ds, "_fingerprint", None)
        if streaming:
            self._stream_ds = ds
        else:
            other = [c for c in ds.column_names if c != image_column]
            nested_id = id_column is not None and id_column not in ds.column_names
            if nested_id:  # "image.path": a field of a struct column, read alone from the parquet files
                ids = self._nested_column(id_column)
                if len(ids) != ds.num_rows:
                    raise ValueError(f"HFSource({repo_id}): {id_column} has {len(ids)} values for {ds.num_rows} rows")
            rows = ds.select_columns(other).to_list()  # labels, ids, meta: small columns only
            if nested_id:
                for row, value in zip(rows, ids):
                    row[id_column] = value
            self._images = ds.select_columns([image_column])
            records = [self._record(i, row, ref=i) for i, row in enumerate(rows)]
            _check_unique_ids(f"HFSource({repo_id})", records)
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
            digest = _files_fingerprint(files, self.fingerprint_method)
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


# ---- synthetic -------------------------------------------------------------------------------
class SyntheticSource(Source):
    """Deterministic random images for tests and benchmarks: item i depends on (seed, i) only.

    size: (width, height), or ((w_min, w_max), (h_min, h_max)) inclusive ranges drawn per image.
    The pixels are smooth random blobs plus noise (bilinear upsampling of a coarse random grid), so
    resizing them behaves like a photo rather than like white noise.
    """

    kind = "synthetic"

    def __init__(self, n: int = 16, *, size=(64, 48), n_classes: int = N_IMAGENET_CLASSES, seed: int = 0):
        if n < 0:
            raise ValueError(f"SyntheticSource: n must be >= 0, got {n}")
        if not 1 <= n_classes <= N_IMAGENET_CLASSES:
            raise ValueError(f"SyntheticSource: n_classes must be in 1..{N_IMAGENET_CLASSES} (labels are ImageNet-1k indices), "
                             f"got {n_classes}")
        self.size_range = self._size_range(size)
        super().__init__(f"synthetic-{n}")
        self.n, self.n_classes, self.seed = int(n), int(n_classes), int(seed)
        self._records = []
        for i in range(self.n):
            rng = np.random.default_rng([self.seed, i, 0])
            label = int(rng.integers(self.n_classes))
            (w0, w1), (h0, h1) = self.size_range
            wh = (int(rng.integers(w0, w1 + 1)), int(rng.integers(h0, h1 + 1)))
            self._records.append(Record(f"synthetic/{i:06d}", (i, wh), (label,), {}))

    @staticmethod
    def _size_range(size) -> tuple[tuple[int, int], tuple[int, int]]:
        try:
            w, h = size
            w = (int(w), int(w)) if np.isscalar(w) else (int(w[0]), int(w[1]))
            h = (int(h), int(h)) if np.isscalar(h) else (int(h[0]), int(h[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"SyntheticSource: size must be (w, h) or ((w_min, w_max), (h_min, h_max)), got {size!r}"
            ) from None
        if min(w[0], h[0]) < 1 or w[0] > w[1] or h[0] > h[1]:
            raise ValueError(f"SyntheticSource: sizes must be >= 1 with min <= max, got {size!r}")
        return w, h

    def _read(self, ref):
        i, (w, h) = ref
        rng = np.random.default_rng([self.seed, i, 1])
        coarse = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)  # [h/8, w/8, 3]
        smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.int16)  # [h, w, 3]
        noise = rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))

    def _provenance(self) -> dict:
        params = {"n": self.n, "size": self.size_range, "n_classes": self.n_classes, "seed": self.seed}
        return {
            "location": None,
            "revision": None,
            "params": json.loads(json.dumps(params)),
            "fingerprint_method": "sha256 over the generator parameters",
            "fingerprint": hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest(),
        }


def load_sample(source, position: int):
    """The Sample at `position` of a source: indexed access, or by walking a stream."""
    if getattr(source, "_records", None) is not None:
        return source[position]
    for i, sample in enumerate(itertools.islice(iter(source), position + 1)):
        if i == position:
            return sample
    raise IndexError(f"position {position} is beyond the end of {source!r}")
