"""The feed follower: trusts the view only while the feed is current within revocation_max_lag, else reads."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_session import SessionConfig, SessionManager, StoreError, TryRefreshTokenError, UnauthorisedError
from asgi_session.stores import MemoryStore
from asgi_session.stores.base import Revocation
from asgi_session.testing import FakeClock
from tests._helpers import CountingStore, LiveSessions, examples, session_step

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


@pytest.mark.parametrize("failure", [StoreError("connection lost"), RuntimeError("a bug in a feed")])
async def test_a_pushed_revocation_is_refused_and_a_lost_feed_restarts(
    caplog: pytest.LogCaptureFixture, failure: Exception
) -> None:
    """Whatever ends a feed (a store error, or a bug in a third-party feed), it is a loss: logged, then restarted."""
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
            await store.deliveries.send(failure)
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


async def test_a_confirmation_delivered_while_stopping_does_not_make_a_stopped_feed_trusted() -> None:
    """Regression (seen in CI on Python 3.12): stop() cleared the confirmation, then a reply that was already on its
    way when the cancel came was delivered and set it again, so verification trusted a feed that had stopped."""
    store = PushingStore()
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=0.2)
    async with SessionManager(store, config, clock=FakeClock()) as manager:
        await _settle()
        follower = manager._follower
        assert follower is not None
        assert follower.fresh()
        deliver = follower._deliver  # what the feed holds while its last reply is in flight
        await follower.stop()
        deliver([], manager.clock.now())  # that reply, delivered after the stop
        assert not follower.fresh()
        session = await manager.create_new_session_without_request_response("alice")
        assert manager.verify_now(session.access_token) is None  # not trusted: the async path reads the store


# --- property: whatever the feed's schedule, a revoked token is refused once the bound has passed -------------


class ScheduledFeedStore(MemoryStore):
    """A memory store whose feeds deliver only when the test pumps them (an honest feed on an arbitrary schedule).

    ``pump(deliver)`` reads everything above that feed's position and delivers it as current at the clock's time:
    what a real feed's read would say. Between pumps a feed is silent, as a slow, lost or paused one is.
    """

    probe_revocations = None  # type: ignore[assignment]  # revocations reach managers only through the feeds

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.positions: dict[Callable[[list[Revocation], float], None], int] = {}

    async def follow_revocations(
        self,
        after: int,
        deliver: Callable[[list[Revocation], float], None],
        *,
        now: Callable[[], float],
        heartbeat: float,
    ) -> None:
        self.positions[deliver] = after
        try:
            await anyio.sleep_forever()
        finally:
            del self.positions[deliver]

    async def pump(self, manager: SessionManager) -> None:
        for deliver in list(self.positions):
            if deliver.__self__ is manager._follower:  # type: ignore[attr-defined]
                entries = await self.revocations_since(self.positions[deliver])
                if entries:
                    self.positions[deliver] = entries[-1][0]
                deliver(entries, self.clock.now())


FEED_LAG = 0.5
FEED_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["create", "refresh", "revoke", "revoke_all", "pump", "wait"]),
        st.integers(0, 1),  # which manager acts (or is pumped)
        st.integers(0, 5),  # which session (or user); for "wait", fifths of a second
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=examples(60), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=FEED_OPERATIONS)
def test_property_whatever_the_feed_schedule_no_revoked_token_passes_after_the_bound(
    operations: list[tuple[str, int, int]],
) -> None:
    anyio.run(_interleave_with_feeds, operations)


async def _interleave_with_feeds(operations: list[tuple[str, int, int]]) -> None:
    clock = FakeClock()
    store = ScheduledFeedStore(clock)
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=FEED_LAG)
    async with SessionManager(store, config, clock=clock) as one, SessionManager(store, config, clock=clock) as two:
        await _settle()  # both feeds are registered
        managers = (one, two)
        live: LiveSessions = {}
        revoked: list[tuple[str, float, SessionManager]] = []  # (access token, when its revoke returned, by whom)
        for action, who, number in operations:
            manager = managers[who]
            for token in await session_step(manager, action, number, live):
                revoked.append((token, clock.now(), manager))
            if action == "pump":
                await store.pump(manager)
            elif action == "wait":
                clock.advance(number / 5)
            for token, when, revoker in revoked:
                for other in managers:
                    if clock.now() <= when + FEED_LAG and other is not revoker:
                        continue  # up to the bound another manager may still accept it: that is the trade
                    # More than the bound after, or in the revoking manager: never accepted, from memory or the store.
                    assert not _accepted_now(other, token)
                    with pytest.raises((UnauthorisedError, TryRefreshTokenError)):
                        await other.get_session_without_request_response(token)
            for _, token, _ in live.values():
                for other in managers:
                    assert await other.get_session_without_request_response(token) is not None


def _accepted_now(manager: SessionManager, token: str) -> bool:
    """Whether ``verify_now`` accepts the token from memory (``None``: it would read the store, which refuses)."""
    try:
        return manager.verify_now(token) is not None
    except (UnauthorisedError, TryRefreshTokenError):
        return False
