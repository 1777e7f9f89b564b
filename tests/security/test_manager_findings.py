"""Security review findings 3, 4 (offline half), 5, 8 and 10 (claims, ids, data size): regression tests.

Each test failed on the code before its fix; the finding's number is in the test's docstring.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from asgi_session import (
    InvalidPayloadError,
    SessionConfig,
    SessionManager,
    StoreError,
    TryRefreshTokenError,
)
from asgi_session._token_cache import VerifiedTokenCache
from asgi_session.keys import SigningKey
from asgi_session.stores.base import KeyRecord
from asgi_session.testing import FakeClock
from tests._helpers import CountingStore, b64u, low_s

pytestmark = pytest.mark.anyio


class KeyOutageStore(CountingStore):
    """Counts calls; ``get_keys`` raises ``StoreError`` while ``keys_down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_down = False

    async def get_keys(self) -> list[KeyRecord]:
        if self.keys_down:
            raise StoreError("keys unavailable (test outage)")
        return await super().get_keys()


# -- finding 3: a store outage during a refresh never turns the retry into a theft verdict --------------------


async def test_an_outage_reading_the_keys_during_refresh_leaves_the_presented_token_valid() -> None:
    """Finding 3: the swap used to commit before the key ring was re-read; the retry was then judged theft."""
    store, clock = KeyOutageStore(), FakeClock()
    async with SessionManager(store, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        token = session.refresh_token
        assert token is not None
        clock.advance(600)  # past the ring's reload interval: the next signing re-reads the keys from the store
        store.keys_down, store.calls["rotate"] = True, 0
        with pytest.raises(StoreError):
            await manager.refresh_session_without_request_response(token)
        assert store.calls["rotate"] == 0  # nothing was swapped: the presented token is still current
        clock.advance(120)  # the outage outlasts the 30 s grace window
        store.keys_down = False
        refreshed = await manager.refresh_session_without_request_response(token)
        assert refreshed.handle == session.handle
        assert await manager.get_all_session_handles_for_user("alice") == [session.handle]


async def test_an_outage_reading_the_keys_during_create_stores_no_session() -> None:
    store, clock = KeyOutageStore(), FakeClock()
    async with SessionManager(store, clock=clock) as manager:
        clock.advance(600)
        store.keys_down = True
        with pytest.raises(StoreError):
            await manager.create_new_session_without_request_response("alice")
        store.keys_down = False
        assert await manager.get_all_session_handles_for_user("alice") == []


# -- finding 5: dropping one session's cached tokens does not scan the cache ------------------------------------


class _CountingEntries(OrderedDict[bytes, Any]):
    scans = 0

    def items(self) -> Any:
        type(self).scans += 1
        return super().items()

    def __iter__(self) -> Any:
        type(self).scans += 1
        return super().__iter__()


def _claims(handle: str, number: int) -> dict[str, Any]:
    return {"sessionHandle": handle, "exp": 2_000_000_000, "n": number}


def test_discarding_a_session_touches_only_its_own_entries() -> None:
    """Finding 5: revoke-all of 2,000 sessions with a full cache stalled the loop (a full scan per handle)."""
    cache = VerifiedTokenCache(10_000)
    entries = _CountingEntries()
    cache._entries = entries
    for number in range(5_000):
        cache.put(f"token-{number}".encode(), _claims(f"h{number % 1000}", number))
    _CountingEntries.scans = 0
    for handle in range(1000):
        cache.discard_session(f"h{handle}")
    assert _CountingEntries.scans == 0
    assert len(cache) == 0


def test_the_handle_index_follows_eviction_expiry_and_clear() -> None:
    cache = VerifiedTokenCache(3)
    cache.put(b"a1", _claims("a", 1))
    cache.put(b"a2", {**_claims("a", 2), "exp": 10})
    cache.put(b"b1", _claims("b", 1))
    assert cache.get(b"a2", now=20) is None  # expired: dropped, and from the index too
    cache.put(b"c1", _claims("c", 1))
    cache.put(b"c2", _claims("c", 2))  # full: evicts a1, the least recently used
    assert cache.get(b"a1", now=0) is None
    cache.discard_session("a")  # nothing left of "a": a no-op
    cache.discard_session("c")
    assert [cache.get(token, now=0) is not None for token in (b"b1", b"c1", b"c2")] == [True, False, False]
    cache.clear()
    assert len(cache) == 0
    assert cache.get(b"b1", now=0) is None


# -- finding 8: claims handed out are copies ---------------------------------------------------------------------


async def test_mutating_returned_claims_does_not_change_the_next_verification() -> None:
    """Finding 8: verify_access_token returned the cache's own dict; `sub` rewritten to `admin` was served."""
    async with SessionManager(CountingStore(), clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response(
            "alice", access_token_payload={"roles": ["user"]}
        )
        claims = await manager.verify_access_token(session.access_token)
        claims["sub"] = "admin"
        claims["roles"].append("admin")
        again = await manager.get_session_without_request_response(session.access_token)
        assert again is not None
        assert again.user_id == "alice"
        payload = again.access_token_payload
        assert payload["roles"] == ["user"]
        payload["roles"].append("admin")  # the session's view is a copy too
        again.get_access_token_payload()["roles"].append("admin")
        third = await manager.verify_access_token(session.access_token)
        assert third["sub"] == "alice"
        assert third["roles"] == ["user"]


# -- finding 10: duplicate claim keys, ids, session-data size -----------------------------------------------------


def _sign_raw(header: dict[str, Any], payload_text: str, key: SigningKey) -> str:
    from jwt.algorithms import get_default_algorithms

    signing_input = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + b64u(payload_text.encode())
    signature = low_s(get_default_algorithms()["ES256"].sign(signing_input.encode("ascii"), key.private_key))
    return signing_input + "." + b64u(signature)


@pytest.mark.parametrize("duplicate", ["role", "sub"])
async def test_a_validly_signed_payload_with_a_duplicate_key_is_refused(duplicate: str) -> None:
    """Finding 10: duplicate keys were accepted (last wins) while docs/tokens.md says they are refused."""
    async with SessionManager(CountingStore(), clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice", access_token_payload={"role": "u"})
        claims = await manager.verify_access_token(session.access_token)
        key = await manager.keys.signing_key()
        header = {"alg": "ES256", "typ": "JWT", "kid": key.kid, "version": "5"}
        text = json.dumps(claims, separators=(",", ":"))
        # The duplicate comes first, so "last wins" keeps the genuine value and every other check passes.
        forged = _sign_raw(header, text.replace("{", '{"' + duplicate + '":"admin",', 1), key)
        assert await manager.get_session_without_request_response(_sign_raw(header, text, key)) is not None
        with pytest.raises(TryRefreshTokenError):
            await manager.get_session_without_request_response(forged)


BAD_IDS = [
    pytest.param("bob\x00", id="nul"),
    pytest.param("bob\ud800", id="lone-surrogate"),
    pytest.param("x" * 257, id="257-chars"),
    pytest.param("bob\r\nINFO forged log line", id="crlf"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_an_invalid_user_or_tenant_id_is_an_input_error_before_the_store(any_store_url: str, bad: str) -> None:
    """Finding 10: such ids reached the store and came back as StoreError (503) on some backends."""
    from asgi_session.stores import store_from_url

    async with SessionManager(store_from_url(any_store_url), clock=FakeClock()) as manager:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: manager.create_new_session_without_request_response(bad),
            lambda: manager.create_new_session_without_request_response("bob", tenant_id=bad),
            lambda: manager.revoke_all_sessions_for_user(bad),
            lambda: manager.revoke_all_sessions_for_user("bob", tenant_id=bad),
            lambda: manager.get_all_session_handles_for_user(bad),
            lambda: manager.get_sessions_for_user("bob", tenant_id=bad),
        ]
        for call in calls:
            with pytest.raises(InvalidPayloadError):
                await call()
        # a value that cannot be a handle is simply unknown
        assert await manager.revoke_session(bad) is False
        assert await manager.revoke_multiple_sessions([bad]) == []
        assert await manager.get_session_information(bad) is None
        assert await manager.update_session_data_in_database(bad, {}) is False
        assert await manager.merge_into_access_token_payload(bad, {"a": 1}) is False


async def test_ids_at_the_limits_are_kept_on_every_store(any_store_url: str) -> None:
    from asgi_session.stores import store_from_url

    longest, unicode = "u" * 256, "zoë-🙂-用户"
    async with SessionManager(store_from_url(any_store_url), clock=FakeClock()) as manager:
        for user in (longest, unicode):
            session = await manager.create_new_session_without_request_response(user, tenant_id=unicode)
            assert await manager.get_all_session_handles_for_user(user, unicode) == [session.handle]
            assert await manager.revoke_all_sessions_for_user(user) == [session.handle]


async def test_session_data_over_the_limit_is_refused_and_nothing_is_stored() -> None:
    """Finding 10: there was no size limit; 10 MB of session data was stored."""
    config = SessionConfig(max_session_data_bytes=1000)
    store = CountingStore()
    async with SessionManager(store, config, clock=FakeClock()) as manager:
        with pytest.raises(InvalidPayloadError, match="max_session_data_bytes"):
            await manager.create_new_session_without_request_response(
                "alice", session_data_in_database={"x": "y" * 1000}
            )
        assert store.calls["create"] == 0
        session = await manager.create_new_session_without_request_response(
            "alice", session_data_in_database={"x": "y" * 900}
        )
        with pytest.raises(InvalidPayloadError):
            await manager.update_session_data_in_database(session.handle, {"x": "é" * 600})  # 1,200 bytes as UTF-8
        with pytest.raises(InvalidPayloadError):
            await session.update_session_data_in_database({"x": "y" * 2000})
        assert (await session.get_session_data_from_database()) == {"x": "y" * 900}


async def test_the_default_session_data_limit_is_64_kib() -> None:
    assert SessionConfig().max_session_data_bytes == 65_536
    async with SessionManager(CountingStore(), clock=FakeClock()) as manager:
        with pytest.raises(InvalidPayloadError):
            await manager.create_new_session_without_request_response(
                "alice", session_data_in_database={"x": "y" * 10_000_000}
            )


def test_the_session_data_limit_is_validated() -> None:
    from asgi_session import ConfigurationError

    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ConfigurationError):
            SessionConfig(max_session_data_bytes=bad)  # type: ignore[arg-type]
    assert SessionConfig(max_session_data_bytes=timedelta(seconds=1).seconds + 1).max_session_data_bytes == 2
