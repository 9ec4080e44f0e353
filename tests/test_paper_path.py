"""The paper path on replicas of the layouts a user holds (issue 23): ImageNet val as Hugging Face
parquet (with and without its file names), as the official tarball extracts (a flat folder plus the
devkit's ground truth and meta.mat), as synset folders and as a flat folder with labels.csv; the
result-set key decided by the files and labels, not the folder shape; the CLI's refusals of silent
fallbacks; one data-folder resolver; 1-image summaries; parts sized by time."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from zoomstudy.data.labels import imagenet_synsets

#: Val numbers of the replica images: scattered, so that number order differs from synset order.
NUMBERS = (7, 3, 41, 12, 29, 5)


def _val_images(realdata: Path) -> list[tuple[int, Path, int]]:
    """(val number, real image file, sorted-synset label) for the replica's images: real ImageNet
    JPEGs of the kit, renamed by val number as the tarball names them."""
    rows = list(csv.DictReader(open(realdata / "imagenet-sample" / "labels.csv")))[: len(NUMBERS)]
    return [(n, realdata / "imagenet-sample" / r["file"], int(r["label"])) for n, r in zip(NUMBERS, rows)]


def _name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def _devkit(folder: Path, truth: dict[int, int]) -> Path:
    """ILSVRC2012_devkit_t12/data/ as the devkit tarball extracts: meta.mat (1000 leaf synsets whose
    ILSVRC2012_IDs are NOT in sorted-synset order, plus inner WordNet nodes) and the ground truth, one
    ILSVRC2012_ID per val number (50,000 lines)."""
    import scipy.io

    synsets = imagenet_synsets()
    rng = np.random.default_rng(0)
    order = rng.permutation(1000)  # id k+1 is synset order[k]: a permutation, like the real table
    id_of = {int(s): k + 1 for k, s in enumerate(order)}
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    table = np.zeros(1003, dtype=dtype)
    for k, s in enumerate(order):
        table[k] = (k + 1, synsets[s], f"class {s}", 0)
    for j, wnid in enumerate(("n00001740", "n00021939", "n03575240")):  # entity, artifact, instrumentality
        table[1000 + j] = (1001 + j, wnid, "inner node", 3)
    data = folder / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    scipy.io.savemat(data / "meta.mat", {"synsets": table})
    ids = [id_of[truth.get(n, (n * 37) % 1000)] for n in range(1, 50001)]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(map(str, ids)) + "\n")
    return data


@pytest.fixture(scope="module")
def val_layouts(realdata, tmp_path_factory):
    """The same 6 real images (copies keeping their modification times) in the layouts of ImageNet val."""
    base = tmp_path_factory.mktemp("val-layouts")
    images = _val_images(realdata)
    folders = base / "folders"
    flat_csv = base / "flat-csv"
    devkit = base / "devkit"
    for d in (flat_csv, devkit):
        d.mkdir()
    for n, src, label in images:
        (folders / imagenet_synsets()[label]).mkdir(parents=True, exist_ok=True)
        for dst in (folders / imagenet_synsets()[label] / _name(n), flat_csv / _name(n), devkit / _name(n)):
            shutil.copy2(src, dst)
    with open(flat_csv / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label"])
        for n, _, label in sorted(images):
            w.writerow([_name(n), label])
    _devkit(devkit, {n: label for n, _, label in images})
    # Hugging Face parquet as ILSVRC/imagenet-1k ships it: image {bytes, path}, label
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, with_path in (("parquet", True), ("parquet-nameless", False)):
        (base / name / "data").mkdir(parents=True)
        rows = sorted(images)
        table = pa.table({
            "image": pa.array([{"bytes": src.read_bytes(), "path": _name(n) if with_path else None}
                               for n, src, _ in rows]),
            "label": [label for _, _, label in rows],
        })
        pq.write_table(table, base / name / "data" / "validation-00000-of-00001.parquet")
    return {"base": base, "images": images, "folders": folders, "flat-csv": flat_csv, "devkit": devkit,
            "parquet": base / "parquet", "parquet-nameless": base / "parquet-nameless"}


# ================================================================================================
# Layouts
# ================================================================================================
def test_the_devkit_ground_truth_is_mapped_through_meta_mat(val_layouts):
    """The flat folder as ILSVRC2012_img_val.tar extracts, with the devkit beside it, opens with the right
    sorted-synset labels although the devkit's ids are in another order."""
    from zoomstudy.data.registry import open_dataset

    src = open_dataset("imagenet-val", root=val_layouts["devkit"], expected_rows=None)
    assert src.provenance()["kind"] == "devkit"
    got = {r.image_id: r.labels for r in src.records()}
    want = {_name(n): (label,) for n, _, label in val_layouts["images"]}
    assert got == want
    assert [r.image_id for r in src.records()] == [_name(n) for n in sorted(NUMBERS)]  # val-number order


