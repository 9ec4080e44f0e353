"""zoomstudy.data: robust decoding, the sources, sharding, provenance and the dataset registry.

Every fixture is built here in tmp_path with PIL / pyarrow; the real kit is read in place."""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import write_hard_parquet
from zoomstudy.data import (
    DATASETS,
    LABEL_SPACE_NAMES,
    BadImage,
    CsvSource,
    HFSource,
    ImageFolderSource,
    ObjectNetSource,
    Sample,
    SyntheticSource,
    imagenet_synsets,
    load_image,
    open_dataset,
    open_source,
    parse_labels,
    real_label_sets,
    timm_real_labels,
)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _png(path: Path, size=(12, 9), color=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "PNG")
    return path


def _noise_jpeg_bytes(size=(256, 192), seed=0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "JPEG", quality=90)
    return b.getvalue()


def _png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims width x height (what a decompression bomb looks like at open)."""
    b = io.BytesIO()
    Image.new("L", (1, 1)).save(b, "PNG")
    data = bytearray(b.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _ids(src) -> list[str]:
    return [s.image_id for s in src]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _hard_parquet(path: Path, n: int = 5, bad_row: int | None = 3) -> list[tuple[int, int, int]]:
    """A small parquet in the ImageNet-Hard hub schema; returns each row's colour."""
    colors = [(i * 40 % 256, 255 - i * 30, 7 * i) for i in range(n)]
    images = [None if i == bad_row else Image.new("RGB", (8 + i, 6 + i), c) for i, c in enumerate(colors)]
    write_hard_parquet(path, images, [[0], [1, 101], [], [5], [999]][:n] if n <= 5 else [[k % 1000] for k in range(n)],
                       english=[f"name{i}" for i in range(n)], paths=[f"img{i}.png" for i in range(n)])
    return colors


