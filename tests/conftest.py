"""Shared fixtures: where ../shared/data lives, and small temp copies of it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOBILE_SEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; the suite needs it (it is beside every clone, CI included)."""
    if not (SHARED_DATA / "MANIFEST.md").exists():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set MOBILE_SEG_SHARED_DATA)")
    return SHARED_DATA