def test_the_devkit_tarball_is_read_in_place(val_layouts, tmp_path):
    import tarfile

    from zoomstudy.data.registry import open_dataset

    folder = tmp_path / "val"
    folder.mkdir()
    for n, src, _ in val_layouts["images"]:
        shutil.copy2(src, folder / _name(n))
    with tarfile.open(folder / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(val_layouts["devkit"] / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    src = open_dataset("imagenet-val", root=folder, expected_rows=None)
    assert {r.image_id: r.labels for r in src.records()} == {_name(n): (lab,) for n, _, lab in val_layouts["images"]}


def test_a_devkit_without_meta_mat_is_one_line(val_layouts, tmp_path):
    from zoomstudy.data.registry import open_dataset

    folder = tmp_path / "val"
    folder.mkdir()
    n, src, _ = val_layouts["images"][0]
    shutil.copy2(src, folder / _name(n))
    shutil.copy2(val_layouts["devkit"] / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt",
                 folder)
    with pytest.raises(ValueError, match="meta.mat") as e:
        open_dataset("imagenet-val", root=folder, expected_rows=None)
    assert "\n" not in str(e.value)


def test_parquet_val_carries_the_val_number_so_real_scores(val_layouts):
    """HF parquet: the image ids are the file names kept in image.path, so ReaL and IN+ReaL join."""
    from zoomstudy.data.registry import open_dataset, real_join_problem

    src = open_dataset("imagenet-val", root=val_layouts["parquet"], expected_rows=None)
    assert [r.image_id for r in src.records()] == [_name(n) for n in sorted(NUMBERS)]
    assert real_join_problem(src) is None
    real = open_dataset("imagenet+real", root=val_layouts["parquet"], expected_rows=None)
    assert len(real) == len(NUMBERS)
    nameless = open_dataset("imagenet-val", root=val_layouts["parquet-nameless"], expected_rows=None)
    problem = real_join_problem(nameless)
    assert problem and "ILSVRC2012_val" in problem and "\n" not in problem


def test_every_layout_of_the_same_files_gives_one_key(val_layouts):
    """Synset folders, flat + labels.csv and flat + devkit: one result-set key (files and labels decide it);
    a changed label changes it."""
    from zoomstudy.data.registry import open_dataset
    from zoomstudy.models.loading import load_model
    from zoomstudy.sweep.engine import sweep_settings
    from zoomstudy.keyed import settings_key as key_hash
    from zoomstudy.views import ViewGrid

    import torch

    model = load_model("torchvision:squeezenet1_0", pretrained=False, device="cpu")
    grid = ViewGrid(scales=(64,), grid=1, crop=64)

    def key(root):
        src = open_dataset("imagenet-val", root=root, expected_rows=None)
        return key_hash(sweep_settings(model, src, grid, normalization="imagenet", render_dtype=torch.float64,
                                       tta=False))

    keys = {name: key(val_layouts[name]) for name in ("folders", "flat-csv", "devkit")}
    assert len(set(keys.values())) == 1, keys
    assert key(val_layouts["parquet"]) != keys["folders"]  # one file per split, not per image: its own key
    other = val_layouts["base"] / "flat-csv-relabelled"
    shutil.copytree(val_layouts["flat-csv"], other, copy_function=shutil.copy2)
    text = (other / "labels.csv").read_text().splitlines()
    f, lab = text[1].split(",")
    text[1] = f"{f},{(int(lab) + 1) % 1000}"
    (other / "labels.csv").write_text("\n".join(text) + "\n")
    assert key(other) != keys["folders"]


# ================================================================================================
# zoomstudy paper: preflight refusals, one resolver, the CLI's words
# ================================================================================================
VAL_COLUMNS = ["--datasets", "imagenet-val", "imagenet-real", "imagenet+real"]


def _paper(argv, capsys):
    from zoomstudy import cli

    code = cli.main(["paper", "--dry-run", "--no-probe", "--no-hard", "--models", "resnet50", "--device", "cpu",
                     "--quiet", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_preflight_refuses_real_on_a_parquet_copy_without_val_numbers(val_layouts, capsys):
    code, out, _ = _paper([*VAL_COLUMNS, "--root", f"imagenet-val={val_layouts['parquet-nameless']}",
                           "--expected-rows", "imagenet-val=none"], capsys)
    assert code == 0
    refused = [line for line in out.splitlines() if "refused" in line]
    assert len(refused) == 2 and {"ReaL", "IN+ReaL"} == {line.split()[0].rstrip(":") for line in refused}, out
    assert all("ILSVRC2012_val" in line for line in refused)
    code, out, _ = _paper([*VAL_COLUMNS, "--root", f"imagenet-val={val_layouts['parquet']}",
                           "--expected-rows", "imagenet-val=none"], capsys)
    assert code == 0 and "refused" not in out and "imagenet-val     6 images" in out


def test_a_partial_copy_is_advised_with_the_cli_flag_once(val_layouts, capsys):
    code, out, _ = _paper(["--datasets", "imagenet-val", "--root", f"imagenet-val={val_layouts['devkit']}"], capsys)
    assert code == 0
    assert "expected_rows" not in out
    assert out.count("--expected-rows imagenet-val=none") == 1, out
    assert out.count("ILSVRC2012_validation_ground_truth.txt") == 1, out  # the how-to line, once


def test_zoomstudy_data_is_honoured_by_paper_and_open_dataset_alike(val_layouts, tmp_path, monkeypatch, capsys):
    """$ZOOMSTUDY_DATA and the dataset's own variable both set: `zoomstudy paper` and `open_dataset` pick
    the same copy (the data folder's), so the same result set."""
    from zoomstudy import matrix
    from zoomstudy.data.registry import find_local, open_dataset

    data = tmp_path / "mydata"
    data.mkdir()
    shutil.copytree(val_layouts["devkit"], data / "imagenet-val", copy_function=shutil.copy2)
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.setenv("ZOOMSTUDY_DATA", str(data))
    monkeypatch.setenv("ZOOMSTUDY_IMAGENET_VAL", str(val_layouts["flat-csv"]))
    code, out, _ = _paper(["--datasets", "imagenet-val", "--expected-rows", "imagenet-val=none"], capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if line.strip().startswith("imagenet-val"))
    assert str(data / "imagenet-val") in line and "via mydata/imagenet-val/" in line, out
    st = matrix.locate("imagenet-val", expected_rows={"imagenet-val": None})
    src = open_dataset("imagenet-val", expected_rows=None)
    assert Path(st.root) == find_local("imagenet-val")[0] == data / "imagenet-val"
    assert src.provenance()["location"] == str((data / "imagenet-val").resolve())
    monkeypatch.delenv("ZOOMSTUDY_DATA")  # then the dataset's own variable, for both
    st = matrix.locate("imagenet-val", expected_rows={"imagenet-val": None})
    assert Path(st.root) == val_layouts["flat-csv"] and st.via == "$ZOOMSTUDY_IMAGENET_VAL"


def test_an_unmatched_checkpoint_name_is_refused_naming_the_model(realdata, capsys):
    from zoomstudy import cli

    weights = realdata / "weights" / "squeezenet1_0_deepcompression.pt"
    argv = ["paper", "--dry-run", "--no-probe", "--no-hard", "--models", "torchvision:squeezenet1_0",
            "--datasets", "imagenet-a", "--device", "cpu", "--checkpoint", f"squeezenet1_0={weights}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model of the plan is named 'squeezenet1_0'" in err[0]
    assert "did you mean torchvision:squeezenet1_0" in err[0]
    argv[-1] = f"torchvision:squeezenet1_0={weights}"
    assert cli.main(argv) == 0
    argv[-1] = f"torchvision:squeezenet1_0={weights}.missing"
    assert cli.main(argv) == 2 and "is not a file" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line(monkeypatch, capsys, tmp_path):
    """A notebook failing (NotebookFailed is no ValueError) is one line on stderr, not a traceback."""
    from zoomstudy import cli
    from zoomstudy.report import notebooks

    def fail(*a, **k):
        raise notebooks.NotebookFailed("06_the_paper", "KeyError", "'x'", 5)

    monkeypatch.setattr(notebooks, "reproduce", fail)
    assert cli.main(["reproduce", "--out", str(tmp_path / "r"), "--only", "06_the_paper", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notebook 06_the_paper failed in cell [5]: KeyError" in err[0], err


# ================================================================================================
# Small ones: a 1-image summary, parts sized by time
# ================================================================================================
def _one_image_csv(realdata: Path, folder: Path, n: int = 1) -> Path:
    folder.mkdir(parents=True)
    rows = list(csv.DictReader(open(realdata / "imagenet-sample" / "labels.csv")))[:n]
    for r in rows:
        shutil.copy2(realdata / "imagenet-sample" / r["file"], folder / r["file"])
    (folder / "labels.csv").write_text("file,label\n" + "".join(f"{r['file']},{r['label']}\n" for r in rows))
    return folder


def test_summary_of_a_one_image_result_set_is_in_sample_and_says_why(realdata, tmp_path, capsys):
    from zoomstudy import cli

    data = _one_image_csv(realdata, tmp_path / "one")
    results = tmp_path / "results"
    assert cli.main(["sweep", "--model", "torchvision:squeezenet1_0", "--no-pretrained", "--dataset", f"csv:{data}",
                     "--scales", "128,256", "--grid", "1", "--crop", "224", "--no-tta", "--results-dir", str(results),
                     "--device", "cpu", "--workers", "0", "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["summary", str(results)]) == 0
    out = capsys.readouterr().out
    assert "n_images" in out and "cross-validation needs >= 2 images, 1 stored" in out, out
    header, row = out.splitlines()[:2]
    assert float(row.split()[header.split().index("upper_2")]) in (0.0, 100.0)  # in-sample, one image


def test_parts_are_sized_by_time_so_a_killed_short_run_keeps_its_images(realdata, tmp_path, monkeypatch):
    """3 images, a part of 32 images at most, but a part committed after every PART_SECONDS: a run killed
    at its third image keeps the first two, and the rerun computes only the third."""
    from zoomstudy.data.folders import CsvSource
    from zoomstudy.models.loading import load_model
    from zoomstudy.sweep import engine
    from zoomstudy.views import ViewGrid

    data = _one_image_csv(realdata, tmp_path / "three", n=3)
    model = load_model("torchvision:squeezenet1_0", pretrained=False, device="cpu")
    grid = ViewGrid(scales=(128, 256), grid=1, crop=224)
    monkeypatch.setattr(engine, "PART_SECONDS", 0.0)
    seen = []

    class Killed(Exception):
        pass

    real_add = engine._PartWriter.add_image

    def add_image(self, item, *a, **k):
        if len(seen) == 2:
            raise Killed  # the process dies while the third image is in flight
        seen.append(item.image_id)
        return real_add(self, item, *a, **k)

    monkeypatch.setattr(engine._PartWriter, "add_image", add_image)
    kw = dict(results_dir=tmp_path / "results", tta=False, workers=0, progress=False, chunk_images=32)
    with pytest.raises(Killed):
        engine.sweep_to_store(model, CsvSource(data), grid, **kw)
    monkeypatch.setattr(engine._PartWriter, "add_image", real_add)
    from zoomstudy.sweep.store import find_results

    (rs,) = find_results(tmp_path / "results")
    assert len(rs.images()) == 2 and len(rs.committed_parts()) == 2
    rs = engine.sweep_to_store(model, CsvSource(data), grid, **kw)
    assert len(rs.images()) == 3 and len(rs.committed_parts()) == 3


# ================================================================================================
# Notebook 06 for the models a user has
# ================================================================================================
@pytest.mark.realdata
def test_notebook_06_run_as_the_cli_says_shows_the_stored_models(val_layouts, realdata, tmp_path, capsys):
    """`zoomstudy paper` on the devkit replica with the real SqueezeNet (a model outside the paper) and a
    random-weight ResNet-18 (a paper row with other weights), then the command it prints: the report
    shows both models, warns about ResNet-18's weights, and says what is missing in lines, not NaN rows."""
    import re
    import shlex

    from zoomstudy import cli

    results = tmp_path / "results"
    weights = realdata / "weights" / "squeezenet1_0_deepcompression.pt"
    code = cli.main(["paper", "--models", "torchvision:squeezenet1_0", "resnet18", *VAL_COLUMNS, "--no-hard",
                     "--root", f"imagenet-val={val_layouts['devkit']}", "--expected-rows", "imagenet-val=none",
                     "--checkpoint", f"torchvision:squeezenet1_0={weights}", "--no-pretrained", "--no-probe",
                     "--scales", "224,256", "--grid", "1", "--crop", "224", "--device", "cpu", "--workers", "0",
                     "--results-dir", str(results), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    command = next(line for line in out.splitlines() if line.startswith("render the tables: "))
    argv = shlex.split(command.removeprefix("render the tables: "))
    assert argv[:2] == ["zoomstudy", "reproduce"]
    site = tmp_path / "reports"
    assert cli.main([*argv[1:], "--out", str(site), "--quiet"]) == 0, capsys.readouterr().err
    html = (site / "06_the_paper.html").read_text()
    text = re.sub(r"<[^>]+>", " ", html)
    assert "6 of 49 cells have stored results, 7 models" in text  # the paper's six + SqueezeNet, 2 x 3 with data
    text = text.replace("&#39;", "'")
    rows = re.findall(r'<th[^>]*class="row_heading level0[^>]*>([^<]+)</th>', html)
    assert {"squeezenet1_0", "ResNet-18", "ResNet-50"} <= set(rows)  # the stored model has rows of its own
    assert "warning: ResNet-18: random weights, not the paper's IMAGENET1K_V1" in text
    assert "are not compared with it" in text  # ... and its cells are left out of the findings' paper diff
    assert "ViT-B/32 on IN: not run yet: zoomstudy paper --models vit_b_32 --datasets imagenet-val --root" in text
    assert "MEMO ResNet-50 on" in text  # Table 5: a line per missing piece ...
    assert ">NaN<" not in html and "1000.0" not in text  # ... not rows of NaN; n_classes an integer
    prov = json.loads((site / "06_the_paper.provenance.json").read_text())
    assert prov["table1_cells_with_data"] == 6


def test_a_stored_plain_hard_table_is_found_again_from_another_data_path(tmp_path, monkeypatch):
    """`matrix.hard_plain`'s key holds what changes the table (weights, preprocessing, the files and
    labels), not where the data lies or which device ran: a copy of the data elsewhere reuses it."""
    from PIL import Image

    from zoomstudy import matrix, study
    from zoomstudy.data import CsvSource

    here = tmp_path / "here" / "data"  # the folder's name is the dataset's name (in the key, as in the sweep's)
    here.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (40, 30), (i * 90, 20, 0)).save(here / f"{i}.png")
    (here / "labels.csv").write_text("file,label\n0.png,1\n1.png,2\n")
    there = tmp_path / "elsewhere" / "data"
    shutil.copytree(here, there)  # copy2: the same file tokens (size, mtime, bytes)
    model = study.open_model("torchvision:squeezenet1_0", pretrained=False, device="cpu")
    first = matrix.hard_plain("torchvision:squeezenet1_0", model=model, source=CsvSource(here),
                              results_dir=tmp_path / "r")
    monkeypatch.setattr("zoomstudy.analysis.hard.plain_from_model",
                        lambda *a, **k: pytest.fail("the stored table was computed again"))
    again = matrix.hard_plain("torchvision:squeezenet1_0", model=model, source=CsvSource(there),
                              results_dir=tmp_path / "r")
    assert again.attrs["key"] == first.attrs["key"] and len(again) == 2
    meta = json.loads(Path(first.attrs["path"]).with_suffix(".json").read_text())
    assert "device" not in meta["settings"]["key"]["model"] and "device" in meta["settings"]["provenance"]["model"]
