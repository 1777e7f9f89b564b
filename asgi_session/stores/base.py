"""The store protocol: the async contract every session store implements, and the records it holds.

This module does no I/O and imports no driver. A store is an async context manager; its methods are coroutines.
"Missing" is ``None`` (or ``False`` / an empty list), never an exception; any failure of the backend is raised as
:class:`~asgi_session.StoreError`, never swallowed.

Times are floats in seconds since the Unix epoch, as read from the manager's clock: stores never read a clock
themselves (``delete_expired`` is given ``now``), so tests can drive time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio

from ..exceptions import StoreError

__all__ = [
    "KeyRecord",
    "LeaseStore",
    "Revocation",
    "RevocationFeed",
    "RevocationLog",
    "RevocationLogRewound",
    "RevocationProbe",
    "Rotation",
    "SessionRecord",
    "SessionStore",
    "SlidingRotation",
    "SlidingRotationStore",
    "StoreLifecycle",
]

_L = TypeVar("_L", bound="StoreLifecycle")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One session as the store keeps it.

    Attributes:
        handle: the session handle (random, globally unique; the primary key).
        user_id: the session's user.
        tenant_id: the session's tenant (``"public"`` by default).
        refresh_hash: the hash of the current refresh token's hash (``sha256(sha256(token))``); never the token.
        previous_refresh_hash: the same hash of the refresh token the last rotation replaced, or ``None``.
        rotated_at: when the last rotation happened, or ``None`` before the first.
        session_data: data kept only server side (JSON-serialisable mapping).
        access_token_payload: the custom claims put into every access token (JSON-serialisable mapping).
        created_at: when the session was created.
        last_seen: when the session was last refreshed (or created).
        expires_at: when the session expires unless refreshed (already capped by ``absolute_expires_at``).
        absolute_expires_at: the absolute end of the session that no refresh extends, or ``None``.
        user_agent: the ``User-Agent`` of the request that created the session, when known.
        ip: the client address of the request that created the session, when known.
        remember: ``False`` for a "keep me signed in" box left unticked: its cookies end with the browser session.
        idle_timeout: this session's own idle timeout in seconds (shorter than ``refresh_token_validity``), or
            ``None`` for the configured one. Every refresh slides ``expires_at`` by it.
    """

    handle: str
    user_id: str
    tenant_id: str
    refresh_hash: str
    previous_refresh_hash: str | None = None
    rotated_at: float | None = None
    session_data: Mapping[str, Any]
    access_token_payload: Mapping[str, Any]
    created_at: float
    last_seen: float
    expires_at: float
    absolute_expires_at: float | None = None
    user_agent: str | None = None
    ip: str | None = None
    remember: bool = True
    idle_timeout: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    """An atomic refresh-token rotation: a compare-and-swap of ``refresh_hash``.

    The store applies it only if the stored ``refresh_hash`` still equals ``expected_refresh_hash``; then it sets
    ``refresh_hash = new_refresh_hash``, ``previous_refresh_hash = expected_refresh_hash``, and the three times.

    Attributes:
        handle: the session to rotate.
        expected_refresh_hash: the hash the caller read; the swap happens only if it is still current.
        new_refresh_hash: the hash of the new refresh token.
        rotated_at: the rotation time.
        last_seen: the new last-seen time.
        expires_at: the new (slid) expiry.
    """

    handle: str
    expected_refresh_hash: str
    new_refresh_hash: str
    rotated_at: float
    last_seen: float
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SlidingRotation:
    """A rotation for a caller that has not read the session: the store slides the expiry itself.

    Applied only if the session exists, has not expired (``expires_at > now``) and its ``refresh_hash`` still equals
    ``expected_refresh_hash``; then, as :class:`Rotation` does, ``refresh_hash = new_refresh_hash``,
    ``previous_refresh_hash = expected_refresh_hash``, ``rotated_at = last_seen = now``, and ``expires_at`` slides
    to ``now + idle``, where ``idle`` is the session's own ``idle_timeout`` or, without one, ``default_idle_timeout``,
    capped by ``absolute_expires_at`` (the same value as ``min(now + idle, absolute_expires_at)`` in Python).

    Attributes:
        handle: the session to rotate.
        expected_refresh_hash: the stored hash of the presented refresh token.
        new_refresh_hash: the stored hash of the new refresh token.
        now: the rotation time.
        default_idle_timeout: the idle timeout of a session without its own, in seconds.
    """

    handle: str
    expected_refresh_hash: str
    new_refresh_hash: str
    now: float
    default_idle_timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """A key shared by every process using the store (a signing key, or the refresh-token MAC key).

    Attributes:
        kid: the key id (unique; the primary key).
        algorithm: ``"ES256"``, ``"RS256"``, ``"EdDSA"`` for signing keys; ``"refresh-mac"`` for the MAC key.
        private_key: the key material (PKCS#8 PEM for signing keys, base64 for the MAC key), or that text
            encrypted (``enc1:...``) when ``key_encryption_secret`` is set. Left out of the ``repr``.
        created_at: when it was created.
        signs_from: when it starts signing (it is published, and verifies, from ``created_at``).
        expires_at: when it may be deleted: every token it signed has expired by then; ``None`` for never.
    """

    kid: str
    algorithm: str
    private_key: str = field(repr=False)  # never printed: logs, tracebacks, debuggers
    created_at: float
    signs_from: float
    expires_at: float | None = None


