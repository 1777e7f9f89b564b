"""The asyncpg pool PostgresStore runs each statement through, every driver error raised as a ``StoreError``.

Failures. A serialization failure or deadlock (40001, 40P01) was rolled back, so it is retried up to
``serialization_retries`` times. Any other driver error becomes :class:`~asgi_session.StoreError` naming the
operation, never a bound value. A write whose connection died (or whose statement timed out) in flight has an
unknown outcome: it is raised as ``OutcomeUnknown`` and the store never guesses (``rotate`` re-reads the row). Reads
retry on another connection. Broken connections are replaced on the next acquire, so the store heals by itself. A
cancelled call may still complete on the server: asyncpg asks it to cancel the statement, which may finish first.

No state is left on a connection, so the pool hands connections back without a reset query. A connection that
must keep state (the revocation feed's ``LISTEN``) is opened apart from the pool by :meth:`PostgresPool.connect`.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import asyncpg  # type: ignore[import-untyped]

from ..exceptions import StoreError

__all__ = ["DRIVER_FAILURES", "OutcomeUnknown", "PostgresPool", "failure"]

_T = TypeVar("_T")

_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)  # distinct classes before Python 3.11
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, ValueError)
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
# The store's reads: they change nothing, so a lost connection is retried and never leaves an unknown outcome.
_READS = frozenset({"get", "list_for_user", "list_for_user_tenant", "get_keys", "revocations_since"})
_NOT_OPEN = "store is not open; use `async with store:` or `await store.open()`"


DRIVER_FAILURES = (*_DRIVER_ERRORS, *_TIMEOUTS)
"""Every exception the driver raises for a failed call."""


class OutcomeUnknown(StoreError):
    """The connection was lost, or the statement timed out, after a write was sent: it may have been applied."""


def _unknown(operation: str, what: str) -> StoreError:
    if operation in _READS:
        return StoreError(f"PostgreSQL store: {operation} {what}")
    return OutcomeUnknown(f"PostgreSQL store: {operation} {what}; whether it was applied is unknown")


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection died or the statement timed out: the server may have committed."""
    if isinstance(exc, asyncpg.PostgresError):
        return bool(exc.sqlstate.startswith("08") or exc.sqlstate in ("57P01", "57P02", "57P03"))
    return isinstance(exc, (*_TIMEOUTS, OSError, asyncpg.InternalClientError)) or (
        isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError)
    )


def _detail(exc: BaseException) -> str:
    """Describe a driver error without any bound value: data errors and DSN errors keep only their type."""
    name = type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        if exc.sqlstate.startswith("22"):  # data exceptions can quote the offending value
            return f"{name} [{exc.sqlstate}]"
        # ``message`` is the server's primary message, without the DETAIL line that can quote values.
        return f"{name} [{exc.sqlstate}]: {exc.message or exc}"
    if isinstance(exc, _TIMEOUTS):
        return "timed out"
    if isinstance(exc, (OSError, asyncpg.InterfaceError)) and not isinstance(exc, ValueError):
        return f"{name}: {exc}"
    return name


def failure(operation: str, exc: BaseException) -> StoreError:
    """The ``StoreError`` for a driver error in ``operation``, naming no bound value."""
    return StoreError(f"PostgreSQL store: {operation} failed ({_detail(exc)})")


async def _keep_connection(connection: Any) -> None:
    """Pool reset hook: the store leaves no session state on a connection, so skip asyncpg's reset query."""


# asyncpg < 0.30 has no reset hook; it then runs its reset query on each release (one more round trip).
_POOL_OPTIONS = {"reset": _keep_connection} if "reset" in inspect.signature(asyncpg.create_pool).parameters else {}


