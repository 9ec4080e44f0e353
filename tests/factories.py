"""Builders the tests share: weights, images, datasets in their real layouts, and the comparison of two
result sets. One home each, so that a test file says what it checks and not how its inputs are made.

Fixtures built from these (a random SqueezeNet shared by the sweep and fault tests, one intra-op thread)
are in conftest.py.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image


def save_random_squeezenet(path: Path, seed: int = 0) -> Path:
    """A random-weight torchvision SqueezeNet 1.0 saved as a state_dict (a subprocess and the test then
    load the very same weights from the file)."""
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.squeezenet1_0().state_dict(), path)
    return path


def jpeg_bytes(w: int, h: int, seed: int, quality: int = 75) -> bytes:
    """A w x h JPEG of uniform noise (a different seed, different bytes)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=quality)
    return buf.getvalue()


def result_tables(rs, errors: bool = False) -> dict[str, pd.DataFrame]:
    """A result set's tables in a canonical row order (views by image and view, groups by image and group,
    images by position, labels as tuples), so that two result sets compare with assert_frame_equal."""
    def ordered(df: pd.DataFrame, keys) -> pd.DataFrame:
        return df.sort_values(keys, kind="stable").reset_index(drop=True)

    images = rs.images().copy()
    images["labels"] = images["labels"].map(lambda x: tuple(int(v) for v in x))
    out = {"views": ordered(rs.views(), ["image_id", "view"]), "groups": ordered(rs.groups(), ["image_id", "group"]),
           "images": ordered(images, ["position"])}
    if errors:
        out["errors"] = ordered(rs.errors(), ["position"]) if len(rs.errors()) else rs.errors()
    return out


def assert_same_results(a, b) -> None:
    """The two result sets hold the same rows, exactly (views, groups and images)."""
    got, want = result_tables(a), result_tables(b)
    for name in got:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


def noise_image(w: int, h: int, seed: int) -> Image.Image:
    """A w x h RGB image of uniform noise."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def synset_folders(root: Path, indices, seed: int = 0, size=(64, 48)) -> Path:
    """A replica of ImageNet-A/-R/-Sketch and valprep'd val: one synset folder per ImageNet-1k index in
    `indices` (sorted-synset order), each with one noise JPEG (seed + its rank, named 0000.JPEG, 0001...)."""
    from zoomstudy.data.labels import imagenet_synsets

    synsets = imagenet_synsets()
    for k, i in enumerate(indices):
        folder = Path(root) / synsets[int(i)]
        folder.mkdir(parents=True, exist_ok=True)
        noise_image(*size, seed + k).save(folder / f"{k:04d}.JPEG")
    return Path(root)


def write_hard_parquet(path: Path, images, labels, origins=None, english=None, paths=None) -> Path:
    """A parquet file in ImageNet-Hard's hub schema (image {bytes, path}, label list<int64>, origin,
    english_label: the hub's list<string>, or plain strings as some copies hold). images: PNG/JPEG bytes,
    PIL images (saved as PNG) or None (broken bytes). paths: the image paths (default "<row>.png")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def payload(im):
        if im is None:
            return b"not an image"
        if isinstance(im, bytes):
            return im
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()

    n = len(images)
    table = pa.table({
        "image": pa.array([{"bytes": payload(im), "path": paths[i] if paths else f"{i}.png"} for i, im in enumerate(images)],
                          pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": pa.array([list(map(int, lab)) for lab in labels], pa.list_(pa.int64())),
        "origin": pa.array(list(origins) if origins is not None else [f"origin{i % 2}" for i in range(n)], pa.string()),
        "english_label": pa.array(list(english) if english is not None else [[f"name{i}"] for i in range(n)]),
    })
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return Path(path)


@contextlib.contextmanager
def one_thread():
    """One intra-op thread inside the block: small batches gain nothing from a second thread and lose a lot
    on a shared CPU. The old setting comes back after it (the `one_thread` fixture of conftest uses it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
