"""Group commit for the SQLite store: writes queued while a batch runs share the next batch's one transaction.

Every batched operation is one SQL statement, given as a function of the ``sqlite3`` connection. A caller queues
its operation and awaits its own future. When no batch is running, the first caller schedules ``_start`` with
``loop.call_soon``: not a timer, only the end of the current loop iteration, so the tasks woken together queue into
one batch and a lone operation waits microseconds. ``_start`` posts everything queued as one batch to aiosqlite's
worker thread (the thread that owns the connection), which runs it and answers each caller. What queues meanwhile
waits; at the end of the batch the next one is started the same way, after the answers just posted (so the tasks
they wake can queue their next statements first). Under load each batch is whatever queued while the previous one
ran. Running the next batch from the event loop, not straight from the worker, keeps the worker from fighting the
busy event loop for the GIL statement by statement: batches of one, measured, were the result.

In a batch the reads run first, each in autocommit: every operation of a batch was queued before any of them was
answered, so they are concurrent and running the reads first is one of the orders they could have run in one after
another; a read sees only committed data, so its answer never depends on the batch's commit. Then the writes: a lone
write runs in autocommit, exactly as an unbatched statement; several run in one ``BEGIN IMMEDIATE ... COMMIT``, and
their callers are answered only after ``COMMIT`` returned (each write is durable before its caller hears of it,
as with one statement per commit). A write that fails inside the transaction is undone by SQLite alone (a failed
statement is rolled back, the transaction stays open) and fails only its caller. When SQLite instead rolled the
whole transaction back (it may on a full disk or an I/O error), the writes that ran before it fail too, and the
rest run in a new transaction. A failing ``BEGIN`` or ``COMMIT`` fails every write of the batch: nothing is
reported done that did not commit.

Answers are tuples ``(True, value)`` or ``(False, exception)`` (the caller wraps the exception in its own
:class:`~asgi_session.StoreError`), set through ``call_soon_threadsafe``, one call per event loop per batch.

``close()`` refuses new statements; a running batch then runs what queued behind it before it returns, and a batch
not started yet is posted at once, so everything queued runs before aiosqlite's own close.

A batch reaches the connection through two private attributes of ``aiosqlite.Connection`` (``_tx``, its worker's
queue of ``(future, function)`` pairs, and ``_connection``, the ``sqlite3`` connection, read through its ``_conn``
property), unchanged since aiosqlite 0.20; :func:`supported` checks them when the store opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import aiosqlite

__all__ = ["GroupCommit", "Outcome", "supported"]

Outcome = tuple[bool, Any]
"""``(True, result)`` or ``(False, exception)``."""

Statement = Callable[[sqlite3.Connection], Any]


def supported(db: aiosqlite.Connection) -> bool:
    """Whether ``db`` exposes the worker queue and connection the drain needs."""
    tx = getattr(db, "_tx", None)
    connection = getattr(db, "_connection", None)
    return callable(getattr(tx, "put_nowait", None)) and isinstance(connection, sqlite3.Connection)


class _Op:
    __slots__ = ("future", "outcome", "run")

    def __init__(self, run: Statement, future: asyncio.Future[Outcome]) -> None:
        self.run = run
        self.future = future
        self.outcome: Outcome = (False, None)


def _answer(ops: list[_Op]) -> None:
    """On the event loop: hand each caller its outcome (a cancelled caller's is dropped)."""
    for op in ops:
        if not op.future.done():
            op.future.set_result(op.outcome)


def _post(ops: list[_Op]) -> None:
    """On the worker thread: answer ``ops``, one ``call_soon_threadsafe`` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
    for op in ops:
        by_loop.setdefault(op.future.get_loop(), []).append(op)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is left to answer
            loop.call_soon_threadsafe(_answer, group)


def _run(connection: sqlite3.Connection, op: _Op) -> bool:
    try:
        op.outcome = (True, op.run(connection))
    except Exception as exc:
        op.outcome = (False, exc)
        return False
    return True


class GroupCommit:
    """Runs the store's request-path statements on aiosqlite's thread, committing concurrent writes together.

    Args:
        db: the store's open aiosqlite connection (autocommit mode).
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # Guards the queues and the flags below: event loops on several threads may share the store.
        self._lock = threading.Lock()
        self._reads: list[_Op] = []
        self._writes: list[_Op] = []
        self._running = False  # a batch is on (or queued for) aiosqlite's thread
        # The event loop a ``_start`` is scheduled on, if any: a loop closed before running it (its callbacks
        # dropped) must not leave the queue waiting, so a caller on another loop then schedules its own.
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def read(self, run: Statement) -> Outcome:
        """Run a read statement with the next batch, before its writes; its outcome as soon as it ran."""
        return await self._queue(run, write=False)

    async def write(self, run: Statement) -> Outcome:
        """Run a write statement with the next batch; its outcome once the batch's transaction committed."""
        return await self._queue(run, write=True)

    async def _queue(self, run: Statement, *, write: bool) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        with self._lock:
            if self._closed:
                return (False, ValueError("Connection closed"))  # as aiosqlite says it: the store maps it
            (self._writes if write else self._reads).append(_Op(run, future))
            scheduled = self._scheduled
            schedule = not self._running and (scheduled is None or scheduled.is_closed())
            if schedule:
                self._scheduled = loop
        if schedule:
            # Not a timer: ``_start`` runs once the callbacks already ready on this loop ran, so the tasks woken
            # together (say, by the previous batch's answers) queue their statements into one batch.
            loop.call_soon(self._start)
        # Cancelling the caller leaves its statement queued: it runs with its batch, its outcome dropped.
        return await future

    def _take(self) -> tuple[list[_Op], list[_Op]]:
        """Under the lock: everything queued, leaving the queues empty."""
        reads, writes = self._reads, self._writes
        self._reads, self._writes = [], []
        return reads, writes

    def _start(self) -> None:
        """On an event loop: hand everything queued to aiosqlite's thread as one batch, unless one is running."""
        with self._lock:
            self._scheduled = None
            if self._running or not (self._reads or self._writes):
                return
            self._running = True
            batch = self._take()
        self._post_batch(batch)

    def _post_batch(self, batch: tuple[list[_Op], list[_Op]]) -> None:
        try:
            # No future: the batch answers each caller itself and never raises.
            self._db._tx.put_nowait((None, functools.partial(self._drain, *batch)))
        except BaseException as exc:  # not expected from a SimpleQueue; fail the callers rather than strand them
            with self._lock:
                self._running = False
            for op in batch[0] + batch[1]:
                op.outcome = (False, exc)
            _answer(batch[0] + batch[1])
            raise

    def close(self) -> None:
        """Refuse new statements, and make sure everything queued runs before anything queued on aiosqlite later.

        Call it just before closing the connection: a running batch then also runs what queued behind it.
        """
        with self._lock:
            self._closed = True
            if self._running or not (self._reads or self._writes):
                return
            self._running = True
            batch = self._take()
        self._post_batch(batch)

    def _drain(self, reads: list[_Op], writes: list[_Op]) -> None:
        """On aiosqlite's thread: run a batch and answer its callers; when closing, also what queued meanwhile."""
        while True:
            self._run_batch(reads, writes)
            with self._lock:
                if self._closed and (self._reads or self._writes):
                    _post(reads + writes)
                    reads, writes = self._take()  # close() waits behind this call: run them now
                    continue
                self._running = False
                kick = None
                scheduled = self._scheduled
                if (self._reads or self._writes) and (scheduled is None or scheduled.is_closed()):
                    kick = self._scheduled = (self._reads or self._writes)[0].future.get_loop()
            _post(reads + writes)
            if kick is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: the next caller's own _start runs it
                    kick.call_soon_threadsafe(self._kick)
            return

    def _kick(self) -> None:
        # On the loop, after the answers just posted woke their tasks: let those tasks queue first.
        asyncio.get_running_loop().call_soon(self._start)

    def _run_batch(self, reads: list[_Op], writes: list[_Op]) -> None:
        try:
            connection = self._db._conn
        except ValueError as exc:  # closed: aiosqlite's own "no active connection"
            for op in reads + writes:
                op.outcome = (False, exc)
            return
        try:
            if reads:
                for op in reads:
                    _run(connection, op)
                _post(reads)
                reads.clear()
            if writes:
                self._write(connection, writes)
        except Exception as exc:  # a bug here must not leave callers waiting for ever
            for op in reads + writes:
                op.outcome = (False, exc)

    def _write(self, connection: sqlite3.Connection, writes: list[_Op]) -> None:
        if len(writes) == 1:
            _run(connection, writes[0])  # autocommit: the statement is its own transaction, as without batching
            return
        start = 0
        while start < len(writes):
            start = self._transaction(connection, writes, start)

    def _transaction(self, connection: sqlite3.Connection, writes: list[_Op], start: int) -> int:
        """Run ``writes[start:]`` in one transaction; return where the next transaction starts (past the end: done)."""
        try:
            connection.execute("BEGIN IMMEDIATE")
        except Exception as exc:  # busy beyond busy_timeout, I/O: every write of the batch fails
            for op in writes[start:]:
                op.outcome = (False, exc)
            return len(writes)
        for index in range(start, len(writes)):
            if not _run(connection, writes[index]) and not connection.in_transaction:
                # SQLite rolled the whole transaction back: what ran before is undone too.
                error = writes[index].outcome[1]
                for op in writes[start:index]:
                    op.outcome = (False, error)
                return index + 1
        try:
            connection.execute("COMMIT")
        except Exception as exc:  # nothing of this transaction is reported done
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # else SQLite rolls back when the connection closes
                    connection.execute("ROLLBACK")
            for op in writes[start:]:
                op.outcome = (False, exc)
            return len(writes)
        return len(writes)
