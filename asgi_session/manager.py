"""SessionManager: creates, verifies, refreshes and revokes sessions; the offline (request-free) API."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio

from ._admin import SessionAdmin
from ._asgi import MAX_COOKIE_BYTES
from ._clock import Clock, SystemClock
from .config import SessionConfig
from .exceptions import (
    ConfigurationError,
    InvalidPayloadError,
    StoreError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from .keys import KeyRing
from .session import Session
from .stores.base import Rotation, SessionRecord, SessionStore
from .tokens import (
    UnknownKeyError,
    VerifiedTokenCache,
    access_token_length_bound,
    anti_csrf_token_for,
    check_custom_payload,
    check_json_object,
    child_refresh_token,
    decode_access_token,
    mint_refresh_token,
    refresh_token_handle,
    sha256_hex,
    sign_access_token,
    stored_refresh_hash,
)
from .transport import ACCESS_COOKIE

__all__ = ["SessionManager"]

logger = logging.getLogger("asgi_session")

DEFAULT_STORE_URL = "sqlite:///asgi_session.db"
_ROTATE_ATTEMPTS = 4


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidPayloadError(f"{name} must be a non-empty string", key=name)
    return value


class SessionManager(SessionAdmin):
    """Creates, verifies, refreshes and revokes sessions, with or without a request.

    The manager is an async context manager: it opens its store and loads the key ring on entry and closes the
    store on exit. Every method also opens it on first use, so a manager can be used without ``async with``.

    Args:
        store: where sessions and keys live. Default: ``store_from_url(ASGI_SESSION_STORE_URL)``, else a SQLite
            file ``./asgi_session.db``.
        config: the settings (default ``SessionConfig()``).
        clock: the time source (tests inject :class:`asgi_session.testing.FakeClock`).
    """

    def __init__(
        self,
        store: SessionStore | None = None,
        config: SessionConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        if store is None:
            from .stores.url import store_from_url

            store = store_from_url(os.environ.get("ASGI_SESSION_STORE_URL") or DEFAULT_STORE_URL)
        if config is not None and not isinstance(config, SessionConfig):
            raise ConfigurationError("config must be a SessionConfig")
        self.store = store
        self.config = config or SessionConfig()
        self.clock: Clock = clock or SystemClock()
        self.keys = KeyRing(self.store, self.config, self.clock)
        self._cache = VerifiedTokenCache(self.config.verified_token_cache_size)
        self._opened = False
        self._open_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"SessionManager(store={self.store!r})"

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and load (or create) the keys. Does nothing when already open."""
        if self._opened:
            return
        async with self._open_lock:
            if self._opened:
                return
            await self.store.open()
            await self.keys.load()
            self._opened = True

    async def close(self) -> None:
        """Close the store. The manager reopens it on next use."""
        async with self._open_lock:
            self._opened = False
            self._cache.clear()
            await self.store.close()

    async def __aenter__(self) -> SessionManager:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- create / verify / refresh ---------------------------------------------------------------------------

    async def create_new_session_without_request_response(
        self,
        user_id: str,
        tenant_id: str = "public",
        access_token_payload: Mapping[str, Any] | None = None,
        session_data_in_database: Mapping[str, Any] | None = None,
        *,
        disable_anti_csrf: bool = False,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> Session:
        """Create a session and return it with its tokens (see ``get_all_session_tokens_dangerously``).

        Raises:
            InvalidPayloadError: the payload sets a protected claim or is not JSON; an id is empty.
            StoreError: the store failed; no session exists and no token was issued.
        """
        await self.open()
        _check_id("user_id", user_id)
        _check_id("tenant_id", tenant_id)
        payload = check_custom_payload(access_token_payload)
        data = check_json_object(session_data_in_database, "session_data_in_database")
        now = self.clock.now()
        handle = str(uuid.uuid4())
        refresh_token = mint_refresh_token(self.keys.refresh_mac_key, handle)
        absolute = None
        if self.config.session_max_lifetime is not None:
            absolute = now + self.config.session_max_lifetime.total_seconds()
        record = SessionRecord(
            handle=handle,
            user_id=user_id,
            tenant_id=tenant_id,
            refresh_hash=stored_refresh_hash(refresh_token),
            session_data=data,
            access_token_payload=payload,
            created_at=now,
            last_seen=now,
            expires_at=self._idle_expiry(now, absolute),
            absolute_expires_at=absolute,
            user_agent=user_agent,
            ip=ip,
        )
        self._check_cookie_size(record, payload)
        await self.store.create(record)
        logger.info("asgi_session: created session %s (user %s, tenant %s)", handle, user_id, tenant_id)
        return await self._issue(record, refresh_token, parent=None, disable_anti_csrf=disable_anti_csrf)

    async def get_session_without_request_response(
        self,
        access_token: str | None,
        anti_csrf_token: str | None = None,
        anti_csrf_check: bool | None = None,
        session_required: bool = True,
        check_database: bool | None = None,
        *,
        tenant_id: str | None = None,
    ) -> Session | None:
        """Verify an access token and return its session.

        Args:
            access_token: the token; ``None`` or empty means "no session".
            anti_csrf_token: the client's anti-CSRF token (``VIA_TOKEN`` mode).
            anti_csrf_check: ``False`` skips the anti-CSRF check; otherwise ``VIA_TOKEN`` mode requires
                ``anti_csrf_token`` to match (``VIA_CUSTOM_HEADER`` cannot be checked offline: pass ``False``).
            session_required: raise ``UnauthorisedError`` when there is no token (else return ``None``).
            check_database: also require the session to exist in the store; default: the config's
                ``access_token_blacklisting``.
            tenant_id: when given, the token must belong to this tenant.

        Raises:
            TryRefreshTokenError: the token is expired or invalid, or the anti-CSRF token does not match.
            UnauthorisedError: no token while required; revoked or expired session (with ``check_database``);
                the token belongs to another tenant.
            StoreError: the store failed during the database check.
        """
        await self.open()
        if not access_token:
            if session_required:
                raise UnauthorisedError("no access token", clear_tokens=False)
            return None
        claims = await self.verify_access_token(access_token)
        if tenant_id is not None and claims["tId"] != tenant_id:
            raise UnauthorisedError("session belongs to another tenant", clear_tokens=False)
        self._check_anti_csrf(claims, anti_csrf_token, anti_csrf_check)
        if check_database if check_database is not None else self.config.access_token_blacklisting:
            await self._check_database(claims)
        return Session(self, access_token=access_token, claims=claims)

    def verify_now(self, access_token: str) -> Session | None:
        """Verify a token without awaiting when nothing needs I/O; ``None`` means "use the async path".

        A cached token is a dict lookup; a new token with a known key is decoded in place. ``None`` when
        blacklisting is on (the store must be read), the manager is not open yet, or the ``kid`` is unknown.

        Raises:
            TryRefreshTokenError: the token is expired or invalid.
        """
        if self.config.access_token_blacklisting or not self._opened:
            return None
        now = self.clock.now()
        claims = self._cache.get(access_token, now)
        if claims is None:
            try:
                claims = self._decode(access_token, now, allow_expired=False)
            except UnknownKeyError:
                return None  # the async path re-reads the ring for keys another worker published
            self._cache.put(access_token, claims)
        return Session(self, access_token=access_token, claims=claims)

    def _decode(self, access_token: str, now: float, *, allow_expired: bool) -> dict[str, Any]:
        return decode_access_token(
            access_token,
            lookup=self.keys.verification_key,
            issuer=self.config.issuer,
            now=now,
            max_length=self.config.max_token_length,
            allow_expired=allow_expired,
        )

    async def verify_access_token(self, access_token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """Verify an access token's signature and claims (locally; a cache makes repeats a dict lookup).

        Raises:
            TryRefreshTokenError: the token is expired or invalid.
        """
        if not isinstance(access_token, str):
            raise TryRefreshTokenError("access token is not a string")
        now = self.clock.now()
        if not allow_expired:
            cached = self._cache.get(access_token, now)
            if cached is not None:
                return cached
        try:
            claims = self._decode(access_token, now, allow_expired=allow_expired)
        except UnknownKeyError as exc:
            # Another worker may have published a key we have not seen yet: re-read the ring (rate-limited).
            if not await self.keys.reload_for_unknown_kid(exc.kid):
                raise
            claims = self._decode(access_token, now, allow_expired=allow_expired)
        if not allow_expired:
            self._cache.put(access_token, claims)
        return claims

    def _check_anti_csrf(self, claims: Mapping[str, Any], given: str | None, check: bool | None) -> None:
        if check is False:
            return
        mode = self.config.anti_csrf_mode
        if mode == "VIA_CUSTOM_HEADER":
            raise ConfigurationError(
                "anti_csrf='VIA_CUSTOM_HEADER' is checked on the request's headers, not offline: pass "
                "anti_csrf_check=False to get_session_without_request_response"
            )
        expected = claims.get("antiCsrfToken")
        if (mode == "VIA_TOKEN" and expected is not None) and (
            not given or not hmac.compare_digest(str(given).encode(), str(expected).encode())
        ):
            logger.info(
                "asgi_session: anti-CSRF check failed for session %s (user %s, tenant %s)",
                claims["sessionHandle"],
                claims["sub"],
                claims["tId"],
            )
            raise TryRefreshTokenError("anti-csrf check failed")

    async def check_session_in_store(self, session: Session) -> None:
        """Require the session to still exist (unrevoked, unexpired) in the store.

        Raises:
            UnauthorisedError: it was revoked or has expired.
            StoreError: the store failed.
        """
        await self._check_database(session.get_access_token_payload())

    async def _check_database(self, claims: Mapping[str, Any]) -> None:
        record = await self.store.get(claims["sessionHandle"])
        if (
            record is None
            or record.expires_at <= self.clock.now()
            or record.user_id != claims["sub"]
            or record.tenant_id != claims["tId"]
        ):
            raise UnauthorisedError("session revoked or expired", handle=claims["sessionHandle"])

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
        await self.open()
        mac_key = self.keys.refresh_mac_key
        handle = refresh_token_handle(mac_key, refresh_token)
        if handle is None:
            raise UnauthorisedError("invalid refresh token")
        if self.config.anti_csrf_mode == "VIA_TOKEN" and not disable_anti_csrf:
            expected = anti_csrf_token_for(mac_key, refresh_token)
            if not anti_csrf_token or not hmac.compare_digest(anti_csrf_token.encode(), expected.encode()):
                logger.info("asgi_session: anti-CSRF check failed on refresh of session %s", handle)
                raise UnauthorisedError("anti-csrf check failed on refresh", handle=handle)
        presented = stored_refresh_hash(refresh_token)
        child = child_refresh_token(mac_key, refresh_token)
        for _ in range(_ROTATE_ATTEMPTS):
            record = await self.store.get(handle)
            now = self.clock.now()
            if record is None or record.expires_at <= now:
                raise UnauthorisedError("session does not exist or has expired", handle=handle)
            if hmac.compare_digest(presented, record.refresh_hash):
                rotation = Rotation(
                    handle=handle,
                    expected_refresh_hash=presented,
                    new_refresh_hash=stored_refresh_hash(child),
                    rotated_at=now,
                    last_seen=now,
                    expires_at=self._idle_expiry(now, record.absolute_expires_at),
                )
                if await self.store.rotate(rotation):
                    rotated = dataclasses.replace(
                        record,
                        refresh_hash=rotation.new_refresh_hash,
                        previous_refresh_hash=presented,
                        rotated_at=now,
                        last_seen=now,
                        expires_at=rotation.expires_at,
                    )
                    logger.info("asgi_session: refreshed session %s (user %s)", handle, record.user_id)
                    return await self._issue(rotated, child, parent=refresh_token, disable_anti_csrf=disable_anti_csrf)
                continue  # somebody rotated first: re-read; we are now the grace-window case
            if self._within_grace(record, presented, now):
                if not hmac.compare_digest(stored_refresh_hash(child), record.refresh_hash):
                    raise UnauthorisedError("refresh token lineage mismatch", handle=handle)
                return await self._issue(record, child, parent=refresh_token, disable_anti_csrf=disable_anti_csrf)
            await self.store.delete([handle])
            self._cache.discard_session(handle)
            logger.warning(
                "asgi_session: refresh token theft detected; revoked session %s (user %s, tenant %s)",
                handle,
                record.user_id,
                record.tenant_id,
            )
            raise TokenTheftDetectedError(handle=handle, user_id=record.user_id, tenant_id=record.tenant_id)
        raise StoreError("refresh did not settle after repeated concurrent rotations; try again")

    def _within_grace(self, record: SessionRecord, presented: str, now: float) -> bool:
        if record.previous_refresh_hash is None or record.rotated_at is None:
            return False
        if not hmac.compare_digest(presented, record.previous_refresh_hash):
            return False
        return now <= record.rotated_at + self.config.refresh_token_grace_period.total_seconds()

    def _idle_expiry(self, now: float, absolute: float | None) -> float:
        expiry = now + self.config.refresh_token_validity.total_seconds()
        return expiry if absolute is None else min(expiry, absolute)

    async def _issue(
        self,
        record: SessionRecord,
        refresh_token: str,
        *,
        parent: str | None,
        disable_anti_csrf: bool,
    ) -> Session:
        anti_csrf = None
        if self.config.anti_csrf_mode == "VIA_TOKEN" and not disable_anti_csrf:
            anti_csrf = anti_csrf_token_for(self.keys.refresh_mac_key, refresh_token)
        claims = self._claims(
            record,
            exp=self._access_expiry(record),
            refresh_hash1=sha256_hex(refresh_token),
            parent_hash1=sha256_hex(parent) if parent else None,
            anti_csrf=anti_csrf,
            payload=record.access_token_payload,
        )
        token = sign_access_token(claims, await self.keys.signing_key())
        return Session(
            self,
            access_token=token,
            claims=claims,
            refresh_token=refresh_token,
            refresh_token_expiry=record.expires_at,
            anti_csrf_token=anti_csrf,
            updated=True,
        )

    def _check_cookie_size(self, record: SessionRecord, payload: Mapping[str, Any]) -> None:
        """Refuse a payload whose access token could not travel in a cookie (when cookies may be used).

        Checked before anything is stored, so a session can never be left with a payload that makes every later
        response (and refresh) fail.
        """
        if self.config.token_transfer_method == "header":
            return
        worst = self._claims(
            record,
            exp=int(self.clock.now()) + 10**10,
            refresh_hash1="0" * 64,
            parent_hash1="0" * 64,
            anti_csrf="0" * 32 if self.config.anti_csrf_mode == "VIA_TOKEN" else None,
            payload=payload,
        )
        size = len(ACCESS_COOKIE) + access_token_length_bound(worst, self.config.signing_algorithm)
        if size > MAX_COOKIE_BYTES:
            raise InvalidPayloadError(
                f"the access token would make a cookie of up to {size} bytes, over the {MAX_COOKIE_BYTES} browsers "
                "keep: keep access_token_payload small (put bulk data in session_data_in_database), or set "
                "token_transfer_method='header'"
            )

    def _access_expiry(self, record: SessionRecord) -> int:
        now = self.clock.now()
        return int(min(now + self.config.access_token_validity.total_seconds(), record.expires_at))

    def _claims(
        self,
        record: SessionRecord,
        *,
        exp: int,
        refresh_hash1: str,
        parent_hash1: str | None,
        anti_csrf: str | None,
        payload: Mapping[str, Any],
    ) -> dict[str, Any]:
        return {
            "sub": record.user_id,
            "exp": exp,
            "iat": int(self.clock.now()),
            "tId": record.tenant_id,
            "rsub": record.user_id,
            "sessionHandle": record.handle,
            "refreshTokenHash1": refresh_hash1,
            "parentRefreshTokenHash1": parent_hash1,
            "antiCsrfToken": anti_csrf,
            "iss": self.config.issuer,
            **payload,
        }
