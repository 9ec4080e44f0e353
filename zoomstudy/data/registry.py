"""The registry of the paper's datasets (SPEC sections 2 and 5): where each lives, how many rows it
has, which label space it is scored in, and how to obtain it. `open_dataset(name, root)` checks the
row count before anything is decoded; `open_source(spec)` opens a source from a spec string.

Where `open_dataset` looks, in order: the `root` it is given; the project's data folder,
`data/<folder>/` (relative to the current directory; $ZOOMSTUDY_DATA names another data folder; see
data/README.md for each dataset's folder, layout, source and licence); the dataset's environment
variable (e.g. $ZOOMSTUDY_IMAGENET_A); the Hugging Face hub (and its local cache) for the datasets
published there.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .decode import short_error
from .folders import CsvSource, DevkitValSource, ImageFolderSource, ObjectNetSource, is_devkit_val_folder
from .hub import HFSource
from .real import VAL_NUMBER, real_label_set, real_label_sets, real_label_table, real_table_name
from .source import Source
from .synthetic import SyntheticSource

#: Environment variable naming the data folder (default: ./data, relative to the current directory).
DATA_ENV = "ZOOMSTUDY_DATA"
DEFAULT_DATA_DIR = "data"

#: Names of the label spaces of `zoomstudy.data.labels` a dataset can be evaluated in.
LABEL_SPACE_NAMES = ("imagenet1k", "imagenet-a", "imagenet-r", "objectnet", "objectnet-1to1")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the paper: where it lives, how big it is, how its labels are built.

    labels: "original" (as stored), "real" (ReaL sets, empty ones left out) or "imagenet+real"
    (original label united with the ReaL set); the last two relabel the ImageNet val images, whose
    file names must keep their ILSVRC2012_val_XXXXXXXX number.
    env: environment variable that may name the local copy (used when root is None and the data
    folder holds no copy). folder: the sub-folder of the data folder holding the local copy (default:
    the name; the three ImageNet val datasets share "imagenet-val").
    """

    name: str
    label_space: str
    expected_rows: int | None
    instructions: str
    hub_repo: str | None = None
    hub_revision: str | None = None
    hub_split: str | None = None
    image_column: str = "image"
    label_column: str = "label"
    labels: str = "original"
    crop_border: int = 0
    env: str = ""
    notes: str = ""
    #: Row counts this dataset has had (hub datasets that changed size): named when a count differs.
    history: tuple[int, ...] = ()
    #: The revision whose rows `expected_rows` counts (see `HubPin`); None for local-only datasets.
    pin: "HubPin | None" = None
    #: Folder name under data/ (or $ZOOMSTUDY_DATA) where a local copy is looked for first; default: the name.
    folder: str = ""

    def __post_init__(self):
        if not self.folder:
            object.__setattr__(self, "folder", self.name)
        if self.label_space not in LABEL_SPACE_NAMES:
            raise ValueError(f"DatasetSpec {self.name}: label_space must be one of {LABEL_SPACE_NAMES}")
        if self.labels not in _RELABELS:
            raise ValueError(f"DatasetSpec {self.name}: labels must be one of {sorted(_RELABELS)}")

    @property
    def swept_as(self) -> str:
        """The registry name whose result set holds this dataset's predictions.

        ReaL and IN+ReaL relabel the same 50,000 val images: their predictions are the val sweep's,
        and only the scoring differs, so they are relabelled at analysis time (`relabel_results`)
        instead of being swept three times.
        """
        return "imagenet-val" if self.labels != "original" else self.name


@dataclass(frozen=True)
class HubPin:
    """A hub dataset revision and the number of rows it holds: the two travel together, since a
    row count only means something for one revision.

    revision: a 40-hex commit sha, or None when no sha is known (then the hub path refuses to load
    until the caller passes revision=<sha> with expected_rows=<its row count>). A branch name such as
    "main" is never a pin: it moves.
    """

    repo: str
    revision: str | None
    rows: int
    #: The number of parquet files of the split at that revision (one set data/<split>-0000k-of-0000n-<hash>).
    files: int | None = None

    @property
    def pinned(self) -> bool:
        return is_commit_sha(self.revision)


def is_commit_sha(revision) -> bool:
    """A 40-hex commit sha: the only kind of revision that names fixed content ("main" moves)."""
    return isinstance(revision, str) and re.fullmatch(r"[0-9a-f]{40}", revision) is not None


