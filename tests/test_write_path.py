"""The lean create and refresh path: the same size rule, keys, hashes and expiries as the general path."""

from __future__ import annotations

import datetime
import secrets
from typing import Any

import jwt
import pytest

from asgi_session import SessionConfig, SessionManager
from asgi_session._refresh_token import sha256_hex, stored_refresh_hash
from asgi_session.exceptions import InvalidPayloadError
from asgi_session.stores import MemoryStore, SessionRecord
from asgi_session.testing import FakeClock
from asgi_session.tokens import claims_json, sign_access_token, sign_claims_json

pytestmark = pytest.mark.anyio


def _payloads() -> list[dict[str, Any]]:
    return [{}, {"role": "admin"}, {"n": 12345, "list": [1, 2, "x" * 40]}, {"blob": "y" * 3000}]


@pytest.mark.parametrize("anti_csrf", ["NONE", "VIA_TOKEN", "VIA_CUSTOM_HEADER"])
@pytest.mark.parametrize("disable_anti_csrf", [False, True])
@pytest.mark.parametrize("remember", [True, False])
async def test_the_create_size_bound_is_the_worst_case_bound(
    monkeypatch: pytest.MonkeyPatch, anti_csrf: str, disable_anti_csrf: bool, remember: bool
) -> None:
    """The create sizes its own claims plus the worst case's differences: the same number as the worst-case claims."""
    clock = FakeClock()
    manager = SessionManager(MemoryStore(), SessionConfig(anti_csrf=anti_csrf), clock=clock)  # type: ignore[arg-type]
    bounds: list[int] = []
    monkeypatch.setattr(manager, "_refuse_oversized", bounds.append)
    records: list[SessionRecord] = []
    for payload in _payloads():
        session = await manager.create_new_session_without_request_response(
            "user-1", access_token_payload=payload, disable_anti_csrf=disable_anti_csrf, remember=remember
        )
        record = await manager.store.get(session.handle)
        assert record is not None
        records.append(record)
    created = list(bounds)
    bounds.clear()
    for record, payload in zip(records, _payloads(), strict=True):
        manager._check_token_size(record, payload)
    assert created == bounds


async def test_the_create_refuses_a_payload_just_over_the_limit() -> None:
    manager = SessionManager(MemoryStore(), clock=FakeClock())
    size = 2500
    while True:  # the largest payload that passes
        try:
            await manager.create_new_session_without_request_response("u", access_token_payload={"b": "x" * size})
        except InvalidPayloadError:
            break
        size += 1
    record = await manager.store.get(
        (
            await manager.create_new_session_without_request_response("u", access_token_payload={"b": "x" * (size - 1)})
        ).handle
    )
    assert record is not None
    with pytest.raises(InvalidPayloadError):
        manager._check_token_size(record, {"b": "x" * size})
    manager._check_token_size(record, {"b": "x" * (size - 1)})
    stored = manager.store._sessions  # type: ignore[attr-defined]  # a MemoryStore
    assert len(stored) == size - 2500 + 1  # the refused create stored nothing


async def test_the_claims_signed_from_json_are_the_claims() -> None:
    manager = SessionManager(MemoryStore(), clock=FakeClock())
    await manager.open()
    key = await manager.keys.signing_key()
    claims = {"sub": "u", "exp": 1, "nested": {"a": [1, 2]}}
    for token in (sign_claims_json(claims_json(claims), key), sign_access_token(claims, key)):
        payload = token.split(".")[1]
        assert jwt.get_unverified_header(token) == {"alg": "ES256", "typ": "JWT", "kid": key.kid, "version": "5"}
        assert jwt.decode(token, options={"verify_signature": False}) == claims
        assert payload == sign_access_token(claims, key).split(".")[1]


async def test_created_and_refreshed_tokens_carry_the_hashes_and_expiry() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(), clock=clock)
    session = await manager.create_new_session_without_request_response("user-1")
    first = session.refresh_token
    assert first is not None
    assert session._claims["refreshTokenHash1"] == sha256_hex(first)
    assert session._claims["parentRefreshTokenHash1"] is None
    record = await manager.store.get(session.handle)
    assert record is not None
    assert record.refresh_hash == stored_refresh_hash(first)
    assert session.refresh_token_expiry == record.expires_at
    clock.advance(120)
    refreshed = await manager.refresh_session_without_request_response(first)
    child = refreshed.refresh_token
    assert child is not None
    record = await manager.store.get(session.handle)
    assert record is not None
    assert record.refresh_hash == stored_refresh_hash(child)
    assert record.previous_refresh_hash == stored_refresh_hash(first)
    assert refreshed._claims["refreshTokenHash1"] == sha256_hex(child)
    assert refreshed._claims["parentRefreshTokenHash1"] == sha256_hex(first)
    assert refreshed.refresh_token_expiry == record.expires_at > session.refresh_token_expiry
    assert refreshed._claims["exp"] == int(clock.now() + manager.config.access_token_validity.total_seconds())
    again = await manager.refresh_session_without_request_response(first)  # within the grace window: same child
    assert again.refresh_token == child
    assert again._claims["refreshTokenHash1"] == sha256_hex(child)
    assert again._claims["parentRefreshTokenHash1"] == sha256_hex(first)


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_the_remembered_signing_key_follows_the_ring_through_rotations() -> None:
    """Scheduled rotations, another process's early rotation and expiring keys: always the ring's own answer."""
    clock = FakeClock()
    config = SessionConfig(
        key_rotation_interval=datetime.timedelta(hours=1), key_publish_ahead=datetime.timedelta(seconds=60)
    )
    store = MemoryStore()
    manager = SessionManager(store, config, clock=clock)
    other = SessionManager(store, config, clock=clock)  # another process sharing the store
    await other.open()
    seen: set[str] = set()
    for step in range(400):
        clock.advance(secrets.choice([0.2, 1, 7, 29, 31, 59, 61, 600]))
        if step % 97 == 50:
            await other.keys.rotate_now()
        session = await manager.create_new_session_without_request_response("user-1")
        refreshed = await manager.refresh_session_without_request_response(session.refresh_token or "")
        expected = (await manager.keys.signing_key()).kid
        assert _kid(session.access_token) == expected
        assert _kid(refreshed.access_token) == expected
        seen.add(expected)
    assert len(seen) > 3
