"""Shared fixtures. Real data lives in ../shared/data beside the project: tests that need it
skip cleanly when it is absent (a user's fresh clone); CI always has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores: keep torch from oversubscribing when pytest runs beside worker processes.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GZ1 = SHARED_DATA / "gz1-sdss"
FASHION = SHARED_DATA / "fashion-mnist"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def gz1_dir() -> Path:
    return require(GZ1)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    return require(FASHION)
