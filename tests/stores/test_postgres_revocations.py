"""PostgresStore's revocation log and feed: atomic logging, an order no reader can skip, and the LISTEN feed."""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import asyncpg  # type: ignore[import-untyped]
import pytest
from anyio.abc import TaskGroup

from asgi_session.exceptions import ConfigurationError, StoreError
from asgi_session.stores.base import Revocation, RevocationFeed, RevocationLog, RevocationProbe
from asgi_session.stores.postgres import SCHEMA_VERSION, PostgresStore
from asgi_session.testing import CONFORMANCE_CHECKS
from asgi_session.testing._records import T0, handle_of, make_record
from tests._store_urls import drop_schema, unique_name

pytestmark = pytest.mark.anyio

Factory = Callable[..., PostgresStore]


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A schema no other test uses, dropped afterwards."""
    name = unique_name("rev")
    yield name
    await drop_schema(postgres_dsn, name)


@pytest.fixture
def factory(postgres_dsn: str, schema: str) -> Factory:
    """Builds unopened stores on the test's schema (several of them act as several processes)."""

    def build(**options: Any) -> PostgresStore:
        return PostgresStore(postgres_dsn, schema=schema, **options)

    return build


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain connection for the test's own queries: inspecting, locking, terminating."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


def sql(schema: str, template: str) -> str:
    return template.replace("{s}", f'"{schema}"')


async def eventually(check: Callable[[], Any]) -> Any:
    """Poll ``check()`` (or await it) until it returns something true; fail after 5 s: a bound, never a timing."""
    with anyio.fail_after(5):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await anyio.sleep(0.01)


_BACKEND = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
_WAITING_BACKEND = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
_GONE = "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = $1"


async def backend_pid(admin: Any, application_name: str, *, waiting_for_a_lock: bool = False) -> int:
    """The pid of the one backend with this application name (once it waits for a lock, if asked)."""
    query = _WAITING_BACKEND if waiting_for_a_lock else _BACKEND
    return int(await eventually(lambda: admin.fetchval(query, application_name)))


async def until_closed(admin: Any, application_name: str) -> None:
    await eventually(lambda: admin.fetchval(_GONE, application_name))


async def add_trigger(admin: Any, schema: str, name: str, when: str, body: str) -> None:
    """A PL/pgSQL trigger on the log: ``when`` is e.g. ``BEFORE INSERT``, ``body`` the function's statements."""
    function = f"CREATE FUNCTION {{s}}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$"
    await admin.execute(sql(schema, function))
    trigger = f"CREATE TRIGGER {name} {when} ON {{s}}.revocations FOR EACH ROW EXECUTE FUNCTION {{s}}.{name}()"
    await admin.execute(sql(schema, trigger))


@contextlib.asynccontextmanager
async def locked(dsn: str, statement: str) -> AsyncIterator[None]:
    """Run ``statement`` (a lock) in a transaction held open on a connection of its own until the block ends."""
    locker = await asyncpg.connect(dsn)
    try:
        async with locker.transaction():
            await locker.execute(statement)
            yield
    finally:
        await locker.close()


