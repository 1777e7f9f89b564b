"""The scheduled cleanup: expired sessions deleted in the background, one process per interval across a store.

Time is a fake clock throughout: ``run_once`` is driven directly, and the background schedule started by the
middleware's lifespan is watched with the real-time tick shortened, advancing only the fake clock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette

from asgi_session import ConfigurationError, SessionConfig, SessionManager, SessionMiddleware, StoreError, _cleanup
from asgi_session._cleanup import ScheduledCleanup
from asgi_session.stores import MemoryStore, store_from_url
from asgi_session.testing import FakeClock
from tests._store_urls import STORE_KINDS, async_shared_store_url, redis_keys

pytestmark = pytest.mark.anyio

DAY = 86400.0
CONFIG = SessionConfig(refresh_token_validity=timedelta(days=1), cleanup_interval=600)


def test_cleanup_interval_default_and_validation() -> None:
    assert SessionConfig().cleanup_interval == 3600
    assert SessionConfig(cleanup_interval=None).cleanup_interval is None
    assert SessionConfig(cleanup_interval=0.5).cleanup_interval == 0.5
    for bad in (0, -1, math.nan, math.inf, True, "60"):
        with pytest.raises(ConfigurationError, match="cleanup_interval"):
            SessionConfig(cleanup_interval=bad)  # type: ignore[arg-type]


async def test_run_once_deletes_expired_sessions(clock: FakeClock) -> None:
    async with SessionManager(store=MemoryStore(), config=CONFIG, clock=clock) as manager:
        old = await manager.create_new_session_without_request_response("alice")
        clock.advance(DAY / 2)
        young = await manager.create_new_session_without_request_response("alice")
        clock.advance(DAY / 2)  # the first is expired now, the second is not
        cleanup = ScheduledCleanup(manager, 600)
        assert await cleanup.run_once() == 1
        assert await manager.store.get(old.handle) is None
        assert await manager.store.get(young.handle) is not None
        assert (cleanup.runs, cleanup.deleted) == (1, 1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize("kind", ["memory", *STORE_KINDS])
async def test_two_managers_on_one_store_take_turns(
    kind: str, clock: FakeClock, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    pair = _store_pair(kind, request, tmp_path)
    async with pair as (first_store, second_store):
        first = SessionManager(store=first_store, config=CONFIG, clock=clock)
        second = SessionManager(store=second_store, config=CONFIG, clock=clock)
        async with first, second:
            a, b = ScheduledCleanup(first, 600), ScheduledCleanup(second, 600)
            await first.create_new_session_without_request_response("alice")
            clock.advance(10)
            await second.create_new_session_without_request_response("bob")
            clock.advance(DAY - 5)  # alice's session has expired, bob's not yet
            assert await a.run_once() == 1  # a has the next 600 s
            clock.advance(10)  # bob's has expired too
            assert await b.run_once() is None  # b skips: the interval is a's
            clock.advance(589)
            assert await b.run_once() is None
            clock.advance(1)
            assert await b.run_once() == 1  # a's interval ended: b takes the next one
            assert await a.run_once() is None
            assert (a.runs, b.runs) == (1, 1)


@asynccontextmanager
async def _store_pair(kind: str, request: pytest.FixtureRequest, folder: Path) -> AsyncIterator[tuple[Any, Any]]:
    """Two store objects on one backend (two managers as two processes would have), or one shared MemoryStore."""
    if kind == "memory":
        store = MemoryStore()
        yield store, store
        return
    async with async_shared_store_url(kind, request, folder) as url:
        yield store_from_url(url), store_from_url(url)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan around the block."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    async with anyio.create_task_group() as group, to_app, from_app, app_inbox, app_outbox:
        group.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}}, app_inbox.receive, app_outbox.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        yield
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


async def eventually(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - polls what a background task counts
            await anyio.sleep(0.005)


@pytest.fixture
def fast_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cleanup, "_TICK", 0.005)


async def test_the_lifespan_runs_the_schedule(clock: FakeClock, fast_tick: None) -> None:
    manager = SessionManager(store=MemoryStore(), config=CONFIG, clock=clock)
    middleware = SessionMiddleware(Starlette(), manager=manager)
    schedule = middleware._cleanup
    assert schedule is not None
    await manager.create_new_session_without_request_response("alice")
    clock.advance(DAY + 1)
    async with lifespan(middleware):
        assert schedule.running
        await anyio.sleep(0.05)
        assert schedule.runs == 0  # the first run comes a minute (of the manager's clock) after startup
        clock.advance(60)
        await eventually(lambda: schedule.runs == 1)
        assert schedule.deleted == 1
        clock.advance(599)
        await anyio.sleep(0.05)
        assert schedule.runs == 1  # not before the interval has passed
        clock.advance(1)
        await eventually(lambda: schedule.runs == 2)
    assert not schedule.running  # shutdown stopped it
    assert not manager.opened


async def test_no_schedule_when_turned_off() -> None:
    manager = SessionManager(store=MemoryStore(), config=SessionConfig(cleanup_interval=None))
    middleware = SessionMiddleware(Starlette(), manager=manager)
    assert middleware._cleanup is None
    async with lifespan(middleware):
        assert manager.opened


class FailingCleanupStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def delete_expired(self, now: float) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreError("store down")
        return await super().delete_expired(now)


async def test_a_failed_run_is_logged_and_retried(
    clock: FakeClock, fast_tick: None, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingCleanupStore()
    manager = SessionManager(store=store, config=CONFIG, clock=clock)
    middleware = SessionMiddleware(Starlette(), manager=manager)
    schedule = middleware._cleanup
    assert schedule is not None
    async with lifespan(middleware):
        clock.advance(60)
        await eventually(lambda: store.failures == 0)
        await eventually(lambda: "scheduled cleanup failed (store down)" in caplog.text)
        assert schedule.running
        assert schedule.runs == 0
        clock.advance(60)  # the retry comes a minute later, not an interval later
        await eventually(lambda: schedule.runs == 1)


async def test_the_redis_expiry_index_is_emptied_by_the_schedule(
    clock: FakeClock, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Sessions whose keys the Redis TTL removed leave index entries; the scheduled cleanup removes them."""
    import redis.asyncio as aioredis

    async with async_shared_store_url("redis", request, tmp_path) as url:
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = url.rpartition("prefix=")[2]
        admin = aioredis.Redis.from_url(redis_url)
        try:
            async with SessionManager(store=store_from_url(url), config=CONFIG, clock=clock) as manager:
                handles = [
                    (await manager.create_new_session_without_request_response(f"u{n}")).handle for n in range(5)
                ]
                # The expiry index: one shard per bucket of users (RedisStore's key layout).
                shards = [key for key in redis_keys(redis_url, prefix) if key.endswith(b":expiry")]
                assert sum([await admin.zcard(shard) for shard in shards]) == 5
                for key in redis_keys(redis_url, prefix):  # what the TTL does at expires_at + leeway
                    if b"{s:" in key:
                        await admin.delete(key)
                clock.advance(DAY + 1)
                assert await ScheduledCleanup(manager, 600).run_once() == 0  # nothing left to delete...
                left = [key for key in redis_keys(redis_url, prefix) if b"{b:" in key]
                assert left == []  # ... but the indexes are empty again
                assert [await manager.store.get(handle) for handle in handles] == [None] * 5
        finally:
            await admin.aclose()