#: Sizes ImageNet-Hard's hub repository has had, oldest first (SPEC section 5).
IMAGENET_HARD_SIZES: tuple[int, ...] = (23845, 13630, 11350, 10980)
#: The ImageNet-Hard revision this package expects: the final release of 10,980 rows (the paper's),
#: as the hub's public commit history shows it: the card reached 10,980 rows on 24 May 2023 when the
#: data was resharded into 9 files data/validation-0000k-of-00009-<hash>.parquet; 32bfa94 (16 June
#: 2023, a README edit) is the last commit. Not e292574: that mid-upload snapshot holds both the old
#: 5-file set and the new 9-file set (the layout check refuses it). The dataset viewer's "9.76k rows"
#: is the partial refs/convert/parquet branch, not main.
IMAGENET_HARD_PIN = HubPin("taesiri/imagenet-hard", "32bfa94dcd95e7c3bbe09fa281f5b89870921745", 10980, files=9)
#: The 4K upscale: the card shows 10,980 rows from 42a6d8d, in 178 files.
IMAGENET_HARD_4K_PIN = HubPin("taesiri/imagenet-hard-4K", "42a6d8d2fa33f5df0aa26f70e38040f4341f4f80", 10980, files=178)


def _with_real(rule: str, note: str) -> Callable[[Source], Source]:
    """Open-time relabelling by the ReaL rule (`real.real_label_set`, the one analysis time uses too), from
    `real.real_label_table()` ($ZOOMSTUDY_REAL_LABELS or timm's); `note` names the table at {}."""
    def relabel(src: Source) -> Source:
        table = real_label_table()
        return src.relabel(lambda r: real_label_set(rule, r.image_id, r.labels, table) or None,
                           note.format(real_table_name()))
    return relabel


#: How a dataset's labels are derived from the stored ones.
_RELABELS: dict[str, Callable[[Source], Source]] = {
    "original": lambda src: src,
    "real": _with_real("real", "ReaL label sets ({}), empty sets left out"),
    "imagenet+real": _with_real("imagenet+real", "original label united with the ReaL set ({})"),
}

