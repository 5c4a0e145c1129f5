"""Test-session settings: the sparsec cache (tuning results, kernel libraries) lives in a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    old = os.environ.get("SPARSEC_CACHE_DIR")
    path = tmp_path_factory.mktemp("sparsec-cache")
    os.environ["SPARSEC_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SPARSEC_CACHE_DIR", None)
    else:
        os.environ["SPARSEC_CACHE_DIR"] = old
