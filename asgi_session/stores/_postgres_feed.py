"""The PostgreSQL revocation feed: a loop that reads the log by sequence number each time a ``NOTIFY`` wakes it.

The loop runs on one dedicated connection, apart from the pool: ``LISTEN`` is state the pool would not keep. It
listens before its first read, so nothing committed after that read can go unannounced. Then, until cancelled: take
``now()``, read every entry above the last one delivered, deliver them (an empty list is the heartbeat), and wait
for a notification, the connection's end or ``heartbeat`` seconds, whichever comes first.

Notifications only wake the loop early; the read is what delivers. A notification lost, or never sent (a log entry
written by hand), delays an entry by one heartbeat at most, and a payload is never trusted. The read is exact
because the log's numbers commit in order (see ``postgres.py``): an entry the read does not see committed after the
read's snapshot, so after the ``now()`` taken before it. The read also returns the log's counter: one below the
position delivered means the log went back (a restore, a failover to a standby that lagged), and the loop ends with
``RevocationLogRewound``.

Failures end the loop with ``StoreError``: a server that ends the connection wakes it at once (the termination
listener), and a server that silently stopped answering fails the next read after ``command_timeout``, so a dead
server is noticed within ``heartbeat + command_timeout`` seconds. The connection is closed however the loop ends.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio

from ..exceptions import ConfigurationError
from ._postgres_pool import DRIVER_FAILURES, failure
from .base import Revocation, RevocationLogRewound

__all__ = ["follow", "valid_heartbeat"]

_OPERATION = "follow_revocations"


def valid_heartbeat(heartbeat: float) -> float:
    """``heartbeat`` as a float, checked: a finite number of seconds above zero.

    Raises:
        ConfigurationError: it is not.
    """
    number = isinstance(heartbeat, (int, float)) and not isinstance(heartbeat, bool)
    if not number or not 0 < heartbeat < math.inf:
        raise ConfigurationError("heartbeat must be a finite number of seconds > 0, e.g. 1.0")
    return float(heartbeat)


async def follow(
    connection: Any,
    *,
    channel: str,
    read: str,
    after: int,
    deliver: Callable[[list[Revocation], float], None],
    now: Callable[[], float],
    heartbeat: float,
    close_timeout: float,
) -> None:
    """Deliver the log above ``after`` from ``connection``, then what follows, until cancelled; then close it.

    Args:
        connection: a dedicated asyncpg connection, owned (and closed) by this call.
        channel: the ``NOTIFY`` channel of the store's revocations.
        read: the statement that returns ``(seq, handle, NULL)`` for each entry above ``$1``, and
            ``(NULL, NULL, last_seq)`` for the counter.
        after: the position delivered so far.
        deliver: called with each read's entries and the ``now()`` taken before it.
        now: the clock.
        heartbeat: the longest wait between reads, in seconds.
        close_timeout: how long closing may wait for the server before the connection is dropped.

    Raises:
        StoreError: the connection was lost, a read failed or timed out. ``deliver``'s own exceptions pass as they
            are.
    """
    woken = asyncio.Event()

    def wake(*_: object) -> None:
        woken.set()

    try:
        connection.add_termination_listener(wake)
        try:
            await connection.add_listener(channel, wake)
        except DRIVER_FAILURES as exc:
            raise failure(_OPERATION, exc) from exc
        position = after
        while True:
            woken.clear()  # before the read: a notification that arrives during it makes the next read at once
            as_of = now()
            try:
                rows = await connection.fetch(read, position)
            except DRIVER_FAILURES as exc:
                raise failure(_OPERATION, exc) from exc
            entries: list[Revocation] = sorted((row[0], row[1]) for row in rows if row[0] is not None)
            last = max((row[2] for row in rows if row[2] is not None), default=None)  # the counter's row
            if last is None or last < position:
                raise RevocationLogRewound(
                    f"PostgreSQL store: the revocation log went back (its counter is {last}, {position} was "
                    "delivered): the database lost or restored data"
                )
            if entries:
                position = entries[-1][0]
            deliver(entries, as_of)
            with anyio.move_on_after(heartbeat):
                await woken.wait()
    finally:
        await _shut(connection, close_timeout)


async def _shut(connection: Any, within: float) -> None:
    """Close gracefully (the server drops the ``LISTEN``), or drop the connection if that fails or takes too long.

    Shielded: it also runs when the loop is cancelled.
    """
    with anyio.move_on_after(within, shield=True):
        try:
            await connection.close()
            return
        except DRIVER_FAILURES:
            pass  # terminated below: closing must not fail
    connection.terminate()
