"""Fixtures shared by every test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only
