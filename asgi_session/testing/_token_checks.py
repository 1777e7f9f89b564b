"""The check that no raw refresh token, nor its first hash, reaches a store, driven by a real SessionManager."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping

from ..config import SessionConfig
from ..manager import SessionManager
from ._check import PersistedReader, StoreFactory, persisted_check
from ._clock import FakeClock
from ._expect import expect
from ._records import T0


def _strings(value: object) -> Iterator[str]:
    """Every string inside a record, a key, a mapping or a list, keys included."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _strings(getattr(value, field.name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


@persisted_check("no_raw_refresh_token")
async def no_raw_refresh_token(factory: StoreFactory, persisted: PersistedReader | None) -> None:
    """Through a real SessionManager: no raw refresh token, nor its hash1, is in any stored field or byte."""
    store = factory()
    async with (
        store,
        SessionManager(store=store, config=SessionConfig(), clock=FakeClock(T0)) as manager,
    ):
        session = await manager.create_new_session_without_request_response("user-1")
        first = session.get_all_session_tokens_dangerously()["refreshToken"]
        refreshed = await manager.refresh_session_without_request_response(first)
        second = refreshed.get_all_session_tokens_dangerously()["refreshToken"]
        for token in (first, second):
            expect(isinstance(token, str) and len(token) >= 16, "the manager returned no usable refresh token")
        expect(first != second, "refreshing did not issue a new refresh token")
        forbidden: dict[str, str] = {}
        for name, token in (("first", first), ("refreshed", second)):
            forbidden[f"the {name} raw refresh token"] = token
            forbidden[f"the sha256 hex (hash1) of the {name} refresh token"] = hashlib.sha256(
                token.encode()
            ).hexdigest()
        record = await store.get(session.handle)
        expect(record is not None, "store.get(handle) found no session after create and refresh")
        places = {
            "store.get(handle)": record,
            "store.list_for_user('user-1')": await store.list_for_user("user-1"),
            "store.get_keys()": await store.get_keys(),
        }
        leaks = [
            f"{label} appears in a string field of {where}"
            for where, value in places.items()
            for label, secret in forbidden.items()
            if any(secret in text for text in _strings(value))
        ]
        if persisted is not None:
            leaks += _leaks(await persisted(store), forbidden, "the persisted bytes while the store is open")
    if persisted is not None:
        leaks += _leaks(await persisted(store), forbidden, "the persisted bytes after the store closed")
    expect(not leaks, "; ".join(leaks))


def _leaks(blob: bytes, forbidden: Mapping[str, str], where: str) -> list[str]:
    expect(isinstance(blob, bytes), f"persisted() returned {type(blob).__name__}, not bytes")
    return [f"{label} appears in {where}" for label, secret in forbidden.items() if secret.encode() in blob]