_VAL_HOWTO = (
    "ImageNet-1k val is gated (image-net.org, or the Hugging Face 'ILSVRC/imagenet-1k' after accepting "
    "its terms): pass root= one of: the flat folder ILSVRC2012_img_val.tar extracts, with the devkit's "
    "ILSVRC2012_validation_ground_truth.txt and meta.mat (or ILSVRC2012_devkit_t12.tar.gz) in it; 1000 synset "
    "sub-folders (the valprep.sh layout); a folder with labels.csv (file,label; label = 0-999 sorted-synset "
    "index); the Hugging Face parquet files (ReaL needs their file names, kept in image.path); or set "
    "ZOOMSTUDY_IMAGENET_VAL; keep the ILSVRC2012_val_XXXXXXXX file names (ReaL is indexed by them)"
)
_HARD_HOWTO = (
    "loaded from the Hugging Face hub (MIT licence) at the pinned commit {sha} (10,980 rows, {files} parquet files); "
    "another commit: pass revision=<40-hex sha> with expected_rows=<its row count>, or set {env}_REVISION and "
    "{env}_ROWS ('main' is resolved to the commit it names now). "
    "Offline: `huggingface-cli download {repo} --repo-type dataset --revision SHA --local-dir data/{folder}` "
    "(read before the hub), or pass root=DIR (its parquet files are read) or set {env}"
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("imagenet-val", "imagenet1k", 50000, _VAL_HOWTO, env="ZOOMSTUDY_IMAGENET_VAL"),
        DatasetSpec(
            "imagenet-real", "imagenet1k", 46837, _VAL_HOWTO, labels="real", env="ZOOMSTUDY_IMAGENET_VAL",
            folder="imagenet-val",
            notes="ReaL: the 46,837 val images with a non-empty ReaL set; correct = prediction in the set",
        ),
        DatasetSpec(
            "imagenet+real", "imagenet1k", 50000, _VAL_HOWTO, labels="imagenet+real", env="ZOOMSTUDY_IMAGENET_VAL",
            folder="imagenet-val",
            notes="IN+ReaL: original label united with the ReaL set over all 50,000 (Table 1's 98.91% column)",
        ),
        DatasetSpec(
            "imagenet-a", "imagenet-a", 7500,
            "download imagenet-a.tar (github.com/hendrycks/natural-adv-examples), extract it and pass "
            "root=.../imagenet-a (200 synset folders) or set ZOOMSTUDY_IMAGENET_A",
            env="ZOOMSTUDY_IMAGENET_A", notes="logits restricted to timm's imagenet_a_indices.txt (200 classes)",
        ),
        DatasetSpec(
            "imagenet-r", "imagenet-r", 30000,
            "download imagenet-r.tar (github.com/hendrycks/imagenet-r), extract it and pass "
            "root=.../imagenet-r (200 synset folders) or set ZOOMSTUDY_IMAGENET_R",
            env="ZOOMSTUDY_IMAGENET_R", notes="logits restricted to timm's imagenet_r_indices.txt (200 classes)",
        ),
        DatasetSpec(
            "imagenet-sketch", "imagenet1k", 50889,
            "download ImageNet-Sketch (github.com/HaohanWang/ImageNet-Sketch) and pass root=.../sketch "
            "(1000 synset folders) or set ZOOMSTUDY_IMAGENET_SKETCH",
            env="ZOOMSTUDY_IMAGENET_SKETCH",
        ),
        DatasetSpec(
            "imagenet-v2", "imagenet1k", 10000,
            "download imagenetv2-matched-frequency.tar.gz (github.com/modestyachts/ImageNetV2) and pass "
            "root=.../imagenetv2-matched-frequency-format-val (folders 0..999 = class index) "
            "or set ZOOMSTUDY_IMAGENET_V2",
            env="ZOOMSTUDY_IMAGENET_V2", notes="the matched-frequency variant",
        ),
        DatasetSpec(
            "objectnet", "objectnet", 18574,
            "ObjectNet is licence-gated (objectnet.dev): extract objectnet-1.0 and pass root=.../objectnet-1.0 "
            "(images/ + mappings/; the 113 ImageNet-overlapping classes are kept) or a folder with labels.csv "
            "(file,label = the ImageNet-1k indices of the image's class, e.g. '409;530'), or set ZOOMSTUDY_OBJECTNET",
            crop_border=2, env="ZOOMSTUDY_OBJECTNET",
            notes="18,574 images in the 113 ImageNet-overlapping classes is the commonly used count (not verified "
            "here against the release; the full set is 50,000 images in 313 classes): pass expected_rows=None if "
            "your copy differs; the 2-pixel red border is cropped by default (crop_border=0 keeps it)",
        ),
        DatasetSpec(
            "imagenet-hard", "imagenet1k", 10980,
            _HARD_HOWTO.format(repo="taesiri/imagenet-hard", env="ZOOMSTUDY_IMAGENET_HARD", folder="imagenet-hard",
                               sha=IMAGENET_HARD_PIN.revision[:7], files=IMAGENET_HARD_PIN.files),
            hub_repo="taesiri/imagenet-hard", hub_revision=IMAGENET_HARD_PIN.revision, hub_split="validation",
            env="ZOOMSTUDY_IMAGENET_HARD", history=IMAGENET_HARD_SIZES, pin=IMAGENET_HARD_PIN,
            notes="labels are lists of ImageNet-1k indices (up to 10), extra columns origin and english_label; "
            "earlier revisions had 23,845, 13,630 and 11,350 rows",
        ),
        DatasetSpec(
            "imagenet-hard-4k", "imagenet1k", 10980,
            _HARD_HOWTO.format(repo="taesiri/imagenet-hard-4K", env="ZOOMSTUDY_IMAGENET_HARD_4K",
                               folder="imagenet-hard-4k", sha=IMAGENET_HARD_4K_PIN.revision[:7],
                               files=IMAGENET_HARD_4K_PIN.files),
            hub_repo="taesiri/imagenet-hard-4K", hub_revision=IMAGENET_HARD_4K_PIN.revision, hub_split="validation",
            env="ZOOMSTUDY_IMAGENET_HARD_4K", history=IMAGENET_HARD_SIZES, pin=IMAGENET_HARD_4K_PIN,
            notes="the ImageNet-Hard images upscaled to 4K; "
            "raise max_pixels with with_decoding() if an image is refused",
        ),
    )
}


