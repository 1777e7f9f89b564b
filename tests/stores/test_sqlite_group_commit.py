"""SQLiteStore's group commit: concurrent writes share a transaction, fail one by one, and answer after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asgi_session.exceptions import StoreError
from asgi_session.stores import SessionRecord, SQLiteStore
from tests.stores.test_sqlite import digest, make_record, other_connection, rotation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


def records(count: int, prefix: str = "h") -> list[SessionRecord]:
    return [make_record(f"{prefix}{index}") for index in range(count)]


def stored_handles(path: Path) -> set[str]:
    """What another connection (another process, in effect) sees committed."""
    with other_connection(path) as other:
        return {row[0] for row in other.execute("SELECT handle FROM sessions")}


class Trace:
    """The statements the store's connection ran (its trace callback runs on aiosqlite's thread)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, statement: str) -> None:
        self.statements.append(statement.strip().split()[0].upper())

    def transactions(self, verb: str = "INSERT") -> int:
        """Committed transactions holding a ``verb``: each ``COMMIT``, plus each ``verb`` run outside ``BEGIN``."""
        count, inside = 0, False
        for statement in self.statements:
            if statement == "BEGIN":
                inside = True
            elif statement in ("COMMIT", "ROLLBACK"):
                count += statement == "COMMIT"
                inside = False
            elif statement == verb and not inside:
                count += 1
        return count


async def traced(store: SQLiteStore) -> Trace:
    trace = Trace()
    assert store._db is not None
    await store._db.set_trace_callback(trace)
    return trace


async def outcomes(*calls: Any) -> list[Any]:
    """Run the calls concurrently; each one's result or exception."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock until the block ends."""
    with other_connection(path) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield other
        finally:
            other.execute("ROLLBACK")


# --- batching ---------------------------------------------------------------------------------------------------


