"""Shared fixtures. Tests that need the shared data sets take ``data_dir`` (or a fixture built on
it) and are skipped when ``HOPNET_DATA_DIR`` is unset or does not exist."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_neb_cache(tmp_path_factory, monkeypatch):
    """Each test's NEB results go to a cache of its own, never the user's: a result cached by
    an earlier run must not decide what a test sees."""
    import hopnet.neb_cache

    root = tmp_path_factory.mktemp("neb-cache")
    monkeypatch.setattr(hopnet.neb_cache, "default_neb_cache_root", lambda: root)


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One summary line with how many property-based cases ran: the ``fuzz_cases:<layer>`` user
    properties tests/test_fuzz.py records, e.g. ``fuzz: 2400 cases (structures 1100, ...)``."""
    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                key = (getattr(report, "nodeid", ""), str(name))
                if str(name).startswith("fuzz_cases:") and key not in seen:
                    seen.add(key)
                    layer = str(name).split(":", 1)[1]
                    counts[layer] = counts.get(layer, 0) + int(value)
    if counts:
        detail = ", ".join(f"{layer} {n}" for layer, n in counts.items())
        terminalreporter.write_line(f"fuzz: {sum(counts.values())} cases ({detail})")