def _has_parquet(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".parquet"
    return path.is_dir() and (any(path.glob("*.parquet")) or any(path.glob("*/*.parquet")))


#: Parquet columns that may carry an ImageNet val image's file name (ILSVRC2012_val_XXXXXXXX), in the
#: order they are tried; "<image>.path" is the file name `datasets` keeps inside its Image struct.
VAL_ID_COLUMNS = ("file_name", "filename", "image_id", "id", "path", "{image}.path")


def _val_id_column(files: list[Path], image_column: str) -> str | None:
    """The first of `VAL_ID_COLUMNS` whose values carry an ILSVRC2012_val number in the first parquet
    file (only that column is read), else None (the rows then keep their row numbers as ids)."""
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(files[0]).schema_arrow
    for name in (c.format(image=image_column) for c in VAL_ID_COLUMNS):
        if name.partition(".")[0] not in schema.names:
            continue
        try:
            values = pq.read_table(files[0], columns=[name]).column(0).slice(0, 50).to_pylist()
        except Exception:  # noqa: BLE001 - a column pyarrow cannot read alone is not an id column
            continue
        if values and all(isinstance(v, str) and VAL_NUMBER.search(v) for v in values):
            return name
    return None


def _open_parquet(path: Path, spec: DatasetSpec, expected: int | None, kw: dict) -> Source:
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    kw = {"image_column": spec.image_column, "label_column": spec.label_column, **kw}
    if spec.folder == "imagenet-val" and "id_column" not in kw:  # ReaL joins by the val number: carry it
        kw["id_column"] = _val_id_column(files, kw["image_column"])
    return HFSource("parquet", data_files=files, split="train", expected_rows=expected, **kw)


#: Local layouts open_dataset recognises, tried in order: (test, opener).
_LOCAL_LAYOUTS: list[tuple[Callable[[Path], bool], Callable[[Path, DatasetSpec, int | None, dict], Source]]] = [
    (
        lambda p: (p / "mappings" / "folder_to_objectnet_label.json").is_file(),
        lambda p, s, e, kw: ObjectNetSource(p, **kw),
    ),
    (lambda p: p.is_file() and p.suffix == ".csv", lambda p, s, e, kw: CsvSource(p.parent, p, **kw)),
    (lambda p: p.is_dir() and (p / "labels.csv").is_file(), lambda p, s, e, kw: CsvSource(p, **kw)),
    (_has_parquet, _open_parquet),
    (is_devkit_val_folder, lambda p, s, e, kw: DevkitValSource(p, **kw)),
    (lambda p: p.is_dir() and any(d.is_dir() for d in p.iterdir()), lambda p, s, e, kw: ImageFolderSource(p, **kw)),
]


def data_dir() -> Path:
    """The project's data folder: $ZOOMSTUDY_DATA, else ./data (relative to the current directory)."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def local_copy(name: str, folder: str | os.PathLike | None = None) -> Path | None:
    """`<data folder>/<folder>` of a registry dataset when it holds anything (hidden files aside), else
    None. The data folder: `folder` when given (`zoomstudy paper --data-dir`), else `data_dir()`."""
    name = DATASET_ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    path = (Path(folder).expanduser() if folder is not None else data_dir()) / DATASETS[name].folder
    if path.is_dir() and any(not p.name.startswith(".") for p in path.iterdir()):
        return path
    return None


def find_local(name: str, root: str | os.PathLike | None = None,
               folder: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The one lookup of a registry dataset's local copy, shared by `open_dataset`, `matrix.locate`
    (`zoomstudy paper`) and the notebooks, so that they all pick the same copy and so the same result set.

    Order: `root`; the data folder (`folder`, else $ZOOMSTUDY_DATA, else ./data) /<spec.folder>; the
    dataset's own variable ($ZOOMSTUDY_IMAGENET_VAL, ...). Returns (path or None, how it was found:
    "given", "<data folder>/<folder>/", "$VAR" or "").
    """
    spec = dataset_spec(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if root is not None and str(root):
        return Path(root).expanduser(), "given"
    local = local_copy(spec.name, folder)
    if local is not None:
        return local, f"{local.parent.name}/{local.name}/"
    if spec.env and os.environ.get(spec.env):
        return Path(os.environ[spec.env]).expanduser(), f"${spec.env}"
    return None, ""


def canonical_order(src: Source) -> Source:
    """A registry dataset read from one file per image, its records sorted by file name (then path):
    every layout of ImageNet val (synset folders, flat with labels.csv, the devkit's) then lists the
    images by val number, so the same files under another layout are the same positions, and the same
    result-set key (`Source.provenance()['content']`). A prefix (--max-images) is then a sample of every
    class, not the first class folders."""
    records = getattr(src, "_records", None)
    if not records or not all(isinstance(r.ref, Path) for r in records):
        return src
    src._records = sorted(records, key=lambda r: (r.ref.name, r.image_id))
    return src


def real_join_problem(src: Source) -> str | None:
    """Why ReaL / IN+ReaL cannot be scored on this val copy (its image ids carry no ILSVRC2012_val
    number: a parquet copy without a file-name column), or None when they can."""
    records = getattr(src, "_records", None) or []
    bad = next((r.image_id for r in records if not VAL_NUMBER.search(str(r.image_id))), None)
    if bad is None:
        return None
    return (f"its image ids (e.g. {bad!r}) carry no ILSVRC2012_val_XXXXXXXX number, which the ReaL labels are "
            f"indexed by (a parquet copy needs a column with the file names: one of "
            f"{', '.join(c.format(image='image') for c in VAL_ID_COLUMNS)})")


def open_dataset(name: str, root: str | os.PathLike | None = None, **kw) -> Source:
    """One of `DATASETS`, from root (a folder, a CSV or parquet files), else the data folder
    (`data/<folder>`, see `local_copy`), else $spec.env, else the hub.

    One resolver for every dataset: the local copy is found by `find_local` (as `matrix.locate` finds
    it); a pinned hub dataset (ImageNet-Hard) then takes its pin step (`_pin_request`, and the
    revision / file layout / row-count checks of `_open_pinned_hub` or `check_pinned_rows`), the others
    their layouts and the registry's row count.

    kw: expected_rows (default: the spec's; None skips the check), crop_border (default: the spec's),
    max_rows (the caller reads at most the first max_rows rows: pinned hub datasets then download only
    the parquet files holding them; ignored elsewhere),
    and the source constructor's keywords (e.g. revision= for hub datasets, classes=, cache_dir=).
    Raises a one-line ValueError with the spec's instructions when the data is not available.
    """
    name = DATASET_ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    spec = DATASETS[name]
    revision, expected, has_expected = _pin_request(spec, kw) if spec.pin is not None else (
        None, kw.pop("expected_rows", spec.expected_rows), False)
    crop_border = kw.pop("crop_border", spec.crop_border)
    max_rows = kw.pop("max_rows", None)  # a hint for pinned hub datasets (read only the files holding the rows used)
    if spec.pin is not None:
        kw.pop("streaming", None)  # the files are read locally once fetched
    root, _ = find_local(name, root, kw.pop("data_folder", None))
    extra: dict = {}
    if spec.pin is not None and root is None:
        src, extra = _open_pinned_hub(spec, revision, has_expected, expected, max_rows, kw)
    elif spec.pin is not None:
        path = Path(root).expanduser()
        if not _has_parquet(path):
            raise ValueError(f"{spec.name}: {path} holds no parquet files: {spec.instructions}")
        src = _open_parquet(path, spec, None, {k: v for k, v in kw.items() if k != "split"})
        check_pinned_rows(spec, src._total_rows(), expected, str(path))
        extra = {"pinned_revision": None}
    else:
        src = _open_unpinned(spec, root, expected, kw)
    src = src.with_decoding(crop_border=crop_border)
    src.name = name
    src._extra = {
        "dataset": {
            "name": name,
            "label_space": spec.label_space,
            "labels": spec.labels,
            "expected_rows": expected,
            **extra,
            "notes": spec.notes,
        }
    }
    return src


def _open_unpinned(spec: DatasetSpec, root: Path | None, expected: int | None, kw: dict) -> Source:
    """A dataset without a hub pin: its local copy (`_LOCAL_LAYOUTS`, in canonical order) or its hub
    repository, relabelled (ReaL, IN+ReaL) and checked against the expected row count."""
    if root is None:
        if spec.hub_repo is None:
            unset = f", ${spec.env} unset" if spec.env else ""
            raise ValueError(f"{spec.name}: no local copy given (root=None, nothing in {data_dir() / spec.folder}{unset}): "
                             f"{spec.instructions}")
        revision = kw.pop("revision", spec.hub_revision)
        split = kw.pop("split", spec.hub_split)
        kw = {"image_column": spec.image_column, "label_column": spec.label_column, **kw}
        try:
            src = HFSource(spec.hub_repo, revision=revision, split=split, expected_rows=expected, **kw)
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(
                f"{spec.name}: cannot load {spec.hub_repo}@{revision} ({short_error(e)}): {spec.instructions}"
            ) from e
    else:
        path = Path(root).expanduser()
        if not path.exists():
            raise ValueError(f"{spec.name}: {path} does not exist: {spec.instructions}")
        opener = next((open_ for test, open_ in _LOCAL_LAYOUTS if test(path)), None)
        if opener is None:
            raise ValueError(f"{spec.name}: {path} holds no labels.csv, parquet files, class folders or ILSVRC2012_val_*.JPEG files with the devkit's ground truth: {spec.instructions}")
        src = canonical_order(opener(path, spec, expected, kw))
    src = _RELABELS[spec.labels](src)
    if expected is not None and src._total_rows() is not None and src._total_rows() != expected:
        raise ValueError(
            f"{spec.name}: {root or spec.hub_repo} gives {src._total_rows()} images, expected {expected} "
            f"(pass expected_rows=None to use a partial copy): {spec.instructions}"
        )
    return src


def check_pinned_rows(spec: DatasetSpec, rows: int | None, expected: int | None, where: str) -> None:
    """The row-count guard of a pinned hub dataset; the error names the sizes the dataset has had and
    how to read another revision, so that a moved repository stops the run instead of changing it."""
    if expected is None or rows == expected:
        return
    sizes = ", ".join(f"{n:,}" for n in spec.history)
    raise ValueError(
        f"{spec.name}: {where} has {rows} rows, expected {expected} (the sizes {spec.hub_repo} has had: {sizes}; "
        f"the paper's is {spec.pin.rows:,}): to use another revision pass revision=<40-hex sha> together with "
        f"expected_rows=<its row count> (CLI: --revision SHA --expected-rows N), or expected_rows=None for a partial local copy"
    )


def _pin_request(spec: DatasetSpec, kw: dict) -> tuple[str | None, int | None, bool]:
    """The pin step's request for a pinned hub dataset: (revision asked for, expected rows, whether
    the rows were given), popped from kw. revision: kw's, else $<env>_REVISION with $<env>_ROWS its row
    count (e.g. ZOOMSTUDY_IMAGENET_HARD_REVISION / _ROWS: one place to pin the hub revision for every
    entry point, notebook 04, sweep, the matrix), else None (the pin's sha); expected rows: kw's, else
    the pin's (10,980 for ImageNet-Hard)."""
    revision = kw.pop("revision", None)
    if revision is None and spec.env and os.environ.get(f"{spec.env}_REVISION"):
        revision = os.environ[f"{spec.env}_REVISION"]
        if "expected_rows" not in kw and os.environ.get(f"{spec.env}_ROWS"):
            kw["expected_rows"] = int(os.environ[f"{spec.env}_ROWS"])
    has_expected = "expected_rows" in kw
    return revision, kw.pop("expected_rows", spec.pin.rows), has_expected


def _open_pinned_hub(spec: DatasetSpec, revision: str | None, has_expected: bool, expected: int | None,
                     max_rows: int | None, kw: dict) -> tuple[Source, dict]:
    """A pinned hub dataset from the hub (`data.hub`): the revision, the file layout and the row count
    are checked before anything else happens: no image is decoded and no model is run before this returns.

    A branch or tag ("main") is resolved to the commit it names now, through huggingface_hub, before
    anything is read; that sha is what is read and recorded. The pinned sha brings its row count and
    file count; any other commit needs its own expected_rows. max_rows=N (a hint: the caller reads at
    most the first N rows) downloads only the parquet files holding them; the full count is still
    checked, from every file's parquet footer. Returns (source, the dataset record's pin fields).
    """
    from . import hub

    pin = spec.pin
    hkw = {"image_column": spec.image_column, "label_column": spec.label_column, **kw}
    revision = revision or pin.revision
    split = hkw.pop("split", spec.hub_split)
    another = "pass revision=<40-hex sha> with expected_rows=<its row count> (CLI: --hard-revision SHA --hard-rows N)"
    try:
        sha = hub.resolve_revision(spec.hub_repo, revision)
    except Exception as e:
        raise ValueError(f"{spec.name}: cannot resolve {spec.hub_repo}@{revision} ({short_error(e)}): "
                         f"{spec.instructions}") from e
    named = revision if revision == sha else f"{revision} (now commit {sha})"
    if sha != pin.revision and not has_expected:
        raise ValueError(
            f"{spec.name}: {spec.hub_repo}@{named} is not the pinned commit {pin.revision} "
            f"({pin.rows:,} rows), so its row count is unknown here: {another}"
        )
    try:
        pinned = sha == pin.revision
        p = hub.plan(spec.hub_repo, sha, split, expected_files=pin.files if pinned else None, max_rows=max_rows,
                     cache_dir=kw.get("cache_dir"), pin_rows=pin.rows if pinned else None)
    except ValueError as e:
        raise ValueError(f"{spec.name}: {spec.hub_repo}@{named}: {e}; for another commit {another}") from None
    except Exception as e:
        raise ValueError(f"{spec.name}: cannot list {spec.hub_repo}@{named} ({short_error(e)}): "
                         f"{spec.instructions}") from e
    where = f"{spec.hub_repo}@{named}"
    check_pinned_rows(spec, p.rows, expected, where)  # the full count, before any image byte is fetched
    n_all = pin.files if p.rows_from != "parquet footers" else len(p.files)
    what = (f" (all {n_all} files, {p.rows:,} rows)" if max_rows is None or len(p.needed) == n_all else
            f" for rows 0..{max_rows - 1} of {p.rows:,} (the first {len(p.needed)} of {n_all} files)")
    try:
        local = hub.fetch(spec.hub_repo, sha, list(p.needed), kw.get("cache_dir"), what=what)
    except Exception as e:
        raise ValueError(f"{spec.name}: cannot download {where} ({short_error(e)}): {spec.instructions}") from e
    src = hub.HubParquetSource(spec.hub_repo, sha, sha, split, list(p.needed), local, p.rows, **hkw)
    read = sum(f.rows for f in p.needed)
    if src._total_rows() != read:
        raise ValueError(f"{spec.name}: the files fetched from {where} hold {src._total_rows()} rows, "
                         f"their parquet footers said {read}")
    if revision != sha:  # a branch: the commit it named is what the result set records
        print(f"{spec.name}: {spec.hub_repo}@{revision} is commit {sha} ({p.rows:,} rows)", file=sys.stderr)
    # the requested name stays out of the key: "main" read at sha X is the same data as X itself
    if p.rows_from != "parquet footers":
        print(f"{spec.name}: the hub is unreachable: reading {len(p.needed)} cached file(s) of {sha[:7]}; "
              f"the full row count is the pin's ({p.rows:,})", file=sys.stderr)
    return src, {"pinned_revision": sha, "hub_rows": p.rows, "rows_read": read, "files_read": len(p.needed),
                 "files": n_all}


# ================================================================================================
# Data schemes that later stages add (like timm's register_model)
# ================================================================================================
@dataclass(frozen=True)
class DataScheme:
    """A family of dataset names that a later stage opens (the controlled experiment's "world:REGIME",
    "world-hard:N", ...): the data stage cannot import it, so it registers here at import.

    opener(text, root, **kw) -> a source. label_space(record) -> the label space a result set's dataset
    record of this family is scored in, or None when the record is not one of its."""

    name: str
    opener: Callable
    label_space: Callable[[dict], str | None] | None = None


#: scheme name (the text before the first ":") -> its `DataScheme`; filled by `register_data_scheme`.
DATA_SCHEMES: dict[str, DataScheme] = {}


def register_data_scheme(name: str, opener: Callable, *, label_space: Callable[[dict], str | None] | None = None) -> None:
    """Let the entry layer open "NAME" and "NAME:REST" with `opener(text, root, **kw)` (see `DataScheme`).
    A registry dataset or source scheme cannot be shadowed: their names are refused."""
    if name in DATASETS or name in DATASET_ALIASES or name in SOURCE_SCHEMES:
        raise ValueError(f"register_data_scheme: {name!r} is already a dataset or source scheme")
    DATA_SCHEMES[name] = DataScheme(name, opener, label_space)


def data_scheme(text: str) -> DataScheme | None:
    """The registered scheme a dataset text belongs to ("world-hard:400" -> world-hard's), else None."""
    return DATA_SCHEMES.get(str(text).partition(":")[0])


def scheme_label_space(record: dict) -> str | None:
    """The label space a registered scheme gives a result set's dataset record, else None."""
    for hook in dict.fromkeys(s.label_space for s in DATA_SCHEMES.values() if s.label_space):
        space = hook(record)
        if space is not None:
            return space
    return None


#: Other names of registry entries (the issue's spelling of IN+ReaL).
DATASET_ALIASES: dict[str, str] = {"imagenet-plus-real": "imagenet+real"}


def dataset_spec(name: str) -> DatasetSpec | None:
    """The registry entry of a name or alias; None for source specs (csv:, folder:, ...)."""
    return DATASETS.get(DATASET_ALIASES.get(str(name), str(name)))


def dataset_label_space(dataset: str) -> str:
    """The label space a dataset is scored in by default (SPEC section 2): the registry's for its names
    (imagenet-a -> 'imagenet-a', objectnet -> 'objectnet'), 'imagenet1k' for source specs
    (csv:, folder:, hf:, synthetic:), whose classes are ImageNet-1k indices."""
    spec = dataset_spec(dataset)
    return spec.label_space if spec is not None else "imagenet1k"


def swept_dataset(dataset: str) -> str:
    """The dataset whose result set holds `dataset`'s predictions ('imagenet-real' -> 'imagenet-val')."""
    spec = dataset_spec(dataset)
    return spec.swept_as if spec is not None else dataset


def analysis_labels(dataset: str, image_ids, labels, real=None) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """(label sets, keep bool [N]) of val images scored as `dataset` at analysis time.

    'imagenet-real': the ReaL set, images with an empty set left out (46,837 of 50,000 remain);
    'imagenet+real': the original label united with the ReaL set, every image kept; any other
    dataset: the stored labels, all kept. Images are joined by their ILSVRC2012_val_XXXXXXXX number.
    """
    spec = dataset_spec(dataset)
    labels = [tuple(int(v) for v in lab) for lab in labels]
    if spec is None or spec.labels == "original":
        return labels, np.ones(len(labels), bool)
    return real_label_sets(spec.labels, image_ids, labels, real)


def relabel_results(result_set, dataset: str, real=None):
    """`result_set` (the val sweep's) seen as `dataset`: a relabelled view (`ResultSet.relabelled`) for
    ReaL and IN+ReaL, the result set itself otherwise. Nothing is recomputed: the views' predictions are
    the stored ones; the labels come from here (`analysis_labels`), the one home of the ReaL rule."""
    spec = dataset_spec(dataset)
    if spec is None or spec.labels == "original":
        return result_set
    note = {"dataset": spec.name, "labels": spec.labels, "source": real_table_name()}
    return result_set.relabelled(spec.name, lambda ids, labels: analysis_labels(spec.name, ids, labels, real), note)


def _open_csv_spec(rest: str, kw: dict) -> Source:
    root, _, csv = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
    return CsvSource(root, csv or None, **kw)


def _open_hf_spec(rest: str, kw: dict) -> Source:
    repo, at, tail = rest.partition("@")
    if at:
        revision, _, split = tail.partition(":")
    else:
        repo, _, split = repo.partition(":")
        revision = None
    split = split or kw.pop("split", None) or "train"
    kw.pop("split", None)
    return HFSource(repo, revision=revision or None, split=split, **kw)


def _open_synthetic_spec(rest: str, kw: dict) -> Source:
    if rest and not rest.isdigit():
        raise ValueError(f"open_source: synthetic:N needs an integer N, got {rest!r}")
    return SyntheticSource(int(rest) if rest else 16, **kw)


#: open_source's schemes: "scheme:rest" -> a source.
SOURCE_SCHEMES: dict[str, Callable[[str, dict], Source]] = {
    "folder": lambda rest, kw: ImageFolderSource(rest, **kw),
    "csv": _open_csv_spec,
    "hf": _open_hf_spec,
    "synthetic": _open_synthetic_spec,
}


def open_source(spec: str, **kw) -> Source:
    """A source from a string: "folder:PATH", "csv:ROOT[:CSV]", "hf:REPO@REVISION[:split]",
    "synthetic:N", a name of `DATASETS` (root= in kw), or a bare directory (labels.csv -> CSV, else
    class folders)."""
    if spec in DATASETS:
        return open_dataset(spec, **kw)
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in SOURCE_SCHEMES:
        return SOURCE_SCHEMES[scheme](rest, kw)
    path = Path(spec).expanduser()
    if path.is_dir():
        return CsvSource(path, **kw) if (path / "labels.csv").is_file() else ImageFolderSource(path, **kw)
    raise ValueError(
        f"open_source: cannot read {spec!r}; expected folder:PATH, csv:ROOT[:CSV], hf:REPO@REVISION[:split], "
        f"synthetic:N, a directory, or one of {sorted(DATASETS)}"
    )
