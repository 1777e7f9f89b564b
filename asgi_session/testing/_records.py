"""The suite's test data: sessions, rotations and keys built from small numbers at exact times."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import uuid
from typing import Any

from ..stores.base import KeyRecord, Rotation, SessionRecord, SlidingRotation

# The wall clock's future (October 2096): see the docstring of asgi_session.testing.
T0 = 4_000_000_000.0
DAY = 86_400.0

_NESTED: dict[str, Any] = {
    "str": "plain",
    "unicode": "héllo wörld · 日本語 · 🔑",
    "escapes": "quote \" backslash \\ newline \n tab \t <tag> & 'single'",
    "sql": "'; DROP TABLE sessions; --",
    "ключ": "значение",
    "int": 42,
    "negative": -7,
    "big": 2**53,
    "float": 3.5,
    "true": True,
    "false": False,
    "null": None,
    "empty_list": [],
    "empty_dict": {},
    "list": [1, "two", 3.0, None, [4, [5, {"six": 6}]]],
    "nested": {"a": {"b": {"c": {"d": ["deep", {"e": None}]}}}},
}


def hash_of(label: str) -> str:
    """A stand-in refresh hash: 64 lowercase hex digits, like the real ones."""
    return hashlib.sha256(label.encode()).hexdigest()


def handle_of(number: int) -> str:
    """The handle of session ``number``: a UUID, which messages show as ``handle#number``."""
    return str(uuid.UUID(int=number))


def make_record(
    number: int,
    *,
    user_id: str = "user-1",
    tenant_id: str = "public",
    created_at: float = T0,
    **changes: Any,
) -> SessionRecord:
    """A session with only the required fields set; ``changes`` override any field."""
    record = SessionRecord(
        handle=handle_of(number),
        user_id=user_id,
        tenant_id=tenant_id,
        refresh_hash=hash_of(f"refresh-{number}"),
        session_data={},
        access_token_payload={},
        created_at=created_at,
        last_seen=created_at,
        expires_at=created_at + DAY,
    )
    return dataclasses.replace(record, **changes)


def make_rich_record(number: int, **changes: Any) -> SessionRecord:
    """A session with every optional field set, so "changes nothing else" covers them all."""
    record = make_record(
        number,
        user_id="ünïcødé@例え.jp",
        tenant_id="tenant-ä",
        previous_refresh_hash=hash_of(f"refresh-{number}-parent"),
        rotated_at=T0 + 1.5,
        session_data=copy.deepcopy(_NESTED),
        access_token_payload={"role": "admin", "perms": ["read", "write"], "ratio": 0.25, "sso": None},
        last_seen=T0 + 1.5,
        expires_at=T0 + DAY,
        absolute_expires_at=T0 + 30 * DAY,
        user_agent="Mozilla/5.0 (X11; Linux x86_64) «test» 😀",
        ip="2001:db8::1",
        remember=False,
        idle_timeout=2 * 3600.0,
    )
    return dataclasses.replace(record, **changes)


def make_rotation(record: SessionRecord, new_label: str, at: float) -> Rotation:
    """A rotation of ``record`` from its current hash to ``hash_of(new_label)`` at time ``at``."""
    return Rotation(
        handle=record.handle,
        expected_refresh_hash=record.refresh_hash,
        new_refresh_hash=hash_of(new_label),
        rotated_at=at,
        last_seen=at + 0.5,
        expires_at=at + DAY,
    )


def make_sliding_rotation(
    record: SessionRecord, new_label: str, now: float, default_idle: float = DAY
) -> SlidingRotation:
    """A one-step rotation of ``record`` from its current hash to ``hash_of(new_label)`` at time ``now``."""
    return SlidingRotation(
        handle=record.handle,
        expected_refresh_hash=record.refresh_hash,
        new_refresh_hash=hash_of(new_label),
        now=now,
        default_idle_timeout=default_idle,
    )


def rotated(record: SessionRecord, rotation: Rotation) -> SessionRecord:
    """What a store must hold after applying ``rotation`` to ``record``."""
    return dataclasses.replace(
        record,
        refresh_hash=rotation.new_refresh_hash,
        previous_refresh_hash=rotation.expected_refresh_hash,
        rotated_at=rotation.rotated_at,
        last_seen=rotation.last_seen,
        expires_at=rotation.expires_at,
    )


_FAKE_PEM = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IC0gY29uZm9ybWFuY2UgdGVzdA==\n-----END PRIVATE KEY-----\n"


def make_key(kid: str, signs_from: float, **changes: Any) -> KeyRecord:
    """A key record with a fake PEM (stores keep it as an opaque string); ``changes`` override any field."""
    key = KeyRecord(kid=kid, algorithm="ES256", private_key=_FAKE_PEM, created_at=T0, signs_from=signs_from)
    return dataclasses.replace(key, **changes)
