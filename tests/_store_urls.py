"""Store URLs for tests that share one store between managers or processes, each with its own prefix or schema.

``shared_store_url(kind, request, folder)`` (``async_shared_store_url`` in async code) yields a URL for
``store_from_url`` (a SQLite file in ``folder``, Redis with a unique ``prefix``, PostgreSQL with a unique ``schema``)
and removes every key or the schema afterwards. The Redis, Redis Cluster and PostgreSQL URLs come from the
``redis_url`` / ``redis_cluster_url`` / ``postgres_dsn`` fixtures: skipped on a laptop without them, a failure in CI.
The ``redis_cluster`` kind is RedisStore on a Redis Cluster (``redis+cluster://``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import pytest

STORE_KINDS = ["sqlite", "redis", "redis_cluster", "postgres"]


def with_query(url: str, **params: str) -> str:
    """``url`` with these query parameters added (kept: the ones it already has)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _sync_redis(redis_url: str) -> Any:
    """A synchronous client for a ``redis://`` URL, or for a ``redis+cluster://`` one (every node's keys)."""
    import redis
    from redis.cluster import RedisCluster

    scheme, _, rest = redis_url.partition("://")
    if scheme.endswith("+cluster"):
        return RedisCluster.from_url(f"{scheme.removesuffix('+cluster')}://{rest}")
    return redis.Redis.from_url(redis_url)


def redis_keys(redis_url: str, marker: str) -> list[bytes]:
    """Every Redis key whose name contains ``marker`` (a test's unique prefix), on every node of a cluster."""
    client = _sync_redis(redis_url)
    try:
        return list(client.scan_iter(match=f"*{marker}*", count=1000))
    finally:
        client.close()


def delete_redis_keys(redis_url: str, marker: str) -> None:
    client = _sync_redis(redis_url)
    try:
        for key in list(client.scan_iter(match=f"*{marker}*", count=1000)):
            # One by one (a cluster refuses a DEL across slots), and as a plain command: RedisCluster.delete() goes
            # through a pipeline, which redis-py 6.0 to 6.2 build with an argument they deprecated themselves.
            client.execute_command("DEL", key)
    finally:
        client.close()


async def drop_schema(dsn: str, schema: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def unique_name(kind: str) -> str:
    """A prefix or schema name no other test uses (letters, digits and ``_``)."""
    return f"asgi_session_test_{kind}_{secrets.token_hex(6)}"


@dataclass(frozen=True)
class _Plan:
    url: str
    service: str = ""  # the Redis URL or PostgreSQL DSN to clean up through
    name: str = ""  # the Redis key prefix or the PostgreSQL schema


def _plan(kind: str, request: pytest.FixtureRequest, folder: Path, params: dict[str, str]) -> _Plan:
    if kind == "sqlite":
        # Not through with_query: urlunsplit would drop one of the slashes of sqlite:////absolute/path.
        return _Plan(f"sqlite:///{folder / 'sessions.db'}" + (f"?{urlencode(params)}" if params else ""))
    if kind in ("redis", "redis_cluster"):
        service: str = request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster_url")
        prefix = unique_name("mp")
        return _Plan(with_query(service, prefix=prefix, **params), service, prefix)
    if kind == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        schema = unique_name("mp")
        return _Plan(with_query(dsn, schema=schema, **params), dsn, schema)
    raise ValueError(f"unknown store kind {kind!r}")


def _clean_redis(plan: _Plan) -> None:
    delete_redis_keys(plan.service, plan.name)
    assert redis_keys(plan.service, plan.name) == []


@contextlib.contextmanager
def shared_store_url(kind: str, request: pytest.FixtureRequest, folder: Path, **params: str) -> Iterator[str]:
    """Yield a store URL of this kind; afterwards remove what the store wrote (Redis keys, PostgreSQL schema).

    For synchronous tests and fixtures (it runs its own event loop to drop a schema).
    """
    plan = _plan(kind, request, folder, params)
    try:
        yield plan.url
    finally:
        if kind in ("redis", "redis_cluster"):
            _clean_redis(plan)
        elif kind == "postgres":
            anyio.run(drop_schema, plan.service, plan.name)


@contextlib.asynccontextmanager
async def async_shared_store_url(
    kind: str, request: pytest.FixtureRequest, folder: Path, **params: str
) -> AsyncIterator[str]:
    """The same, inside a running event loop."""
    plan = _plan(kind, request, folder, params)
    try:
        yield plan.url
    finally:
        with anyio.CancelScope(shield=True):
            if kind in ("redis", "redis_cluster"):
                await anyio.to_thread.run_sync(_clean_redis, plan)
            elif kind == "postgres":
                await drop_schema(plan.service, plan.name)
