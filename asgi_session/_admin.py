"""The offline session-administration layer of SessionManager: revoke, list, inspect and update by handle.

Kept apart from ``manager.py`` (which creates and verifies sessions) and ``_refresh.py`` (rotation) so each module
has one job. :class:`SessionAdmin` is a base class of :class:`~asgi_session.SessionManager`, not used on its own.
It is also the lowest layer that can stand behind a :class:`~asgi_session.Session` (it implements
:class:`~asgi_session.session.SessionBackend`), so it is where new tokens become ``Session`` objects (``_issue``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from . import _metrics
from ._core import ManagerCore
from ._refresh_token import anti_csrf_token_for, sha256_hex
from ._validate import check_id, check_session_data, is_possible_id
from .exceptions import InvalidPayloadError, UnauthorisedError
from .hooks import SessionHooks, revoke_reason
from .keys import SigningKey
from .session import Session, SessionInformation
from .stores.base import SessionRecord
from .tokens import check_custom_payload, claims_json, sign_access_token, sign_claims_json

__all__ = ["SessionAdmin"]

logger = logging.getLogger("asgi_session")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def session_information(record: SessionRecord) -> SessionInformation:
    """Return the public view of a stored session."""
    return SessionInformation(
        session_handle=record.handle,
        user_id=record.user_id,
        tenant_id=record.tenant_id,
        session_data_in_database=dict(record.session_data),
        custom_claims_in_access_token_payload=dict(record.access_token_payload),
        time_created=_ms(record.created_at),
        expiry=_ms(record.expires_at),
        last_seen=_ms(record.last_seen),
        user_agent=record.user_agent,
        ip=record.ip,
    )


def _check_user(user_id: str, tenant_id: str | None) -> None:
    check_id("user_id", user_id)
    if tenant_id is not None:
        check_id("tenant_id", tenant_id)


def merge_payload(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow-merge ``patch`` into ``current``; a ``None`` value deletes the key. Protected claims refused."""
    if not isinstance(patch, Mapping):
        raise InvalidPayloadError("the payload patch must be a mapping")
    check_custom_payload({key: None for key in patch})  # names only: refuses protected and non-string keys
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return check_custom_payload(merged)


