"""The conformance suite of asgi_session.testing, against every built-in store and against broken ones."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pytest

import asgi_session._refresh
import asgi_session.manager
from asgi_session._refresh_token import mint_refresh_token
from asgi_session.stores.base import KeyRecord, Rotation, SessionRecord, SessionStore, SlidingRotation
from asgi_session.stores.memory import MemoryStore
from asgi_session.testing import (
    CONFORMANCE_CHECKS,
    ConformanceError,
    PersistedReader,
    StoreFactory,
    run_conformance_suite,
)

pytestmark = pytest.mark.anyio

STORE_LEVEL_CHECKS = sorted(name for name in CONFORMANCE_CHECKS if name != "no_raw_refresh_token")


@pytest.mark.parametrize("check", sorted(CONFORMANCE_CHECKS))
async def test_store_conforms(check: str, store_factory: StoreFactory, persisted: PersistedReader | None) -> None:
    await CONFORMANCE_CHECKS[check](store_factory, persisted=persisted)


# Stores that each break one rule, to prove that the suite notices.


class RotateIgnoresExpectedHash(MemoryStore):
    async def rotate(self, rotation: Rotation) -> bool:
        current = await self.get(rotation.handle)
        if current is None:
            return False
        return await super().rotate(dataclasses.replace(rotation, expected_refresh_hash=current.refresh_hash))


class SlidingIgnoresTheAbsoluteExpiry(MemoryStore):
    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        record = await self.get(rotation.handle)
        if record is not None:
            self._sessions[record.handle] = dataclasses.replace(record, absolute_expires_at=None)
        return await super().rotate_sliding(rotation)


class SlidingRevivesExpiredSessions(MemoryStore):
    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        record = await self.get(rotation.handle)
        if record is not None and record.expires_at <= rotation.now:
            self._sessions[record.handle] = dataclasses.replace(record, expires_at=rotation.now + 1)
        return await super().rotate_sliding(rotation)


class DeleteForUserIgnoresTenant(MemoryStore):
    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        return await super().delete_for_user(user_id)


class DeleteExpiredSparesTheBoundary(MemoryStore):
    async def delete_expired(self, now: float) -> int:
        return await super().delete_expired(math.nextafter(now, -math.inf))


class ListForUserUnordered(MemoryStore):
    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        return sorted(await super().list_for_user(user_id, tenant_id), key=lambda record: record.handle)


class TouchReportsUnknownHandles(MemoryStore):
    async def touch(self, handle: str, last_seen: float) -> bool:
        await super().touch(handle, last_seen)
        return True


class GetKeysOrderedByKid(MemoryStore):
    async def get_keys(self) -> list[KeyRecord]:
        return sorted(await super().get_keys(), key=lambda key: key.kid)


class DeleteKeysCountsEveryKid(MemoryStore):
    async def delete_keys(self, kids: Sequence[str]) -> int:
        await super().delete_keys(kids)
        return len(kids)


class GetRaisesForUnknownHandles(MemoryStore):
    async def get(self, handle: str) -> SessionRecord | None:
        record = await super().get(handle)
        if record is None:
            raise KeyError(handle)
        return record


class DeleteReturnsEverythingAsked(MemoryStore):
    async def delete(self, handles: Sequence[str]) -> list[str]:
        await super().delete(handles)
        return list(handles)


@pytest.mark.parametrize(
    ("broken", "failed"),
    [
        (RotateIgnoresExpectedHash, {"rotate_stale_hash", "rotate_concurrent"}),
        (SlidingIgnoresTheAbsoluteExpiry, {"rotate_sliding_success", "rotate_sliding_refusals"}),
        (SlidingRevivesExpiredSessions, {"rotate_sliding_refusals"}),
        (DeleteForUserIgnoresTenant, {"delete_for_user", "many_sessions"}),
        (DeleteExpiredSparesTheBoundary, {"delete_expired"}),
        (ListForUserUnordered, {"list_for_user", "many_sessions"}),
        (DeleteReturnsEverythingAsked, {"delete"}),
        (TouchReportsUnknownHandles, {"touch"}),
        (GetKeysOrderedByKid, {"keys_add_get"}),
        (DeleteKeysCountsEveryKid, {"keys_delete"}),
    ],
)
async def test_suite_reports_exactly_the_broken_rule(broken: StoreFactory, failed: set[str]) -> None:
    with pytest.raises(ConformanceError) as caught:
        await run_conformance_suite(broken, only=STORE_LEVEL_CHECKS)
    error = caught.value
    assert set(error.checks) == failed
    assert [failure.checks for failure in error.failures] == [(name,) for name in error.checks]
    assert f"{len(failed)} of {len(STORE_LEVEL_CHECKS)} conformance checks failed" in str(error)
    for name in failed:
        assert f"- {name}: " in str(error)


async def test_a_failing_check_names_itself_and_the_difference() -> None:
    with pytest.raises(ConformanceError) as caught:
        await CONFORMANCE_CHECKS["rotate_stale_hash"](RotateIgnoresExpectedHash)
    assert caught.value.checks == ("rotate_stale_hash",)
    assert str(caught.value).startswith("rotate_stale_hash: rotate with a hash never stored: expected False, got True")


async def test_an_unexpected_exception_is_reported_as_a_failure() -> None:
    with pytest.raises(ConformanceError, match=r"^get_unknown_handle: unexpected KeyError") as caught:
        await CONFORMANCE_CHECKS["get_unknown_handle"](GetRaisesForUnknownHandles)
    assert isinstance(caught.value.__cause__, KeyError)


async def test_the_token_check_finds_hash1_in_a_stored_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (asgi_session.manager, asgi_session._refresh):  # create and refresh: keep hash1, not its hash
        monkeypatch.setattr(module, "stored_hash_of_hash1", lambda hash1: hash1)
    with pytest.raises(ConformanceError) as caught:
        await CONFORMANCE_CHECKS["no_raw_refresh_token"](MemoryStore)
    assert str(caught.value) == (
        "no_raw_refresh_token: "
        "the sha256 hex (hash1) of the first refresh token appears in a string field of store.get(handle); "
        "the sha256 hex (hash1) of the refreshed refresh token appears in a string field of store.get(handle); "
        "the sha256 hex (hash1) of the first refresh token appears in a string field of "
        "store.list_for_user('user-1'); "
        "the sha256 hex (hash1) of the refreshed refresh token appears in a string field of "
        "store.list_for_user('user-1')"
    )


async def test_the_token_check_searches_the_persisted_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    minted: list[str] = []

    def mint_and_remember(mac_key: bytes, handle: str) -> str:
        token = mint_refresh_token(mac_key, handle)
        minted.append(token)
        return token

    async def leaky_disk(store: SessionStore) -> bytes:
        return "".join(minted).encode()

    monkeypatch.setattr(asgi_session.manager, "mint_refresh_token", mint_and_remember)
    with pytest.raises(ConformanceError) as caught:
        await CONFORMANCE_CHECKS["no_raw_refresh_token"](MemoryStore, persisted=leaky_disk)
    assert len(minted) == 1  # the refreshed token is derived from the first, not minted
    assert str(caught.value) == (
        "no_raw_refresh_token: "
        "the first raw refresh token appears in the persisted bytes while the store is open; "
        "the first raw refresh token appears in the persisted bytes after the store closed"
    )


async def test_the_reference_store_passes_the_whole_suite() -> None:
    await run_conformance_suite(MemoryStore)


async def test_only_refuses_unknown_check_names() -> None:
    with pytest.raises(ValueError, match="no_such_check"):
        await run_conformance_suite(MemoryStore, only=["delete", "no_such_check"])
