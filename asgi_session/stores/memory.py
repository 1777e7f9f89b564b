"""MemoryStore: the reference implementation of the store protocol, kept in one process's memory."""

from __future__ import annotations

import bisect
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import StoreError
from .base import (
    KeyRecord,
    LeaseStore,
    Revocation,
    RevocationLog,
    RevocationProbe,
    Rotation,
    SessionRecord,
    SessionStore,
    SlidingRotation,
    StoreLifecycle,
)

__all__ = ["MemoryStore"]


_ENCODE = json.JSONEncoder(allow_nan=False).encode  # built once: json.dumps(allow_nan=False) builds one per call


def _json_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """Copy through JSON, as a persistent store would, so callers never share mutable state with us."""
    if type(value) is dict and not value:
        return {}  # most sessions: no data, no custom claims
    try:
        copied = json.loads(_ENCODE(value))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"session data is not JSON-serialisable: {exc}") from exc
    if not isinstance(copied, dict):
        raise StoreError("session data must be a JSON object")
    return copied


def _copy(record: SessionRecord) -> SessionRecord:
    return dataclasses.replace(
        record,
        session_data=_json_copy(record.session_data),
        access_token_payload=_json_copy(record.access_token_payload),
    )


class MemoryStore(StoreLifecycle, SessionStore, RevocationLog, RevocationProbe, LeaseStore):
    """Sessions and keys in a dict. For tests and single-process development: nothing survives a restart.

    Every method is atomic with respect to other tasks on the same event loop (none awaits mid-way).
    """

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._revocations: list[Revocation] = []  # the revocation log, ascending
        self._last_seq = 0
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (holder, end)
        super().__init__()

    def __repr__(self) -> str:
        return f"MemoryStore(sessions={len(self._sessions)})"

    async def create(self, record: SessionRecord) -> None:
        """Insert a new session; a duplicate handle raises ``StoreError``."""
        if record.handle in self._sessions:
            raise StoreError("a session with this handle already exists")
        self._sessions[record.handle] = _copy(record)

    async def get(self, handle: str) -> SessionRecord | None:
        """Return the session or ``None``."""
        record = self._sessions.get(handle)
        return None if record is None else _copy(record)

    async def rotate(self, rotation: Rotation) -> bool:
        """Compare-and-swap the refresh hash."""
        record = self._sessions.get(rotation.handle)
        if record is None or record.refresh_hash != rotation.expected_refresh_hash:
            return False
        self._sessions[rotation.handle] = dataclasses.replace(
            record,
            refresh_hash=rotation.new_refresh_hash,
            previous_refresh_hash=rotation.expected_refresh_hash,
            rotated_at=rotation.rotated_at,
            last_seen=rotation.last_seen,
            expires_at=rotation.expires_at,
        )
        return True

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        """A refresh's read and compare-and-swap in one step; ``None`` unless the session is live and current."""
        record = self._sessions.get(rotation.handle)
        now = rotation.now
        if record is None or record.expires_at <= now or record.refresh_hash != rotation.expected_refresh_hash:
            return None
        idle = rotation.default_idle_timeout if record.idle_timeout is None else record.idle_timeout
        expires_at = now + idle
        if record.absolute_expires_at is not None and record.absolute_expires_at < expires_at:
            expires_at = record.absolute_expires_at
        record = dataclasses.replace(
            record,
            refresh_hash=rotation.new_refresh_hash,
            previous_refresh_hash=rotation.expected_refresh_hash,
            rotated_at=now,
            last_seen=now,
            expires_at=expires_at,
        )
        self._sessions[rotation.handle] = record
        return _copy(record)

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        """Replace the session data."""
        record = self._sessions.get(handle)
        if record is None:
            return False
        self._sessions[handle] = dataclasses.replace(record, session_data=_json_copy(data))
        return True

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        """Replace the stored custom claims."""
        record = self._sessions.get(handle)
        if record is None:
            return False
        self._sessions[handle] = dataclasses.replace(record, access_token_payload=_json_copy(payload))
        return True

    async def touch(self, handle: str, last_seen: float) -> bool:
        """Set the last-seen time."""
        record = self._sessions.get(handle)
        if record is None:
            return False
        self._sessions[handle] = dataclasses.replace(record, last_seen=last_seen)
        return True

    async def delete(self, handles: Sequence[str]) -> list[str]:
        """Delete sessions; return those that existed."""
        deleted: list[str] = []
        for handle in dict.fromkeys(handles):
            if self._sessions.pop(handle, None) is not None:
                deleted.append(handle)
        self._log(deleted)
        return deleted

    def _log(self, handles: list[str]) -> None:
        for handle in handles:
            self._last_seq += 1
            self._revocations.append((self._last_seq, handle))

    async def revocations_since(self, after: int, limit: int = 10_000) -> list[Revocation]:
        """Return up to ``limit`` log entries numbered above ``after``."""
        return self._since(after)[:limit]

    def probe_revocations(self, after: int) -> list[Revocation] | None:
        """Every log entry numbered above ``after`` (exact: the log is this object)."""
        return self._since(after)

    def _since(self, after: int) -> list[Revocation]:
        log = self._revocations
        start = bisect.bisect_right(log, (after, "\U0010ffff"))
        return log[start:]

    async def trim_revocations(self, through: int) -> int:
        """Delete the log entries numbered ``through`` or lower."""
        start = bisect.bisect_right(self._revocations, (through, "\U0010ffff"))
        del self._revocations[:start]
        return start

    def _of_user(self, user_id: str, tenant_id: str | None) -> list[SessionRecord]:
        found = [
            record
            for record in self._sessions.values()
            if record.user_id == user_id and (tenant_id is None or record.tenant_id == tenant_id)
        ]
        found.sort(key=lambda record: (record.created_at, record.handle))
        return found

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        """Return the user's sessions, oldest first."""
        return [_copy(record) for record in self._of_user(user_id, tenant_id)]

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Delete the user's sessions; return their handles."""
        handles = [record.handle for record in self._of_user(user_id, tenant_id)]
        for handle in handles:
            del self._sessions[handle]
        self._log(handles)
        return handles

    async def delete_expired(self, now: float) -> int:
        """Delete sessions whose expiry has passed."""
        expired = [handle for handle, record in self._sessions.items() if record.expires_at <= now]
        for handle in expired:
            del self._sessions[handle]
        return len(expired)

    async def get_keys(self) -> list[KeyRecord]:
        """Return every key, ordered by ``signs_from`` then ``kid``."""
        return sorted(self._keys.values(), key=lambda key: (key.signs_from, key.kid))

    async def add_key(self, key: KeyRecord) -> bool:
        """Insert a key unless its kid exists."""
        if key.kid in self._keys:
            return False
        self._keys[key.kid] = key
        return True

    async def delete_keys(self, kids: Sequence[str]) -> int:
        """Delete keys; return how many existed."""
        return sum(1 for kid in dict.fromkeys(kids) if self._keys.pop(kid, None) is not None)

    async def acquire_lease(self, name: str, holder: str, now: float, duration: float) -> bool:
        """Take the named lease unless another holder's grant lasts past ``now``."""
        current = self._leases.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._leases[name] = (holder, now + duration)
        return True