async def test_concurrent_creates_commit_in_fewer_transactions_than_creates(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        trace = await traced(store)
        await asyncio.gather(*(store.create(record) for record in records(64)))
        assert trace.statements.count("INSERT") == 64
        assert trace.transactions() < 64
        assert trace.transactions() <= 2  # all 64 queued in one loop iteration: one batch (two if split)
    assert stored_handles(path) == {f"h{index}" for index in range(64)}


async def test_a_lone_write_runs_in_autocommit_at_once(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        trace = await traced(store)
        await store.create(make_record())
        assert trace.statements == ["INSERT"]  # no BEGIN / COMMIT around a batch of one


async def test_rotations_batch_and_keep_their_own_compare_and_swap(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        created = records(16)
        await asyncio.gather(*(store.create(record) for record in created))
        trace = await traced(store)
        # Every other rotation expects a stale hash: it must swap nothing, and the others must not notice.
        results = await asyncio.gather(
            *(
                store.rotate(rotation(record, digest(f"new-{index}"), None if index % 2 else digest("stale")))
                for index, record in enumerate(created)
            )
        )
        assert results == [bool(index % 2) for index in range(16)]
        assert trace.transactions("UPDATE") == 1
    with other_connection(path) as other:
        hashes = dict(other.execute("SELECT handle, refresh_hash FROM sessions").fetchall())
    for index, record in enumerate(created):
        assert hashes[record.handle] == (digest(f"new-{index}") if index % 2 else record.refresh_hash)


async def test_a_failing_write_fails_only_its_caller(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        await store.create(make_record("taken"))
        trace = await traced(store)
        batch = records(10)
        batch[3] = make_record("taken")  # the handle exists
        batch[6] = make_record("bad", user_agent="\ud800")  # a lone surrogate: the driver cannot bind it
        results = await outcomes(*(store.create(record) for record in batch))
        assert trace.statements.count("BEGIN") == 1  # one batch: the failures happened inside its transaction
    assert isinstance(results[3], StoreError)
    assert "already exists" in str(results[3])
    assert isinstance(results[6], StoreError)
    assert "create" in str(results[6])
    assert [result for index, result in enumerate(results) if index not in (3, 6)] == [None] * 8
    expected = {record.handle for index, record in enumerate(batch) if index not in (3, 6)} | {"taken"}
    assert stored_handles(path) == expected


async def test_a_full_disk_inside_a_batch_reports_exactly_what_committed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        assert store._db is not None
        rows = list(await store._db.execute_fetchall("PRAGMA page_count"))
        await store._db.execute(f"PRAGMA max_page_count = {rows[0][0] + 2}")
        batch = [
            make_record(f"h{index}", session_data={"blob": "x" * (30_000 if index == 5 else 10)}) for index in range(10)
        ]
        results = await outcomes(*(store.create(record) for record in batch))
        assert isinstance(results[5], StoreError)
        assert "full" in str(results[5])
        reported = {record.handle for record, result in zip(batch, results, strict=True) if result is None}
        failed = {record.handle for record, result in zip(batch, results, strict=True) if result is not None}
        assert all(isinstance(result, StoreError) for result in results if result is not None)
        await store._db.execute("PRAGMA max_page_count = 1000000")
        assert await store.get("h0") is not None or "h0" in failed  # the store still answers
    committed = stored_handles(path)
    assert reported <= committed  # nothing reported done that did not commit
    assert not failed & committed  # nothing reported failed that did commit


async def test_a_failing_commit_fails_every_caller_of_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    def deny_commit(action: int, first: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and first == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    async with SQLiteStore(path) as store:
        assert store._db is not None
        await store._db.set_authorizer(deny_commit)
        results = await outcomes(*(store.create(record) for record in records(8)))
        assert all(isinstance(result, StoreError) for result in results), results
        assert all("create failed" in str(result) for result in results)
        assert stored_handles(path) == set()
        # An allow-all authorizer: Python 3.10's set_authorizer(None) does not remove one (3.11 added that).
        await store._db.set_authorizer(lambda *_: sqlite3.SQLITE_OK)
        await asyncio.gather(*(store.create(record) for record in records(8)))  # rolled back: the store recovers
    assert len(stored_handles(path)) == 8


async def test_a_write_lock_held_past_busy_timeout_fails_every_caller(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path, busy_timeout=0.2) as store:
        with write_lock(path):
            results = await outcomes(*(store.create(record) for record in records(8)))
        assert all(isinstance(result, StoreError) and "locked" in str(result) for result in results), results
        assert stored_handles(path) == set()
        await asyncio.gather(*(store.create(record) for record in records(8)))
    assert len(stored_handles(path)) == 8


async def test_each_write_is_visible_to_another_connection_when_its_caller_is_answered(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seen_late: list[str] = []

    async def create_then_look(record: SessionRecord) -> None:
        await store.create(record)
        if record.handle not in stored_handles(path):  # no await in between: nothing could commit it later
            seen_late.append(record.handle)

    async with SQLiteStore(path) as store:
        await asyncio.gather(*(create_then_look(record) for record in records(48)))
    assert seen_late == []


async def test_reads_and_writes_share_a_batch(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        await store.create(make_record("h0"))
        results = await asyncio.gather(store.get("h0"), store.create(make_record("h1")), store.get("nope"))
        assert list(results) == [make_record("h0"), None, None]
        assert await store.get("h1") == make_record("h1")


# --- cancellation and close ---------------------------------------------------------------------------------------


async def test_a_cancelled_caller_leaves_the_batch_and_its_other_callers_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path, busy_timeout=5.0) as store:
        with write_lock(path):
            tasks = [asyncio.create_task(store.create(record)) for record in records(8)]
            await asyncio.sleep(0.1)  # the batch is on aiosqlite's thread, waiting for the lock
            tasks[2].cancel()
        with anyio.fail_after(5):
            results = await outcomes(*tasks)
        assert isinstance(results[2], asyncio.CancelledError)
        assert [result for index, result in enumerate(results) if index != 2] == [None] * 7
        await store.create(make_record("after"))
    # The cancelled create ran with its batch (as if its answer had been lost after the commit).
    assert stored_handles(path) == {f"h{index}" for index in range(8)} | {"after"}


async def test_close_finishes_a_batch_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path, busy_timeout=5.0)
    await store.open()
    with write_lock(path):
        tasks = [asyncio.create_task(store.create(record)) for record in records(8)]
        await asyncio.sleep(0.1)  # the batch is on aiosqlite's thread, waiting for the lock
        # Queued behind the running batch: they wait for its end to start the next one.
        tasks += [asyncio.create_task(store.create(record)) for record in records(8, "next")]
        await asyncio.sleep(0)
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0)
        late = await outcomes(store.create(make_record("late")))
    with anyio.fail_after(5):
        results = await outcomes(*tasks)
        await closing
    assert results == [None] * 16
    assert isinstance(late[0], StoreError)
    assert "not open" in str(late[0])
    assert stored_handles(path) == {f"{prefix}{index}" for index in range(8) for prefix in ("h", "next")}


async def test_close_runs_what_was_queued_before_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    tasks = [asyncio.create_task(store.create(record)) for record in records(8)]
    await asyncio.sleep(0)  # each task queued its statement; no batch has started yet
    with anyio.fail_after(5):
        await store.close()
        results = await outcomes(*tasks)
    assert results == [None] * 8
    assert stored_handles(path) == {f"h{index}" for index in range(8)}
