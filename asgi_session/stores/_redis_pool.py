"""The connections RedisStore runs its commands on, each driver error raised as a ``StoreError``.

Built from a URL, the store owns a bounded pool (a task waits at most ``socket_timeout`` for a free connection) with
connect and reply timeouts, so a dead or paused server gives ``StoreError`` within seconds. A command whose
connection broke is sent once more on a fresh one (``retries=0`` turns that off); that is safe: a repeated rotation,
create or delete reports the swap as lost, the handle as taken, the session as gone, never a success it did not
have. A client passed in is used as configured and left open by ``close``. A cancelled call may still have been
applied.

In front of a pool the store owns: redis-py's BlockingConnectionPool does not serve waiters in order (a task that
just released a connection can take it back first), so under load a waiter can time out on a healthy server. A FIFO
semaphore with one permit per connection hands them out in arrival order.

A dedicated client (the revocation feed's) is one connection built with the pool's settings (its connection class
and arguments: address, credentials, TLS, database, Sentinel), outside the pool: a blocking read never holds a
pooled connection, and a read that is killed or cancelled never returns a half-read connection to anyone's pool.
For a client passed in this is that client's pool's settings, so the feed reaches the same server the same way.

Redis Cluster. A ``redis+cluster://`` or ``rediss+cluster://`` URL (redis-py's ``redis://`` / ``rediss://`` URL with
``+cluster`` in the scheme: the same host, port, credentials and query parameters, database 0 only) builds a
``redis.asyncio.cluster.RedisCluster`` from that one node, which finds the others; a ``RedisCluster`` may also be
passed in. Its pool has ``max_connections`` per node, and the FIFO semaphore bounds them all together. A command that
meets a broken connection or a changing cluster (a failover: connection errors, ``CLUSTERDOWN``, an uncovered slot)
is re-sent after the client re-reads the cluster's layout, ``retries + 2`` times at most with a short backoff, as the
same safety argument allows; ``MOVED`` and ``ASK`` are followed as redis-py does. A dedicated client connects to the
primary that holds the key it is for, found through a routed command first, so a feed started after a failover finds
the new primary.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from ..exceptions import ConfigurationError, StoreError
from ._redis_scripts import Client

__all__ = ["CLUSTER_SCHEMES", "DRIVER_ERRORS", "RedisPool", "from_driver", "store_error"]

# The URL schemes of a Redis Cluster, and the redis-py scheme each stands for.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Redis errors, the cluster client's own (not RedisErrors: no node reachable, a slot not covered), the pool's
# timeouts (OSError), and ValueError for a string that cannot be encoded or decoded.
DRIVER_ERRORS = (RedisError, RedisClusterException, OSError, ValueError)
_DRIVER_FOLDER = os.path.dirname(redis.__file__) + os.sep
_NOT_OPEN = "store is not open; use `async with store:` or `await store.open()`"


def from_driver(exc: Exception) -> bool:
    """Whether ``exc`` is the driver's: one of ``DRIVER_ERRORS``, or any exception raised during a call into redis-py.

    redis-py's cluster client can fail with an ``AttributeError`` when a failover makes it close a connection that
    another task is sending on, or (Python 3.12) with a ``TypeError`` from asyncio's transport that redis-py was
    writing to: a store failure (a 503), not a bug in the caller (a 500). So any exception whose traceback passes
    through redis-py's code counts, wherever below it the exception was raised; an exception of our own code
    (no redis-py frame in between) stays what it is.
    """
    if isinstance(exc, DRIVER_ERRORS):
        return True
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.startswith(_DRIVER_FOLDER):
            return True
        frame = frame.tb_next
    return False


def store_error(operation: str, exc: BaseException) -> StoreError:
    """Wrap a driver error, naming the operation; Redis' messages quote no values, a UnicodeError's would."""
    detail = type(exc).__name__ if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return StoreError(f"Redis store: {operation} failed ({detail})")


class RedisPool:
    """A store's client: a bounded pool it owns (built from a URL), or a ``Redis`` or ``RedisCluster`` passed in.

    ``source`` is RedisStore's ``client_or_url``; the other settings are its namesakes and shape a URL's pool only.

    Raises:
        ConfigurationError: the URL is malformed, or ``source`` is neither a URL nor a client.
    """

    def __init__(
        self,
        source: Client | str,
        *,
        socket_timeout: float,
        connect_timeout: float,
        max_connections: int,
        retries: int,
    ) -> None:
        self._cluster_url: str | None = None
        if isinstance(source, str):
            scheme, sep, rest = source.partition("://")
            if sep and scheme.lower() in CLUSTER_SCHEMES:
                self._cluster_url = f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}"
            try:
                parsed = parse_url(self._cluster_url or source)
            except (TypeError, ValueError) as exc:  # the message may quote the URL, password included
                raise ConfigurationError("the Redis URL is malformed; use redis://[user:pass@]host:port/db") from exc
            if self._cluster_url and (parsed.get("db") or parsed.get("path") or not parsed.get("host")):
                raise ConfigurationError(
                    "a Redis Cluster URL names one node and database 0: redis+cluster://host:port/"
                )
        elif not isinstance(source, (aioredis.Redis, RedisCluster)):
            raise ConfigurationError(
                "client_or_url must be a redis:// URL, a redis.asyncio.Redis or a redis.asyncio.cluster.RedisCluster"
            )
        self._source = source
        self._cluster_options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "max_connections": max_connections,
            "decode_responses": True,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries + 2),
        }
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "timeout": socket_timeout,
            "max_connections": max_connections,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        }
        self._client: Client | None = None
        # The FIFO semaphore in front of a pool the store owns (None for a client passed in): see the module notes.
        self._slots: anyio.Semaphore | None = None
        self._slot_wait: float | None = None

    @property
    def cluster(self) -> bool:
        """Whether the store talks to a Redis Cluster (known from the URL or the client's type before ``open``)."""
        return self._cluster_url is not None or isinstance(self._source, RedisCluster)

    async def open(self, check: Callable[[Client], Awaitable[None]]) -> None:
        """Connect, check the server answers, then run ``check`` on the client; close what was built if either fails.

        Raises:
            StoreError: the server cannot be reached or refused the connection.
        """
        source = self._source
        client: Client
        if self._cluster_url is not None:
            client = RedisCluster.from_url(self._cluster_url, **self._cluster_options)
            self._slots = anyio.Semaphore(self._cluster_options["max_connections"])
            self._slot_wait = self._options["timeout"]
        elif isinstance(source, str):
            pool = aioredis.BlockingConnectionPool.from_url(source, **self._options)
            client = aioredis.Redis.from_pool(pool)
            self._slots = anyio.Semaphore(pool.max_connections)
            self._slot_wait = pool.timeout
        else:
            client = source
            self._slots = None
        try:
            await client.ping()
            await check(client)
        except BaseException as exc:
            if client is not source:
                with anyio.CancelScope(shield=True), contextlib.suppress(*DRIVER_ERRORS):
                    await client.aclose()
            if isinstance(exc, DRIVER_ERRORS):
                raise store_error("connecting", exc) from exc
            raise
        self._client = client

    async def close(self) -> None:
        """Close the pool the store owns (a client passed in stays open)."""
        client, self._client = self._client, None
        if client is None or client is self._source:
            return
        with anyio.CancelScope(shield=True):
            try:
                await client.aclose()
            except DRIVER_ERRORS as exc:
                raise store_error("closing", exc) from exc

    async def dedicated(self, read_timeout: float, key: str) -> aioredis.Redis:
        """A new client on one connection of its own that never retries, to the server that holds ``key``.

        Its replies are text, its reads wait at most ``read_timeout``; the caller names the connection if it wants
        (a name set here would fail the connection where an ACL forbids ``CLIENT SETNAME``), and closes the client
        with ``aclose()``.

        Raises:
            StoreError: the store is not open, or (on a cluster) the key's primary could not be found.
        """
        client = self._client
        if client is None:
            raise StoreError(_NOT_OPEN)
        if isinstance(client, RedisCluster):
            try:  # a routed command follows a MOVED, so the layout is current before the node is chosen
                await client.exists(key)
                node = client.get_node_from_key(key)
            except DRIVER_ERRORS as exc:
                raise store_error("follow_revocations", exc) from exc
            if node is None:  # pragma: no cover - get_node_from_key raises for an uncovered slot
                raise StoreError("Redis store: follow_revocations failed (no primary holds the revocation log)")
            kwargs: dict[str, Any] = {**node.connection_kwargs}
            connection_class: type[AbstractConnection] = node.connection_class
        else:
            kwargs, connection_class = client.connection_pool.connection_kwargs, client.connection_pool.connection_class
        settings = {
            **kwargs,
            "client_name": None,
            "decode_responses": True,
            "socket_timeout": read_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        single = aioredis.ConnectionPool(connection_class=connection_class, max_connections=1, **settings)
        return aioredis.Redis.from_pool(single)

    @contextlib.asynccontextmanager
    async def using(self, operation: str) -> AsyncIterator[Client]:
        """The client, with every driver error raised as a StoreError naming ``operation``."""
        client = self._client
        if client is None:
            raise StoreError(_NOT_OPEN)
        slots = self._slots
        if slots is not None:
            try:
                with anyio.fail_after(self._slot_wait):
                    await slots.acquire()
            except TimeoutError as exc:
                raise StoreError(f"Redis store: {operation} failed (pool exhausted: no connection came free)") from exc
        try:
            yield client
        except Exception as exc:
            if from_driver(exc):
                raise store_error(operation, exc) from exc
            raise
        finally:
            if slots is not None:
                slots.release()
