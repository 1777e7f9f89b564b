"""The error tree of asgi-session, grouped by who must handle each error.

::

    SessionError                      root: catch this to catch everything below
    ├── TryRefreshTokenError          client: the access token is expired or unverifiable; refresh and retry
    ├── UnauthorisedError             client: no usable session (missing, revoked, expired refresh token)
    ├── TokenTheftDetectedError       client: a superseded refresh token was reused; the session is revoked
    ├── InvalidClaimsError            client: the session exists but a claim validator refused it
    ├── StoreError                    operator: the session store failed; requests fail closed (503)
    ├── ConfigurationError            developer: a setting is invalid (raised at construction, never per request)
    └── InvalidPayloadError           developer: a bad payload, session data or id (also a ValueError)

The first four become the protocol responses of the HTTP layer (401/403). No third-party exception crosses the
public API: driver and decoder errors are wrapped with ``raise ... from exc``. No message carries a token value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ConfigurationError",
    "InvalidClaimsError",
    "InvalidPayloadError",
    "SessionError",
    "StoreError",
    "TokenTheftDetectedError",
    "TryRefreshTokenError",
    "UnauthorisedError",
]


class SessionError(Exception):
    """Root of every error asgi-session raises on purpose.

    Attributes:
        reason: a short machine-friendly explanation (never contains a token value).
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class TryRefreshTokenError(SessionError):
    """The access token is expired, malformed or not verifiable: the client should refresh and retry.

    HTTP: 401 ``{"message": "try refresh token"}``; tokens are not cleared.
    """


class UnauthorisedError(SessionError):
    """There is no usable session: no token, or the session was revoked or has expired.

    HTTP: 401 ``{"message": "unauthorised"}``.

    Attributes:
        clear_tokens: whether the response should clear the client's tokens. ``False`` when no token was sent,
            since a concurrent refresh may be writing them.
        handle: the session handle concerned, when known.
    """

    def __init__(self, reason: str = "", *, clear_tokens: bool = True, handle: str | None = None) -> None:
        super().__init__(reason)
        self.clear_tokens = clear_tokens
        self.handle = handle


class TokenTheftDetectedError(SessionError):
    """A superseded refresh token was presented after the grace window; the session has been revoked.

    HTTP: 401 ``{"message": "token theft detected"}`` with the tokens cleared.

    Attributes:
        handle: the revoked session's handle.
        user_id: its user.
        tenant_id: its tenant.
    """

    def __init__(self, *, handle: str, user_id: str, tenant_id: str) -> None:
        super().__init__("token theft detected")
        self.handle = handle
        self.user_id = user_id
        self.tenant_id = tenant_id


class InvalidClaimsError(SessionError):
    """The session is valid but one or more claim validators refused it.

    HTTP: 403 ``{"message": "invalid claim", "claimValidationErrors": [...]}``.

    Attributes:
        errors: a list of ``{"id": ..., "reason": ...}`` mappings, as sent to the client.
    """

    def __init__(self, errors: Sequence[Mapping[str, Any]], reason: str = "invalid claim") -> None:
        super().__init__(reason)
        self.errors = [dict(error) for error in errors]


class StoreError(SessionError):
    """The session store failed (unreachable, locked past its timeout, disk full, corrupt data).

    Requests fail closed with a 503; offline calls raise it. It never means "logged out".
    """


class ConfigurationError(SessionError):
    """A setting is invalid. The message says how to fix it."""


class InvalidPayloadError(SessionError, ValueError):
    """A payload sets a protected claim or is too large, session data is too large, or an id breaks the id rules.

    Raised before anything is stored; also a ``ValueError``.

    Attributes:
        key: the offending key, when one is to blame.
    """

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        super().__init__(reason)
        self.key = key