class SessionAdmin(ManagerCore):
    """Revocation, listing and per-handle updates; every method works without a request.

    A store failure raises :class:`~asgi_session.StoreError`; no method reports a success it did not achieve.
    """

    _hooks: SessionHooks | None = None

    async def _owners(self, handles: Sequence[str]) -> dict[str, SessionRecord]:
        """The records of ``handles`` that exist, read only when an ``on_revoked`` hook will need their user."""
        if self._hooks is None or self._hooks.on_revoked is None:
            return {}
        records = [await self.store.get(handle) for handle in handles]
        return {record.handle: record for record in records if record is not None}

    async def _revoked_hooks(self, deleted: Sequence[str], owners: Mapping[str, SessionRecord], reason: str) -> None:
        hooks = self._hooks
        if hooks is None:
            return
        for handle in deleted:
            owner = owners.get(handle)
            user_id = owner.user_id if owner is not None else None
            tenant_id = owner.tenant_id if owner is not None else None
            await hooks.emit("revoked", handle, user_id, tenant_id, revoke_reason(reason))

    def _issue(
        self,
        record: SessionRecord,
        refresh_token: str,
        *,
        parent: str | None,
        disable_anti_csrf: bool,
        key: SigningKey,
        hashes: tuple[str, str | None] | None = None,
        expires_at: float | None = None,
    ) -> Session:
        """Sign a new access token for ``record`` and return the session carrying it and ``refresh_token``.

        Synchronous work only: the caller fetched ``key`` (which may read the store) before it wrote anything, so
        nothing can fail between the write and the answer. ``hashes``: ``sha256_hex`` of ``refresh_token`` and of
        ``parent`` when the caller has them already; ``expires_at``: the session's expiry when it is no longer
        ``record.expires_at`` (a rotation just slid it).
        """
        if expires_at is None:
            expires_at = record.expires_at
        claims = self._new_claims(
            record,
            refresh_token,
            hashes=(sha256_hex(refresh_token), sha256_hex(parent) if parent else None) if hashes is None else hashes,
            disable_anti_csrf=disable_anti_csrf,
            expires_at=expires_at,
        )
        return self._issued(claims, sign_claims_json(claims_json(claims), key), refresh_token, expires_at)

    def _new_claims(
        self,
        record: SessionRecord,
        refresh_token: str,
        *,
        hashes: tuple[str, str | None],
        disable_anti_csrf: bool,
        expires_at: float,
    ) -> dict[str, Any]:
        """The claims of a new access token for ``record`` and ``refresh_token`` (``hashes``: its and its parent's)."""
        anti_csrf = None
        if self.config.anti_csrf_mode == "VIA_TOKEN" and not disable_anti_csrf:
            anti_csrf = anti_csrf_token_for(self.keys.refresh_mac_key, refresh_token)
        return self._claims(
            record,
            exp=int(min(self.clock.now() + self.config.access_token_validity.total_seconds(), expires_at)),
            refresh_hash1=hashes[0],
            parent_hash1=hashes[1],
            anti_csrf=anti_csrf,
            payload=record.access_token_payload,
        )

    def _issued(self, claims: dict[str, Any], access_token: str, refresh_token: str, expires_at: float) -> Session:
        """The session carrying a just-signed ``access_token`` (of ``claims``, from :meth:`_new_claims`)."""
        return Session(
            self,
            access_token=access_token,
            claims=claims,
            refresh_token=refresh_token,
            refresh_token_expiry=expires_at,
            anti_csrf_token=claims["antiCsrfToken"],
            updated=True,
        )

    async def _live(self, handle: str) -> SessionRecord | None:
        if not is_possible_id(handle):
            return None  # no session can have this handle; the store need not be asked
        record = await self.store.get(handle)
        if record is None or record.expires_at <= self.clock.now():
            return None
        return record

    async def revoke_session(self, session_handle: str) -> bool:
        """Revoke one session by handle; return whether it existed (a value that cannot be a handle: ``False``)."""
        await self.open()
        if not is_possible_id(session_handle):
            return False
        owners = await self._owners([session_handle]) if self._hooks is not None else {}
        deleted = await self.store.delete([session_handle])
        self._revoked_here(deleted)
        _metrics.record_revoked("revoke_session", len(deleted))
        if deleted:
            logger.info("asgi_session: revoked session %r", session_handle)
            if self._hooks is not None:
                await self._revoked_hooks(deleted, owners, "revoke")
        return bool(deleted)

    async def revoke_multiple_sessions(self, session_handles: Sequence[str]) -> list[str]:
        """Revoke several sessions; return the handles that existed and were revoked."""
        await self.open()
        handles = [handle for handle in session_handles if is_possible_id(handle)]
        owners = await self._owners(handles) if self._hooks is not None else {}
        deleted = await self.store.delete(handles)
        self._revoked_here(deleted)
        _metrics.record_revoked("revoke_multiple_sessions", len(deleted))
        if deleted:
            logger.info("asgi_session: revoked %d sessions", len(deleted))
            if self._hooks is not None:
                await self._revoked_hooks(deleted, owners, "revoke")
        return deleted

    async def revoke_all_sessions_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Revoke every session of a user, in one tenant or (``tenant_id=None``) in every tenant.

        Returns:
            The handles actually revoked (sessions already expired but not yet cleaned up are included).
        """
        await self.open()
        _check_user(user_id, tenant_id)
        owners: dict[str, SessionRecord] = {}
        if self._hooks is not None and self._hooks.on_revoked is not None:
            owners = {record.handle: record for record in await self.store.list_for_user(user_id, tenant_id)}
        deleted = await self.store.delete_for_user(user_id, tenant_id)
        self._revoked_here(deleted)
        _metrics.record_revoked("revoke_all_sessions_for_user", len(deleted))
        logger.info(
            "asgi_session: revoked all %d sessions of user %r (tenant %r)",
            len(deleted),
            user_id,
            "*" if tenant_id is None else tenant_id,
        )
        if self._hooks is not None:
            for handle in deleted:
                owner = owners.get(handle)
                tenant = owner.tenant_id if owner is not None else tenant_id
                await self._hooks.emit("revoked", handle, user_id, tenant, revoke_reason("revoke-all"))
        return deleted

    async def get_all_session_handles_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Return the handles of a user's unexpired sessions, in one tenant or in every tenant."""
        return [info.session_handle for info in await self.get_sessions_for_user(user_id, tenant_id)]

    async def get_sessions_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionInformation]:
        """Return a user's unexpired sessions with created, last-seen, expiry, user agent and IP, oldest first."""
        await self.open()
        _check_user(user_id, tenant_id)
        now = self.clock.now()
        records = await self.store.list_for_user(user_id, tenant_id)
        return [session_information(r) for r in records if r.expires_at > now]

    async def get_session_information(self, session_handle: str) -> SessionInformation | None:
        """Return what the store knows of a session, or ``None`` once it is revoked or expired."""
        await self.open()
        record = await self._live(session_handle)
        return None if record is None else session_information(record)

    async def update_session_data_in_database(self, session_handle: str, data: Mapping[str, Any]) -> bool:
        """Replace a session's server-side data; return whether the session exists."""
        await self.open()
        checked = check_session_data(data, self.config.max_session_data_bytes, "session data")
        if await self._live(session_handle) is None:
            return False
        return await self.store.update_session_data(session_handle, checked)

    async def merge_into_access_token_payload(self, session_handle: str, patch: Mapping[str, Any]) -> bool:
        """Merge ``patch`` into the stored custom claims (``None`` deletes a key); return whether it exists.

        Access tokens already issued keep their claims; the change appears at the next refresh (or at once for
        a request-bound :meth:`Session.merge_into_access_token_payload`).
        """
        await self.open()
        record = await self._live(session_handle)
        if record is None:
            return False
        merged = merge_payload(record.access_token_payload, patch)
        self._check_token_size(record, merged)
        return await self.store.update_access_token_payload(session_handle, merged)

    async def regenerate_access_token(
        self, access_token: str, new_payload: Mapping[str, Any] | None = None
    ) -> Session | None:
        """Re-sign an access token with the same expiry and, when given, new custom claims (also stored).

        Returns:
            The session with the new token (``access_and_front_token_updated`` is true), the session with the
            old token when it has already expired (only the stored payload changes), or ``None`` when the
            session no longer exists.

        Raises:
            TryRefreshTokenError: the token is not a valid token of ours (expiry aside).
        """
        await self.open()
        claims = await self._verify(access_token, allow_expired=True)
        record = await self._live(claims["sessionHandle"])
        if record is None:
            return None
        payload = record.access_token_payload
        key = await self.keys.signing_key()  # before the write: a failure here leaves the stored payload as it was
        if new_payload is not None:
            payload = check_custom_payload(new_payload)
            self._check_token_size(record, payload)
            if not await self.store.update_access_token_payload(record.handle, payload):
                return None
        if claims["exp"] <= self.clock.now():
            return Session(self, access_token=access_token, claims=claims)
        new_claims = self._claims(
            record,
            exp=claims["exp"],
            refresh_hash1=claims["refreshTokenHash1"],
            parent_hash1=claims["parentRefreshTokenHash1"],
            anti_csrf=claims["antiCsrfToken"],
            payload=payload,
        )
        return Session(self, access_token=sign_access_token(new_claims, key), claims=new_claims, updated=True)

    async def _merge_and_reissue(self, session: Session, patch: Mapping[str, Any]) -> None:
        await self.open()
        record = await self._live(session.handle)
        if record is None:
            raise UnauthorisedError("session does not exist anymore", handle=session.handle)
        merged = merge_payload(record.access_token_payload, patch)
        regenerated = await self.regenerate_access_token(session.access_token, merged)
        if regenerated is None:
            raise UnauthorisedError("session does not exist anymore", handle=session.handle)
        session._replace_access_token(regenerated.access_token, regenerated._claims)

    async def delete_expired_sessions(self) -> int:
        """Delete every expired session from the store; return how many were deleted."""
        await self.open()
        deleted = await self.store.delete_expired(self.clock.now())
        await self._trim_revocation_log()
        if deleted:
            logger.info("asgi_session: deleted %d expired sessions", deleted)
        return deleted

    async def get_jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the JWKS document (public keys that may still verify a live token)."""
        await self.open()
        return self.keys.jwks()
