"""The offline stand-in for ImageNet-Hard: a small synthetic multi-label dataset with an origin column.

ImageNet-Hard (`taesiri/imagenet-hard`) needs the hub; a profile without network (the local profile
when $ZOOMSTUDY_IMAGENET_HARD is unset, the tests) names "synthetic-hard:N" instead, and
`resolve_dataset` writes N deterministic PNG images with 1 to 5 labels each and the hub set's
`origin` column as a CSV folder (`open_source("csv:FOLDER")`), so the ImageNet-Hard notebook runs
end to end. Its numbers say nothing about the real dataset, and the note it returns says so.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: Scheme of the offline ImageNet-Hard stand-in: "synthetic-hard:N" (see `make_hard_standin`).
STANDIN_SCHEME = "synthetic-hard"
#: Source sets of the stand-in (the `origin` values of ImageNet-Hard's parquet files).
STANDIN_ORIGINS = ("imagenet", "imagenet_a", "imagenet_r", "imagenet_sketch", "imagenet_v2", "objectnet")

def make_hard_standin(folder: str | Path, n: int = 24, seed: int = 0, size=(96, 72)) -> Path:
    """Write a small synthetic stand-in for ImageNet-Hard: N PNG images + labels.csv, deterministic.

    Columns of labels.csv: file, label (1 to 5 ImageNet-1k indices, "3;17"), origin (cycling over
    `STANDIN_ORIGINS`), english_label (the first label's class name). The CSV is rewritten only when
    it is missing or differs, and the images only when missing, so a result set keyed on the folder's
    fingerprint is resumed, not recomputed. Open it with `open_source("csv:FOLDER")`.
    """
    from zoomstudy.data import SyntheticSource
    from zoomstudy.data.labels import imagenet_class_names
    from zoomstudy.keyed import atomic_write

    if n < 1:
        raise ValueError(f"make_hard_standin: n must be >= 1, got {n}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = SyntheticSource(n, size=size, seed=seed)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 7])
        labels = sorted(int(x) for x in rng.choice(1000, size=int(rng.integers(1, 6)), replace=False))
        name = f"hard_{i:04d}.png"
        path = folder / name
        if not path.exists():
            atomic_write(path, lambda tmp: pixels[i].image.save(tmp, format="PNG"))
        rows.append({"file": name, "label": ";".join(map(str, labels)),
                     "origin": STANDIN_ORIGINS[i % len(STANDIN_ORIGINS)],
                     # ImageNet's name whatever model was opened last: these bytes are part of the data's key
                     "english_label": imagenet_class_names()[labels[0]].split(",")[0].strip()})
    text = _csv_text(rows)
    target = folder / "labels.csv"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        atomic_write(target, text)
    return folder


def _csv_text(rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def resolve_dataset(dataset: str, root: str | None, workdir: str | Path) -> tuple[str, str | None, str | None]:
    """(dataset, root, note): "synthetic-hard:N" becomes "csv:<workdir>/standin/synthetic-hard-N" after
    writing the stand-in there; anything else is returned unchanged (note None)."""
    scheme, sep, rest = str(dataset).partition(":")
    if scheme != STANDIN_SCHEME:
        return dataset, root, None
    if sep and rest and not rest.isdigit():
        raise ValueError(f"{STANDIN_SCHEME}:N needs an integer N, got {dataset!r}")
    n = int(rest) if rest else 24
    folder = make_hard_standin(Path(workdir) / "standin" / f"{STANDIN_SCHEME}-{n}", n=n)
    note = (f"{dataset} is a synthetic stand-in for ImageNet-Hard ({n} random images with random multi-label "
            f"sets and origins, written to {folder}); its numbers say nothing about the real dataset.")
    return f"csv:{folder}", None, note