# ================================================================================================
# load_image
# ================================================================================================
def test_truncated_jpeg_is_bad(tmp_path):
    data = _noise_jpeg_bytes()
    cut = data[: len(data) // 2]
    with pytest.raises(BadImage) as e:
        load_image(cut)
    assert "truncated" in e.value.reason
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    with pytest.raises(BadImage, match="truncated"):
        load_image(path)
    # a lazily opened PIL image fails inside load_image too, not later
    with pytest.raises(BadImage, match="truncated"):
        load_image(Image.open(io.BytesIO(cut)))
    assert isinstance(e.value, ValueError)


def test_empty_missing_and_non_image(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(BadImage, match="empty file"):
        load_image(empty)
    with pytest.raises(BadImage, match="empty file"):
        load_image(b"")
    with pytest.raises(BadImage, match="not an image"):
        load_image(b"hello, this is plain text and not a picture" * 4)
    with pytest.raises(BadImage, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="src must be"):
        load_image(12345)


def test_cmyk_matches_pil_convert(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(arr, "CMYK").save(path, "JPEG")
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(Image.open(path).convert("RGB")))


@pytest.mark.parametrize("transparency", ["index", "bytes"])
def test_palette_with_transparency(tmp_path, transparency):
    p = Image.new("P", (4, 3), 0)
    p.putpalette([200, 10, 20, 5, 150, 60] + [0] * 762)
    p.putpixel((3, 2), 1)
    path = tmp_path / "p.png"
    if transparency == "index":
        p.save(path, transparency=0)
    else:
        p.save(path, transparency=bytes([0, 128] + [255] * 254))
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's palette-transparency warning must not surface
        out = load_image(path)
    arr = np.asarray(out)
    assert out.mode == "RGB"
    assert tuple(arr[0, 0]) == (200, 10, 20)  # the transparent index keeps its palette colour
    assert tuple(arr[2, 3]) == (5, 150, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(arr, np.asarray(Image.open(path).convert("RGB")))


def test_alpha_is_dropped_like_convert(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 10, 20, 30
    rgba[0, 0, 3] = 0  # fully transparent: still (10, 20, 30), not composited on white or black
    rgba[1, 2] = (250, 100, 5, 128)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = np.asarray(load_image(path))
    np.testing.assert_array_equal(out, rgba[..., :3])
    la = Image.fromarray(np.stack([np.full((2, 2), 77, np.uint8), np.zeros((2, 2), np.uint8)], -1), "LA")
    np.testing.assert_array_equal(np.asarray(load_image(la)), np.full((2, 2, 3), 77, np.uint8))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 255, 256, 32768, 65535]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out.shape == (1, 5, 3)
    np.testing.assert_array_equal(out[..., 0], (values >> 8).astype(np.uint8))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    clipped = np.asarray(Image.open(path).convert("RGB"))[..., 0]
    assert not np.array_equal(clipped, out[..., 0])  # PIL's convert would turn 256.. into 255
    # mode I (32-bit ints, how older Pillows decode 16-bit PNGs) holding 16-bit samples
    as_i = Image.fromarray(values.astype(np.int32))
    assert as_i.mode == "I"
    np.testing.assert_array_equal(np.asarray(load_image(as_i))[..., 0], (values >> 8).astype(np.uint8))
    # wider ranges are stretched min..max
    wide = Image.fromarray(np.array([[-100, 0, 100]], np.int32))
    np.testing.assert_array_equal(np.asarray(load_image(wide))[0, :, 0], [0, 128, 255])


def test_float_grey_and_bilevel():
    f01 = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32))
    np.testing.assert_array_equal(np.asarray(load_image(f01))[0, :, 1], [0, 128, 255, 0])
    f255 = Image.fromarray(np.array([[0.0, 100.0, 300.0]], np.float32))
    np.testing.assert_array_equal(np.asarray(load_image(f255))[0, :, 1], [0, 100, 255])
    one = Image.new("1", (3, 1), 0)
    one.putpixel((1, 0), 1)
    np.testing.assert_array_equal(np.asarray(load_image(one))[0, :, 2], [0, 255, 0])
    grey = Image.new("L", (2, 2), 99)
    assert load_image(grey).getpixel((1, 1)) == (99, 99, 99)


def test_exif_orientation_both_ways(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, "JPEG", exif=exif, quality=95)
    stored = load_image(path)  # the authors' way: stored pixels
    assert stored.size == (40, 20)
    np.testing.assert_array_equal(np.asarray(stored), np.asarray(Image.open(path).convert("RGB")))
    shown = load_image(path, exif_transpose=True)
    assert shown.size == (20, 40)
    top, bottom = np.asarray(shown)[5, 10], np.asarray(shown)[35, 10]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_tiny_and_extreme_aspect_images_are_valid(tmp_path):
    _png(tmp_path / "one.png", (1, 1), (1, 2, 3))
    assert load_image(tmp_path / "one.png").size == (1, 1)
    assert load_image(tmp_path / "one.png").getpixel((0, 0)) == (1, 2, 3)
    _png(tmp_path / "long.png", (10000, 50), (4, 5, 6))
    long = load_image(tmp_path / "long.png")
    assert long.size == (10000, 50) and long.mode == "RGB"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs():
    with pytest.raises(BadImage, match="decompression bomb"):
        load_image(_png_claiming_size(10000, 10000))  # above PIL's limit: refused before decoding
    with pytest.raises(BadImage, match="decompression bomb"):
        load_image(_png_claiming_size(30000, 30000))  # PIL itself refuses at open
    small = io.BytesIO()
    Image.new("RGB", (20, 20)).save(small, "PNG")
    with pytest.raises(BadImage, match="400 pixels > 399"):
        load_image(small.getvalue(), max_pixels=399)
    assert load_image(small.getvalue(), max_pixels=400).size == (20, 20)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(small.getvalue(), max_pixels=0)


def test_returns_a_new_image():
    src = Image.new("RGB", (3, 3), (9, 9, 9))
    out = load_image(src)
    assert out is not src
    out.putpixel((0, 0), (0, 0, 0))
    assert src.getpixel((0, 0)) == (9, 9, 9)


# ================================================================================================
# labels
# ================================================================================================
@pytest.mark.parametrize(
    "cell, expected",
    [
        ("3", (3,)),
        ("3;5", (3, 5)),
        ("7 2", (2, 7)),
        ("[4, 1, 4]", (1, 4)),
        ("", ()),
        ("  ", ()),
        (None, ()),
        (float("nan"), ()),
        (12, (12,)),
        ([9, 3], (3, 9)),
        (np.array([2, 1]), (1, 2)),
    ],
)
def test_parse_labels(cell, expected):
    assert parse_labels(cell) == expected


@pytest.mark.parametrize("cell", ["x", "3;y", "[1, 2", "-1", 2.5, True])
def test_parse_labels_rejects(cell):
    with pytest.raises(ValueError):
        parse_labels(cell)


def test_real_labels_against_timm_file():
    import importlib.util

    timm_dir = Path(importlib.util.find_spec("timm").origin).parent  # without importing timm (and torch)
    raw = json.loads((timm_dir / "data" / "_info" / "imagenet_real_labels.json").read_text())
    real = timm_real_labels()
    assert len(real) == 50000
    assert sum(1 for s in real if s) == 46837  # SPEC section 2
    for i in (0, 1, 2, 49999):
        assert real[i] == tuple(sorted(set(raw[i])))
    ids = [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 50001)]
    union, keep = real_label_sets("imagenet+real", ids, [(7,)] * 50000, real)
    assert len(union) == 50000 and keep.all()
    for i in (0, 1, 2):
        assert union[i] == tuple(sorted(set(raw[i]) | {7}))
    alone, keep = real_label_sets("real", ids, [(7,)] * 50000, real)
    assert int(keep.sum()) == 46837 and alone[0] == real[0]
    with pytest.raises(ValueError, match="no ReaL entry"):
        real_label_sets("real", ["ILSVRC2012_val_00000004.JPEG"], [(1,)], real[:3])


