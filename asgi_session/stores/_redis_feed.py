"""RedisStore's revocation feed: the log stream pushed by blocking reads, confirmed by timed reads of its last id.

Two connections of the feed's own, to the server that holds the log (on a Redis Cluster, the primary of its slot:
after a failover the old one answers ``MOVED``, which ends the feed like any error, and the next feed connects to the
new primary). The **push** connection reads every entry after the last one delivered: first a
catch-up ``XRANGE``, then ``XREAD BLOCK``, which returns as soon as a delete script appends entries. The **confirm**
connection asks, every ``heartbeat`` seconds on the client's clock, how far the log goes (its counter, and its last
id with ``XREVRANGE + - COUNT 1``).
A reply proves that every entry committed before the request was sent has an id no higher than that last id; once
the push side has delivered up to it, the view is current as of the ``now()`` reading taken before the request. That
reading is what ``deliver`` receives as ``current_as_of``.

Why not let the blocking read's own timeout be the heartbeat: Redis ends a blocked read that timed out on its own
event loop's schedule, which on an idle server is its ``hz`` timer (10 times a second by default), so a 33 ms block
answers anywhere between 33 and 100 ms; a ``revocation_max_lag`` of 0.1 s would then find the view stale for a
share of requests, each falling back to a store read. The confirmation is timed here instead, and the push
connection blocks for longer (its timeout confirms too, as of its request).

Every round trip is bounded (``heartbeat + socket_timeout`` for a confirmation, the block plus ``socket_timeout``
for a push read), so a dead or paused server, or a killed connection, ends the feed with ``StoreError``; the caller
starts a new feed from the last position it was given, and the catch-up read fills the gap. A push connection that
stops delivering while the log grows leaves confirmations unresolved: the view then ages past the bound and
verification reads the store until the push side delivers or fails. A log that ends below what was delivered went
back (the server lost or restored data): the feed ends with ``RevocationLogRewound``.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..exceptions import StoreError
from ._redis_keys import to_revocation
from ._redis_pool import DRIVER_ERRORS, RedisPool, store_error
from .base import Revocation, RevocationLogRewound

__all__ = ["follow"]

BATCH = 10_000  # entries per read; a full batch is followed by another read before anything is delivered
PUSH_BLOCK = 1.0  # seconds a push read waits for new entries before it returns empty (and is sent again)


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


class _Feed:
    """The state the two loops share (on one event loop: no locks): what was delivered, and what is confirmed."""

    def __init__(self, key: str, deliver: Callable[[list[Revocation], float], None], now: Callable[[], float]) -> None:
        self.key, self.counter, self._deliver, self.now = key, f"{key}:seq", deliver, now
        self.position = 0
        self.as_of = -math.inf
        self.waiting: deque[tuple[int, float]] = deque()  # (last id seen, reading before that request), ascending

    def delivered(self, entries: list[Revocation], as_of: float) -> None:
        """Deliver ``entries`` (the next ones) with what is now confirmed: ``as_of``, or a confirmation they meet."""
        if entries:
            self.position = entries[-1][0]
        while self.waiting and self.waiting[0][0] <= self.position:
            as_of = max(as_of, self.waiting.popleft()[1])
        self.as_of = max(self.as_of, as_of)
        self._deliver(entries, self.as_of)

    def confirmed(self, last: int, as_of: float, delivered_before: int) -> None:
        """A confirmation: everything committed before ``as_of`` is numbered ``last`` or lower.

        ``delivered_before`` is the position when the read was sent. Only that position says the log went back:
        the push side may have delivered entries committed after the read while its reply was on the way.

        Raises:
            RevocationLogRewound: ``last`` is below what was delivered before the read: the log went back.
        """
        if last < delivered_before:
            raise RevocationLogRewound(
                f"Redis store: the revocation log went back (its last number is {last}, {delivered_before} was "
                "delivered): the server lost or restored data"
            )
        if last <= self.position:
            self.delivered([], as_of)
        else:  # the push side has not delivered it yet: confirmed when it has
            self.waiting.append((last, as_of))

    async def push(self, client: aioredis.Redis, socket_timeout: float) -> None:
        """Deliver entries as blocking reads return them (an empty return confirms as of its request)."""
        block_ms = math.ceil(PUSH_BLOCK * 1000)
        bound = PUSH_BLOCK + socket_timeout + 1  # the server may end a block up to one ``hz`` tick late
        while True:
            as_of = self.now()
            request = ("XREAD", "COUNT", BATCH, "BLOCK", block_ms, "STREAMS", self.key, f"{self.position}-0")
            entries = _streamed(await _ask(client, bound, *request))
            if len(entries) == BATCH:
                entries += await _range(client, bound, self.key, entries[-1][0])
            self.delivered(entries, as_of)

    async def confirm(self, client: aioredis.Redis, heartbeat: float, socket_timeout: float) -> None:
        """Every ``heartbeat`` seconds, read how far the log goes: its counter, and its last entry.

        The counter survives trims that empty the stream; the last entry survives the loss of the counter alone
        (the next delete rebuilds it from there). Both gone means the log started over.
        """
        bound = heartbeat + socket_timeout
        while True:
            await anyio.sleep(heartbeat)
            as_of, delivered_before = self.now(), self.position
            counter = await _ask(client, bound, "GET", self.counter)
            newest = _entries(await _ask(client, bound, "XREVRANGE", self.key, "+", "-", "COUNT", 1))
            try:
                last = max(int(counter or 0), newest[0][0] if newest else 0)
            except ValueError as exc:
                raise StoreError("Redis store: the revocation log's counter is not a number") from exc
            self.confirmed(last, as_of, delivered_before)


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
    """Run the feed of the log stream ``key`` on two connections named ``name`` until cancelled.

    Raises:
        StoreError: a connection failed or a reply did not come in time.
    """
    bound = heartbeat + socket_timeout
    clients: list[aioredis.Redis] = []
    feed = _Feed(key, deliver, now)
    failures: list[StoreError] = []

    async def run(step: Callable[[], Any], scope: anyio.CancelScope) -> None:
        try:
            await step()
        except StoreError as exc:  # the first failure ends both loops; the caller restarts the feed
            failures.append(exc)
            scope.cancel()

    try:
        for read_timeout in (PUSH_BLOCK + bound + 1, bound):
            clients.append(await pool.dedicated(read_timeout, key))
        for client in clients:
            for command in ("XRANGE", "XREAD", "XREVRANGE"):
                client.set_response_callback(command, _raw)
            # The name lets operators (and tests) find the feed in CLIENT LIST; an ACL may forbid it (Redis 6 files
            # CLIENT SETNAME under @dangerous), and the feed works without it.
            await _ask(client, bound, "CLIENT", "SETNAME", name, may_refuse=True)
        feed.position = max(after, 0)
        as_of = now()
        feed.delivered(await _range(clients[0], bound, key, feed.position), as_of)
        async with anyio.create_task_group() as group:
            group.start_soon(run, lambda: feed.push(clients[0], socket_timeout), group.cancel_scope)
            group.start_soon(run, lambda: feed.confirm(clients[1], heartbeat, socket_timeout), group.cancel_scope)
        raise failures[0] if failures else StoreError("Redis store: the revocation feed ended")
    finally:
        # Shielded: a cancelled feed still closes its sockets (or a ResourceWarning would report it later).
        with anyio.CancelScope(shield=True), anyio.move_on_after(socket_timeout):
            for client in clients:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await client.aclose()
