"""Shared fixtures. Tests that need the real datasets read them from $PRUNEKIT_DATA."""
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    # Tests read real data from $PRUNEKIT_DATA (CI: ../shared/data); default to the sibling folder.
    if not os.environ.get("PRUNEKIT_DATA") and SHARED.is_dir():
        os.environ["PRUNEKIT_DATA"] = str(SHARED)
    torch.set_num_threads(1)


@pytest.fixture
def data_root() -> Path:
    root = os.environ.get("PRUNEKIT_DATA")
    if not root or not Path(root).is_dir():
        pytest.fail("PRUNEKIT_DATA must point at the course data (e.g. ../shared/data); see README")
    return Path(root)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private per-user cache and no $PRUNEKIT_DATA: only what the test passes is searched."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRUNEKIT_CACHE", str(cache))
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    return cache
