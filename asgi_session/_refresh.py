"""The refresh layer of SessionManager: rotate a refresh token by compare-and-swap, with grace and theft detection.

:class:`SessionRefresh` is a base class of :class:`~asgi_session.SessionManager`, not used on its own. How rotation
works (children derived from parents, the grace window, the theft verdict) is described in ``docs/rotation.md``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from . import _metrics
from ._admin import SessionAdmin
from ._key_material import SigningKey
from ._refresh_token import (
    anti_csrf_token_for,
    child_refresh_token,
    refresh_token_handle,
    sha256_hex,
    stored_hash_of_hash1,
)
from .exceptions import StoreError, TokenTheftDetectedError, UnauthorisedError
from .session import Session
from .stores.base import Rotation, SessionRecord, SlidingRotation

__all__ = ["SessionRefresh"]

logger = logging.getLogger("asgi_session")

_ROTATE_ATTEMPTS = 4


# Per store class: whether its ``rotate_sliding`` may stand for its ``get`` and ``rotate`` (see ``_one_step``).
_ONE_STEP_CLASSES: dict[type, bool] = {}


def _owner(cls: type, name: str) -> type | None:
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _one_step(store: object) -> Callable[[SlidingRotation], Awaitable[SessionRecord | None]] | None:
    """The store's ``rotate_sliding``, unless it has none or its class customised the two-step path without it.

    A subclass of a built-in store that overrides ``get`` or ``rotate`` (to audit, count or fail them) but not
    ``rotate_sliding`` keeps the two steps, so its overrides still see every refresh.
    """
    method = getattr(store, "rotate_sliding", None)
    if not callable(method):
        return None
    cls = type(store)
    allowed = _ONE_STEP_CLASSES.get(cls)
    if allowed is None:
        owner = _owner(cls, "rotate_sliding")
        mro = cls.__mro__
        allowed = owner is None or all(
            (other := _owner(cls, name)) is None or mro.index(other) >= mro.index(owner) for name in ("get", "rotate")
        )
        _ONE_STEP_CLASSES[cls] = allowed
    return method if allowed else None


class SessionRefresh(SessionAdmin):
    """Refresh-token rotation; works without a request."""

    async def refresh_session_without_request_response(
        self,
        refresh_token: str,
        disable_anti_csrf: bool = False,
        anti_csrf_token: str | None = None,
    ) -> Session:
        """Rotate a refresh token and return the session with new tokens.

        The parent presented again within ``refresh_token_grace_period`` gets the same child (no theft verdict);
        a superseded token presented after that revokes the session.

        Raises:
            UnauthorisedError: the token is not ours, the session is gone or expired, or the anti-CSRF token
                does not match (``VIA_TOKEN`` mode, unless ``disable_anti_csrf``).
            TokenTheftDetectedError: a superseded refresh token was reused; the session is now revoked.
            StoreError: the store failed; the presented token stays valid.
        """
        with _metrics.refresh_span():  # the whole rotation, in this one coroutine (no inner layer to await)
            if not self._opened:
                await self.open()
            mac_key = self.keys.refresh_mac_key
            handle = refresh_token_handle(mac_key, refresh_token)
            if handle is None:
                raise UnauthorisedError("invalid refresh token")
            if self.config.anti_csrf_mode == "VIA_TOKEN" and not disable_anti_csrf:
                expected = anti_csrf_token_for(mac_key, refresh_token)
                if not anti_csrf_token or not hmac.compare_digest(anti_csrf_token.encode(), expected.encode()):
                    _metrics.record_anti_csrf_failure("VIA_TOKEN")
                    logger.info("asgi_session: anti-CSRF check failed on refresh of session %r", handle)
                    await self._anti_csrf_failed(handle, "anti-csrf check failed on refresh")
                    raise UnauthorisedError("anti-csrf check failed on refresh", handle=handle)
            # Each hash once: sha256_hex(token) goes into the access token, sha256_hex of that into the store.
            parent_hash1 = sha256_hex(refresh_token)
            presented = stored_hash_of_hash1(parent_hash1)
            child = child_refresh_token(mac_key, refresh_token)
            child_hash1 = sha256_hex(child)
            child_stored = stored_hash_of_hash1(child_hash1)
            hashes = (child_hash1, parent_hash1)
            # Everything the answer needs that may read the store comes before the swap: once the swap commits, the
            # presented token is superseded, and a failure then would turn the client's retry into a theft verdict.
            key = await self._signing_key()
            sliding = _one_step(self.store)
            if sliding is not None:
                # The usual refresh in one store step: read and swap together, the expiry slid by the store as
                # below. ``None`` (missing, expired, another hash, or a store that cannot) takes the full path,
                # which tells those cases apart.
                default_idle = self.config.refresh_token_validity.total_seconds()
                swapped: SessionRecord | None = await sliding(
                    SlidingRotation(
                        handle=handle,
                        expected_refresh_hash=presented,
                        new_refresh_hash=child_stored,
                        now=self.clock.now(),
                        default_idle_timeout=default_idle,
                    )
                )
                if swapped is not None:
                    return await self._rotated(
                        swapped, swapped.expires_at, child, refresh_token, disable_anti_csrf, key, hashes
                    )
            for _ in range(_ROTATE_ATTEMPTS):
                record = await self.store.get(handle)
                now = self.clock.now()
                if record is None or record.expires_at <= now:
                    if record is not None and self._hooks is not None:
                        await self._hooks.emit("revoked", handle, record.user_id, record.tenant_id, "expired")
                    raise UnauthorisedError("session does not exist or has expired", handle=handle)
                if hmac.compare_digest(presented, record.refresh_hash):
                    rotation = Rotation(
                        handle=handle,
                        expected_refresh_hash=presented,
                        new_refresh_hash=child_stored,
                        rotated_at=now,
                        last_seen=now,
                        expires_at=self._idle_expiry(now, record.absolute_expires_at, record.idle_timeout),
                    )
                    if await self.store.rotate(rotation):
                        # The record as stored now differs in its hashes and times; the token needs only the new expiry.
                        return await self._rotated(
                            record, rotation.expires_at, child, refresh_token, disable_anti_csrf, key, hashes
                        )
                    continue  # somebody rotated first: re-read; we are now the grace-window case
                if self._within_grace(record, presented, now):
                    if not hmac.compare_digest(child_stored, record.refresh_hash):
                        raise UnauthorisedError("refresh token lineage mismatch", handle=handle)
                    _metrics.record_refreshed("grace")
                    return self._issue(
                        record, child, parent=refresh_token, disable_anti_csrf=disable_anti_csrf, key=key, hashes=hashes
                    )
                deleted = await self.store.delete([handle])
                self._revoked_here([handle])
                _metrics.record_theft()
                _metrics.record_revoked("token_theft", len(deleted))
                logger.warning(
                    "asgi_session: refresh token theft detected; revoked session %r (user %r, tenant %r)",
                    handle,
                    record.user_id,
                    record.tenant_id,
                )
                if self._hooks is not None:
                    if deleted:
                        await self._hooks.emit("revoked", handle, record.user_id, record.tenant_id, "theft")
                    await self._hooks.emit("token_theft_detected", handle, record.user_id, record.tenant_id)
                raise TokenTheftDetectedError(handle=handle, user_id=record.user_id, tenant_id=record.tenant_id)
            raise StoreError("refresh did not settle after repeated concurrent rotations; try again")

    async def _rotated(
        self,
        record: SessionRecord,
        expires_at: float,
        child: str,
        parent: str,
        disable_anti_csrf: bool,
        key: SigningKey,
        hashes: tuple[str, str | None],
    ) -> Session:
        """The answer to a refresh whose swap committed: the child's tokens for ``record``, expiring at ``expires_at``.

        ``record`` may be the one read before the swap: the token needs only its user, tenant, handle and payload,
        which a swap does not change, and the new expiry.
        """
        _metrics.record_refreshed("rotated")
        logger.info("asgi_session: refreshed session %r (user %r)", record.handle, record.user_id)
        session = self._issue(
            record,
            child,
            parent=parent,
            disable_anti_csrf=disable_anti_csrf,
            key=key,
            hashes=hashes,
            expires_at=expires_at,
        )
        if self._hooks is not None:
            await self._hooks.emit("refreshed", record.handle, record.user_id, record.tenant_id)
        return session

    async def _anti_csrf_failed(self, handle: str | None, reason: str) -> None:
        """Report an anti-CSRF failure on refresh to the hook, with the session's owner when it exists."""
        hooks = self._hooks
        if hooks is None or hooks.on_anti_csrf_failure is None:
            return
        try:
            record = await self.store.get(handle) if handle is not None else None
        except StoreError:
            record = None  # the hook still hears of the failure; the refresh answers the request as it would
        user_id = record.user_id if record is not None else None
        tenant_id = record.tenant_id if record is not None else None
        await hooks.emit("anti_csrf_failure", handle, user_id, tenant_id, reason)

    def _within_grace(self, record: SessionRecord, presented: str, now: float) -> bool:
        if record.previous_refresh_hash is None or record.rotated_at is None:
            return False
        if not hmac.compare_digest(presented, record.previous_refresh_hash):
            return False
        return now <= record.rotated_at + self.config.refresh_token_grace_period.total_seconds()
