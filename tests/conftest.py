"""Shared fixtures. Tests never touch the network: synthetic data, random-weight models, and the real
kit in ../shared/realdata when it is there (skipped cleanly when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("ZOOMSTUDY_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of the real-data kit (100 ImageNet images, SqueezeNet 1.0 weights, reference views)."""
    if not (REALDATA / "imagenet-sample" / "labels.csv").exists():
        pytest.skip(f"real-data kit not found at {REALDATA}")
    return REALDATA
