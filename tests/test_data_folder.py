"""The project's data folder: a registry dataset placed under data/<folder>/ (or $ZOOMSTUDY_DATA/<folder>/)
is found before the dataset's environment variable and the hub; data/README.md documents every folder."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from zoomstudy.data import DATASETS, imagenet_synsets, open_dataset
from zoomstudy.data.registry import data_dir, local_copy


def _png(path: Path, color=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 9), color).save(path, "PNG")
    return path


def _class_folders(root: Path, n: int) -> Path:
    syn = imagenet_synsets()
    for i in range(n):
        _png(root / syn[6 + i] / f"{i}.png")
    return root


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh current directory with no $ZOOMSTUDY_DATA."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOOMSTUDY_DATA", raising=False)
    return tmp_path


def test_data_folder_is_read_before_the_environment_variable(project, monkeypatch):
    _class_folders(project / "data" / "imagenet-a", 2)
    _class_folders(project / "elsewhere", 3)
    monkeypatch.setenv("ZOOMSTUDY_IMAGENET_A", str(project / "elsewhere"))
    assert data_dir() == Path("data") and local_copy("imagenet-a") == Path("data") / "imagenet-a"
    src = open_dataset("imagenet-a", expected_rows=None)
    assert len(src) == 2 and [s.labels for s in src] == [(6,), (7,)]
    assert len(open_dataset("imagenet-a", root=project / "elsewhere", expected_rows=None)) == 3  # root= still wins
    # $ZOOMSTUDY_DATA moves the data folder; without a copy there, the environment variable is next
    monkeypatch.setenv("ZOOMSTUDY_DATA", str(project / "other"))
    assert local_copy("imagenet-a") is None and len(open_dataset("imagenet-a", expected_rows=None)) == 3
    _class_folders(project / "other" / "imagenet-a", 1)
    assert len(open_dataset("imagenet-a", expected_rows=None)) == 1


def test_empty_data_folder_does_not_shadow_the_environment_variable(project, monkeypatch):
    (project / "data" / "imagenet-r").mkdir(parents=True)
    (project / "data" / "imagenet-r" / ".keep").write_text("")
    _class_folders(project / "copy", 2)
    monkeypatch.setenv("ZOOMSTUDY_IMAGENET_R", str(project / "copy"))
    assert local_copy("imagenet-r") is None
    assert len(open_dataset("imagenet-r", expected_rows=None)) == 2
    monkeypatch.delenv("ZOOMSTUDY_IMAGENET_R")
    with pytest.raises(ValueError, match=re.escape(str(Path("data") / "imagenet-r"))):
        open_dataset("imagenet-r")  # the error names the folder it looked in


def test_hub_dataset_read_from_the_data_folder_first(project):
    """imagenet-hard lives on the hub; a parquet snapshot in data/imagenet-hard is read instead (no network)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    images = []
    for color in ((10, 20, 30), (200, 10, 10)):
        buf = io.BytesIO()
        Image.new("RGB", (12, 9), color).save(buf, "PNG")
        images.append({"bytes": buf.getvalue(), "path": f"{color[0]}.png"})
    table = pa.table({"image": images, "label": [[3, 17], [5]], "origin": ["imagenet", "objectnet"],
                      "english_label": ["a", "b"]})
    folder = project / "data" / "imagenet-hard"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "validation-00000-of-00001.parquet")
    src = open_dataset("imagenet-hard", expected_rows=None, cache_dir=project / "hf-cache")
    assert [tuple(s.labels) for s in src] == [(3, 17), (5,)] and len(src) == 2


def test_val_datasets_share_one_folder_and_readme_lists_every_folder():
    assert {DATASETS[n].folder for n in ("imagenet-val", "imagenet-real", "imagenet+real")} == {"imagenet-val"}
    readme = (REPO / "data" / "README.md").read_text()
    for spec in DATASETS.values():
        assert f"data/{spec.folder}/" in readme, f"data/README.md does not describe data/{spec.folder}/"
