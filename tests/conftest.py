"""Shared fixtures. Tests that need the shared data sets take ``data_dir`` (or a fixture built on
it) and are skipped when ``HOPNET_DATA_DIR`` is unset or does not exist."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory (``$HOPNET_DATA_DIR``); skips the test when unavailable."""
    value = os.environ.get("HOPNET_DATA_DIR")
    if not value:
        pytest.skip("HOPNET_DATA_DIR is not set")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"HOPNET_DATA_DIR={value} is not a directory")
    return path


@pytest.fixture(scope="session")
def band_entries(data_dir: Path) -> list[dict]:
    """The 559 migration-barrier training entries (``migration/band_train.json.gz``), loaded once
    per session. Treat as read-only: other tests share the same list."""
    path = data_dir / "migration" / "band_train.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with gzip.open(path, "rt") as fh:
        return json.load(fh)
