"""The feed follower: trusts the view only while the feed is current within revocation_max_lag, else reads."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from asgi_session import SessionConfig, SessionManager, StoreError, UnauthorisedError
from asgi_session.stores import MemoryStore
from asgi_session.stores.base import Revocation
from asgi_session.testing import FakeClock
from tests._helpers import CountingStore

pytestmark = pytest.mark.anyio


class PushingStore(CountingStore):
    """A memory store whose log is pushed through a test-controlled feed (no synchronous probe)."""

    probe_revocations = None  # type: ignore[assignment]  # a pushing store cannot be probed

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: anyio.abc.ObjectSendStream[tuple[list[Revocation], float] | Exception] | None = None
        self.starts = 0

    async def follow_revocations(
        self,
        after: int,
        deliver: Callable[[list[Revocation], float], None],
        *,
        now: Callable[[], float],
        heartbeat: float,
    ) -> None:
        self.starts += 1
        send, receive = anyio.create_memory_object_stream[tuple[list[Revocation], float] | Exception](10)
        self.deliveries = send
        deliver(await self.revocations_since(after), now())
        async with send, receive:
            async for item in receive:
                if isinstance(item, Exception):
                    raise item
                deliver(*item)


async def _settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_a_fresh_feed_answers_from_memory_and_a_late_one_falls_back_to_the_store() -> None:
    store, clock = PushingStore(), FakeClock()
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=0.2)
    async with SessionManager(store, config, clock=clock) as manager:
        await _settle()
        session = await manager.create_new_session_without_request_response("alice")
        store.reset()
        assert manager.verify_now(session.access_token) is not None
        assert store.calls["get"] == 0  # answered from memory: the feed confirmed just now
        clock.advance(0.5)  # no confirmation for longer than the bound
        assert manager.verify_now(session.access_token) is None  # not trusted: the async path reads the store
        assert await manager.get_session_without_request_response(session.access_token) is not None
        assert store.calls["get"] == 1
        assert store.deliveries is not None
        await store.deliveries.send(([], clock.now()))  # a heartbeat
        await _settle()
        assert manager.verify_now(session.access_token) is not None


async def test_a_pushed_revocation_is_refused_and_a_lost_feed_restarts(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = PushingStore(), FakeClock()
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=0.2)
    other = SessionManager(store, SessionConfig(), clock=clock)  # another process, as far as the log knows
    async with SessionManager(store, config, clock=clock) as manager, other:
        await _settle()
        session = await manager.create_new_session_without_request_response("alice")
        await other.revoke_session(session.handle)
        assert manager.verify_now(session.access_token) is not None  # not pushed yet: within the bound
        assert store.deliveries is not None
        await store.deliveries.send((await store.revocations_since(0), clock.now()))
        await _settle()
        with pytest.raises(UnauthorisedError):
            manager.verify_now(session.access_token)
        with caplog.at_level(logging.WARNING, logger="asgi_session"):
            await store.deliveries.send(StoreError("connection lost"))
            await _settle()
            assert manager.verify_now(session.access_token) is None  # lost: the store is read meanwhile
            for _ in range(100):
                if store.starts == 2:
                    break
                await anyio.sleep(0.01)
            await _settle()
        assert store.starts == 2
        messages = [record.getMessage() for record in caplog.records]
        assert any("revocation feed lost" in message for message in messages)
        assert any("revocation feed recovered" in message for message in messages)
        with pytest.raises(UnauthorisedError):
            manager.verify_now(session.access_token)


async def test_without_a_lag_bound_the_feed_is_not_followed() -> None:
    store = PushingStore()
    config = SessionConfig(access_token_blacklisting=True)
    async with SessionManager(store, config, clock=FakeClock()) as manager:
        await _settle()
        session = await manager.create_new_session_without_request_response("alice")
        assert store.starts == 0
        assert manager.verify_now(session.access_token) is None  # per-request store read, as before


def test_the_lag_bound_is_validated() -> None:
    from asgi_session import ConfigurationError

    for bad in (-0.1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ConfigurationError):
            SessionConfig(revocation_max_lag=bad)  # type: ignore[arg-type]
    assert SessionConfig().revocation_max_lag == 0.0
    assert isinstance(MemoryStore(), object)


class SwallowingStore(PushingStore):
    """A feed that swallows the first cancellation it gets, as ``asyncio.wait_for`` can on Python < 3.12.

    redis-py sends every command through ``wait_for``, which loses a cancel that arrives as the send completes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.swallowed = 0

    async def follow_revocations(
        self,
        after: int,
        deliver: Callable[[list[Revocation], float], None],
        *,
        now: Callable[[], float],
        heartbeat: float,
    ) -> None:
        deliver(await self.revocations_since(after), now())
        while True:
            try:
                await anyio.sleep(3600)
            except anyio.get_cancelled_exc_class():
                if self.swallowed:
                    raise
                self.swallowed += 1  # lost: the feed goes on as if nothing happened


async def test_closing_the_manager_ends_a_feed_that_lost_one_cancellation() -> None:
    """Regression: stop() cancelled the feed's task once and waited for it, shielded and unbounded: a hang."""
    store = SwallowingStore()
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=0.2)
    with anyio.fail_after(5):
        async with SessionManager(store, config, clock=FakeClock()) as manager:
            await _settle()
            assert manager.checks_revocations_in_memory
    assert store.swallowed == 1