@runtime_checkable
class SessionStore(Protocol):
    """The async contract of a session store.

    Implementations: :class:`~asgi_session.stores.MemoryStore`, :class:`~asgi_session.stores.SQLiteStore`,
    ``RedisStore`` and ``PostgresStore``. Run :mod:`asgi_session.testing`'s conformance suite against your own.
    Every method may raise :class:`~asgi_session.StoreError`; nothing else escapes.
    """

    async def open(self) -> None:
        """Connect and create or migrate the schema. Calling it on an open store does nothing."""
        ...

    async def close(self) -> None:
        """Release every connection. Calling it on a closed store does nothing."""
        ...

    async def __aenter__(self) -> SessionStore: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def create(self, record: SessionRecord) -> None:
        """Insert a new session. A handle that already exists raises ``StoreError``."""
        ...

    async def get(self, handle: str) -> SessionRecord | None:
        """Return the session with this handle (expired or not), or ``None``."""
        ...

    async def rotate(self, rotation: Rotation) -> bool:
        """Apply a rotation atomically; return whether the stored hash matched and the swap happened."""
        ...

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        """Replace the session data; return whether the session exists."""
        ...

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        """Replace the stored custom access-token claims; return whether the session exists."""
        ...

    async def touch(self, handle: str, last_seen: float) -> bool:
        """Set the last-seen time; return whether the session exists."""
        ...

    async def delete(self, handles: Sequence[str]) -> list[str]:
        """Delete these sessions; return the handles that existed and were deleted (idempotent)."""
        ...

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        """Return the user's sessions in one tenant, or in every tenant when ``tenant_id`` is ``None``.

        Expired sessions not yet deleted are included; ordered by ``created_at`` then ``handle``.
        """
        ...

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Delete the user's sessions in one tenant, or in every tenant; return the deleted handles."""
        ...

    async def delete_expired(self, now: float) -> int:
        """Delete sessions with ``expires_at <= now``; return how many were deleted."""
        ...

    async def get_keys(self) -> list[KeyRecord]:
        """Return every stored key, ordered by ``signs_from`` then ``kid``."""
        ...

    async def add_key(self, key: KeyRecord) -> bool:
        """Insert a key unless one with its ``kid`` exists; return whether it was inserted."""
        ...

    async def delete_keys(self, kids: Sequence[str]) -> int:
        """Delete these keys; return how many existed."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """Optional: a named lease in the store, so that among many processes only one does a periodic job.

    The scheduled cleanup (``SessionConfig.cleanup_interval``) takes the lease ``"cleanup"`` for one interval before
    it runs: with many processes on one store, one of them cleans up per interval. A store without leases keeps
    working: every process then runs the cleanup (it is idempotent, only repeated).
    """

    async def acquire_lease(self, name: str, holder: str, now: float, duration: float) -> bool:
        """Take the lease ``name`` for ``holder`` until ``now + duration``; return whether it was granted.

        Granted, atomically, when nobody holds the lease, when its last grant ended (its end is at or before
        ``now``), or when ``holder`` holds it already (it is renewed); refused while another holder's grant lasts.
        Times are the caller's clock, as everywhere in the protocol.
        """
        ...


class StoreLifecycle:
    """The open / close / ``async with`` bookkeeping shared by the built-in stores and the manager.

    A subclass writes only ``_open()`` (connect, migrate) and ``_close()`` (release); this base makes both
    idempotent and serialises them with one lock, never the operations. ``open()`` on an open object returns
    without taking the lock, so calling it at the start of every operation costs an attribute read. A store of
    your own does not need this class: the protocol is all the manager relies on.

    Subclasses call ``super().__init__()``.
    """

    def __init__(self) -> None:
        self._opened = False
        self._lifecycle = anyio.Lock()

    @property
    def opened(self) -> bool:
        """Whether ``open()`` has completed and ``close()`` has not been called since."""
        return self._opened

    async def _open(self) -> None:
        """Connect and prepare; called by :meth:`open` once per open/close cycle. Raise to leave it closed."""

    async def _close(self) -> None:
        """Release what ``_open`` acquired; called by :meth:`close` only when open."""

    async def open(self) -> None:
        """Open; does nothing when already open."""
        if self._opened:
            return
        async with self._lifecycle:
            if not self._opened:
                await self._open()
                self._opened = True

    async def close(self) -> None:
        """Close; does nothing when already closed. Marked closed before ``_close`` runs, even if it fails."""
        async with self._lifecycle:
            if self._opened:
                self._opened = False
                await self._close()

    async def __aenter__(self: _L) -> _L:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


Revocation = tuple[int, str]
"""One entry of a store's revocation log: ``(sequence number, session handle)``."""


