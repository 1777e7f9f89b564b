"""The manager's revocation view: bounded, exact with a probing store, and never letting a revoked token through."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_session import SessionConfig, SessionManager, TryRefreshTokenError, UnauthorisedError
from asgi_session._revocations import RevocationView
from asgi_session.stores import MemoryStore, SQLiteStore
from asgi_session.testing import FakeClock
from tests._helpers import LiveSessions, examples, session_step

pytestmark = pytest.mark.anyio


def test_entries_age_out_after_the_retention() -> None:
    view = RevocationView(retention=100)
    view.apply([(1, "a"), (2, "b")], now=0)
    view.add("c", now=50)
    assert ("a" in view, "c" in view, view.position) == (True, True, 2)
    view.apply([], now=120)
    assert ("a" in view, "b" in view, "c" in view) == (False, False, True)
    view.apply([(3, "d")], now=151)
    assert ("c" in view, "d" in view, len(view)) == (False, True, 1)


def test_a_handle_learnt_twice_still_ages_out() -> None:
    """Regression: a process's own revocation (added at once, then applied again from the log a moment later) used
    to stay in the view for as long as the manager ran: a leak of one entry per local revocation."""
    view = RevocationView(retention=100)
    view.add("mine", now=0)
    view.apply([(1, "mine")], now=1)  # the same revocation, back through the log
    view.apply([(2, "other")], now=150)
    assert ("mine" in view, "other" in view, len(view)) == (False, True, 1)


def test_handles_added_without_any_log_entry_applied_still_age_out() -> None:
    """Regression: with a per-request store read (Redis or PostgreSQL without a lag) nothing is applied, and the
    process's own revocations, added one by one, were never expired."""
    view = RevocationView(retention=100)
    for second in range(1_000):
        view.add(f"handle-{second}", now=float(second))
    assert len(view) == 101  # those learnt within the last 100 s


def test_position_before_tells_which_entries_are_old_enough_to_trim() -> None:
    view = RevocationView(retention=100)
    assert view.position_before(1_000) == 0
    view.apply([(1, "a"), (2, "b")], now=0)
    view.apply([(5, "c")], now=50)
    assert view.position_before(-1) == 0
    assert view.position_before(10) == 2
    assert view.position_before(60) == 5


def test_a_rewound_log_starts_the_position_over_and_keeps_the_handles() -> None:
    """After the store lost its log, the old numbers name nothing: trimming by them would delete new entries."""
    view = RevocationView(retention=100)
    view.apply([(1, "a"), (7, "b")], now=0)
    view.rewind()
    assert (view.position, "a" in view, "b" in view) == (0, True, True)
    assert view.position_before(50) == 0  # no old mark survives to trim the new log's entries 1..7
    view.apply([(1, "c")], now=60)
    assert (view.position, "c" in view) == (1, True)
    assert view.position_before(70) == 1


def test_a_revoke_all_of_100000_sessions_is_held_then_released() -> None:
    view = RevocationView(retention=3660)
    view.apply(((n, f"handle-{n:06d}") for n in range(1, 100_001)), now=0)
    assert len(view) == 100_000
    assert "handle-050000" in view
    view.apply([], now=3661)
    assert len(view) == 0


async def test_a_revoke_through_another_manager_on_one_memory_store_is_refused_at_once() -> None:
    store, clock = MemoryStore(), FakeClock()
    config = SessionConfig(access_token_blacklisting=True)
    async with (
        SessionManager(store, config, clock=clock) as first,
        SessionManager(store, config, clock=clock) as second,
    ):
        session = await first.create_new_session_without_request_response("alice")
        assert second.verify_now(session.access_token) is not None
        await first.revoke_session(session.handle)
        with pytest.raises(UnauthorisedError):
            second.verify_now(session.access_token)


async def test_check_database_true_still_reads_the_store() -> None:
    """A token the ring signed for a session the store never held passes the view, but not check_database."""
    store, clock = MemoryStore(), FakeClock()
    config = SessionConfig(access_token_blacklisting=True)
    async with SessionManager(store, config, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        await store.delete_expired(clock.now() + 10**9)  # gone without a revocation (as an expired session is)
        assert await manager.get_session_without_request_response(session.access_token) is not None
        with pytest.raises(UnauthorisedError):
            await manager.get_session_without_request_response(session.access_token, check_database=True)


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["create", "refresh", "revoke", "revoke_all"]),
        st.integers(0, 1),  # which manager acts
        st.integers(0, 5),  # which session (or user) it acts on
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=examples(60), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_property_no_revoked_token_gets_through_either_manager(operations: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(_interleave, Path(folder) / "s.db", operations)


async def _interleave(path: Path, operations: list[tuple[str, int, int]]) -> None:
    clock = FakeClock()
    config = SessionConfig(access_token_blacklisting=True)
    async with (
        SessionManager(SQLiteStore(path), config, clock=clock) as one,
        SessionManager(SQLiteStore(path), config, clock=clock) as two,
    ):
        managers = (one, two)
        live: LiveSessions = {}
        revoked: list[str] = []  # access tokens of revoked sessions
        for action, who, number in operations:
            revoked += await session_step(managers[who], action, number, live)
            for token in revoked:
                for other in managers:
                    with pytest.raises((UnauthorisedError, TryRefreshTokenError)):
                        other.verify_now(token)
                    with pytest.raises((UnauthorisedError, TryRefreshTokenError)):
                        await other.get_session_without_request_response(token)
            for _, token, _ in live.values():
                for other in managers:
                    assert await other.get_session_without_request_response(token) is not None