def test_synsets_order():
    syn = imagenet_synsets()
    assert len(syn) == 1000 and list(syn) == sorted(syn)
    assert syn[0] == "n01440764"


# ================================================================================================
# sources
# ================================================================================================
def test_image_folder_synsets(tmp_path):
    syn = imagenet_synsets()
    _png(tmp_path / syn[0] / "b.png")
    _png(tmp_path / syn[0] / "a.JPEG", color=(1, 1, 1))
    _png(tmp_path / syn[999] / "sub" / "c.png")
    (tmp_path / syn[999] / "broken.jpg").write_bytes(b"")
    (tmp_path / syn[999] / "notes.txt").write_text("not an image")
    src = ImageFolderSource(tmp_path)
    samples = list(src)
    assert len(src) == 4 and len(samples) == 4
    by_id = {s.image_id: s for s in samples}
    assert set(by_id) == {f"{syn[0]}/a.JPEG", f"{syn[0]}/b.png", f"{syn[999]}/sub/c.png", f"{syn[999]}/broken.jpg"}
    assert by_id[f"{syn[0]}/b.png"].labels == (0,)
    assert by_id[f"{syn[999]}/sub/c.png"].labels == (999,)
    bad = by_id[f"{syn[999]}/broken.jpg"]
    assert bad.image is None and "empty" in bad.error and bad.labels == (999,)
    good = by_id[f"{syn[0]}/b.png"]
    assert isinstance(good, Sample) and good.error is None and good.image.mode == "RGB"
    assert src.labeling == "synsets"
    assert src[0].image_id == samples[0].image_id


def test_image_folder_labelings(tmp_path):
    for name in ("0", "10", "2"):
        _png(tmp_path / "ints" / name / "x.png")
    assert {s.image_id: s.labels for s in ImageFolderSource(tmp_path / "ints")} == {
        "0/x.png": (0,),
        "10/x.png": (10,),
        "2/x.png": (2,),
    }
    for name in ("dog", "cat"):
        _png(tmp_path / "pets" / name / "x.png")
    pets = {s.image_id: s.labels for s in ImageFolderSource(tmp_path / "pets")}
    assert pets == {"cat/x.png": (0,), "dog/x.png": (1,)}
    explicit = ImageFolderSource(tmp_path / "pets", classes=["dog", "cat", "bird"])
    assert {s.image_id: s.labels for s in explicit} == {"cat/x.png": (1,), "dog/x.png": (0,)}
    with pytest.raises(ValueError, match="not in classes"):
        ImageFolderSource(tmp_path / "pets", classes=["dog"])
    with pytest.raises(ValueError, match="not ImageNet-1k synsets"):
        ImageFolderSource(tmp_path / "pets", classes="synsets")
    with pytest.raises(ValueError, match="classes must be"):
        ImageFolderSource(tmp_path / "pets", classes="alphabetical")
    with pytest.raises(ValueError, match="not a directory"):
        ImageFolderSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderSource(tmp_path / "empty")
    with pytest.raises(ValueError, match="fingerprint"):
        ImageFolderSource(tmp_path / "pets", fingerprint="md5")


def test_image_folder_with_decoding(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "c").mkdir()
    Image.new("RGB", (40, 20)).save(tmp_path / "c" / "r.jpg", exif=exif)
    src = ImageFolderSource(tmp_path)
    assert next(iter(src)).image.size == (40, 20)
    assert next(iter(src.with_decoding(exif_transpose=True))).image.size == (20, 40)
    assert next(iter(src.with_decoding(crop_border=2))).image.size == (36, 16)
    with pytest.raises(ValueError, match="crop_border"):
        src.with_decoding(crop_border=-1)


def test_csv_multilabel(tmp_path):
    for name in "abcde":
        _png(tmp_path / "imgs" / f"{name}.png")
    _write_csv(
        tmp_path / "imgs" / "labels.csv",
        ["file", "label", "origin"],
        [
            ["a.png", "3", "x"],
            ["b.png", "3;5", "y"],
            ["c.png", "7 2", "x"],
            ["d.png", "[1, 4]", "z"],
            ["e.png", "", "x"],
            ["gone.png", "1", "x"],
        ],
    )
    src = CsvSource(tmp_path / "imgs")
    samples = list(src)
    assert [s.image_id for s in samples] == ["a.png", "b.png", "c.png", "d.png", "e.png", "gone.png"]
    assert [s.labels for s in samples] == [(3,), (3, 5), (2, 7), (1, 4), (), (1,)]
    assert samples[1].meta == {"origin": "y"}
    assert all(s.image is not None for s in samples[:5])
    assert samples[5].image is None and "not found" in samples[5].error
    # another CSV name and other column names
    _write_csv(tmp_path / "imgs" / "other.csv", ["path", "target"], [["a.png", "[9]"]])
    other = CsvSource(tmp_path / "imgs", "other.csv", file_column="path", label_column="target")
    assert [(s.image_id, s.labels) for s in other] == [("a.png", (9,))]