class RevocationLogRewound(StoreError):
    """A revocation feed found the log's highest number below the position it was asked to follow from.

    The store lost or restored data (a Redis restart without persistence, an older snapshot, eviction of the log,
    a failover to a replica that lagged; a PostgreSQL restore): new revocations reuse numbers the manager's view
    has already passed, and a feed that only asks for entries above its position would never deliver them. The
    manager forgets its position (not the handles it holds) and reads the whole log again.
    """


@runtime_checkable
class RevocationLog(Protocol):
    """Optional: a store that logs every revoked session, so managers can refuse revoked tokens from memory.

    Every session removed by :meth:`SessionStore.delete` or :meth:`SessionStore.delete_for_user` is appended in
    the same atomic write, with a sequence number larger than every earlier one (never reused, even after a trim);
    ``delete_expired`` logs nothing (an expired session has no live access token). A store without a log keeps
    working: managers then read the session on every verification that needs the check.
    """

    async def revocations_since(self, after: int, limit: int = 10_000) -> list[Revocation]:
        """Return up to ``limit`` entries with a sequence number above ``after``, in ascending order."""
        ...

    async def trim_revocations(self, through: int) -> int:
        """Delete the entries numbered ``through`` or lower; return how many were deleted."""
        ...


@runtime_checkable
class RevocationProbe(Protocol):
    """Optional, beside :class:`RevocationLog`: an exact, synchronous look at the log, cheap enough per request.

    ``probe_revocations(after)`` returns every entry above ``after`` committed before the call, from any process
    sharing the store, without awaiting; ``None`` when it cannot tell (the caller then reads the store). A
    subclass of a store that has one may opt out with ``probe_revocations = None``.
    """

    def probe_revocations(self, after: int) -> list[Revocation] | None:
        """Every entry above ``after`` committed so far, or ``None`` when that cannot be known right now."""
        ...


@runtime_checkable
class SlidingRotationStore(Protocol):
    """Optional: a refresh's read and compare-and-swap in one step (SQLite and memory; one round trip, not two).

    The manager tries it first on every refresh; ``None`` sends it down the full path (read, then
    :meth:`SessionStore.rotate`), which tells an expired session, a grace-window repeat and a theft apart. So a
    store may also answer ``None`` whenever it cannot do the step, and a subclass may opt out with
    ``rotate_sliding = None``.
    """

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        """Apply ``rotation`` if its conditions hold and return the session as now stored; else ``None``.

        Raises:
            StoreError: the backend failed (whether the rotation happened is then unknown, as for ``rotate``).
        """
        ...


@runtime_checkable
class RevocationFeed(Protocol):
    """Optional, beside :class:`RevocationLog`: new log entries pushed to each manager (Redis, PostgreSQL).

    With ``SessionConfig.revocation_max_lag > 0`` a manager runs :meth:`follow_revocations` in a background task
    and checks revocations from memory while the feed is current within that bound; otherwise (or while the feed
    is down or late) it reads the store on every verification that needs the check.
    """

    async def follow_revocations(
        self,
        after: int,
        deliver: Callable[[list[Revocation], float], None],
        *,
        now: Callable[[], float],
        heartbeat: float,
    ) -> None:
        """Deliver every log entry above ``after``, in order, until cancelled.

        Calls ``deliver(entries, current_as_of)``: ``entries`` (maybe empty) continue the sequence after what was
        delivered before, and every entry committed before the time ``current_as_of`` (a ``now()`` reading taken
        before the round trip that proved it) has now been delivered. The first call follows a catch-up read of
        the log; later calls come as entries are pushed, and at least every ``heartbeat`` seconds (an empty
        confirmation), so the manager can tell a quiet feed from a dead one.

        Raises:
            RevocationLogRewound: the log's highest number is below ``after`` or below an entry delivered (the
                store lost or restored data); the manager restarts the feed from position 0.
            StoreError: the connection was lost or the log cannot be read; the manager restarts the feed from the
                last position delivered (after a short pause) and reads the store meanwhile.
        """
        ...
