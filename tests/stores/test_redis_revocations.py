"""RedisStore's revocation log (written by the delete script) and its feed (blocking reads, timed confirmations).

Nothing here asserts a duration beyond generous bounds: the feed is judged by what it delivers and in what order.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
import redis
import redis.asyncio as aioredis

from asgi_session.exceptions import ConfigurationError, StoreError
from asgi_session.stores import _redis_feed
from asgi_session.stores.base import Revocation, RevocationFeed, RevocationLog, RevocationLogRewound, RevocationProbe
from asgi_session.stores.redis import RedisStore
from asgi_session.testing import CONFORMANCE_CHECKS
from asgi_session.testing._records import T0, handle_of, make_record
from tests._store_urls import delete_redis_keys, redis_keys, unique_name

pytestmark = pytest.mark.anyio

Factory = Callable[..., RedisStore]


@pytest.fixture
async def factory(redis_url: str) -> AsyncIterator[Factory]:
    """Builds an unopened store under a new prefix (or the ``prefix=`` given); every key is removed afterwards."""
    used: list[str] = []

    def build(source: aioredis.Redis | str = redis_url, **options: Any) -> RedisStore:
        options.setdefault("prefix", unique_name("rev"))
        used.append(options["prefix"])
        return RedisStore(source, **options)

    yield build
    with anyio.CancelScope(shield=True):
        for prefix in used:
            await anyio.to_thread.run_sync(delete_redis_keys, redis_url, prefix)
            assert await anyio.to_thread.run_sync(redis_keys, redis_url, prefix) == []


class Recorder:
    """A ``deliver`` callback that keeps every call, and lets the test wait for the calls it expects."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Revocation], float]] = []
        self.failure: StoreError | None = None
        self._changed = anyio.Event()

    def __call__(self, entries: list[Revocation], as_of: float) -> None:
        self.calls.append((list(entries), as_of))
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def entries(self) -> list[Revocation]:
        return [entry for batch, _ in self.calls for entry in batch]

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds after a call; five seconds at most."""
        with anyio.fail_after(5):
            while not condition():
                await self._changed.wait()

    async def run(self, store: RedisStore, after: int, *, now: Callable[[], float], heartbeat: float) -> None:
        """The feed, its StoreError kept (so a task group survives it)."""
        try:
            await store.follow_revocations(after, self, now=now, heartbeat=heartbeat)
        except StoreError as exc:
            self.failure = exc
            self._notify()


def ticks() -> Callable[[], float]:
    counter = itertools.count(1)
    return lambda: float(next(counter))


async def feed_connections(admin: aioredis.Redis, store: RedisStore) -> list[str]:
    return [client["id"] for client in await admin.client_list() if client["name"] == f"{store.prefix}:feed"]


async def revoke(store: RedisStore, *numbers: int) -> None:
    for number in numbers:
        await store.create(make_record(number))
    assert await store.delete([handle_of(number) for number in numbers]) == [handle_of(n) for n in numbers]


# --- the log -----------------------------------------------------------------------------------------


def test_redis_store_has_a_log_and_a_feed_but_no_probe() -> None:
    store = RedisStore("redis://127.0.0.1:6379/0")
    assert isinstance(store, RevocationLog)
    assert isinstance(store, RevocationFeed)
    assert not isinstance(store, RevocationProbe)  # Redis cannot be read without awaiting


async def test_the_revocation_log_check_runs_on_redis(factory: Factory, admin: aioredis.Redis) -> None:
    """The conformance check is no no-op here: the store it built logged its five deletions."""
    built: list[RedisStore] = []

    def build() -> RedisStore:
        built.append(factory())
        return built[-1]

    await CONFORMANCE_CHECKS["revocation_log"](build)
    assert [await admin.get(f"{store.prefix}:{{revocations}}:seq") for store in built] == ["5"]


async def test_deletes_log_exactly_what_they_deleted(factory: Factory, admin: aioredis.Redis) -> None:
    async with factory() as store:
        log, counter = f"{store.prefix}:{{revocations}}", f"{store.prefix}:{{revocations}}:seq"
        for number in (1, 2, 3):
            await store.create(make_record(number))
        await store.create(make_record(4, user_id="user-2", expires_at=T0 + 1))
        assert await store.delete([handle_of(1), handle_of(404), handle_of(1)]) == [handle_of(1)]
        assert await admin.xrange(log) == [("1-0", {"handle": handle_of(1)})]
        assert await store.delete([handle_of(404)]) == []  # nothing deleted: nothing logged
        assert await store.delete_expired(T0 + 2) == 1  # an expiry is no revocation
        assert await admin.get(counter) == "1"
        assert await store.delete_for_user("user-1") == [handle_of(2), handle_of(3)]
        assert await store.revocations_since(0) == [(1, handle_of(1)), (2, handle_of(2)), (3, handle_of(3))]
        assert await admin.get(counter) == "3"
        assert await admin.pttl(log) == await admin.pttl(counter) == -1  # only a trim shortens the log


async def test_delete_expired_writes_no_log_key(factory: Factory, admin: aioredis.Redis) -> None:
    async with factory() as store:
        await store.create(make_record(1, expires_at=T0 + 1))
        assert await store.delete_expired(T0 + 2) == 1
        assert [key async for key in admin.scan_iter(match=f"{store.prefix}:*")] == []


async def test_a_log_that_cannot_be_written_fails_the_delete_before_it_deletes(
    factory: Factory, admin: aioredis.Redis
) -> None:
    """Log first, then delete: a session is never gone without its revocation logged."""
    async with factory() as store:
        log = f"{store.prefix}:{{revocations}}"
        await store.create(make_record(1))
        await admin.set(log, "not a stream")
        with pytest.raises(StoreError, match="WRONGTYPE"):
            await store.delete([handle_of(1)])
        assert await store.get(handle_of(1)) == make_record(1)
        with pytest.raises(StoreError, match="WRONGTYPE"):
            await store.delete_for_user("user-1")
        assert await store.get(handle_of(1)) == make_record(1)
        await admin.delete(log)
        assert await store.delete_for_user("user-1") == [handle_of(1)]
        assert [handle for _, handle in await store.revocations_since(0)] == [handle_of(1)]


async def test_numbers_go_on_after_a_trim_and_after_the_counter_is_lost(
    factory: Factory, admin: aioredis.Redis
) -> None:
    async with factory() as store:
        await revoke(store, 1, 2)
        assert await store.trim_revocations(2) == 2
        assert await store.revocations_since(0) == []
        await admin.delete(f"{store.prefix}:{{revocations}}:seq")  # an operator's mistake
        await revoke(store, 3)
        assert await store.revocations_since(0) == [(3, handle_of(3))]  # from the stream's last id, not from 1


async def test_a_revoke_all_of_many_sessions_is_logged_in_order_and_trimmed_in_batches(factory: Factory) -> None:
    async with factory() as store:
        handles = [handle_of(n) for n in range(1, 1201)]  # more than two delete scripts, more than two trim batches
        for number in range(1, 1201):
            await store.create(make_record(number))
        assert sorted(await store.delete_for_user("user-1")) == handles
        log = await store.revocations_since(0, 2000)
        assert [seq for seq, _ in log] == list(range(1, 1201))
        assert sorted(handle for _, handle in log) == handles
        assert await store.revocations_since(1000, 50) == log[1000:1050]
        assert await store.revocations_since(-5, 0) == []
        assert await store.trim_revocations(0) == 0
        assert await store.trim_revocations(1100) == 1100
        assert await store.revocations_since(0) == log[1100:]


# --- the feed ----------------------------------------------------------------------------------------


@pytest.fixture
def log_clock(redis_url: str, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Callable[[], float]]]:
    """A ``now()`` for the feed that reads the log's counter: "every entry committed before now()" is then exact.

    Synchronous, as ``now`` must be; each reading is a round trip on a client of its own.
    """
    client = redis.Redis.from_url(redis_url)

    def clock_of(prefix: str) -> Callable[[], float]:
        return lambda: float(client.get(f"{prefix}:{{revocations}}:seq") or 0)

    try:
        yield clock_of
    finally:
        client.close()


@pytest.mark.parametrize("source", ["url", "client", "client-resp3"])
async def test_feed_delivers_a_catch_up_then_every_entry_in_order(
    factory: Factory, redis_url: str, log_clock: Callable[[str], Callable[[], float]], source: str
) -> None:
    client = None if source == "url" else aioredis.Redis.from_url(redis_url, protocol=3 if "3" in source else 2)
    recorder = Recorder()
    try:
        async with factory(client or redis_url) as store:
            await revoke(store, 1, 2, 3)
            now = log_clock(store.prefix)
            async with anyio.create_task_group() as group:
                group.start_soon(functools.partial(recorder.run, store, 1, now=now, heartbeat=0.2))
                await recorder.wait_for(lambda: len(recorder.calls) >= 1)
                assert recorder.calls[0] == ([(2, handle_of(2)), (3, handle_of(3))], 3.0)  # the catch-up
                async with anyio.create_task_group() as revokers:  # concurrent deletes, several per script
                    for start in range(10, 70, 5):
                        revokers.start_soon(revoke, store, *range(start, start + 5))
                await recorder.wait_for(lambda: len(recorder.entries) == 62)
                group.cancel_scope.cancel()
            assert recorder.failure is None
            assert recorder.entries == await store.revocations_since(1)  # in order, nothing twice, nothing missed
            delivered = 1
            for entries, as_of in recorder.calls:
                delivered = entries[-1][0] if entries else delivered
                assert delivered >= as_of  # every entry committed before the reading was delivered by then
    finally:
        if client is not None:
            await client.aclose()


async def test_an_idle_feed_sends_heartbeats(factory: Factory) -> None:
    recorder = Recorder()
    async with factory() as store, anyio.create_task_group() as group:
        started = anyio.current_time()
        group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=0.1))
        await recorder.wait_for(lambda: len(recorder.calls) >= 6)
        elapsed = anyio.current_time() - started
        group.cancel_scope.cancel()
    assert all(entries == [] for entries, _ in recorder.calls)  # the catch-up, then heartbeats
    readings = [as_of for _, as_of in recorder.calls]
    assert readings == sorted(set(readings))  # each confirms a later reading than the one before
    assert elapsed >= 0.25  # the feed waited between heartbeats: it does not spin


async def test_heartbeats_do_not_wait_for_the_server_to_end_a_blocking_read(
    factory: Factory, admin: aioredis.Redis
) -> None:
    """Regression: Redis ends a timed-out blocking read on its own ``hz`` tick (up to 100 ms late when idle).

    Heartbeats used to be those reads' empty returns, so with ``revocation_max_lag=0.1`` a manager found its view
    stale on about 4 % of requests under load, and read the store for them. Now a confirmation is a read the client
    times. With ``hz`` at 1, ten heartbeats that waited for the server's tick would take about ten seconds; timed by
    the client they come within the recorder's five.
    """
    hz = str((await admin.config_get("hz"))["hz"])
    recorder = Recorder()
    try:
        await admin.config_set("hz", 1)
        async with factory() as store, anyio.create_task_group() as group:
            group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=0.02))
            await recorder.wait_for(lambda: len(recorder.calls) >= 10)
            group.cancel_scope.cancel()
    finally:
        await admin.config_set("hz", hz)
    assert recorder.failure is None
    assert all(entries == [] for entries, _ in recorder.calls)


async def test_a_killed_feed_raises_store_error_and_a_restart_loses_nothing(
    factory: Factory, admin: aioredis.Redis
) -> None:
    first, second = Recorder(), Recorder()
    async with factory() as store:
        await revoke(store, 1)
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(first.run, store, 0, now=ticks(), heartbeat=0.2))
            await first.wait_for(lambda: len(first.calls) >= 2)  # the catch-up, and the blocking read is under way
            for client_id in await feed_connections(admin, store):
                await admin.client_kill_filter(_id=client_id)
            await first.wait_for(lambda: first.failure is not None)
        assert str(first.failure).startswith("Redis store: follow_revocations failed (ConnectionError")
        await revoke(store, 2, 3)  # while no feed runs
        position = first.entries[-1][0]
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(second.run, store, position, now=ticks(), heartbeat=0.2))
            await second.wait_for(lambda: len(second.calls) >= 1)
            group.cancel_scope.cancel()
        assert first.entries + second.calls[0][0] == [(1, handle_of(1)), (2, handle_of(2)), (3, handle_of(3))]


async def test_no_heartbeat_while_the_server_is_paused_then_delivery_resumes(
    factory: Factory, admin: aioredis.Redis
) -> None:
    """A paused server sends no confirmation, so a manager sees the feed fall behind; afterwards it catches up."""
    recorder = Recorder()
    async with factory() as store:
        await store.create(make_record(1))
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=0.05))
            await recorder.wait_for(lambda: len(recorder.calls) >= 3)
            await admin.client_pause(1500, all=True)  # every command waits, the feed's reads too
            before = len(recorder.calls)
            assert await store.delete([handle_of(1)]) == [handle_of(1)]  # returns only once the pause is over
            during = len(recorder.calls) - before
            await recorder.wait_for(lambda: (1, handle_of(1)) in recorder.entries)
            resumed = len(recorder.calls)
            await recorder.wait_for(lambda: len(recorder.calls) >= resumed + 3)  # heartbeats again
            group.cancel_scope.cancel()
    assert recorder.failure is None
    # The replies under way when the pause began, and those right after it ended; unpaused, about 30 would come.
    assert during <= 4


async def test_a_pause_longer_than_the_bound_ends_the_feed_with_store_error(
    factory: Factory, admin: aioredis.Redis
) -> None:
    """No reply within heartbeat + socket_timeout: the feed gives up, it never hangs on a silent server."""
    recorder = Recorder()
    async with factory(socket_timeout=0.3) as store, anyio.create_task_group() as group:
        group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=0.1))
        await recorder.wait_for(lambda: len(recorder.calls) >= 2)
        await admin.client_pause(2500, all=True)
        await recorder.wait_for(lambda: recorder.failure is not None)
    assert str(recorder.failure).startswith("Redis store: follow_revocations failed (TimeoutError")


async def test_cancelling_the_feed_closes_its_connection(factory: Factory, admin: aioredis.Redis) -> None:
    recorder = Recorder()
    async with factory() as store:
        for _ in range(2):  # once while blocked in a read, once right at the start
            async with anyio.create_task_group() as group:
                group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=5))
                await recorder.wait_for(lambda: len(recorder.calls) >= 1)
                assert len(await feed_connections(admin, store)) == 2  # the push and the confirming connection
                group.cancel_scope.cancel()
            with anyio.fail_after(5):
                while await feed_connections(admin, store):  # noqa: ASYNC110 - the server's state, polled
                    await anyio.sleep(0.01)
            recorder.calls.clear()
        assert recorder.failure is None


async def test_the_feed_never_holds_a_pooled_connection(factory: Factory, redis_url: str) -> None:
    """A client passed in with one connection: the feed blocks on a connection of its own, so the store goes on."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=1)
    client = aioredis.Redis.from_pool(pool)
    recorder = Recorder()
    try:
        async with factory(client) as store, anyio.create_task_group() as group:
            group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=5))
            await recorder.wait_for(lambda: len(recorder.calls) >= 1)
            await revoke(store, 1)
            await recorder.wait_for(lambda: recorder.entries == [(1, handle_of(1))])
            group.cancel_scope.cancel()
    finally:
        await client.aclose()


