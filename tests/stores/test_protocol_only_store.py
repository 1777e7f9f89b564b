"""A store written against the protocol alone, inheriting nothing, conforms and serves a manager.

The built-in stores share ``StoreLifecycle``; this proves a third-party store does not need it (nor
``SessionStore`` as a base): the manager and the conformance suite rely on the protocol's methods only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import pytest

from asgi_session import SessionManager
from asgi_session.stores import KeyRecord, MemoryStore, Rotation, SessionRecord, SessionStore
from asgi_session.testing import CONFORMANCE_CHECKS, FakeClock

pytestmark = pytest.mark.anyio


class DelegatingStore:
    """Every method forwards to a private MemoryStore; the class has no base but ``object``."""

    def __init__(self) -> None:
        self._inner = MemoryStore()
        self.opens = 0
        self.closes = 0

    async def open(self) -> None:
        self.opens += 1
        await self._inner.open()

    async def close(self) -> None:
        self.closes += 1
        await self._inner.close()

    async def __aenter__(self) -> DelegatingStore:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def create(self, record: SessionRecord) -> None:
        await self._inner.create(record)

    async def get(self, handle: str) -> SessionRecord | None:
        return await self._inner.get(handle)

    async def rotate(self, rotation: Rotation) -> bool:
        return await self._inner.rotate(rotation)

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        return await self._inner.update_session_data(handle, data)

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        return await self._inner.update_access_token_payload(handle, payload)

    async def touch(self, handle: str, last_seen: float) -> bool:
        return await self._inner.touch(handle, last_seen)

    async def delete(self, handles: Sequence[str]) -> list[str]:
        return await self._inner.delete(handles)

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        return await self._inner.list_for_user(user_id, tenant_id)

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        return await self._inner.delete_for_user(user_id, tenant_id)

    async def delete_expired(self, now: float) -> int:
        return await self._inner.delete_expired(now)

    async def get_keys(self) -> list[KeyRecord]:
        return await self._inner.get_keys()

    async def add_key(self, key: KeyRecord) -> bool:
        return await self._inner.add_key(key)

    async def delete_keys(self, kids: Sequence[str]) -> int:
        return await self._inner.delete_keys(kids)


def test_the_store_inherits_nothing_and_still_is_a_session_store() -> None:
    assert DelegatingStore.__mro__ == (DelegatingStore, object)
    assert isinstance(DelegatingStore(), SessionStore)


@pytest.mark.parametrize("check", list(CONFORMANCE_CHECKS))
async def test_a_protocol_only_store_passes_every_conformance_check(check: str) -> None:
    await CONFORMANCE_CHECKS[check](DelegatingStore)


async def test_a_manager_opens_uses_and_closes_a_protocol_only_store() -> None:
    store = DelegatingStore()
    clock = FakeClock()
    async with SessionManager(store, clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        assert (await manager.get_session_without_request_response(session.access_token)) is not None
        refresh_token = session.refresh_token
        assert refresh_token is not None
        refreshed = await manager.refresh_session_without_request_response(refresh_token)
        assert await manager.get_all_session_handles_for_user("alice") == [refreshed.handle]
        assert await manager.revoke_session(refreshed.handle)
        await manager.open()  # already open: the store is not opened twice
    assert (store.opens, store.closes) == (1, 1)
