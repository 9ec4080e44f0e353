"""Shared fixtures. Tests never touch the network: synthetic data, random-weight models, and the real
kit in ../shared/realdata when it is there (skipped cleanly when absent)."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("ZOOMSTUDY_REALDATA", REPO.parent / "shared" / "realdata"))

# The hub, for every test and every process a test starts: a local stand-in (tests/hub_standin.py) on a
# port reserved here, before any test imports huggingface_hub (which reads these variables at import),
# and caches in a fresh folder of this session. A test that reaches for the hub reaches 127.0.0.1:
# nothing leaves the machine, and nothing of an earlier session's cache is reused.
_HUB_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_HUB_SOCKET.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
_HUB_SOCKET.bind(("127.0.0.1", 0))
HF_SESSION_HOME = Path(tempfile.mkdtemp(prefix="zoomstudy-hf-"))
atexit.register(shutil.rmtree, HF_SESSION_HOME, True)
os.environ.update({
    "HF_ENDPOINT": f"http://127.0.0.1:{_HUB_SOCKET.getsockname()[1]}", "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HOME": str(HF_SESSION_HOME), "HF_HUB_CACHE": str(HF_SESSION_HOME / "hub"),
    "HF_DATASETS_CACHE": str(HF_SESSION_HOME / "datasets"), "HF_HUB_OFFLINE": "0",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
})
os.environ.pop("HF_TOKEN", None)

# Subprocesses and notebook kernels started by the tests import this checkout, not whichever copy of
# the package happens to be installed (a second worktree, an older install).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def squeezenet_ckpt(tmp_path_factory) -> Path:
    """A random-weight SqueezeNet 1.0 checkpoint (torch seed 0), shared by the sweep and fault tests."""
    from factories import save_random_squeezenet

    return save_random_squeezenet(tmp_path_factory.mktemp("weights") / "squeeze_a.pt", 0)


@pytest.fixture(scope="session")
def squeezenet(squeezenet_ckpt):
    """That checkpoint loaded on CPU (a `LoadedModel`; tests only read it)."""
    from zoomstudy.models.loading import load_model

    return load_model("torchvision:squeezenet1_0", checkpoint=squeezenet_ckpt, pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of many small ops (use: pytestmark = pytest.mark.usefixtures("one_thread")):
    it avoids oversubscribing a small shared CPU. The old setting comes back after the module."""
    from factories import one_thread as single

    with single():
        yield


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of the real-data kit (100 ImageNet images, SqueezeNet 1.0 weights, reference views)."""
    if not (REALDATA / "imagenet-sample" / "labels.csv").exists():
        pytest.skip(f"real-data kit not found at {REALDATA}")
    return REALDATA


#: The offline profile shrunk for tests: 6 synthetic images, 4 scales at crop 96 (SqueezeNet needs >= ~64 px).
TINY = {"model": "torchvision:squeezenet1_0", "dataset": "synthetic:6", "scales": [48, 96, 110, 160], "crop": 96}
#: The study notebooks the report site runs (01 and 02 share one sweep; 04 compares with it).
SITE_NOTEBOOKS = ("01_oracle_accuracy", "02_center_bias", "04_imagenet_hard")


@pytest.fixture(scope="session")
def report_site(tmp_path_factory):
    """A report site made by `reproduce`: the notebooks in SITE_NOTEBOOKS, offline profile shrunk to TINY.

    Returns (reports folder, index.html, notebook names). Shared by the notebook tests and the
    browser tests, so that the notebooks run once per session.
    """
    from zoomstudy.report import notebooks as reports
    from zoomstudy.report import profiles

    base = tmp_path_factory.mktemp("site")
    out = base / "reports"
    offline = profiles.PROFILES["offline"].updated(
        common={**TINY, "results_dir": str(base / "results")},
        notebooks={"04_imagenet_hard": {**TINY, "dataset": "synthetic-hard:6", "compare_with": ["synthetic-6"],
                                        "plain_protocol": "sweep"}})
    mp = pytest.MonkeyPatch()
    mp.setitem(profiles.PROFILES, "offline", offline)
    try:
        index = reports.reproduce(REPO / "notebooks", out, profile="offline", notebooks=list(SITE_NOTEBOOKS),
                                  progress=False, cwd=base, timeout=300)
    finally:
        mp.undo()
    return out, index, SITE_NOTEBOOKS


@pytest.fixture(scope="session")
def hub():
    """The hub stand-in (tests/hub_standin.py) behind HF_ENDPOINT, serving a miniature ImageNet-Hard in the
    real layout: 9 parquet files of 1,220 rows (10,980, the pinned count) at the pinned commit, which
    `main` points at; and e292574, the mid-upload snapshot holding a 5-file and the 9-file set."""
    from huggingface_hub import constants as hf_constants

    from hub_standin import HARD_REPO, Hub, hard_parquet_files
    from zoomstudy.data.registry import IMAGENET_HARD_PIN

    if hf_constants.ENDPOINT != os.environ["HF_ENDPOINT"]:
        pytest.fail("huggingface_hub was imported before tests/conftest.py set HF_ENDPOINT")
    files = hard_parquet_files()
    old = hard_parquet_files((5, 5, 5, 5, 5), seed=1)  # the earlier 5-file set, still there mid-upload
    h = Hub().start(sock=_HUB_SOCKET)
    h.add("datasets", HARD_REPO, IMAGENET_HARD_PIN.revision, files)
    h.add("datasets", HARD_REPO, "e292574214aa16ede29857c613a50a12f60b8eb1", {**old, **files}, branches=())
    h.hard_files = files
    yield h
    h.stop()


@pytest.fixture
def hook(monkeypatch):
    from zoomstudy.sweep.store import ResultSet

    """hook(fn): run fn(result_set, part) once, between the tables of the next part and its commit."""
    def install(fn, times=1):
        calls = []
        original = ResultSet._before_commit

        def before_commit(self, part):
            if len(calls) < times:
                calls.append(part)
                fn(self, part)
            return original(self, part)

        monkeypatch.setattr(ResultSet, "_before_commit", before_commit)
        return calls

    return install
