"""Fixtures for the ``models/`` tests: no Django settings and no database needed."""

import os
from pathlib import Path

import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    """The shared corpora folder (env FRUGAL_DATA_DIR, default ../shared/data); skips if absent."""
    path = Path(os.environ.get("FRUGAL_DATA_DIR") or _DEFAULT_DATA)
    if not (path / "wrench-youtube").is_dir():
        pytest.skip(f"shared data folder not found at {path} (set FRUGAL_DATA_DIR)")
    return path
