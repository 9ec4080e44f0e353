"""Sources of one local file per image: class folders, a folder with a CSV, the extracted ILSVRC2012 val
tarball with its devkit, and the ObjectNet release.

Each lists its images as `Record`s when opened (ids, labels, paths; nothing decoded), checks the
labels against ImageNet-1k (`labels.check_label_range`), and records in its provenance where it lies
and a fingerprint of its files (`fingerprint.files_fingerprint`, by `fingerprint.FINGERPRINTS`). The
registry (`registry.open_dataset`) picks among them by the folder's layout.
"""
from __future__ import annotations

import csv as _csv
import hashlib
import io
import itertools
import json
import os
import re
from pathlib import Path
from typing import Callable, Sequence

from .fingerprint import DEFAULT_FINGERPRINT, check_fingerprint_method, files_fingerprint
from .labels import check_label_range, parse_labels, synset_index
from .source import Record, Source, check_unique_ids


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
        check_fingerprint_method("ImageFolderSource", fingerprint)
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
            "fingerprint": files_fingerprint(files, self.fingerprint_method, cache=self._tokens),
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
        check_fingerprint_method("ObjectNetSource", fingerprint)
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
            "fingerprint": files_fingerprint([(r.image_id, r.ref) for r in self._files], self.fingerprint_method,
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
        check_fingerprint_method("CsvSource", fingerprint)
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
        check_unique_ids(f"CsvSource({csv_path})", records)
        self._records = records
        self._files = records

    def _provenance(self) -> dict:
        return {
            "location": str(self.root.resolve()),
            "csv": str(self.csv_path.resolve()),
            "csv_sha256": hashlib.sha256(self._csv_bytes).hexdigest(),
            "revision": None,
            "fingerprint_method": f"sha256 over the CSV bytes and sorted (file, {self.fingerprint_method})",
            "fingerprint": files_fingerprint(
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
        check_fingerprint_method("DevkitValSource", fingerprint)
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
            "fingerprint": files_fingerprint([(r.image_id, r.ref) for r in self._files], self.fingerprint_method,
                                              cache=self._tokens),
        }

