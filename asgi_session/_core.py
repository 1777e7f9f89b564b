"""The manager's core: its store, key ring and clock, the open/close lifecycle, and access-token signing rules.

Every layer of :class:`~asgi_session.SessionManager` builds on this class: ``_admin`` (revoke, list, update by
handle), ``_refresh`` (rotation) and ``manager`` (create, verify). It knows nothing of requests or of
:class:`~asgi_session.Session` objects, so the layers import downward only:
``session`` < ``_core`` < ``_admin`` < ``_refresh`` < ``manager``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio

from . import _metrics
from ._asgi import MAX_COOKIE_BYTES
from ._clock import Clock, SystemClock
from ._feed import FeedFollower
from ._revocations import RevocationView
from ._token_cache import VerifiedTokenCache, token_key
from .config import SessionConfig
from .exceptions import ConfigurationError, InvalidPayloadError, StoreError, TryRefreshTokenError
from .keys import KeyRing, SigningKey
from .stores.base import (
    RevocationFeed,
    RevocationLog,
    RevocationProbe,
    SessionRecord,
    SessionStore,
    StoreLifecycle,
)
from .tokens import (
    REMEMBER_CLAIM,
    UnknownKeyError,
    access_token_length_bound,
    decode_access_token,
    json_copy,
)
from .transport import ACCESS_COOKIE

__all__ = ["DEFAULT_STORE_URL", "ManagerCore"]

DEFAULT_STORE_URL = "sqlite:///asgi_session.db"
_CLOCK_SKEW_SECONDS = 60.0  # how far apart the clocks of processes sharing a store may be
_LOG_CHUNK = 10_000


class ManagerCore(StoreLifecycle):
    """The state every manager layer shares, its lifecycle, access-token verification and the claim set.

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
        super().__init__()
        _metrics.instrument_store(store)  # times and traces its calls when OpenTelemetry is installed
        self.store = store
        self.config = config or SessionConfig()
        self.clock: Clock = clock or SystemClock()
        # The per-request reading of the clock: ``time.time`` itself for the system clock (no Python frame).
        self._now: Callable[[], float] = time.time if type(self.clock) is SystemClock else self.clock.now
        self.keys = KeyRing(self.store, self.config, self.clock)
        # The ring's last answer to signing_key(): (key, the ring's records it came from, valid from, valid until).
        self._signer: tuple[SigningKey, object, float, float] | None = None
        self._cache = VerifiedTokenCache(self.config.verified_token_cache_size)
        self._cache_entries = self._cache.entries
        # Revoked handles, kept as long as an access token of theirs could live (plus clock skew).
        self._revoked = RevocationView(self.config.access_token_validity.total_seconds() + _CLOCK_SKEW_SECONDS)
        self._log = store if isinstance(store, RevocationLog) else None
        # A subclass may opt out of an inherited probe by setting ``probe_revocations = None``.
        probing = callable(getattr(store, "probe_revocations", None))
        self._probe = store if self._log is not None and probing and isinstance(store, RevocationProbe) else None
        self._follower: FeedFollower | None = None
        if self._probe is None and isinstance(store, RevocationFeed) and self.config.revocation_max_lag > 0:
            self._follower = FeedFollower(store, self._revoked, self.clock, self.config.revocation_max_lag)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r})"

    async def _open(self) -> None:
        """Open the store and load (or create) the keys; a failure leaves the store closed again."""
        await self.store.open()
        try:
            await self.keys.load()
            await self._load_revocations()
            if self._follower is not None:
                self._follower.start()
        except BaseException:
            # The load's error is the one worth reporting; a failing close must not hide it.
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self.store.close()
            raise

    async def _close(self) -> None:
        """Forget verified tokens and close the store; the manager reopens it on next use."""
        if self._follower is not None:
            await self._follower.stop()
        self._cache.clear()
        self._revoked.clear()
        await self.store.close()

    # -- revocations -----------------------------------------------------------------------------------------

    async def _load_revocations(self) -> None:
        """Read the whole revocation log into the view.

        A session revoked by another process a minute ago may still have live access tokens. The log holds about
        one access-token lifetime of revocations.
        """
        if self._log is None:
            return
        view = self._revoked
        while True:
            entries = await self._log.revocations_since(view.position, _LOG_CHUNK)
            view.apply(entries, self.clock.now())
            if len(entries) < _LOG_CHUNK:
                return

    @property
    def checks_revocations_in_memory(self) -> bool:
        """Whether revocations may be checked from memory: an exact probe, or a feed within ``revocation_max_lag``."""
        return self._probe is not None or self._follower is not None

    def _revoked_here(self, handles: Iterable[str]) -> None:
        """Forget the cached tokens of sessions this process revoked, and refuse them from now on."""
        now = self.clock.now()
        for handle in handles:
            self._cache.discard_session(handle)
            self._revoked.add(handle, now)

    def _is_revoked_now(self, handle: str) -> bool | None:
        """Whether the session is revoked, exactly and without I/O; ``None`` when only the store can tell."""
        probe = self._probe
        if probe is None:
            follower = self._follower
            if follower is not None and follower.fresh():
                return handle in self._revoked
            return None
        entries = probe.probe_revocations(self._revoked.position)
        if entries is None:
            return None
        if entries:
            self._revoked.apply(entries, self.clock.now())
        return handle in self._revoked

    async def _trim_revocation_log(self) -> int:
        """Delete log entries nobody needs: revoked more than one access-token lifetime (plus skew) ago.

        The view remembers, per position, when it reached it; entries at or below the position it had
        ``retention`` seconds ago are older than that. Catching up first records when this process first saw the
        newest entries, so an entry is trimmed at the first cleanup at least ``retention`` after that.
        """
        if self._log is None:
            return 0
        await self._load_revocations()
        through = self._revoked.position_before(self.clock.now() - self._revoked.retention)
        return await self._log.trim_revocations(through) if through > 0 else 0

    # -- verification ----------------------------------------------------------------------------------------

    def _decode(self, access_token: str, now: float, *, allow_expired: bool) -> dict[str, Any]:
        try:
            return decode_access_token(
                access_token,
                lookup=self.keys.verification_key,
                issuer=self.config.issuer,
                now=now,
                max_length=self.config.max_token_length,
                allow_expired=allow_expired,
            )
        except UnknownKeyError:
            raise  # not final yet: the async path re-reads the ring (counted there when it stays unknown)
        except TryRefreshTokenError as exc:
            expired = isinstance(exc.__cause__, ValueError) and str(exc.__cause__) == "expired"
            _metrics.record_verification_failure("expired" if expired else "invalid")
            raise

    def has_verified(self, access_token: str) -> bool:
        """Whether this exact token verified before and has not expired since (a lookup in the cache)."""
        return self._cache.get(token_key(access_token), self.clock.now()) is not None

    async def verify_access_token(self, access_token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """Verify an access token's signature and claims (locally; a cache makes repeats a dict lookup).

        Returns:
            The claims: a copy the caller may change without affecting later verifications.

        Raises:
            TryRefreshTokenError: the token is expired or invalid.
        """
        return json_copy(await self._verify(access_token, allow_expired=allow_expired))  # type: ignore[no-any-return]

    async def _verify(self, access_token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """:meth:`verify_access_token` returning the cache's own claims dict: callers in the package never change it."""
        if not isinstance(access_token, str):
            raise TryRefreshTokenError("access token is not a string")
        now = self.clock.now()
        key = token_key(access_token)
        if not allow_expired:
            cached = self._cache.get(key, now)
            if cached is not None:
                return cached
        try:
            claims = self._decode(access_token, now, allow_expired=allow_expired)
        except UnknownKeyError as exc:
            # Another worker may have published a key we have not seen yet: re-read the ring (rate-limited).
            if not await self.keys.reload_for_unknown_kid(exc.kid):
                _metrics.record_verification_failure("unknown_key")
                raise
            claims = self._decode(access_token, now, allow_expired=allow_expired)
        if not allow_expired:
            self._cache.put(key, claims)
        return claims

    # -- the claim set and its limits ------------------------------------------------------------------------

    def _idle_expiry(self, now: float, absolute: float | None, idle_timeout: float | None = None) -> float:
        idle = self.config.refresh_token_validity.total_seconds() if idle_timeout is None else idle_timeout
        expiry = now + idle
        return expiry if absolute is None else min(expiry, absolute)

    def _check_token_size(self, record: SessionRecord, payload: Mapping[str, Any]) -> None:
        """Refuse a payload whose access token could not travel in a cookie, whatever the transfer method.

        Checked before anything is stored, so a session can never be left with a payload that makes every later
        response (and refresh) fail. Header mode has the same limit: proxies and servers commonly refuse header
        lines of 8 KiB or more, and a dropped ``st-access-token`` header makes the client loop refresh -> 401.
        """
        worst = self._claims(
            record,
            exp=int(self.clock.now()) + 10**10,
            refresh_hash1="0" * 64,
            parent_hash1="0" * 64,
            anti_csrf="0" * 32 if self.config.anti_csrf_mode == "VIA_TOKEN" else None,
            payload=payload,
        )
        self._refuse_oversized(access_token_length_bound(worst, self.config.signing_algorithm))

    def _check_claims_size(self, claims: Mapping[str, Any], length: int) -> None:
        """:meth:`_check_token_size` for a new session's own claims, whose compact JSON is ``length`` characters.

        The same bound, without building and encoding a second claim set: the worst case differs from a new
        session's first claims only in three values, whose JSON lengths are added here. ``exp`` gets the
        worst case's (eleven digits against ten); ``parentRefreshTokenHash1``, ``null`` in a first token, becomes a
        quoted 64-character hash (as in every refreshed token); ``antiCsrfToken`` becomes a quoted 32-character
        string in ``VIA_TOKEN`` mode, else ``null``. The values are ints, ``null`` or base64url / hex strings,
        which JSON writes without escapes.
        """
        worst_exp = int(self.clock.now()) + 10**10
        worst_csrf = 34 if self.config.anti_csrf_mode == "VIA_TOKEN" else 4
        csrf = claims["antiCsrfToken"]
        parent = claims["parentRefreshTokenHash1"]
        length += len(str(worst_exp)) - len(str(claims["exp"]))
        length += 66 - (4 if parent is None else len(parent) + 2)
        length += worst_csrf - (4 if csrf is None else len(csrf) + 2)
        self._refuse_oversized(access_token_length_bound(length, self.config.signing_algorithm))

    def _refuse_oversized(self, bound: int) -> None:
        size = len(ACCESS_COOKIE) + bound
        if size > MAX_COOKIE_BYTES:
            raise InvalidPayloadError(
                f"the access token could take up to {size} bytes with its cookie or header name, over the "
                f"{MAX_COOKIE_BYTES} that browsers and proxies reliably keep: keep access_token_payload small (put "
                "bulk data in session_data_in_database)"
            )

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
            **({} if record.remember else {REMEMBER_CLAIM: False}),
            **payload,
        }

    # -- the signing key -------------------------------------------------------------------------------------

    async def _signing_key(self) -> SigningKey:
        """``keys.signing_key()``, remembered for as long as the ring's answer cannot change.

        The ring picks its signer from its records by the clock, re-reads them every ``key_publish_ahead / 2`` and
        rotates when due; between those moments (the next re-read, the next pending key's ``signs_from``, a key's
        last signing moment, the next rotation) and while it holds the same records, it answers with the same key.
        Asking it costs list scans and a new ``SigningKey`` per create and refresh; this costs a comparison.
        """
        cached = self._signer
        ring = self.keys
        if cached is not None:
            now = self._now()
            if cached[2] <= now < cached[3] and cached[1] is ring._records:
                return cached[0]
        key = await ring.signing_key()
        now = self.clock.now()
        self._signer = (key, ring._records, now, self._signer_until(key, now))
        return key

    def _signer_until(self, key: SigningKey, now: float) -> float:
        """Until when ``keys.signing_key()`` answers ``key`` (if the ring's records stay the same); ``now``: never."""
        ring = self.keys
        if key.algorithm == "HS256":
            return math.inf  # the configured secret: the ring never reloads or rotates for it
        signer = ring._current_signer(now)
        if signer is None or signer.kid != key.kid:
            return now
        config = self.config
        until = ring._loaded_at + max(1.0, config.key_publish_ahead.total_seconds() / 2)  # the next re-read
        validity = config.access_token_validity.total_seconds()
        pending = False
        for record in ring._signing_records():
            if record.signs_from > now:  # a pending key: it may become the signer then
                pending = True
                until = min(until, record.signs_from)
            if record.expires_at is not None:  # a key stops signing then (its tokens would outlive it)
                until = min(until, record.expires_at - validity)
        if not pending:  # the rotation comes due then
            interval = config.key_rotation_interval.total_seconds()
            until = min(until, signer.signs_from + interval - config.key_publish_ahead.total_seconds())
        return until