def test_csv_errors(tmp_path):
    _png(tmp_path / "a.png")
    _write_csv(tmp_path / "bad.csv", ["file", "label"], [["a.png", "1"], ["a.png", "x"]])
    with pytest.raises(ValueError, match=r"bad.csv:3"):
        CsvSource(tmp_path, "bad.csv")
    _write_csv(tmp_path / "dup.csv", ["file", "label"], [["a.png", "1"], ["a.png", "2"]])
    with pytest.raises(ValueError, match="duplicate"):
        CsvSource(tmp_path, "dup.csv")
    _write_csv(tmp_path / "cols.csv", ["name", "label"], [["a.png", "1"]])
    with pytest.raises(ValueError, match="no column 'file'"):
        CsvSource(tmp_path, "cols.csv")
    with pytest.raises(ValueError, match="not found"):
        CsvSource(tmp_path, "absent.csv")


def test_labels_outside_the_label_space_are_errors_naming_the_row(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    _write_csv(tmp_path / "big.csv", ["file", "label"], [["a.png", "1"], ["b.png", "5000"]])
    with pytest.raises(ValueError, match=r"big.csv:3 \(b.png\): label 5000 is outside the label space"):
        CsvSource(tmp_path, "big.csv")
    _write_csv(tmp_path / "multi.csv", ["file", "label"], [["a.png", "3;1000"]])
    with pytest.raises(ValueError, match=r"multi.csv:2 .*label 1000"):
        CsvSource(tmp_path, "multi.csv")
    _write_csv(tmp_path / "ok.csv", ["file", "label"], [["a.png", "999"]])
    assert CsvSource(tmp_path, "ok.csv").records()[0].labels == (999,)
    (tmp_path / "folders" / "1000").mkdir(parents=True)
    _png(tmp_path / "folders" / "1000" / "x.png")
    with pytest.raises(ValueError, match="1000"):
        ImageFolderSource(tmp_path / "folders", classes="integers")
    with pytest.raises(ValueError, match="n_classes"):
        SyntheticSource(2, n_classes=5000)


def test_stream_records_decode_only_on_request(tmp_path):
    src = _hf_stream_source(tmp_path)
    recs = list(src.shard(1, 2).iter_records())
    assert [r.image_id for r in recs] == [s.image_id for s in src.shard(1, 2)]
    one = src.sample(recs[0])
    assert one.image_id == recs[0].image_id and (one.image is not None or one.error)


@pytest.mark.realdata
def test_csv_on_real_imagenet_sample(realdata):
    root = realdata / "imagenet-sample"
    src = CsvSource(root)
    assert len(src) == 100
    samples = list(src)
    by_id = {s.image_id: s for s in samples}
    assert by_id["n01491361_tiger_shark.JPEG"].labels == (3,)
    assert by_id["n13037406_gyromitra.JPEG"].labels == (993,)
    assert by_id["n02749479_assault_rifle.JPEG"].labels == (413,)
    syn = imagenet_synsets()
    for s in samples:  # the kit's synset column agrees with timm's order
        assert s.labels == (syn.index(s.meta["synset"]),)
        assert s.error is None and s.image.mode == "RGB"
    grey = [s for s in samples if Image.open(root / s.image_id).mode == "L"]
    assert len(grey) >= 1
    for s in grey:
        arr = np.asarray(s.image)
        np.testing.assert_array_equal(arr[..., 0], arr[..., 1])
        np.testing.assert_array_equal(arr[..., 0], np.asarray(Image.open(root / s.image_id)))
    first = samples[0]
    np.testing.assert_array_equal(np.asarray(first.image), np.asarray(Image.open(root / first.image_id).convert("RGB")))
    prov = src.provenance()
    json.dumps(prov)
    assert prov["rows"] == 100 and len(prov["fingerprint"]) == 64


def test_hf_local_parquet(tmp_path):
    colors = _hard_parquet(tmp_path / "hard" / "data.parquet")
    src = HFSource("parquet", data_files=tmp_path / "hard", expected_rows=5, cache_dir=tmp_path / "cache")
    samples = list(src)
    assert len(src) == 5 and [s.image_id for s in samples] == ["0", "1", "2", "3", "4"]
    assert [s.labels for s in samples] == [(0,), (1, 101), (), (5,), (999,)]
    assert samples[1].meta == {"origin": "origin1", "english_label": "name1"}
    assert samples[3].image is None and "not an image" in samples[3].error
    for i in (0, 1, 2, 4):
        assert samples[i].image.size == (8 + i, 6 + i)
        assert samples[i].image.getpixel((0, 0)) == colors[i]
    with pytest.raises(ValueError, match=r"5 rows, expected 6"):
        HFSource("parquet", data_files=tmp_path / "hard", expected_rows=6, cache_dir=tmp_path / "cache")


def test_hf_image_feature_and_id_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    blobs = []
    for i in range(3):
        b = io.BytesIO()
        Image.new("L", (5, 4), 50 * i).save(b, "PNG")
        blobs.append(b.getvalue())
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("int64"), "uid": datasets.Value("string")}
    )
    ds = datasets.Dataset.from_dict({"image": blobs, "label": [4, 5, 6], "uid": ["x", "y", "z"]}, features=features)
    ds.to_parquet(str(tmp_path / "feat.parquet"))
    src = HFSource("parquet", data_files=str(tmp_path / "feat.parquet"), id_column="uid", cache_dir=tmp_path / "c")
    samples = list(src)
    assert [(s.image_id, s.labels) for s in samples] == [("x", (4,)), ("y", (5,)), ("z", (6,))]
    assert samples[2].image.mode == "RGB" and samples[2].image.getpixel((0, 0)) == (100, 100, 100)
    with pytest.raises(ValueError, match="no column 'target'"):
        HFSource("parquet", data_files=str(tmp_path / "feat.parquet"), label_column="target", cache_dir=tmp_path / "c")


