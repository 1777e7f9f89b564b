"""Fixtures shared by every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests._testclient import TestClient, https_client


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


def _service(variable: str, what: str) -> str:
    """The URL of a service a test needs: skip on a laptop without it, fail in CI (where a skip would hide it)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        message = f"{variable} is not set: these tests need {what}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI must run them (.ci/run sets it)")
        pytest.skip(message)
    return value


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``ASGI_SESSION_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``)."""
    return _service("ASGI_SESSION_REDIS_URL", "a Redis server")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """``ASGI_SESSION_REDIS_CLUSTER_URL`` (e.g. ``redis+cluster://127.0.0.1:7100/``, from ``.ci/redis-cluster``)."""
    return _service("ASGI_SESSION_REDIS_CLUSTER_URL", "a Redis Cluster")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """``ASGI_SESSION_POSTGRES_DSN`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``)."""
    return _service("ASGI_SESSION_POSTGRES_DSN", "a PostgreSQL server")


@pytest.fixture
def client(harness: Any) -> Iterator[TestClient]:
    """Starlette's TestClient on ``harness.app``, its lifespan run around the test.

    For the modules whose ``harness`` fixture builds one app under test; a module that tests another kind of client
    (Quart's) defines a ``client`` of its own.
    """
    with https_client(harness.app) as started:
        yield started
