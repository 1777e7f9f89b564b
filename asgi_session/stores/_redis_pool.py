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
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..exceptions import ConfigurationError, StoreError

__all__ = ["DRIVER_ERRORS", "RedisPool", "store_error"]

# Redis errors, the pool's timeouts (OSError), and ValueError for a string that cannot be encoded or decoded.
DRIVER_ERRORS = (RedisError, OSError, ValueError)
_NOT_OPEN = "store is not open; use `async with store:` or `await store.open()`"


def store_error(operation: str, exc: BaseException) -> StoreError:
    """Wrap a driver error, naming the operation; Redis' messages quote no values, a UnicodeError's would."""
    detail = type(exc).__name__ if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return StoreError(f"Redis store: {operation} failed ({detail})")


class RedisPool:
    """A store's client: a bounded pool it owns (built from a URL), or a ``redis.asyncio.Redis`` passed in.

    ``source`` is RedisStore's ``client_or_url``; the other settings are its namesakes and shape a URL's pool only.

    Raises:
        ConfigurationError: the URL is malformed, or ``source`` is neither a URL nor a client.
    """

    def __init__(
        self,
        source: aioredis.Redis | str,
        *,
        socket_timeout: float,
        connect_timeout: float,
        max_connections: int,
        retries: int,
    ) -> None:
        if isinstance(source, str):
            try:
                parse_url(source)
            except (TypeError, ValueError) as exc:  # the message may quote the URL, password included
                raise ConfigurationError("the Redis URL is malformed; use redis://[user:pass@]host:port/db") from exc
        elif not isinstance(source, aioredis.Redis):
            raise ConfigurationError("client_or_url must be a redis:// URL or a redis.asyncio.Redis client")
        self._source = source
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "timeout": socket_timeout,
            "max_connections": max_connections,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        }
        self._client: aioredis.Redis | None = None
        # The FIFO semaphore in front of a pool the store owns (None for a client passed in): see the module notes.
        self._slots: anyio.Semaphore | None = None
        self._slot_wait: float | None = None

    async def open(self, check: Callable[[aioredis.Redis], Awaitable[None]]) -> None:
        """Connect, check the server answers, then run ``check`` on the client; close what was built if either fails.

        Raises:
            StoreError: the server cannot be reached or refused the connection.
        """
        source = self._source
        if isinstance(source, str):
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

    def dedicated(self, read_timeout: float) -> aioredis.Redis:
        """A new client on one connection of its own that never retries: see the module notes.

        Its replies are text, its reads wait at most ``read_timeout``; the caller names the connection if it wants
        (a name set here would fail the connection where an ACL forbids ``CLIENT SETNAME``), and closes the client
        with ``aclose()``.

        Raises:
            StoreError: the store is not open.
        """
        client = self._client
        if client is None:
            raise StoreError(_NOT_OPEN)
        pool = client.connection_pool
        settings = {
            **pool.connection_kwargs,
            "client_name": None,
            "decode_responses": True,
            "socket_timeout": read_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        single = aioredis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **settings)
        return aioredis.Redis.from_pool(single)

    @contextlib.asynccontextmanager
    async def using(self, operation: str) -> AsyncIterator[aioredis.Redis]:
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
        except DRIVER_ERRORS as exc:
            raise store_error(operation, exc) from exc
        finally:
            if slots is not None:
                slots.release()