def test_hf_streaming_matches_indexed(tmp_path):
    _hard_parquet(tmp_path / "hard.parquet")
    indexed = HFSource("parquet", data_files=tmp_path / "hard.parquet", cache_dir=tmp_path / "cache")
    stream = HFSource("parquet", data_files=tmp_path / "hard.parquet", streaming=True, expected_rows=5)
    assert len(stream) == 5  # from the parquet metadata, before any image is decoded
    a, b = list(indexed), list(stream)
    assert [(s.image_id, s.labels, s.error is None) for s in a] == [(s.image_id, s.labels, s.error is None) for s in b]
    for x, y in zip(a, b):
        if x.image is not None:
            np.testing.assert_array_equal(np.asarray(x.image), np.asarray(y.image))
    assert _ids(stream.shard(1, 2)) == _ids(indexed.shard(1, 2)) == ["1", "3"]
    with pytest.raises(ValueError, match="5 rows, expected 4"):
        HFSource("parquet", data_files=tmp_path / "hard.parquet", streaming=True, expected_rows=4)
    with pytest.raises(ValueError, match="relabel needs an indexed source"):
        stream.relabel(lambda r: r.labels, "x")


def test_hf_data_files_per_split(tmp_path):
    _hard_parquet(tmp_path / "v.parquet", n=5)
    _hard_parquet(tmp_path / "t.parquet", n=3, bad_row=None)
    files = {"validation": str(tmp_path / "v.parquet"), "test": [tmp_path / "t.parquet"]}
    val = HFSource("parquet", data_files=files, split="validation", expected_rows=5, cache_dir=tmp_path / "c")
    assert len(val) == 5 and val.provenance()["split"] == "validation"
    stream = HFSource("parquet", data_files=files, split="test", streaming=True)
    assert len(stream) == 3 and _ids(stream) == ["0", "1", "2"]  # the row count is that split's alone
    with pytest.raises(ValueError, match="split 'train' not in data_files"):
        HFSource("parquet", data_files=files, split="train")


def test_hf_hub_needs_revision():
    with pytest.raises(ValueError, match="revision"):
        HFSource("someone/some-dataset", split="validation")
    with pytest.raises(ValueError, match="data files not found"):
        HFSource("parquet", data_files="/nonexistent/dir/file.parquet")


def test_synthetic_is_deterministic():
    a = list(SyntheticSource(6, size=((20, 40), (10, 30)), n_classes=7, seed=3))
    b = list(SyntheticSource(6, size=((20, 40), (10, 30)), n_classes=7, seed=3))
    c = list(SyntheticSource(6, size=((20, 40), (10, 30)), n_classes=7, seed=4))
    for x, y in zip(a, b):
        assert x.image_id == y.image_id and x.labels == y.labels
        np.testing.assert_array_equal(np.asarray(x.image), np.asarray(y.image))
    assert any(not np.array_equal(np.asarray(x.image), np.asarray(z.image)) for x, z in zip(a, c))
    for s in a:
        assert 20 <= s.image.width <= 40 and 10 <= s.image.height <= 30
        assert s.image.mode == "RGB" and 0 <= s.labels[0] < 7
    assert len({s.image.size for s in a}) > 1
    fixed = list(SyntheticSource(3))
    assert all(s.image.size == (64, 48) for s in fixed)
    # an item does not depend on which shard reads it
    in_shard = next(iter(SyntheticSource(6).shard(2, 3)))
    np.testing.assert_array_equal(np.asarray(in_shard.image), np.asarray(list(SyntheticSource(6))[2].image))
    for bad in (dict(n=-1), dict(n_classes=0), dict(size=(0, 5)), dict(size=((5, 3), (4, 4))), dict(size="big")):
        with pytest.raises(ValueError):
            SyntheticSource(**bad)


