"""The hub paths through the real clients (huggingface_hub, datasets) against the local stand-in
(tests/hub_standin.py, the `hub` fixture): the pinned commit, the layout and row-count checks, the
branch-to-sha resolution, and the quick read that downloads only the files holding the rows used."""
from __future__ import annotations

import json

import pytest

from zoomstudy import data
from zoomstudy.data.registry import IMAGENET_HARD_PIN

PIN = IMAGENET_HARD_PIN.revision
MID_UPLOAD = "e292574214aa16ede29857c613a50a12f60b8eb1"


@pytest.fixture()
def fresh(hub, tmp_path, monkeypatch):
    """An empty hub cache for one test (cache_dir), the request log emptied, no local copy in the way."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOOMSTUDY_IMAGENET_HARD", raising=False)
    monkeypatch.delenv("ZOOMSTUDY_IMAGENET_HARD_REVISION", raising=False)
    hub.requests.clear()
    return tmp_path / "hf"


def _parquet_gets(hub):
    return sorted(p for p in hub.fetched("taesiri/imagenet-hard") if p.endswith(".parquet"))


def test_pin_is_the_final_release():
    assert PIN == "32bfa94dcd95e7c3bbe09fa281f5b89870921745" and IMAGENET_HARD_PIN.pinned
    assert IMAGENET_HARD_PIN.rows == 10980 and IMAGENET_HARD_PIN.files == 9
    pin4k = data.registry.IMAGENET_HARD_4K_PIN
    assert pin4k.revision == "42a6d8d2fa33f5df0aa26f70e38040f4341f4f80" and (pin4k.rows, pin4k.files) == (10980, 178)
    assert data.DATASETS["imagenet-hard"].hub_revision == PIN


def test_quick_read_fetches_one_file(hub, fresh, capfd):
    """max_rows=300 of the 10,980: the footers of all 9 files are read (ranged requests, the row-count
    check), the bytes of one file only."""
    src = data.open_dataset("imagenet-hard", max_rows=300, cache_dir=fresh)
    first = sorted(hub.hard_files)[0]
    assert _parquet_gets(hub) == [first]
    ranged = {p for m, p, r in hub.requests if r is not None}
    assert len(ranged) == 9  # one footer read per file
    assert len(src) == 1220  # the rows of the file read; the first 300 are the dataset's first 300
    prov = src.provenance()
    assert prov["resolved_revision"] == PIN and prov["hub_rows"] == 10980 and prov["hub_files_read"] == [first]
    assert prov["dataset"]["pinned_revision"] == PIN and prov["dataset"]["files"] == 9
    assert prov["location"] == "taesiri/imagenet-hard" and prov["hub_bytes_read"] == len(hub.hard_files[first])
    err = capfd.readouterr().err
    assert (f"downloading 1 parquet file(s), {len(hub.hard_files[first]) / 1e6:,.1f} MB, of taesiri/imagenet-hard@32bfa94 "
            f"for rows 0..299 of 10,980 (the first 1 of 9 files)") in err
    s = src[5]
    assert s.image is not None and s.image.mode == "RGB" and s.meta["origin"] and len(s.labels) >= 1
    # read again: the cache answers; no file is fetched twice
    hub.requests.clear()
    again = data.open_dataset("imagenet-hard", max_rows=300, cache_dir=fresh)
    assert _parquet_gets(hub) == [] and again.provenance()["fingerprint"] == prov["fingerprint"]
    assert len({p for m, p, r in hub.requests if r is not None}) == 8  # the cached file's rows are read locally
    # 1,221 rows need the second file too
    hub.requests.clear()
    two = data.open_dataset("imagenet-hard", max_rows=1221, cache_dir=fresh)
    assert _parquet_gets(hub) == [sorted(hub.hard_files)[1]] and len(two) == 2440


def test_full_read_at_the_pinned_sha(hub, fresh):
    src = data.open_dataset("imagenet-hard", cache_dir=fresh)
    assert _parquet_gets(hub) == sorted(hub.hard_files) and len(src) == 10980
    ids = [r.image_id for r in src.records()]
    assert ids[:2] == ["0", "1"] and ids[-1] == "10979"  # row positions, in file order


def test_main_is_resolved_to_its_sha(hub, fresh, capfd):
    src = data.open_dataset("imagenet-hard", revision="main", max_rows=10, cache_dir=fresh)
    prov = src.provenance()
    assert prov["resolved_revision"] == PIN and prov["revision"] == PIN and prov["hub_rows"] == 10980
    assert f"taesiri/imagenet-hard@main is commit {PIN} (10,980 rows)" in capfd.readouterr().err
    # resolution comes first: the revision-info route was asked for main before any file
    first_file = next(i for i, (m, p, r) in enumerate(hub.requests) if "/resolve/" in p)
    assert any(p.endswith("/revision/main") for m, p, r in hub.requests[:first_file])
    # main at the pinned commit is the same data: the same key as asking for the sha
    assert prov["fingerprint"] == data.open_dataset("imagenet-hard", max_rows=10, cache_dir=fresh).provenance()["fingerprint"]


def test_layout_and_row_checks_are_one_line(hub, fresh):
    with pytest.raises(ValueError) as e:
        data.open_dataset("imagenet-hard", revision=MID_UPLOAD, expected_rows=10980, cache_dir=fresh)
    msg = str(e.value)
    assert "found 5 of a 5-file set; 9 of a 9-file set" in msg and "revision=<40-hex sha>" in msg and "\n" not in msg
    assert _parquet_gets(hub) == []  # nothing downloaded
    with pytest.raises(ValueError, match="its row count is unknown here"):
        data.open_dataset("imagenet-hard", revision="f" * 40, cache_dir=fresh)
    with pytest.raises(ValueError) as e:
        data.open_dataset("imagenet-hard", expected_rows=11350, cache_dir=fresh)
    assert "has 10980 rows, expected 11350" in str(e.value) and "expected_rows=<its row count>" in str(e.value)
    assert _parquet_gets(hub) == []
    with pytest.raises(ValueError, match="cannot resolve taesiri/imagenet-hard@no-such-branch"):
        data.open_dataset("imagenet-hard", revision="no-such-branch", cache_dir=fresh)


def test_study_and_sweep_read_only_the_prefix(hub, fresh, monkeypatch):
    """ensure_results(max_images=N) tells the data what it reads; the result set records sha and rows."""
    from zoomstudy.study import ensure_results

    rs = ensure_results("torchvision:squeezenet1_0", "imagenet-hard", max_images=2, scales=[64, 96], crop=64,
                        results_dir=fresh.parent / "r", pretrained=False, device="cpu", workers=0, tta=False,
                        progress=False, data_kw={"cache_dir": str(fresh)})
    assert _parquet_gets(hub) == [sorted(hub.hard_files)[0]]
    key = rs.settings["key"]["dataset"]
    assert key["resolved_revision"] == PIN and key["hub_rows"] == 10980 and key["dataset"]["pinned_revision"] == PIN
    assert len(rs.images()) == 2
    from zoomstudy.report.provenance_text import provenance_info

    info = provenance_info(rs, "quick")
    assert info["dataset_revision"] == PIN and info["dataset_rows"] == 10980
    assert f"2 of 10980 images, taesiri/imagenet-hard, revision {PIN}" in info["statement"]


def test_timm_weights_come_from_the_hub(hub, tmp_path):
    """timm's pretrained weights: `pretrained_cfg['hf_hub_id']` -> hf_hub_download of model.safetensors
    from the stand-in (a small random model), loaded by zoomstudy's load_model as the hub serves them."""
    import timm
    import torch
    from safetensors.torch import save

    from zoomstudy.models.loading import load_model

    repo = "timm/test_vit.r160_in1k"
    torch.manual_seed(7)
    served = timm.create_model("test_vit.r160_in1k", pretrained=False).state_dict()
    cfg = {"architecture": "test_vit", "num_classes": 1000, "pretrained_cfg": {"tag": "r160_in1k"}}
    hub.add("models", repo, "1" * 40, {"model.safetensors": save(served), "config.json": json.dumps(cfg).encode()})
    hub.requests.clear()
    m = load_model("timm:test_vit.r160_in1k", device="cpu")
    assert hub.fetched(repo, kind="models") == ["model.safetensors"]
    got = m.module.state_dict()
    assert all(torch.equal(got[k], v) for k, v in served.items())
    assert m.weights_id == "test_vit.r160_in1k" and m.weights_source == repo