async def test_the_feed_runs_unnamed_where_an_acl_forbids_naming_it(
    factory: Factory, admin: aioredis.Redis, redis_url: str
) -> None:
    """Redis 6 files CLIENT SETNAME under @dangerous, which the ACL in docs/security.md removes."""
    user, prefix = unique_name("acl"), unique_name("rev")
    categories = ["-@all", "+@read", "+@write", "+@scripting", "+@connection"]
    commands = ["+time", "-client|setname"]
    await admin.acl_setuser(
        user,
        enabled=True,
        reset=True,
        passwords=["+s3cret"],
        keys=[f"{prefix}:*"],
        categories=categories,
        commands=commands,
    )
    recorder = Recorder()
    try:
        parts = urlsplit(redis_url)
        url = urlunsplit(parts._replace(netloc=f"{user}:s3cret@{parts.netloc.rpartition('@')[2]}"))
        async with factory(url, prefix=prefix) as store, anyio.create_task_group() as group:
            group.start_soon(functools.partial(recorder.run, store, 0, now=ticks(), heartbeat=5))
            await recorder.wait_for(lambda: len(recorder.calls) >= 1)
            assert await feed_connections(admin, store) == []
            await revoke(store, 1)
            await recorder.wait_for(lambda: recorder.entries == [(1, handle_of(1))])
            group.cancel_scope.cancel()
    finally:
        await admin.acl_deluser(user)
    assert recorder.failure is None


