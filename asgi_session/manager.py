"""SessionManager: creates, verifies, refreshes and revokes sessions; the offline (request-free) API."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from . import _metrics
from ._claim_admin import ClaimAdmin
from ._clock import Clock
from ._refresh_token import handle_prefix, mint_refresh_token, new_handle, sha256_hex, stored_hash_of_hash1
from ._token_cache import token_key
from ._validate import check_id, check_session_data
from .claims import (
    OverrideGlobalClaimValidators,
    SessionClaim,
    SessionClaimValidator,
    no_claim_validators,
    resolve_claim_validators,
)
from .config import SessionConfig
from .exceptions import ConfigurationError, InvalidPayloadError, TryRefreshTokenError, UnauthorisedError
from .hooks import SessionHooks
from .session import Session
from .stores.base import SessionRecord, SessionStore
from .tokens import UnknownKeyError, check_custom_payload, check_json_object, claims_json, sign_claims_json, sign_jwt

__all__ = ["SessionManager"]

_new_session = object.__new__  # a Session without __init__ (verify_now sets every slot itself)

logger = logging.getLogger("asgi_session")


class SessionManager(ClaimAdmin):
    """Creates, verifies, refreshes and revokes sessions, with or without a request.

    The manager is an async context manager: it opens its store and loads the key ring on entry and closes the
    store on exit. Every method also opens it on first use, so a manager can be used without ``async with``.

    To change what a method does (SuperTokens' ``override.functions``), subclass the manager and override it; the
    middleware and the request helpers call the public methods (see the docs' "Hooks and overrides" page).

    Args:
        store: where sessions and keys live. Default: ``store_from_url(ASGI_SESSION_STORE_URL)``, else a SQLite
            file ``./asgi_session.db``.
        config: the settings (default ``SessionConfig()``).
        clock: the time source (tests inject :class:`asgi_session.testing.FakeClock`).
        claims: :class:`~asgi_session.claims.SessionClaim` objects fetched into the payload of every new session.
        global_claim_validators: validators every session-reading helper runs (``get_session``,
            ``verify_session``, ``requires_session``, ``session_required``, ``require_session``,
            ``get_session_without_request_response``); each helper's ``override_global_claim_validators`` changes
            them per route.
        hooks: lifecycle hooks (:class:`~asgi_session.SessionHooks`).

    Raises:
        ConfigurationError: two claims share a key, or an argument has the wrong type.
    """

    def __init__(
        self,
        store: SessionStore | None = None,
        config: SessionConfig | None = None,
        *,
        clock: Clock | None = None,
        claims: Iterable[SessionClaim[Any]] = (),
        global_claim_validators: Iterable[SessionClaimValidator] = (),
        hooks: SessionHooks | None = None,
    ) -> None:
        super().__init__(store, config, clock=clock)
        self.claims = tuple(claims)
        keys = [claim.key for claim in self.claims if isinstance(claim, SessionClaim)]
        if len(keys) != len(self.claims):
            raise ConfigurationError("claims must be SessionClaim objects (PrimitiveClaim, PrimitiveArrayClaim, ...)")
        if len(set(keys)) != len(keys):
            raise ConfigurationError(f"two claims share a key: {sorted(k for k in keys if keys.count(k) > 1)}")
        self.global_claim_validators = tuple(global_claim_validators)
        for validator in self.global_claim_validators:
            if not isinstance(getattr(validator, "id", None), str) or not callable(
                getattr(validator, "validate", None)
            ):
                raise ConfigurationError(
                    f"{validator!r} is not a claim validator: use claim.validators.<name>(...), or implement "
                    "SessionClaimValidator (id, claim, should_refetch, validate)"
                )
        if hooks is not None and not isinstance(hooks, SessionHooks):
            raise ConfigurationError("hooks must be a SessionHooks(...)")
        self._hooks = hooks

    # -- create / verify (refresh: ``_refresh``; revoke, list, update: ``_admin``) ------------------------------

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
        remember: bool = True,
        idle_timeout: timedelta | None = None,
    ) -> Session:
        """Create a session and return it with its tokens (see ``get_all_session_tokens_dangerously``).

        Args:
            user_id: the session's user.
            tenant_id: the session's tenant.
            access_token_payload: custom claims put into every access token.
            session_data_in_database: data kept only server side.
            disable_anti_csrf: issue no anti-CSRF token (``VIA_TOKEN`` mode).
            user_agent: the ``User-Agent`` to record (what an "active devices" page shows).
            ip: the client address to record.
            remember: ``False`` for a "keep me signed in" box left unticked: the cookies written for this session,
                now and at every refresh, have no ``Expires`` / ``Max-Age``, so they end when the browser closes
                (``Session.remember`` says which; header mode is unaffected).
            idle_timeout: this session's own idle timeout, longer than ``access_token_validity`` and at most
                ``refresh_token_validity``; ``None`` uses ``refresh_token_validity``. Stored with the session, so
                every process sharing the store slides its expiry by it at each refresh.

        Raises:
            ValueError: ``idle_timeout`` is not a ``timedelta`` in that range.
            InvalidPayloadError: the payload sets a protected claim, is not JSON or would make the access token
                too large; the session data is not JSON or is over ``max_session_data_bytes``; an id breaks the
                id rules (non-empty, at most 256 characters, no control character or lone surrogate).
            StoreError: the store failed; no session exists and no token was issued.
        """
        idle = self._check_idle_timeout(idle_timeout)
        if not self._opened:
            await self.open()
        check_id("user_id", user_id)
        check_id("tenant_id", tenant_id)
        payload = check_custom_payload(access_token_payload)
        data = check_session_data(session_data_in_database, self.config.max_session_data_bytes)
        if self.claims:
            for claim in self.claims:
                payload.update(await claim.build(user_id, tenant_id, payload, self._now_ms()))
            payload = check_custom_payload(payload)
        now = self.clock.now()
        mac_key = self.keys.refresh_mac_key
        handle = new_handle(handle_prefix(mac_key, user_id))  # a user's handles side by side in handle indexes
        refresh_token = mint_refresh_token(mac_key, handle)
        refresh_hash1 = sha256_hex(refresh_token)
        absolute = None
        if self.config.session_max_lifetime is not None:
            absolute = now + self.config.session_max_lifetime.total_seconds()
        record = SessionRecord(
            handle=handle,
            user_id=user_id,
            tenant_id=tenant_id,
            refresh_hash=stored_hash_of_hash1(refresh_hash1),  # the store keeps sha256(sha256(token))
            session_data=data,
            access_token_payload=payload,
            created_at=now,
            last_seen=now,
            expires_at=self._idle_expiry(now, absolute, idle),
            absolute_expires_at=absolute,
            user_agent=user_agent,
            ip=ip,
            remember=bool(remember),
            idle_timeout=idle,
        )
        # The access token's claims, built and encoded once: sized here, before anything is stored, and signed
        # after the write.
        claims = self._new_claims(
            record,
            refresh_token,
            hashes=(refresh_hash1, None),
            disable_anti_csrf=disable_anti_csrf,
            expires_at=record.expires_at,
        )
        encoded = claims_json(claims)
        self._check_claims_size(claims, len(encoded))
        key = await self._signing_key()  # before the write: a store failure here leaves no orphan session
        await self.store.create(record)
        _metrics.record_created()
        logger.info("asgi_session: created session %r (user %r, tenant %r)", handle, user_id, tenant_id)
        session = self._issued(claims, sign_claims_json(encoded, key), refresh_token, record.expires_at)
        if self._hooks is not None:
            await self._hooks.emit("created", handle, user_id, tenant_id)
        return session

    async def get_session_without_request_response(
        self,
        access_token: str | None,
        anti_csrf_token: str | None = None,
        anti_csrf_check: bool | None = None,
        session_required: bool = True,
        check_database: bool | None = None,
        *,
        tenant_id: str | None = None,
        override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
    ) -> Session | None:
        """Verify an access token and return its session, after running the claim validators.

        Args:
            access_token: the token; ``None`` or empty means "no session".
            anti_csrf_token: the client's anti-CSRF token (``VIA_TOKEN`` mode).
            anti_csrf_check: ``False`` skips the anti-CSRF check; otherwise ``VIA_TOKEN`` mode requires
                ``anti_csrf_token`` to match (``VIA_CUSTOM_HEADER`` cannot be checked offline: pass ``False``).
            session_required: raise ``UnauthorisedError`` when there is no token (else return ``None``).
            check_database: also require the session to exist in the store; default: the config's
                ``access_token_blacklisting``.
            tenant_id: when given, the token must belong to this tenant.
            override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
                validators to run instead of ``global_claim_validators``. A re-fetched claim re-issues the token:
                read it with ``get_all_session_tokens_dangerously()``.

        Raises:
            TryRefreshTokenError: the token is expired or invalid, or the anti-CSRF token does not match.
            UnauthorisedError: no token while required; revoked or expired session (with ``check_database``);
                the token belongs to another tenant.
            InvalidClaimsError: a claim validator failed.
            StoreError: the store failed during the database check.
        """
        await self.open()
        if not access_token:
            if session_required:
                raise UnauthorisedError("no access token", clear_tokens=False)
            return None
        claims = await self._verify(access_token)
        if tenant_id is not None and claims["tId"] != tenant_id:
            raise UnauthorisedError("session belongs to another tenant", clear_tokens=False)
        try:
            self._check_anti_csrf(claims, anti_csrf_token, anti_csrf_check)
        except TryRefreshTokenError as exc:
            if self._hooks is not None:
                await self._hooks.emit(
                    "anti_csrf_failure", claims["sessionHandle"], claims["sub"], claims["tId"], exc.reason
                )
            raise
        if check_database:
            await self._check_database(claims)
        elif check_database is None and self.config.access_token_blacklisting:
            await self._check_not_revoked(claims)
        session = Session(self, access_token=access_token, claims=claims)
        # The middleware passes no_claim_validators (routes validate claims): skip without an await or a list.
        override = override_global_claim_validators
        if override is not no_claim_validators and (override is not None or self.global_claim_validators):
            validators = await resolve_claim_validators(
                self.global_claim_validators, override_global_claim_validators, session
            )
            if validators:
                await session.assert_claims(validators)
        return session

    def verify_now(self, access_token: str, key: bytes | None = None) -> Session | None:
        """Verify a token without awaiting when nothing needs I/O; ``None`` means "use the async path".

        A cached token is a dict lookup; a new token with a known key is decoded in place. With blacklisting,
        a store with an exact revocation probe (SQLite, memory) is asked in place too. ``None`` when the store
        must be read (blacklisting on another store, or a probe that cannot tell), the manager is not open yet,
        or the ``kid`` is unknown.

        Raises:
            TryRefreshTokenError: the token is expired or invalid.
            UnauthorisedError: with blacklisting, the session has been revoked.

        ``key`` is the token's cache key when the caller already has it (the middleware's header memo holds it);
        otherwise it is computed here.
        """
        blacklisting = self.config.access_token_blacklisting
        if not self._opened or (blacklisting and not self.checks_revocations_in_memory):
            return None
        now = self._now()
        if key is None:
            key = token_key(access_token)
        entries = self._cache_entries  # the cache hit, inlined (VerifiedTokenCache.get is the full version)
        claims = entries.get(key)
        if claims is not None:
            if now < claims["exp"]:
                entries.move_to_end(key)
            else:
                claims = self._cache.get(key, now)  # expired: dropped, and None
        if claims is None:
            try:
                claims = self._decode(access_token, now, allow_expired=False)
            except UnknownKeyError:
                return None  # the async path re-reads the ring for keys another worker published
            self._cache.put(key, claims)
        if blacklisting:
            revoked = self._is_revoked_now(claims["sessionHandle"])
            if revoked is None:
                return None
            if revoked:
                raise UnauthorisedError("session revoked or expired", handle=claims["sessionHandle"])
        # The session of a verified access token, built in this frame (no __init__, no keyword binding, no call of
        # its own): this runs on every request. Every slot but ``_scope`` is set here, as ``Session.__init__`` does.
        session = _new_session(Session)
        session._manager = self
        session._claims = claims
        session.access_token = access_token
        session.handle = claims["sessionHandle"]
        session.user_id = claims["sub"]
        session.tenant_id = claims["tId"]
        session.refresh_token = None
        session.refresh_token_expiry = None
        session.anti_csrf_token = None
        session.access_and_front_token_updated = False
        session.revoked = False
        session.transfer_method = None
        return session

    def _check_idle_timeout(self, idle_timeout: timedelta | None) -> float | None:
        if idle_timeout is None:
            return None
        longest, shortest = self.config.refresh_token_validity, self.config.access_token_validity
        if not isinstance(idle_timeout, timedelta) or not shortest < idle_timeout <= longest:
            raise ValueError(
                f"idle_timeout must be a datetime.timedelta longer than access_token_validity ({shortest}) and at "
                f"most refresh_token_validity ({longest}), got {idle_timeout!r}; for a shorter one, shorten "
                "access_token_validity too (a session must be refreshable before it idles out)"
            )
        return idle_timeout.total_seconds()

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
            _metrics.record_anti_csrf_failure(mode)
            logger.info(
                "asgi_session: anti-CSRF check failed for session %r (user %r, tenant %r)",
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
        await self._check_database(session._claims)

    async def check_session_not_revoked(self, session: Session) -> None:
        """The blacklisting check: from the revocation view when the store has an exact probe, else a store read.

        Raises:
            UnauthorisedError: the session was revoked (or, read from the store, has expired).
            StoreError: the store failed.
        """
        await self._check_not_revoked(session._claims)

    async def _check_not_revoked(self, claims: Mapping[str, Any]) -> None:
        # An exact probe answers without a store read: a session ends only by a logged revocation, or by expiry,
        # which its access token (valid here, and never outliving its session) rules out.
        revoked = self._is_revoked_now(claims["sessionHandle"])
        if revoked:
            _metrics.record_verification_failure("revoked")
            raise UnauthorisedError("session revoked or expired", handle=claims["sessionHandle"])
        if revoked is None:
            await self._check_database(claims)

    async def _check_database(self, claims: Mapping[str, Any]) -> None:
        record = await self.store.get(claims["sessionHandle"])
        if (
            record is None
            or record.expires_at <= self.clock.now()
            or record.user_id != claims["sub"]
            or record.tenant_id != claims["tId"]
        ):
            _metrics.record_verification_failure("revoked")
            raise UnauthorisedError("session revoked or expired", handle=claims["sessionHandle"])

    # -- JWTs for other backends (SuperTokens' JWT recipe) ---------------------------------------------------

    async def create_jwt(self, payload: Mapping[str, Any], validity_seconds: int | None = None) -> str:
        """Sign a JWT that one backend sends another, verifiable by anyone through the JWKS (``jwks_uri``).

        The token carries ``payload`` plus ``iat``, ``exp`` and ``iss`` (the configured ``issuer`` unless the
        payload sets its own), in the header ``alg``, ``typ`` and the ``kid`` of the ring's current signing key.
        It can never pass as an access token: it lacks the session claims, which ``payload`` may not set.

        Args:
            payload: the claims, a JSON object with string keys (``iat`` and ``exp`` are set here).
            validity_seconds: the lifetime, from 1 second up to ``access_token_validity`` (the default): the ring
                keeps a retired key only as long as the access tokens it signed can live.

        Raises:
            ConfigurationError: the signing algorithm is HS256 (a shared secret cannot be published in a JWKS).
            InvalidPayloadError: the payload sets ``iat``, ``exp`` or a session claim, or is not JSON.
            ValueError: ``validity_seconds`` is out of range.
            StoreError: the key ring could not be read.
        """
        if self.config.signing_algorithm == "HS256":
            raise ConfigurationError(
                "create_jwt needs an asymmetric signing_algorithm (ES256, RS256 or EdDSA): its tokens are verified "
                "through the public JWKS, which cannot hold an HS256 secret"
            )
        longest = int(self.config.access_token_validity.total_seconds())
        validity = longest if validity_seconds is None else validity_seconds
        if isinstance(validity, bool) or not isinstance(validity, int) or not 1 <= validity <= longest:
            raise ValueError(f"validity_seconds must be an integer from 1 to {longest} (access_token_validity)")
        claims = check_json_object(payload, "payload")
        for name in ("iat", "exp"):
            if name in claims:
                raise InvalidPayloadError(f"create_jwt sets {name!r} itself (see validity_seconds)", key=name)
        await self.open()
        key = await self.keys.signing_key()
        now = int(self.clock.now())
        return sign_jwt({"iss": self.config.issuer, **claims, "iat": now, "exp": now + validity}, key)
