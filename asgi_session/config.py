"""SessionConfig: every setting of asgi-session, validated when it is built."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from .exceptions import ConfigurationError

__all__ = [
    "AntiCsrfMode",
    "SameSite",
    "SessionConfig",
    "SigningAlgorithm",
    "TransferMethod",
]

SigningAlgorithm = Literal["ES256", "RS256", "EdDSA", "HS256"]
SameSite = Literal["lax", "strict", "none"]
TransferMethod = Literal["cookie", "header", "any"]
AntiCsrfMode = Literal["NONE", "VIA_CUSTOM_HEADER", "VIA_TOKEN"]

_ALGORITHMS = ("ES256", "RS256", "EdDSA", "HS256")
_SAME_SITE = ("lax", "strict", "none")
_TRANSFER = ("cookie", "header", "any")
_ANTI_CSRF = ("NONE", "VIA_CUSTOM_HEADER", "VIA_TOKEN")
_BASE_PATH = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$")
_MIN_SECRET_BYTES = 32


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """All settings of a :class:`~asgi_session.SessionManager` and its middleware.

    Every field is keyword-only and has a safe default; invalid values raise
    :class:`~asgi_session.ConfigurationError` at construction with a message that says how to fix them.

    Attributes:
        api_base_path: where the protocol endpoints live (``/auth`` serves ``/auth/session/refresh``).
        access_token_validity: lifetime of an access token.
        refresh_token_validity: the idle timeout: a session not refreshed for this long expires. Slides on
            every refresh.
        session_max_lifetime: an absolute lifetime counted from creation that no refresh extends; ``None`` for
            no limit.
        refresh_token_grace_period: how long a just-rotated refresh token may be presented again (lost response,
            two tabs) and receive the same child instead of a theft verdict.
        signing_algorithm: ``"ES256"`` (default), ``"RS256"``, ``"EdDSA"`` or ``"HS256"``.
        signing_secret: the HS256 key (at least 32 bytes); required for, and only for, HS256.
        key_encryption_secret: a random secret (at least 32 bytes, e.g. ``secrets.token_urlsafe(32)``) under
            which keys created from now on (signing keys and the refresh-token MAC key) are stored encrypted
            with AES-256-GCM; ``None`` stores them in clear. Keys already stored in clear still load and are not
            re-encrypted. Once keys are encrypted, every process needs the same secret: without it, or with
            another one, opening the manager raises ``ConfigurationError``.
        key_rotation_interval: how often a new asymmetric signing key is introduced.
        key_publish_ahead: how long a new key is published (in the JWKS and the store) before it signs.
        issuer: the ``iss`` claim, matched exactly on verification.
        cookie_domain: the ``Domain`` attribute of token cookies; ``None`` for a host-only cookie.
        older_cookie_domain: a domain whose cookies are only ever cleared (after changing ``cookie_domain``).
        cookie_secure: the ``Secure`` attribute (browsers accept secure cookies on ``http://localhost``).
        cookie_same_site: ``"lax"`` (default), ``"strict"`` or ``"none"`` (which requires ``cookie_secure``).
        token_transfer_method: ``"cookie"``, ``"header"`` or ``"any"`` (the request's ``st-auth-mode`` decides).
        anti_csrf: ``"NONE"``, ``"VIA_CUSTOM_HEADER"`` or ``"VIA_TOKEN"``; ``None`` derives it:
            ``VIA_CUSTOM_HEADER`` when ``cookie_same_site`` is ``"none"``, else ``NONE``.
        access_token_blacklisting: check the store on every verification, so a revoked session's access token
            is refused on its next request.
        session_expired_status_code: the status of "try refresh token" and "unauthorised" responses.
        invalid_claim_status_code: the status of "invalid claim" responses.
        expose_access_token_to_frontend_in_cookie_based_auth: also send ``st-access-token`` in cookie mode.
        verified_token_cache_size: entries in the cache of already-verified access tokens (0 disables it).
        revocation_max_lag: seconds the manager's view of revocations may lag behind the store, on stores
            that push revocations to it (Redis, PostgreSQL), before verification reads the store instead.
            ``0.0`` (the default) reads the store on every verification that checks for revocation. SQLite and
            the memory store are exact across processes at no cost, whatever this says.
        max_token_length: access tokens longer than this many characters are refused before any decoding.
        max_session_data_bytes: the largest ``session_data_in_database`` accepted, in bytes of compact UTF-8
            JSON (default 64 KiB); larger data is refused with ``InvalidPayloadError`` before anything is stored.
        cleanup_interval: seconds between runs of ``delete_expired_sessions()`` in the background while the
            middleware's lifespan runs (default 3600, one hour; the first run comes a minute after startup, or
            one interval if shorter); ``None`` turns it off. Processes sharing a store take turns through a
            lease in the store: one of them cleans up per interval.
    """

    api_base_path: str = "/auth"
    access_token_validity: timedelta = timedelta(hours=1)
    refresh_token_validity: timedelta = timedelta(days=100)
    session_max_lifetime: timedelta | None = None
    refresh_token_grace_period: timedelta = timedelta(seconds=30)
    signing_algorithm: SigningAlgorithm = "ES256"
    signing_secret: str | bytes | None = dataclasses.field(default=None, repr=False)
    key_encryption_secret: str | bytes | None = dataclasses.field(default=None, repr=False)
    key_rotation_interval: timedelta = timedelta(days=7)
    key_publish_ahead: timedelta = timedelta(seconds=60)
    issuer: str = "asgi-session"
    cookie_domain: str | None = None
    older_cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_same_site: SameSite = "lax"
    token_transfer_method: TransferMethod = "any"
    anti_csrf: AntiCsrfMode | None = None
    access_token_blacklisting: bool = False
    session_expired_status_code: int = 401
    invalid_claim_status_code: int = 403
    expose_access_token_to_frontend_in_cookie_based_auth: bool = False
    verified_token_cache_size: int = 10_000
    revocation_max_lag: float = 0.0
    max_token_length: int = 8192
    max_session_data_bytes: int = 65_536
    cleanup_interval: float | None = 3600.0

    def __post_init__(self) -> None:
        self._check_durations()
        self._check_signing()
        self._check_key_encryption()
        self._check_http()
        if self.anti_csrf is None:
            derived = "VIA_CUSTOM_HEADER" if self.cookie_same_site == "none" else "NONE"
            object.__setattr__(self, "anti_csrf", derived)

    @property
    def anti_csrf_mode(self) -> AntiCsrfMode:
        """The effective anti-CSRF mode (``anti_csrf`` after the default was derived)."""
        return self.anti_csrf or "NONE"

    @property
    def signing_secret_bytes(self) -> bytes | None:
        """The HS256 secret as bytes, or ``None`` for asymmetric algorithms."""
        if self.signing_secret is None:
            return None
        if isinstance(self.signing_secret, bytes):
            return self.signing_secret
        return self.signing_secret.encode("utf-8")

    def _check_durations(self) -> None:
        positive = {
            "access_token_validity": self.access_token_validity,
            "refresh_token_validity": self.refresh_token_validity,
            "key_rotation_interval": self.key_rotation_interval,
        }
        for name, value in positive.items():
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ConfigurationError(f"{name} must be a positive datetime.timedelta, got {value!r}")
        for name, maybe in (
            ("refresh_token_grace_period", self.refresh_token_grace_period),
            ("key_publish_ahead", self.key_publish_ahead),
        ):
            if not isinstance(maybe, timedelta) or maybe < timedelta(0):
                raise ConfigurationError(f"{name} must be a datetime.timedelta >= 0, got {maybe!r}")
        if self.refresh_token_validity <= self.access_token_validity:
            raise ConfigurationError(
                "refresh_token_validity must be longer than access_token_validity, or sessions would expire "
                "before their first refresh; raise refresh_token_validity"
            )
        if self.session_max_lifetime is not None and (
            not isinstance(self.session_max_lifetime, timedelta) or self.session_max_lifetime <= timedelta(0)
        ):
            raise ConfigurationError("session_max_lifetime must be None or a positive datetime.timedelta")
        if self.key_publish_ahead >= self.key_rotation_interval:
            raise ConfigurationError("key_publish_ahead must be shorter than key_rotation_interval")

    def _check_signing(self) -> None:
        if self.signing_algorithm not in _ALGORITHMS:
            raise ConfigurationError(
                f"signing_algorithm must be one of {', '.join(_ALGORITHMS)}, got {self.signing_algorithm!r}"
            )
        secret = self.signing_secret_bytes
        if self.signing_algorithm == "HS256":
            if secret is None:
                raise ConfigurationError(
                    "signing_algorithm='HS256' needs signing_secret (at least 32 random bytes, e.g. "
                    "secrets.token_urlsafe(32)); or use the default asymmetric 'ES256'"
                )
            if len(secret) < _MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"signing_secret is {len(secret)} bytes; HS256 needs at least {_MIN_SECRET_BYTES} "
                    "(generate one with secrets.token_urlsafe(32))"
                )
        elif secret is not None:
            raise ConfigurationError(
                f"signing_secret is only used with signing_algorithm='HS256'; remove it, or set "
                f"signing_algorithm='HS256' (now {self.signing_algorithm!r})"
            )
        if not self.issuer or not isinstance(self.issuer, str):
            raise ConfigurationError("issuer must be a non-empty string")

    def _check_key_encryption(self) -> None:
        # The messages name the type and length only: the value is a secret.
        secret = self.key_encryption_secret
        if secret is None:
            return
        if isinstance(secret, str):
            try:
                size = len(secret.encode("utf-8"))
            except UnicodeError:
                raise ConfigurationError(
                    "key_encryption_secret is not encodable as UTF-8; generate one with secrets.token_urlsafe(32)"
                ) from None
        elif isinstance(secret, bytes):
            size = len(secret)
        else:
            raise ConfigurationError(
                f"key_encryption_secret must be None, a str or bytes, got {type(secret).__name__}; generate one "
                "with secrets.token_urlsafe(32)"
            )
        if size < _MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"key_encryption_secret is {size} bytes; it needs at least {_MIN_SECRET_BYTES} random bytes "
                "(generate one with secrets.token_urlsafe(32))"
            )

    def _check_http(self) -> None:
        if not isinstance(self.api_base_path, str) or not _BASE_PATH.match(self.api_base_path):
            raise ConfigurationError(
                f"api_base_path must start with '/' and not end with '/' (e.g. '/auth'), got {self.api_base_path!r}"
            )
        if self.cookie_same_site not in _SAME_SITE:
            raise ConfigurationError(
                f"cookie_same_site must be 'lax', 'strict' or 'none', got {self.cookie_same_site!r}"
            )
        if self.cookie_same_site == "none" and not self.cookie_secure:
            raise ConfigurationError(
                "cookie_same_site='none' requires cookie_secure=True (browsers drop SameSite=None cookies "
                "without Secure)"
            )
        if self.token_transfer_method not in _TRANSFER:
            raise ConfigurationError(
                f"token_transfer_method must be 'cookie', 'header' or 'any', got {self.token_transfer_method!r}"
            )
        if self.anti_csrf is not None and self.anti_csrf not in _ANTI_CSRF:
            raise ConfigurationError(
                f"anti_csrf must be None, 'NONE', 'VIA_CUSTOM_HEADER' or 'VIA_TOKEN', got {self.anti_csrf!r}"
            )
        for name, code in (
            ("session_expired_status_code", self.session_expired_status_code),
            ("invalid_claim_status_code", self.invalid_claim_status_code),
        ):
            if not isinstance(code, int) or not 400 <= code <= 499:
                raise ConfigurationError(f"{name} must be a 4xx status code, got {code!r}")
        if self.session_expired_status_code == self.invalid_claim_status_code:
            raise ConfigurationError(
                "session_expired_status_code and invalid_claim_status_code must differ: the frontend tells "
                "them apart by status"
            )
        if not isinstance(self.verified_token_cache_size, int) or self.verified_token_cache_size < 0:
            raise ConfigurationError("verified_token_cache_size must be an int >= 0 (0 disables the cache)")
        if not isinstance(self.max_token_length, int) or self.max_token_length < 256:
            raise ConfigurationError("max_token_length must be an int >= 256")
        lag = self.revocation_max_lag
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not 0 <= lag < math.inf:
            raise ConfigurationError("revocation_max_lag must be a finite number of seconds >= 0, e.g. 0.1")
        every = self.cleanup_interval
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every < math.inf
        ):
            raise ConfigurationError("cleanup_interval must be None (off) or a positive number of seconds, e.g. 3600")
        limit = self.max_session_data_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 2:
            raise ConfigurationError("max_session_data_bytes must be an int >= 2 (bytes of JSON), e.g. 65536")
        for name, domain in (
            ("cookie_domain", self.cookie_domain),
            ("older_cookie_domain", self.older_cookie_domain),
        ):
            if domain is not None and (not domain or any(c in domain for c in ";, \t\r\n")):
                raise ConfigurationError(f"{name} must be None or a bare domain such as 'example.com'")
