"""A refresh through ``rotate_sliding`` (one store step) ends exactly where the read-then-swap path ends.

Every built-in store has ``rotate_sliding``; a store without it (``rotate_sliding = None``) takes the two steps. The
stored session, the new expiry and the tokens' claims must not depend on which path ran, on any store.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from asgi_session import SessionConfig, SessionManager, TokenTheftDetectedError
from asgi_session.stores import MemoryStore, SQLiteStore
from asgi_session.stores.base import Rotation, SessionRecord, SessionStore
from asgi_session.testing import FakeClock
from tests._helpers import CountingStore

pytestmark = pytest.mark.anyio

START = 1_800_000_000.123


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


class TwoStepStore(MemoryStore):
    """A store without the one-step refresh: the manager reads, then swaps."""

    rotate_sliding = None  # type: ignore[assignment]


CONFIG = SessionConfig(refresh_token_validity=timedelta(hours=5), session_max_lifetime=timedelta(hours=12))


async def _life(store: SessionStore) -> list[tuple[Any, ...]]:
    """Create two sessions (one with its own idle timeout), refresh them across the absolute cap; what was stored."""
    clock = FakeClock(START)
    seen: list[tuple[Any, ...]] = []
    async with SessionManager(store=store, config=CONFIG, clock=clock) as manager:
        plain = await manager.create_new_session_without_request_response("alice")
        own = await manager.create_new_session_without_request_response("bob", idle_timeout=timedelta(hours=2))
        tokens = {plain.handle: plain.refresh_token, own.handle: own.refresh_token}
        for step in (0.25, 1.5, 1.9, 1.9, 1.9, 1.9, 1.9):  # bob refreshes within his 2 hours; at 11.25 h, the cap
            clock.advance(step * 3600 + 0.001)
            for handle in list(tokens):
                session = await manager.refresh_session_without_request_response(tokens[handle])  # type: ignore[arg-type]
                tokens[handle] = session.refresh_token
                record = await store.get(handle)
                assert record is not None
                claims = session.get_access_token_payload()
                times = (record.expires_at, record.last_seen, record.rotated_at, claims["exp"], claims["iat"])
                seen.append((record.user_id, *times))
    return seen


async def test_both_paths_store_the_same_sessions(tmp_path: Path) -> None:
    one_step = await _life(MemoryStore())
    two_steps = await _life(TwoStepStore())
    on_sqlite = await _life(SQLiteStore(tmp_path / "s.db"))
    assert one_step == two_steps == on_sqlite
    # The cap: bob's own 2-hour idle timeout and alice's 5 hours both end at the 12-hour absolute lifetime.
    assert one_step[-1][1] == one_step[-2][1] == START + 12 * 3600


async def test_the_usual_refresh_is_one_store_call_and_the_others_take_the_full_path() -> None:
    store = CountingStore()
    clock = FakeClock(START)
    async with SessionManager(store=store, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        store.reset()
        child = await manager.refresh_session_without_request_response(session.refresh_token)  # type: ignore[arg-type]
        assert dict(store.calls) == {"rotate_sliding": 1}  # no read, no second write
        store.reset()
        # The parent again, within the grace window: the one step refuses (another hash), the full path serves it.
        again = await manager.refresh_session_without_request_response(session.refresh_token)  # type: ignore[arg-type]
        assert again.refresh_token == child.refresh_token
        assert dict(store.calls) == {"rotate_sliding": 1, "get": 1}
        assert store.writes() == {}
        clock.advance(manager.config.refresh_token_grace_period.total_seconds() + 1)
        with pytest.raises(TokenTheftDetectedError):
            await manager.refresh_session_without_request_response(session.refresh_token)  # type: ignore[arg-type]
        assert await store.get(session.handle) is None


async def test_an_expired_session_is_refused_by_both_steps() -> None:
    store = CountingStore()
    clock = FakeClock(START)
    config = SessionConfig(refresh_token_validity=timedelta(hours=1), access_token_validity=timedelta(minutes=10))
    async with SessionManager(store=store, config=config, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        clock.advance(3600)  # expires_at == now: expired
        store.reset()
        with pytest.raises(Exception, match="does not exist or has expired"):
            await manager.refresh_session_without_request_response(session.refresh_token)  # type: ignore[arg-type]
        assert store.writes() == {}
        record = await store.get(session.handle)
        assert record is not None
        assert record.expires_at == START + 3600  # not slid


class AuditedRotations(MemoryStore):
    """A subclass that customises the two-step path only: it must keep seeing every refresh."""

    def __init__(self) -> None:
        super().__init__()
        self.rotations: list[str] = []

    async def rotate(self, rotation: Rotation) -> bool:
        self.rotations.append(rotation.handle)
        return await super().rotate(rotation)


class AuditedReads(MemoryStore):
    async def get(self, handle: str) -> SessionRecord | None:
        self.reads = getattr(self, "reads", 0) + 1
        return await super().get(handle)


async def test_a_subclass_overriding_get_or_rotate_only_keeps_the_two_steps() -> None:
    for store in (AuditedRotations(), AuditedReads()):
        async with SessionManager(store=store, clock=FakeClock(START)) as manager:
            session = await manager.create_new_session_without_request_response("alice")
            await manager.refresh_session_without_request_response(session.refresh_token)  # type: ignore[arg-type]
        if isinstance(store, AuditedRotations):
            assert store.rotations == [session.handle]
        else:
            assert store.reads == 1


async def test_a_subclass_overriding_all_three_keeps_the_one_step() -> None:
    store = CountingStore()  # overrides get, rotate and rotate_sliding
    async with SessionManager(store=store, clock=FakeClock(START)) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        store.reset()
        await manager.refresh_session_without_request_response(session.refresh_token)  # type: ignore[arg-type]
    assert dict(store.calls) == {"rotate_sliding": 1}