class Feed:
    """Runs ``follow_revocations`` and records each delivery, or the ``StoreError`` that ended it."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.deliveries: list[tuple[list[Revocation], float]] = []
        self.error: StoreError | None = None
        self.ended = anyio.Event()
        self._clock = itertools.count(1)

    def now(self) -> float:
        return float(next(self._clock))  # an injected clock: each reading is later than the one before

    def deliver(self, entries: list[Revocation], as_of: float) -> None:
        self.deliveries.append((list(entries), as_of))

    @property
    def entries(self) -> list[Revocation]:
        return [entry for entries, _ in self.deliveries for entry in entries]

    async def start(self, group: TaskGroup, after: int = 0, heartbeat: float = 60.0) -> None:
        """Follow in ``group``; return once the catch-up is delivered."""
        group.start_soon(self.run, after, heartbeat)
        await eventually(lambda: self.deliveries)

    async def run(self, after: int, heartbeat: float) -> None:
        try:
            await self.store.follow_revocations(after, self.deliver, now=self.now, heartbeat=heartbeat)
        except StoreError as exc:
            self.error = exc
        finally:
            self.ended.set()


async def create(store: PostgresStore, *numbers: int, user_id: str = "user-1") -> None:
    for number in numbers:
        await store.create(make_record(number, user_id=user_id))


# --- the log ----------------------------------------------------------------------------------------


async def test_runs_the_revocation_log_conformance_check_for_real(factory: Factory, admin: Any, schema: str) -> None:
    store = factory()
    assert isinstance(store, RevocationLog)
    assert isinstance(store, RevocationFeed)
    assert not isinstance(store, RevocationProbe)
    await CONFORMANCE_CHECKS["revocation_log"](factory)
    # Not a no-op: the check wrote to and trimmed the store's own log.
    assert await admin.fetchval(sql(schema, "SELECT count(*) FROM {s}.revocations")) == 3
    assert await admin.fetchval(sql(schema, "SELECT last_seq FROM {s}.revocation_counter")) == 5


async def test_a_version_1_schema_gains_the_log_and_keeps_its_sessions(
    factory: Factory, admin: Any, schema: str
) -> None:
    async with factory() as store:
        await create(store, 1, 2)
    for statement in (
        "DROP TABLE {s}.leases",
        "ALTER TABLE {s}.sessions DROP COLUMN remember, DROP COLUMN idle_timeout",
        "DROP TABLE {s}.revocations",
        "DROP TABLE {s}.revocation_counter",
        "UPDATE {s}.schema_version SET version = 1",
    ):
        await admin.execute(sql(schema, statement))
    async with factory() as store:
        assert await store.get(handle_of(1)) == make_record(1)
        assert await store.delete([handle_of(2), handle_of(1)]) == [handle_of(2), handle_of(1)]
        assert await store.revocations_since(0) == [(1, handle_of(1)), (2, handle_of(2))]  # oldest session first
    assert await admin.fetchval(sql(schema, "SELECT version FROM {s}.schema_version")) == SCHEMA_VERSION


async def test_a_failed_log_write_rolls_back_the_deletion(factory: Factory, admin: Any, schema: str) -> None:
    async with factory() as store:
        await create(store, 1)
        await add_trigger(admin, schema, "refuse", "BEFORE INSERT", "RAISE EXCEPTION 'log refused';")
        with pytest.raises(StoreError, match="delete failed"):
            await store.delete([handle_of(1)])
        with pytest.raises(StoreError, match="delete_for_user failed"):
            await store.delete_for_user("user-1")
        assert await store.get(handle_of(1)) == make_record(1)
        assert await store.revocations_since(0) == []
        await admin.execute(sql(schema, "DROP TRIGGER refuse ON {s}.revocations"))
        assert await store.delete_for_user("user-1") == [handle_of(1)]
        assert await store.revocations_since(0) == [(1, handle_of(1))]


async def test_a_revocation_killed_mid_statement_leaves_neither_and_its_retry_logs_once(
    factory: Factory, admin: Any, schema: str, postgres_dsn: str
) -> None:
    async with factory() as store:
        await create(store, 1)
        outcome: list[BaseException | list[str]] = []

        async def revoke() -> None:
            try:
                outcome.append(await store.delete([handle_of(1)]))
            except StoreError as exc:
                outcome.append(exc)

        counter_locked = sql(schema, "SELECT 1 FROM {s}.revocation_counter FOR UPDATE")
        async with locked(postgres_dsn, counter_locked), anyio.create_task_group() as group:
            group.start_soon(revoke)
            # The session row is deleted (uncommitted) and the statement waits for the counter.
            pid = await backend_pid(admin, store.application_name, waiting_for_a_lock=True)
            assert await admin.fetchval(sql(schema, "SELECT count(*) FROM {s}.sessions")) == 1
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        assert isinstance(outcome[0], StoreError)
        assert "whether it was applied is unknown" in str(outcome[0])
        assert await store.get(handle_of(1)) == make_record(1)
        assert await store.revocations_since(0) == []
        assert await store.delete([handle_of(1)]) == [handle_of(1)]
        assert await store.delete([handle_of(1)]) == []  # the caller's second retry: nothing more is logged
        assert await store.revocations_since(0) == [(1, handle_of(1))]


async def test_a_lost_response_after_commit_is_logged_once_whatever_the_caller_retries(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fetch = asyncpg.connection.Connection.fetch

    async def commit_then_lose_the_response(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        result = await real_fetch(self, query, *args, **kwargs)
        if query.startswith("WITH d AS (DELETE"):
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return result

    async with factory() as store:
        await create(store, 1, 2)
        monkeypatch.setattr(asyncpg.connection.Connection, "fetch", commit_then_lose_the_response)
        with pytest.raises(StoreError, match="whether it was applied is unknown"):
            await store.delete([handle_of(1)])
        with pytest.raises(StoreError, match="whether it was applied is unknown"):
            await store.delete_for_user("user-1")
        monkeypatch.undo()
        assert await store.delete([handle_of(1), handle_of(2)]) == []
        assert await store.delete_for_user("user-1") == []
        assert await store.revocations_since(0) == [(1, handle_of(1)), (2, handle_of(2))]


async def test_notifies_its_schema_channel_once_per_revoking_commit_and_never_for_nothing(
    factory: Factory, admin: Any, schema: str, postgres_dsn: str
) -> None:
    other = PostgresStore(postgres_dsn, schema=unique_name("rev"))
    assert schema in factory().revocation_channel
    assert other.revocation_channel != factory().revocation_channel
    long_schema = PostgresStore(postgres_dsn, schema="s" * 63)  # too long for the prefix: hashed
    assert len(long_schema.revocation_channel) <= 63
    send, receive = anyio.create_memory_object_stream[str](100)
    async with factory() as store, send, receive:
        await create(store, 1, 2, 3)
        await store.create(make_record(9, expires_at=T0 + 1))
        await admin.add_listener(store.revocation_channel, lambda *args: send.send_nowait(args[3]))
        assert await store.delete([handle_of(404)]) == []
        assert await store.delete_for_user("nobody") == []
        assert await store.delete_expired(T0 + 2) == 1
        await store.delete([handle_of(1), handle_of(2)])
        await store.delete_for_user("user-1", "public")
        with anyio.fail_after(5):
            # Notifications arrive in commit order: a notice for nothing would come first.
            assert await receive.receive() == "2"
            assert await receive.receive() == "3"
        assert await store.revocations_since(0) == [(1, handle_of(1)), (2, handle_of(2)), (3, handle_of(3))]


async def test_concurrent_revokers_never_let_a_reader_skip_an_entry(factory: Factory, admin: Any, schema: str) -> None:
    """20 revokers on their own connections, through four stores (four processes), against a polling reader.

    A trigger sleeps a few milliseconds after each log insert, widening the window between a revocation getting its
    number and committing: numbers committed out of order would make the reader skip some.
    """
    revokers, each = 20, 5
    writers = [factory(min_size=5, max_size=5) for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        for writer in writers:
            await stack.enter_async_context(writer)
        reader = await stack.enter_async_context(factory())
        for task in range(revokers):
            for i in range(each):
                await writers[0].create(make_record(task * each + i, user_id=f"user-{task}-{i % 2}"))
        await add_trigger(admin, schema, "dawdle", "AFTER INSERT", "PERFORM pg_sleep(random() * 0.004); RETURN NULL;")
        seen: list[Revocation] = []
        storm_over = anyio.Event()

        async def read_until_the_storm_is_over() -> None:
            while True:
                over = storm_over.is_set()  # read once more after the storm: everything committed by then
                seen.extend(await reader.revocations_since(seen[-1][0] if seen else 0, limit=7))
                if over:
                    return
                await anyio.lowlevel.checkpoint()

        async def revoke(task: int) -> None:
            writer = writers[task % len(writers)]
            await writer.delete_for_user(f"user-{task}-1")  # two sessions in one statement
            for i in range(0, each, 2):
                await writer.delete([handle_of(task * each + i)])

        async with anyio.create_task_group() as readers:
            readers.start_soon(read_until_the_storm_is_over)
            async with anyio.create_task_group() as storm:
                for task in range(revokers):
                    storm.start_soon(revoke, task)
            storm_over.set()
        while batch := await reader.revocations_since(seen[-1][0], limit=7):  # the last read was limited
            seen.extend(batch)
    numbers = [seq for seq, _ in seen]
    assert numbers == list(range(1, revokers * each + 1))  # ascending, each once, none skipped
    assert sorted(handle for _, handle in seen) == sorted(handle_of(n) for n in range(revokers * each))


# --- the feed ---------------------------------------------------------------------------------------


async def test_feed_delivers_the_catch_up_then_each_pushed_entry_in_order_until_cancelled(
    factory: Factory, admin: Any
) -> None:
    async with factory() as store:
        await create(store, 1, 2, 3, 4)
        await create(store, 5, 6, user_id="user-2")
        await store.delete([handle_of(1), handle_of(2)])
        feed = Feed(store)
        async with anyio.create_task_group() as group:
            await feed.start(group, 1)  # from position 1; a heartbeat too long to be what delivers below
            assert feed.deliveries == [([(2, handle_of(2))], 1.0)]
            await store.delete([handle_of(3)])
            await eventually(lambda: len(feed.entries) == 2)  # pushed: NOTIFY woke the feed
            await store.delete_for_user("user-2")
            await store.delete([handle_of(4)])
            await eventually(lambda: len(feed.entries) == 5)
            assert feed.entries == await store.revocations_since(1)
            assert [seq for seq, _ in feed.entries] == [2, 3, 4, 5, 6]
            times = [as_of for _, as_of in feed.deliveries]
            assert times == sorted(set(times))  # each delivery is current as of a later reading of the clock
            assert await admin.fetchval(_GONE, store.feed_application_name) is False
            group.cancel_scope.cancel()  # while it waits for a notification
        assert feed.error is None
        await until_closed(admin, store.feed_application_name)


async def test_feed_confirms_an_idle_log_with_empty_deliveries(factory: Factory) -> None:
    async with factory() as store, anyio.create_task_group() as group:
        feed = Feed(store)
        await feed.start(group, heartbeat=0.05)
        await eventually(lambda: len(feed.deliveries) >= 4)
        group.cancel_scope.cancel()
    assert all(entries == [] for entries, _ in feed.deliveries)


async def test_feed_finds_an_entry_whose_notification_never_came(factory: Factory, admin: Any, schema: str) -> None:
    async with factory() as store, anyio.create_task_group() as group:
        await create(store, 1)
        feed = Feed(store)
        await feed.start(group, heartbeat=0.2)
        async with admin.transaction():  # a revocation by hand, without NOTIFY
            await admin.execute(sql(schema, "DELETE FROM {s}.sessions WHERE handle = $1"), handle_of(1))
            await admin.execute(sql(schema, "UPDATE {s}.revocation_counter SET last_seq = 1"))
            await admin.execute(sql(schema, "INSERT INTO {s}.revocations VALUES (1, $1)"), handle_of(1))
        await eventually(lambda: feed.entries == [(1, handle_of(1))])  # by the next heartbeat's read
        group.cancel_scope.cancel()


async def test_feed_raises_when_its_backend_is_terminated_and_resumes_without_loss(
    factory: Factory, admin: Any
) -> None:
    async with factory() as store:
        await create(store, 1, 2, 3)
        await store.delete([handle_of(1)])
        first, second = Feed(store), Feed(store)
        async with anyio.create_task_group() as group:
            await first.start(group)
            pid = await backend_pid(admin, store.feed_application_name)
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            await eventually(first.ended.is_set)  # the connection's end wakes the loop: no heartbeat to wait for
        assert first.error is not None
        assert "follow_revocations failed" in str(first.error)
        await store.delete([handle_of(2)])  # while no feed runs
        async with anyio.create_task_group() as group:
            await second.start(group, first.entries[-1][0])
            await store.delete([handle_of(3)])
            await eventually(lambda: len(second.entries) == 2)
            group.cancel_scope.cancel()
        assert first.entries + second.entries == [(1, handle_of(1)), (2, handle_of(2)), (3, handle_of(3))]
        await until_closed(admin, store.feed_application_name)


async def test_cancelling_the_feed_mid_read_closes_its_connection(
    factory: Factory, admin: Any, schema: str, postgres_dsn: str
) -> None:
    async with factory() as store:
        feed = Feed(store)
        async with anyio.create_task_group() as group:
            await feed.start(group, heartbeat=0.05)
            async with locked(postgres_dsn, sql(schema, "LOCK TABLE {s}.revocations IN ACCESS EXCLUSIVE MODE")):
                await backend_pid(admin, store.feed_application_name, waiting_for_a_lock=True)
                group.cancel_scope.cancel()
        assert feed.error is None
        await until_closed(admin, store.feed_application_name)
        assert await store.revocations_since(0) == []  # the store's own connections are untouched


async def test_a_feed_read_that_hangs_raises_after_command_timeout(
    factory: Factory, admin: Any, schema: str, postgres_dsn: str
) -> None:
    async with factory(command_timeout=0.5) as store:
        feed = Feed(store)
        async with anyio.create_task_group() as group:
            await feed.start(group, heartbeat=0.05)
            async with locked(postgres_dsn, sql(schema, "LOCK TABLE {s}.revocations IN ACCESS EXCLUSIVE MODE")):
                await eventually(feed.ended.is_set)
        assert feed.error is not None
        assert "follow_revocations failed (timed out)" in str(feed.error)
        await until_closed(admin, store.feed_application_name)


async def test_feed_needs_an_open_store_and_a_valid_heartbeat_and_ends_when_the_store_closes(
    factory: Factory, admin: Any
) -> None:
    store = factory()
    feed = Feed(store)
    with pytest.raises(StoreError, match="not open"):
        await store.follow_revocations(0, feed.deliver, now=feed.now, heartbeat=1.0)
    await store.open()
    for heartbeat in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigurationError, match="heartbeat"):
            await store.follow_revocations(0, feed.deliver, now=feed.now, heartbeat=heartbeat)
    async with anyio.create_task_group() as group:
        await feed.start(group)
        await store.close()
        await eventually(feed.ended.is_set)
    assert feed.error is not None
    await until_closed(admin, store.feed_application_name)
