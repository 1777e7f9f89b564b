"""The built-in stores as factories for the conformance suite, what each writes to disk, a rotation race, and a Redis
admin client for the Redis tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from asgi_session.stores.base import Rotation, SessionStore
from asgi_session.stores.memory import MemoryStore
from asgi_session.testing import PersistedReader, StoreFactory


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def sqlite_files() -> list[tuple[SessionStore, Path]]:
    """Each SQLite store the factory built, with its database path."""
    return []


@pytest.fixture
def store_factory(store_kind: str, tmp_path: Path, sqlite_files: list[tuple[SessionStore, Path]]) -> StoreFactory:
    if store_kind == "memory":
        return MemoryStore
    from asgi_session.stores.sqlite import SQLiteStore  # imported here so the memory half runs without it

    numbers = itertools.count()

    def new_sqlite_store() -> SessionStore:
        path = tmp_path / f"s{next(numbers)}.db"
        store = SQLiteStore(path)
        sqlite_files.append((store, path))
        return store

    return new_sqlite_store


@pytest.fixture
def persisted(store_kind: str, sqlite_files: list[tuple[SessionStore, Path]]) -> PersistedReader | None:
    if store_kind == "memory":
        return None

    async def read_database_and_wal(store: SessionStore) -> bytes:
        path = next(path for built, path in sqlite_files if built is store)
        chunks = []
        for candidate in (anyio.Path(path), anyio.Path(f"{path}-wal")):
            if await candidate.exists():
                chunks.append(await candidate.read_bytes())
        return b"".join(chunks)

    return read_database_and_wal


async def race_rotations(first: SessionStore, second: SessionStore, rotations: Sequence[Rotation]) -> dict[int, bool]:
    """Send every rotation at once, alternately through two stores on one backend; what each returned, by index.

    Two store instances (two connections, or two pools) racing on one session: the backend's compare-and-swap, not
    a lock inside one store object, must let exactly one rotation win.
    """
    results: dict[int, bool] = {}

    async def attempt(i: int) -> None:
        results[i] = await (first if i % 2 else second).rotate(rotations[i])

    async with anyio.create_task_group() as group:
        for i in range(len(rotations)):
            group.start_soon(attempt, i)
    return results


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client for the test's own commands: inspecting, pausing, killing."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def cluster_node_url(redis_cluster_url: str) -> str:
    """The ``redis://`` URL of the node a ``redis+cluster://`` URL names (what redis-py's cluster client takes)."""
    scheme, _, rest = redis_cluster_url.partition("://")
    return f"{scheme.removesuffix('+cluster')}://{rest}"


@pytest.fixture
async def cluster_admin(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    """A Redis Cluster client for the test's own commands (inspecting keys, finding nodes); text replies."""
    client = RedisCluster.from_url(cluster_node_url(redis_cluster_url), decode_responses=True)
    try:
        await client.initialize()
        yield client
    finally:
        await client.aclose()