def test_torchvision_weights_from_a_seeded_torch_home(tmp_path, monkeypatch):
    """torchvision downloads to $TORCH_HOME/hub/checkpoints/<the URL's file name>; a file already there is
    used without a download, and the sha256 prefix in its name is checked only when downloading
    (torch.hub.load_state_dict_from_url: check_hash applies to download_url_to_file)."""
    import os

    import torch
    import torchvision

    from zoomstudy.models.loading import load_model

    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert os.path.basename(url) == "resnet18-f37072fd.pth"  # the real name, hash prefix included
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    seeded = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(url)
    seeded.parent.mkdir(parents=True)
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, seeded)
    m = load_model("resnet18", device="cpu")  # the paper's ResNet-18: torchvision IMAGENET1K_V1
    assert m.weights_id == "ResNet18_Weights.IMAGENET1K_V1" and m.weights_source == url
    assert torch.equal(m.module.state_dict()["fc.weight"], state["fc.weight"])


def test_offline_rerun_reads_the_cached_files(hub, fresh, monkeypatch, capfd):
    """A rerun without the hub (offline mode here): the cached first files of the pinned commit serve a
    prefix, under the same result-set key; more rows than are cached stop in one line."""
    from huggingface_hub import constants as hf_constants

    online = data.open_dataset("imagenet-hard", max_rows=300, cache_dir=fresh).provenance()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    offline = data.open_dataset("imagenet-hard", max_rows=300, cache_dir=fresh).provenance()
    assert hub.requests == [] and offline["fingerprint"] == online["fingerprint"] and offline["hub_rows"] == 10980
    assert {k: offline["dataset"][k] for k in ("pinned_revision", "files", "files_read")} == {
        "pinned_revision": PIN, "files": 9, "files_read": 1}
    assert "the hub is unreachable: reading 1 cached file(s) of 32bfa94" in capfd.readouterr().err
    with pytest.raises(ValueError, match="only 1 of the 9 files of 32bfa94 are cached"):
        data.open_dataset("imagenet-hard", max_rows=2000, cache_dir=fresh)
    with pytest.raises(ValueError, match="cannot resolve"):
        data.open_dataset("imagenet-hard", revision="main", cache_dir=fresh)