class PostgresPool:
    """A store's asyncpg pool: opened, closed, and lent out one connection per statement.

    The settings are PostgresStore's namesakes (``sizes`` its ``min_size`` and ``max_size``; ``retries`` its
    ``serialization_retries``), already validated.
    """

    def __init__(
        self,
        dsn: str,
        *,
        sizes: tuple[int, int],
        acquire_timeout: float,
        command_timeout: float,
        connect_timeout: float,
        retries: int,
        application_name: str,
    ) -> None:
        self._dsn = dsn
        self._sizes = sizes
        self._acquire_timeout = acquire_timeout
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._retries = retries
        self._application_name = application_name
        self._pool: Any = None

    @property
    def command_timeout(self) -> float:
        """Seconds a statement may run before it fails."""
        return self._command_timeout

    async def open(self, operation: str, prepare: Callable[[Any], Awaitable[None]]) -> None:
        """Create the pool, then run ``prepare`` on one of its connections; a pool it fails on is closed.

        Raises:
            StoreError: the server cannot be reached, or ``prepare`` failed.
        """
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                command_timeout=self._command_timeout,
                timeout=self._connect_timeout,
                server_settings={"application_name": self._application_name},
                **_POOL_OPTIONS,
            )
        except (*_DRIVER_ERRORS, *_TIMEOUTS) as exc:
            raise StoreError(f"PostgreSQL store: connecting failed ({_detail(exc)})") from exc
        try:
            await self.run(operation, prepare, pool=pool)
        except BaseException:
            await self._shut(pool)
            raise
        self._pool = pool

    async def connect(self, application_name: str) -> Any:
        """Open one connection outside the pool, with its settings: for state it must keep, such as ``LISTEN``.

        The caller closes it. Only while the pool is open, so a closed store opens nothing.

        Raises:
            StoreError: the pool is closed, or the server cannot be reached.
        """
        if self._pool is None:
            raise StoreError(_NOT_OPEN)
        try:
            return await asyncpg.connect(
                self._dsn,
                command_timeout=self._command_timeout,
                timeout=self._connect_timeout,
                server_settings={"application_name": application_name},
            )
        except DRIVER_FAILURES as exc:
            raise StoreError(f"PostgreSQL store: connecting failed ({_detail(exc)})") from exc

    async def close(self) -> None:
        """Close every connection, waiting up to ``command_timeout`` for running operations."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await self._shut(pool)

    async def _shut(self, pool: Any) -> None:
        with anyio.move_on_after(self._command_timeout, shield=True):
            try:
                await pool.close()
                return
            except (*_DRIVER_ERRORS, *_TIMEOUTS):
                pass  # terminated below: closing must not fail
        pool.terminate()

    async def run(self, operation: str, call: Callable[[Any], Awaitable[_T]], *, pool: Any = None) -> _T:
        """Run ``call`` on a pooled connection, retrying rollbacks; wrap every driver error in ``StoreError``."""
        pool = pool if pool is not None else self._pool
        if pool is None:
            raise StoreError(_NOT_OPEN)
        attempt = 0
        # A read may retry on another connection (it changes nothing): after a server restart, each pooled
        # connection fails once before the pool replaces it.
        lost_retries = self._sizes[1] if operation in _READS else 0
        while True:
            acquired = False
            try:
                async with pool.acquire(timeout=self._acquire_timeout) as con:
                    acquired = True
                    return await call(con)
            except _RETRYABLE as exc:
                if attempt >= self._retries:
                    raise StoreError(
                        f"PostgreSQL store: {operation} failed after {attempt + 1} attempts ({_detail(exc)})"
                    ) from exc
            except _TIMEOUTS as exc:
                if not acquired:
                    raise StoreError(
                        f"PostgreSQL store: {operation} failed: pool exhausted (no connection free within "
                        f"{self._acquire_timeout:g} s; max_size={self._sizes[1]})"
                    ) from exc
                raise _unknown(operation, f"timed out after {self._command_timeout:g} s") from exc
            except _DRIVER_ERRORS as exc:
                if acquired and _lost(exc) and lost_retries > 0:
                    lost_retries -= 1
                    continue
                if acquired and _lost(exc):
                    raise _unknown(operation, f"lost its connection ({_detail(exc)})") from exc
                raise StoreError(f"PostgreSQL store: {operation} failed ({_detail(exc)})") from exc
            attempt += 1
            await anyio.sleep(0.005 * 2**attempt * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret
