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