async def test_the_feed_refuses_a_closed_store_and_a_bad_heartbeat(factory: Factory) -> None:
    store = factory()
    with pytest.raises(StoreError, match="not open"):
        await store.follow_revocations(0, Recorder(), now=ticks(), heartbeat=1)
    async with store:
        for heartbeat in (0, -1, float("inf"), float("nan"), True):
            with pytest.raises(ConfigurationError, match="heartbeat"):
                await store.follow_revocations(0, Recorder(), now=ticks(), heartbeat=heartbeat)


def test_entries_pushed_while_a_confirmation_is_on_its_way_are_not_taken_for_a_rewind() -> None:
    """Regression: the confirming read saw the log end at 4; before its reply was handled, the push side delivered
    entries 5 and 6, committed after that read. Compared with the new position, 4 looked like a log gone back, and
    the feed restarted with a warning that the server had lost data (seen 1-26 times a run in the scale benchmark).
    """
    calls: list[tuple[list[Revocation], float]] = []
    feed = _redis_feed._Feed("log", lambda entries, as_of: calls.append((entries, as_of)), now=lambda: 0.0)
    feed.delivered([(n, handle_of(n)) for n in range(1, 4)], 1.0)
    before = feed.position  # 3, when the confirming read is sent
    feed.delivered([(n, handle_of(n)) for n in range(4, 7)], 2.0)  # pushed meanwhile
    feed.confirmed(4, 1.5, before)  # no RevocationLogRewound: 4 >= what was delivered before the read
    assert calls[-1] == ([], 2.0)
    with pytest.raises(RevocationLogRewound):
        feed.confirmed(2, 3.0, feed.position)  # below what was delivered before the read: the log did go back