# ================================================================================================
# sharding and provenance, on every source
# ================================================================================================
def _folder_source(tmp_path):
    for i in range(7):
        _png(tmp_path / "f" / f"class{i % 3}" / f"{i}.png", color=(i, i, i))
    return ImageFolderSource(tmp_path / "f")


def _csv_source(tmp_path):
    rows = []
    for i in range(7):
        _png(tmp_path / "c" / f"{i}.png")
        rows.append([f"{i}.png", str(i)])
    _write_csv(tmp_path / "c" / "labels.csv", ["file", "label"], rows)
    return CsvSource(tmp_path / "c")


def _hf_source(tmp_path):
    _hard_parquet(tmp_path / "h.parquet", n=7, bad_row=None)
    return HFSource("parquet", data_files=tmp_path / "h.parquet", cache_dir=tmp_path / "cache")


def _hf_stream_source(tmp_path):
    _hard_parquet(tmp_path / "h.parquet", n=7, bad_row=None)
    return HFSource("parquet", data_files=tmp_path / "h.parquet", streaming=True)


BUILDERS = {
    "synthetic": lambda tmp_path: SyntheticSource(7, size=(8, 8)),
    "folder": _folder_source,
    "csv": _csv_source,
    "hf": _hf_source,
    "hf-stream": _hf_stream_source,
}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_shards_partition_the_source(tmp_path, kind):
    src = BUILDERS[kind](tmp_path)
    whole = _ids(src)
    assert len(whole) == len(src) == 7 and len(set(whole)) == 7
    for count in (1, 2, 3, 8):
        shards = [_ids(src.shard(i, count)) for i in range(count)]
        assert [len(src.shard(i, count)) for i in range(count)] == [len(s) for s in shards]
        flat = [x for s in shards for x in s]
        assert sorted(flat) == sorted(whole) and len(flat) == len(set(flat))
        for i, s in enumerate(shards):
            assert s == whole[i::count]  # every count-th item by position
    assert _ids(src.shard(1, 2).shard(1, 2)) == whole[3::4]
    assert _ids(pickle.loads(pickle.dumps(src.shard(0, 2)))) == whole[0::2]  # DataLoader workers get copies
    if kind != "hf-stream":  # map-style access agrees with iteration, shard by shard
        part = src.shard(1, 3)
        assert [part[i].image_id for i in range(len(part))] == _ids(part) and part[-1].image_id == whole[4]
        with pytest.raises(IndexError):
            part[len(part)]
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="shard"):
            src.shard(*bad)
    prov = src.shard(1, 3).provenance()
    json.dumps(prov)
    assert prov["shard"] == {"index": 1, "count": 3, "rows": 2}
    assert prov["rows"] == 7 and prov["fingerprint"] == src.provenance()["fingerprint"]
    assert prov["kind"] == src.kind


def test_folder_fingerprint_tracks_files(tmp_path):
    src = _folder_source(tmp_path)
    before = src.provenance()
    assert ImageFolderSource(tmp_path / "f").provenance()["fingerprint"] == before["fingerprint"]
    path = tmp_path / "f" / "class0" / "0.png"
    Image.new("RGB", (30, 30), (1, 2, 3)).save(path)  # a different file (different size)
    after = ImageFolderSource(tmp_path / "f").provenance()
    assert after["fingerprint"] != before["fingerprint"]
    assert after["labels_fingerprint"] == before["labels_fingerprint"]
    # same size, other bytes: the default (quick) and sha256 fingerprints see it, "size" does not
    data = bytearray(path.read_bytes())
    quick_fp = ImageFolderSource(tmp_path / "f").provenance()["fingerprint"]
    size_fp = ImageFolderSource(tmp_path / "f", fingerprint="size").provenance()["fingerprint"]
    sha_fp = ImageFolderSource(tmp_path / "f", fingerprint="sha256").provenance()["fingerprint"]
    st = path.stat()
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old modification time
    assert ImageFolderSource(tmp_path / "f").provenance()["fingerprint"] != quick_fp
    assert ImageFolderSource(tmp_path / "f", fingerprint="size").provenance()["fingerprint"] == size_fp
    assert ImageFolderSource(tmp_path / "f", fingerprint="sha256").provenance()["fingerprint"] != sha_fp


