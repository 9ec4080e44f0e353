"""Shared fixtures. Tests never touch the network: synthetic data, random-weight models, and the real
kit in ../shared/realdata when it is there (skipped cleanly when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("ZOOMSTUDY_REALDATA", REPO.parent / "shared" / "realdata"))

# Subprocesses and notebook kernels started by the tests import this checkout, not whichever copy of
# the package happens to be installed (a second worktree, an older install).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


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

    base = tmp_path_factory.mktemp("site")
    out = base / "reports"
    offline = {**reports.PROFILES["offline"]}
    offline["*"] = {**offline["*"], **TINY, "results_dir": str(base / "results")}
    offline["04_imagenet_hard"] = {**offline.get("04_imagenet_hard", {}), **TINY, "dataset": "synthetic-hard:6",
                                   "compare_with": ["synthetic-6"], "plain_protocol": "sweep"}
    mp = pytest.MonkeyPatch()
    mp.setitem(reports.PROFILES, "offline", offline)
    try:
        index = reports.reproduce(REPO / "notebooks", out, profile="offline", notebooks=list(SITE_NOTEBOOKS),
                                  progress=False, cwd=base, timeout=300)
    finally:
        mp.undo()
    return out, index, SITE_NOTEBOOKS
