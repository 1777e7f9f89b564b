"""RedisStore's revocation feed: the log stream read with blocking reads on a connection of the feed's own.

The loop: take ``now()``, read every entry after the last one delivered, deliver them with that reading. The first
read is a catch-up ``XRANGE``; the later ones are ``XREAD BLOCK <heartbeat>``, which returns as soon as a delete
script appends entries, or empty when ``heartbeat`` passes (delivered too: that empty call is the heartbeat). A reply
proves that every entry committed before the request was sent is in it or was delivered before, which is why the
reading is taken before the request.

Every round trip is bounded by ``heartbeat + socket_timeout``, so a dead or paused server, or a killed connection,
ends the feed with ``StoreError`` within about that long; the caller starts a new feed from the last position it
was given, and the catch-up read fills the gap.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..exceptions import StoreError
from ._redis_keys import to_revocation
from ._redis_pool import DRIVER_ERRORS, RedisPool, store_error
from .base import Revocation

__all__ = ["follow"]

BATCH = 10_000  # entries per read; a full batch is followed by another read before anything is delivered


def _raw(response: Any, **options: Any) -> Any:
    """A response callback that leaves the reply as RESP sent it (redis-py reshapes stream replies per version)."""
    return response


def _entries(rows: Any) -> list[Revocation]:
    """The entries of one stream in a raw reply: a list of ``[id, [field, value, ...]]``."""
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise StoreError("Redis store: the revocation log returned an unexpected reply")
    try:
        return [to_revocation(row[0], row[1]) for row in rows]
    except (IndexError, KeyError, TypeError) as exc:
        raise StoreError("Redis store: the revocation log returned an unexpected reply") from exc


def _streamed(reply: Any) -> list[Revocation]:
    """The entries of the only stream in a raw XREAD reply: nil, ``[[key, rows]]`` (RESP2) or ``{key: rows}``."""
    if reply is None:
        return []
    if isinstance(reply, dict):
        return [entry for rows in reply.values() for entry in _entries(rows)]
    return [entry for stream in reply for entry in _entries(stream[1])]


async def _ask(client: aioredis.Redis, bound: float, *args: Any, may_refuse: bool = False) -> Any:
    """One command, its driver errors and a reply later than ``bound`` seconds raised as ``StoreError``.

    With ``may_refuse``, an error reply (such as an ACL's ``NOPERM``) returns ``None`` instead.
    """
    try:
        with anyio.fail_after(bound):
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    except TimeoutError as exc:  # anyio's bound (the socket's is redis-py's TimeoutError, a RedisError)
        raise StoreError(f"Redis store: follow_revocations failed (TimeoutError: no reply within {bound:g} s)") from exc
    except DRIVER_ERRORS as exc:
        if may_refuse and isinstance(exc, ResponseError):
            return None
        raise store_error("follow_revocations", exc) from exc


async def _range(client: aioredis.Redis, bound: float, key: str, after: int) -> list[Revocation]:
    """Every entry above ``after``, read in batches (the catch-up, and the rest after a full batch)."""
    found: list[Revocation] = []
    while True:
        rows = _entries(await _ask(client, bound, "XRANGE", key, str(after + 1), "+", "COUNT", BATCH))
        found += rows
        if len(rows) < BATCH:
            return found
        after = rows[-1][0]


async def follow(
    pool: RedisPool,
    *,
    name: str,
    key: str,
    after: int,
    deliver: Callable[[list[Revocation], float], None],
    now: Callable[[], float],
    heartbeat: float,
    socket_timeout: float,
) -> None:
    """Run the feed of the log stream ``key`` on a dedicated connection named ``name`` until cancelled.

    Raises:
        StoreError: the connection failed or a reply took longer than ``heartbeat + socket_timeout``.
    """
    bound = heartbeat + socket_timeout
    block_ms = max(1, math.ceil(heartbeat * 1000))
    client = pool.dedicated(bound)
    try:
        for command in ("XRANGE", "XREAD"):
            client.set_response_callback(command, _raw)
        # The name lets operators (and tests) find the feed in CLIENT LIST; an ACL may forbid it (Redis 6 files
        # CLIENT SETNAME under @dangerous), and the feed works without it.
        await _ask(client, bound, "CLIENT", "SETNAME", name, may_refuse=True)
        position = max(after, 0)
        as_of = now()
        entries = await _range(client, bound, key, position)
        while True:
            deliver(entries, as_of)
            if entries:
                position = entries[-1][0]
            as_of = now()
            request = ("XREAD", "COUNT", BATCH, "BLOCK", block_ms, "STREAMS", key, f"{position}-0")
            entries = _streamed(await _ask(client, bound + 1, *request))
            if len(entries) == BATCH:
                entries += await _range(client, bound, key, entries[-1][0])
    finally:
        # Shielded: a cancelled feed still closes its socket (or a ResourceWarning would report it later).
        with anyio.CancelScope(shield=True), anyio.move_on_after(socket_timeout), contextlib.suppress(*DRIVER_ERRORS):
            await client.aclose()