def test_csv_and_parquet_fingerprints_track_changes(tmp_path):
    src = _csv_source(tmp_path)
    before = src.provenance()
    rows = [[f"{i}.png", str(i if i else 500)] for i in range(7)]
    _write_csv(tmp_path / "c" / "labels.csv", ["file", "label"], rows)
    after = CsvSource(tmp_path / "c").provenance()
    assert after["fingerprint"] != before["fingerprint"] and after["csv_sha256"] != before["csv_sha256"]
    assert after["labels_fingerprint"] != before["labels_fingerprint"]
    hf = _hf_source(tmp_path)
    p1 = hf.provenance()
    assert p1["kind"] == "hf" and p1["rows"] == 7 and p1["revision"] is None
    _hard_parquet(tmp_path / "h.parquet", n=6, bad_row=None)
    p2 = HFSource("parquet", data_files=tmp_path / "h.parquet", cache_dir=tmp_path / "cache2").provenance()
    assert p2["fingerprint"] != p1["fingerprint"] and p2["rows"] == 6


# ================================================================================================
# registry
# ================================================================================================
def test_registry_contents():
    expected = {
        "imagenet-val": 50000,
        "imagenet-real": 46837,
        "imagenet+real": 50000,
        "imagenet-a": 7500,
        "imagenet-r": 30000,
        "imagenet-sketch": 50889,
        "imagenet-v2": 10000,
        "objectnet": 18574,
        "imagenet-hard": 10980,
        "imagenet-hard-4k": 10980,
    }
    assert {n: s.expected_rows for n, s in DATASETS.items()} == expected
    for spec in DATASETS.values():
        assert spec.label_space in LABEL_SPACE_NAMES and spec.instructions and "\n" not in spec.instructions
    assert DATASETS["imagenet-a"].label_space == "imagenet-a" and DATASETS["imagenet-r"].label_space == "imagenet-r"
    assert DATASETS["imagenet-hard"].hub_repo == "taesiri/imagenet-hard"
    assert DATASETS["imagenet-hard"].hub_split == "validation" and DATASETS["imagenet-hard"].hub_revision
    assert DATASETS["objectnet"].crop_border == 2


def test_registry_label_spaces_exist_in_labels_module():
    from zoomstudy.data.labels import LABEL_SPACES

    assert {s.label_space for s in DATASETS.values()} <= set(LABEL_SPACES)


