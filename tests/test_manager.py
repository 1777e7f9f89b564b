"""SessionManager behaviour through its offline API, with an injected clock, on every built-in store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from asgi_session import (
    InvalidPayloadError,
    Session,
    SessionConfig,
    SessionManager,
    StoreError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from asgi_session.stores.base import SessionStore
from asgi_session.stores.memory import MemoryStore
from asgi_session.stores.sqlite import SQLiteStore
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio

HOUR = 3600.0


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SessionStore:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "sessions.db")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> SessionConfig:
    return SessionConfig()


@pytest.fixture
async def manager(store: SessionStore, config: SessionConfig, clock: FakeClock) -> AsyncIterator[SessionManager]:
    async with SessionManager(store=store, config=config, clock=clock) as manager:
        yield manager


def tokens(session: Session) -> dict[str, Any]:
    return session.get_all_session_tokens_dangerously()


# -- create and verify -------------------------------------------------------------------------------------


async def test_create_returns_supertokens_token_dict(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response(
        "alice", access_token_payload={"role": "admin"}, session_data_in_database={"cart": [1, 2]}
    )
    t = tokens(session)
    assert set(t) == {"accessToken", "refreshToken", "frontToken", "antiCsrfToken", "accessAndFrontTokenUpdated"}
    assert t["accessAndFrontTokenUpdated"] is True
    assert t["antiCsrfToken"] is None  # default anti-CSRF mode is NONE
    assert session.user_id == "alice"
    assert session.tenant_id == "public"
    assert session.access_token_payload == {"role": "admin"}
    payload = session.get_access_token_payload()
    assert payload["sub"] == payload["rsub"] == "alice"
    assert payload["sessionHandle"] == session.handle
    assert payload["parentRefreshTokenHash1"] is None
    assert payload["iss"] == "asgi-session"
    assert await session.get_session_data_from_database() == {"cart": [1, 2]}


async def test_handles_are_unique(manager: SessionManager) -> None:
    handles = {(await manager.create_new_session_without_request_response("u")).handle for _ in range(20)}
    assert len(handles) == 20


async def test_verify_valid_token(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice", "t1", {"a": 1})
    found = await manager.get_session_without_request_response(session.access_token)
    assert found is not None
    assert (found.handle, found.user_id, found.tenant_id) == (session.handle, "alice", "t1")
    assert found.access_token_payload == {"a": 1}
    assert found.access_and_front_token_updated is False


async def test_no_token_required_and_optional(manager: SessionManager) -> None:
    with pytest.raises(UnauthorisedError) as info:
        await manager.get_session_without_request_response(None)
    assert info.value.clear_tokens is False
    assert await manager.get_session_without_request_response("", session_required=False) is None


async def test_access_token_expiry_boundary(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    exp = session.access_token_expiry
    assert exp == int(clock.now() + HOUR)
    await manager.get_session_without_request_response(session.access_token)  # cached now
    clock.set(exp - 0.001)
    assert await manager.get_session_without_request_response(session.access_token) is not None
    clock.set(exp)
    with pytest.raises(TryRefreshTokenError):
        await manager.get_session_without_request_response(session.access_token)


async def test_protected_claims_refused(manager: SessionManager) -> None:
    for key in ("sub", "exp", "sessionHandle", "tId", "iss", "antiCsrfToken", "refreshTokenHash1"):
        with pytest.raises(InvalidPayloadError) as info:
            await manager.create_new_session_without_request_response("alice", access_token_payload={key: "x"})
        assert info.value.key == key
        assert key in str(info.value)
        assert isinstance(info.value, ValueError)
    assert await manager.get_all_session_handles_for_user("alice") == []


async def test_non_json_payload_refused(manager: SessionManager) -> None:
    with pytest.raises(InvalidPayloadError):
        await manager.create_new_session_without_request_response("alice", access_token_payload={"x": object()})
    with pytest.raises(InvalidPayloadError):
        await manager.create_new_session_without_request_response("")


# -- blacklisting / check_database -------------------------------------------------------------------------


async def test_revoked_session_refused_with_check_database(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    assert await manager.get_session_without_request_response(session.access_token, check_database=True)
    assert await manager.revoke_session(session.handle) is True
    # without the database check the token lives until its exp (documented trade-off)
    assert await manager.get_session_without_request_response(session.access_token) is not None
    with pytest.raises(UnauthorisedError) as info:
        await manager.get_session_without_request_response(session.access_token, check_database=True)
    assert info.value.clear_tokens is True


async def test_blacklisting_config_checks_every_verification(store: SessionStore, clock: FakeClock) -> None:
    config = SessionConfig(access_token_blacklisting=True)
    async with SessionManager(store=store, config=config, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        assert await manager.get_session_without_request_response(session.access_token)
        await manager.revoke_all_sessions_for_user("alice")
        with pytest.raises(UnauthorisedError):
            await manager.get_session_without_request_response(session.access_token)
        # an explicit check_database=False opts out per call
        assert await manager.get_session_without_request_response(session.access_token, check_database=False)


async def test_wrong_tenant_refused(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice", "tenant-a")
    assert await manager.get_session_without_request_response(session.access_token, tenant_id="tenant-a")
    with pytest.raises(UnauthorisedError):
        await manager.get_session_without_request_response(session.access_token, tenant_id="tenant-b")


# -- refresh, grace window, theft --------------------------------------------------------------------------


async def test_refresh_rotates_and_slides_idle_timeout(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice", access_token_payload={"v": 1})
    first_expiry = await session.get_expiry()
    clock.advance(timedelta(days=10))
    refreshed = await manager.refresh_session_without_request_response(tokens(session)["refreshToken"])
    t = tokens(refreshed)
    assert t["refreshToken"] != tokens(session)["refreshToken"]
    assert t["accessToken"] != session.access_token
    assert refreshed.handle == session.handle
    assert refreshed.get_access_token_payload()["parentRefreshTokenHash1"] is not None
    assert refreshed.access_token_payload == {"v": 1}
    assert await refreshed.get_expiry() == first_expiry + 10 * 24 * 3600 * 1000
    info = await manager.get_session_information(session.handle)
    assert info is not None
    assert info.last_seen == int(clock.now() * 1000)


async def test_idle_timeout_boundary(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    clock.advance(timedelta(days=100) - timedelta(seconds=1))
    refreshed = await manager.refresh_session_without_request_response(tokens(session)["refreshToken"])
    clock.advance(timedelta(days=100))  # exactly the idle timeout since the last refresh
    with pytest.raises(UnauthorisedError):
        await manager.refresh_session_without_request_response(tokens(refreshed)["refreshToken"])
    assert await manager.get_session_information(session.handle) is None
    assert await manager.get_all_session_handles_for_user("alice") == []


async def test_absolute_lifetime_is_never_extended(store: SessionStore, clock: FakeClock) -> None:
    config = SessionConfig(session_max_lifetime=timedelta(hours=5))
    async with SessionManager(store=store, config=config, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        start = clock.now()
        token = tokens(session)["refreshToken"]
        for _ in range(4):
            clock.advance(timedelta(hours=1))
            refreshed = await manager.refresh_session_without_request_response(token)
            token = tokens(refreshed)["refreshToken"]
            assert await refreshed.get_expiry() == int((start + 5 * HOUR) * 1000)
        # the access token issued at hour 4 is capped at the absolute end (hour 5), not hour 5 + validity
        assert refreshed.access_token_expiry == int(start + 5 * HOUR)
        clock.advance(timedelta(hours=1))
        with pytest.raises(UnauthorisedError):
            await manager.refresh_session_without_request_response(token)


async def test_parent_within_grace_gets_same_child(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    parent = tokens(session)["refreshToken"]
    first = await manager.refresh_session_without_request_response(parent)
    clock.advance(29)
    second = await manager.refresh_session_without_request_response(parent)  # lost response, retried
    assert tokens(second)["refreshToken"] == tokens(first)["refreshToken"]
    clock.advance(1)  # exactly at the end of the 30 s window: still accepted
    third = await manager.refresh_session_without_request_response(parent)
    assert tokens(third)["refreshToken"] == tokens(first)["refreshToken"]
    # the chain continues from the (single) child
    grandchild = await manager.refresh_session_without_request_response(tokens(first)["refreshToken"])
    assert await manager.get_session_without_request_response(grandchild.access_token, check_database=True)


async def test_parent_after_grace_is_theft(manager: SessionManager, clock: FakeClock, caplog: Any) -> None:
    session = await manager.create_new_session_without_request_response("alice", "t9")
    parent = tokens(session)["refreshToken"]
    child = await manager.refresh_session_without_request_response(parent)
    clock.advance(31)
    caplog.set_level(logging.WARNING, logger="asgi_session")
    with pytest.raises(TokenTheftDetectedError) as info:
        await manager.refresh_session_without_request_response(parent)
    assert (info.value.handle, info.value.user_id, info.value.tenant_id) == (session.handle, "alice", "t9")
    assert parent not in str(info.value)
    # thief and victim are both logged out
    with pytest.raises(UnauthorisedError):
        await manager.refresh_session_without_request_response(tokens(child)["refreshToken"])
    assert await manager.get_session_information(session.handle) is None
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert session.handle in logged
    assert "alice" in logged
    assert parent not in logged
    assert tokens(child)["refreshToken"] not in logged


async def test_stale_lineage_is_theft(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    rt0 = tokens(session)["refreshToken"]
    rt1 = tokens(await manager.refresh_session_without_request_response(rt0))["refreshToken"]
    clock.advance(1)
    await manager.refresh_session_without_request_response(rt1)
    clock.advance(1)  # rt0 is two generations old: theft even inside the grace period of rt1's rotation
    with pytest.raises(TokenTheftDetectedError):
        await manager.refresh_session_without_request_response(rt0)


async def test_fifty_concurrent_refreshes_make_one_chain(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    parent = tokens(session)["refreshToken"]
    results: list[str] = []
    errors: list[BaseException] = []

    async def refresh() -> None:
        try:
            results.append(tokens(await manager.refresh_session_without_request_response(parent))["refreshToken"])
        except Exception as exc:  # the test records any error
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(refresh)
    assert errors == []
    assert len(results) == 50
    assert len(set(results)) == 1
    clock.advance(60)  # well past the grace window: the single child must still be current
    after = await manager.refresh_session_without_request_response(results[0])
    assert await manager.get_session_without_request_response(after.access_token, check_database=True)


async def test_refresh_of_revoked_session_is_unauthorised(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    await session.revoke()
    assert session.revoked is True
    with pytest.raises(UnauthorisedError):
        await manager.refresh_session_without_request_response(tokens(session)["refreshToken"])


async def test_merge_takes_effect_on_next_refresh(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice", access_token_payload={"a": 1})
    assert await manager.merge_into_access_token_payload(session.handle, {"a": None, "b": 2}) is True
    verified = await manager.get_session_without_request_response(session.access_token)
    assert verified is not None
    assert verified.access_token_payload == {"a": 1}  # old token unchanged
    refreshed = await manager.refresh_session_without_request_response(tokens(session)["refreshToken"])
    assert refreshed.access_token_payload == {"b": 2}
    with pytest.raises(InvalidPayloadError):
        await manager.merge_into_access_token_payload(session.handle, {"sub": None})
    assert await manager.merge_into_access_token_payload("no-such-handle", {"x": 1}) is False


async def test_session_merge_reissues_access_token_now(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice", access_token_payload={"a": 1})
    verified = await manager.get_session_without_request_response(session.access_token)
    assert verified is not None
    old_token, old_exp = verified.access_token, verified.access_token_expiry
    await verified.merge_into_access_token_payload({"b": 2})
    assert verified.access_token != old_token
    assert verified.access_and_front_token_updated is True
    assert verified.access_token_payload == {"a": 1, "b": 2}
    assert verified.access_token_expiry == old_exp  # same expiry, as SuperTokens' regenerate
    again = await manager.get_session_without_request_response(verified.access_token)
    assert again is not None
    assert again.access_token_payload == {"a": 1, "b": 2}


async def test_regenerate_access_token(manager: SessionManager, clock: FakeClock) -> None:
    session = await manager.create_new_session_without_request_response("alice", access_token_payload={"a": 1})
    regenerated = await manager.regenerate_access_token(session.access_token, {"z": 9})
    assert regenerated is not None
    assert regenerated.access_and_front_token_updated
    assert regenerated.access_token_payload == {"z": 9}
    assert regenerated.access_token_expiry == session.access_token_expiry
    clock.advance(2 * HOUR)  # expired: only the stored payload changes
    expired = await manager.regenerate_access_token(session.access_token, {"y": 1})
    assert expired is not None
    assert expired.access_and_front_token_updated is False
    info = await manager.get_session_information(session.handle)
    assert info is not None
    assert info.custom_claims_in_access_token_payload == {"y": 1}
    await manager.revoke_session(session.handle)
    assert await manager.regenerate_access_token(session.access_token) is None


async def test_session_data_round_trip(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    assert await manager.update_session_data_in_database(session.handle, {"k": "v"}) is True
    assert await session.get_session_data_from_database() == {"k": "v"}
    await session.update_session_data_in_database({"k2": [1]})
    info = await manager.get_session_information(session.handle)
    assert info is not None
    assert info.session_data_in_database == {"k2": [1]}
    await manager.revoke_session(session.handle)
    assert await manager.update_session_data_in_database(session.handle, {"k": "v"}) is False
    with pytest.raises(UnauthorisedError):
        await session.get_session_data_from_database()
    with pytest.raises(UnauthorisedError):
        await session.get_time_created()


# -- offline revocation and listing ------------------------------------------------------------------------


async def test_revoke_session_by_handle(manager: SessionManager) -> None:
    a = await manager.create_new_session_without_request_response("alice")
    b = await manager.create_new_session_without_request_response("alice")
    assert await manager.revoke_session(a.handle) is True
    assert await manager.revoke_session(a.handle) is False
    assert await manager.revoke_session("unknown") is False
    assert await manager.get_all_session_handles_for_user("alice") == [b.handle]


async def test_revoke_all_tenant_scoped_and_all_tenants(manager: SessionManager, clock: FakeClock) -> None:
    created: dict[str, list[str]] = {}
    for tenant in ("public", "t1", "t2"):
        for _ in range(2):
            clock.advance(1)
            s = await manager.create_new_session_without_request_response("alice", tenant)
            created.setdefault(tenant, []).append(s.handle)
    bob = await manager.create_new_session_without_request_response("bob", "t1")
    assert await manager.get_all_session_handles_for_user("alice", "t1") == created["t1"]
    assert sorted(await manager.revoke_all_sessions_for_user("alice", "t1")) == sorted(created["t1"])
    assert await manager.get_all_session_handles_for_user("alice", "t1") == []
    assert await manager.get_all_session_handles_for_user("alice") == created["public"] + created["t2"]
    assert await manager.get_all_session_handles_for_user("bob") == [bob.handle]
    revoked = await manager.revoke_all_sessions_for_user("alice")
    assert sorted(revoked) == sorted(created["public"] + created["t2"])
    assert await manager.get_all_session_handles_for_user("alice") == []
    assert await manager.get_all_session_handles_for_user("bob", "t1") == [bob.handle]


async def test_revoke_multiple_sessions(manager: SessionManager) -> None:
    handles = [(await manager.create_new_session_without_request_response(f"u{i}")).handle for i in range(3)]
    assert await manager.revoke_multiple_sessions([handles[0], "nope", handles[2], handles[0]]) == [
        handles[0],
        handles[2],
    ]
    assert await manager.get_all_session_handles_for_user("u1") == [handles[1]]


async def test_thousand_sessions_listed_and_revoked(manager: SessionManager, clock: FakeClock) -> None:
    expected: dict[str, set[str]] = {}
    for i in range(1000):
        user = f"user-{i % 37}"
        tenant = ("public", "acme", "globex")[i % 3]
        s = await manager.create_new_session_without_request_response(user, tenant)
        expected.setdefault(user, set()).add(s.handle)
    for user, handles in expected.items():
        assert set(await manager.get_all_session_handles_for_user(user)) == handles
    for user in sorted(expected)[:10]:
        assert set(await manager.revoke_all_sessions_for_user(user)) == expected.pop(user)
        assert await manager.get_all_session_handles_for_user(user) == []
    for user, handles in expected.items():
        assert set(await manager.get_all_session_handles_for_user(user)) == handles


async def test_sessions_for_user_show_device_information(manager: SessionManager, clock: FakeClock) -> None:
    await manager.create_new_session_without_request_response("alice", user_agent="Firefox", ip="127.0.0.1")
    clock.advance(5)
    await manager.create_new_session_without_request_response("alice", "other", user_agent="curl")
    infos = await manager.get_sessions_for_user("alice")
    assert [(i.tenant_id, i.user_agent, i.ip) for i in infos] == [
        ("public", "Firefox", "127.0.0.1"),
        ("other", "curl", None),
    ]
    assert infos[0].time_created == int((clock.now() - 5) * 1000)
    assert infos[0].last_seen == infos[0].time_created


async def test_delete_expired_sessions(manager: SessionManager, clock: FakeClock) -> None:
    await manager.create_new_session_without_request_response("alice")
    clock.advance(timedelta(days=50))
    keep = await manager.create_new_session_without_request_response("alice")
    clock.advance(timedelta(days=60))
    assert await manager.delete_expired_sessions() == 1
    assert await manager.get_all_session_handles_for_user("alice") == [keep.handle]


async def test_store_failure_propagates_as_store_error(clock: FakeClock) -> None:
    class Broken(MemoryStore):
        fail = False

        async def delete(self, handles: Any) -> list[str]:
            if self.fail:
                raise StoreError("simulated outage")
            return await super().delete(handles)

        async def get(self, handle: str) -> Any:
            if self.fail:
                raise StoreError("simulated outage")
            return await super().get(handle)

        async def rotate_sliding(self, rotation: Any) -> Any:
            if self.fail:
                raise StoreError("simulated outage")
            return await super().rotate_sliding(rotation)

    store = Broken()
    async with SessionManager(store=store, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        store.fail = True
        with pytest.raises(StoreError):
            await manager.revoke_session(session.handle)
        with pytest.raises(StoreError):
            await session.revoke()
        assert session.revoked is False
        with pytest.raises(StoreError):
            await manager.refresh_session_without_request_response(tokens(session)["refreshToken"])
        with pytest.raises(StoreError):
            await manager.get_session_without_request_response(session.access_token, check_database=True)
        store.fail = False
        # nothing was lost: the old refresh token still works after the outage
        assert await manager.refresh_session_without_request_response(tokens(session)["refreshToken"])


async def test_default_store_is_sqlite_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_SESSION_STORE_URL", f"sqlite:///{tmp_path}/env.db")
    manager = SessionManager()
    assert isinstance(manager.store, SQLiteStore)
    async with manager:
        await manager.create_new_session_without_request_response("alice")
    assert (tmp_path / "env.db").exists()
