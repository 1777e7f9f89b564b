"""A store URL of every kind (memory, SQLite, Redis, PostgreSQL) for tests that must hold on every store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._store_urls import STORE_KINDS, shared_store_url


@pytest.fixture(params=["memory", *STORE_KINDS])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each kind, as a URL; Redis and PostgreSQL skip on a laptop and are required in CI."""
    if request.param == "memory":
        yield "memory://"
        return
    with shared_store_url(request.param, request, tmp_path) as url:
        yield url