def test_open_dataset_without_data_says_how(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOOMSTUDY_IMAGENET_A", raising=False)
    with pytest.raises(ValueError) as e:
        open_dataset("imagenet-a")
    msg = str(e.value)
    assert "\n" not in msg and DATASETS["imagenet-a"].instructions in msg
    with pytest.raises(ValueError, match="does not exist"):
        open_dataset("imagenet-r", root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("imagenet-z")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.txt").write_text("")
    with pytest.raises(ValueError, match="no labels.csv"):
        open_dataset("imagenet-sketch", root=tmp_path / "flat")


def test_open_dataset_local_folder_row_guard(tmp_path, monkeypatch):
    syn = imagenet_synsets()
    for i in range(3):
        _png(tmp_path / "ina" / syn[6 + i] / f"{i}.jpg")
    with pytest.raises(ValueError, match="3 images, expected 7500"):
        open_dataset("imagenet-a", root=tmp_path / "ina")
    src = open_dataset("imagenet-a", root=tmp_path / "ina", expected_rows=None)
    assert src.name == "imagenet-a" and [s.labels for s in src] == [(6,), (7,), (8,)]
    prov = src.provenance()
    assert prov["dataset"]["label_space"] == "imagenet-a" and prov["kind"] == "folder"
    monkeypatch.setenv("ZOOMSTUDY_IMAGENET_A", str(tmp_path / "ina"))
    assert len(open_dataset("imagenet-a", expected_rows=3)) == 3


def test_open_dataset_real_and_in_plus_real(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOOMSTUDY_REAL_LABELS", raising=False)
    syn = imagenet_synsets()
    real = timm_real_labels()
    numbers = [n for n in range(1, 60) if not real[n - 1]][:1] + [n for n in range(1, 60) if real[n - 1]][:3]
    for k, n in enumerate(numbers):
        _png(tmp_path / "val" / syn[k] / f"ILSVRC2012_val_{n:08d}.JPEG")
    base = {s.image_id: s.labels for s in open_dataset("imagenet-val", root=tmp_path / "val", expected_rows=None)}
    assert len(base) == 4
    real_src = open_dataset("imagenet-real", root=tmp_path / "val", expected_rows=None)
    got = {s.image_id: s.labels for s in real_src}
    assert len(got) == 3  # the image with an empty ReaL set is left out
    for image_id, labels in got.items():
        n = int(image_id[-13:-5])
        assert labels == real[n - 1]
    plus = {s.image_id: s.labels for s in open_dataset("imagenet+real", root=tmp_path / "val", expected_rows=None)}
    assert len(plus) == 4
    for image_id, labels in plus.items():
        n = int(image_id[-13:-5])
        assert labels == tuple(sorted(set(base[image_id]) | set(real[n - 1])))
    assert real_src.provenance()["relabel"] and real_src.provenance()["rows"] == 3
    with pytest.raises(ValueError, match="3 images, expected 46837"):
        open_dataset("imagenet-real", root=tmp_path / "val")
    _png(tmp_path / "odd" / syn[0] / "photo.png")
    with pytest.raises(ValueError, match="ILSVRC2012_val"):
        open_dataset("imagenet-real", root=tmp_path / "odd", expected_rows=None)
    # the open-time path reads $ZOOMSTUDY_REAL_LABELS as the analysis-time path does (data.real)
    own = [[] for _ in range(60)]
    for k, n in enumerate(numbers):
        own[n - 1] = [900 + k]
    (tmp_path / "own_real.json").write_text(json.dumps(own))
    monkeypatch.setenv("ZOOMSTUDY_REAL_LABELS", str(tmp_path / "own_real.json"))
    mine = open_dataset("imagenet-real", root=tmp_path / "val", expected_rows=None)
    assert sorted(s.labels for s in mine) == [(900,), (901,), (902,), (903,)]
    assert "own_real.json" in mine.provenance()["relabel"][0]


def test_open_dataset_imagenet_hard_from_local_parquet(tmp_path):
    _hard_parquet(tmp_path / "snap" / "data" / "validation-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="5 rows, expected 10980"):
        open_dataset("imagenet-hard", root=tmp_path / "snap", cache_dir=tmp_path / "cache")
    src = open_dataset("imagenet-hard", root=tmp_path / "snap", expected_rows=None, cache_dir=tmp_path / "cache")
    samples = list(src)
    assert len(samples) == 5 and samples[1].labels == (1, 101) and samples[0].meta["origin"] == "origin0"
    assert src.provenance()["dataset"]["name"] == "imagenet-hard"


def test_open_dataset_objectnet_release_layout(tmp_path):
    from zoomstudy.data.labels import load_objectnet_mapping, objectnet_classes

    overlapping = sorted(load_objectnet_mapping())[:2]
    root = tmp_path / "objectnet-1.0"
    folders = {"first_cls": overlapping[0], "second_cls": overlapping[1], "other": "Not An ImageNet Class"}
    for folder in folders:
        _png(root / "images" / folder / "a.png", size=(20, 10))
    (root / "mappings").mkdir()
    (root / "mappings" / "folder_to_objectnet_label.json").write_text(json.dumps(folders))
    src = open_dataset("objectnet", root=root, expected_rows=None)
    samples = list(src)
    assert [s.image_id for s in samples] == ["first_cls/a.png", "second_cls/a.png"]
    classes = objectnet_classes()
    assert samples[0].labels == classes[overlapping[0]] and samples[1].labels == classes[overlapping[1]]
    assert samples[0].image.size == (16, 6)  # the 2-pixel border is cropped by default
    kept = open_dataset("objectnet", root=root, expected_rows=None, crop_border=0)
    assert next(iter(kept)).image.size == (20, 10)
    assert isinstance(ObjectNetSource(root), ObjectNetSource)


def test_open_source_specs(tmp_path):
    assert len(open_source("synthetic:5")) == 5
    folder = _folder_source(tmp_path)
    assert _ids(open_source(f"folder:{tmp_path / 'f'}")) == _ids(folder)
    assert isinstance(open_source(str(tmp_path / "f")), ImageFolderSource)
    csv_src = _csv_source(tmp_path)
    assert _ids(open_source(f"csv:{tmp_path / 'c'}")) == _ids(csv_src)
    assert isinstance(open_source(str(tmp_path / "c")), CsvSource)
    _write_csv(tmp_path / "c" / "two.csv", ["file", "label"], [["1.png", "1"], ["2.png", "2"]])
    assert _ids(open_source(f"csv:{tmp_path / 'c'}:two.csv")) == ["1.png", "2.png"]
    with pytest.raises(ValueError, match="revision"):
        open_source("hf:someone/some-dataset:validation")
    with pytest.raises(ValueError, match="integer"):
        open_source("synthetic:many")
    with pytest.raises(ValueError, match="cannot read"):
        open_source("nothing-like-this")
    syn = imagenet_synsets()
    _png(tmp_path / "a" / syn[6] / "x.png")
    assert len(open_source("imagenet-a", root=tmp_path / "a", expected_rows=1)) == 1


def test_import_without_datasets():
    code = (
        "import sys; sys.modules['datasets'] = None\n"
        "import zoomstudy.data as d\n"
        "assert len(list(d.SyntheticSource(2))) == 2\n"
        "try:\n"
        "    d.HFSource('parquet', data_files=sys.executable)\n"
        "except ImportError:\n"
        "    print('lazy-ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    assert "lazy-ok" in out.stdout
