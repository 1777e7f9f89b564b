"""ErrorHandlers: the application's own answers to the session errors (SuperTokens' ``error_handlers``).

Each handler is ``async (scope, error) -> ASGI app``; a Starlette ``Response`` is an ASGI app. The middleware runs
the returned app in place of the protocol response and still applies the token changes the protocol requires
(clearing on ``unauthorised`` and theft, a re-issued access token with ``invalid claim``) to its
``http.response.start``, whatever the app sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._asgi import ASGIApp, Scope
from .exceptions import (
    ConfigurationError,
    InvalidClaimsError,
    SessionError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)

__all__ = ["ErrorHandler", "ErrorHandlers"]

ErrorHandler = Callable[[Scope, Any], Awaitable[ASGIApp]]
"""``async handler(scope, error) -> ASGI app`` (for example a Starlette ``Response``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorHandlers:
    """Overrides of the protocol responses, passed as ``SessionMiddleware(app, manager=..., error_handlers=...)``.

    A handler left ``None`` keeps the protocol response. Every integration (Starlette, FastAPI, Quart, Django,
    Litestar's ``SessionPlugin(error_handlers=...)``) and ``require_session`` honour the same handlers. A handler
    that raises is logged and the protocol response is sent.

    Attributes:
        on_unauthorised: for :class:`~asgi_session.UnauthorisedError` (no session, revoked, expired); the tokens are
            still cleared when the protocol says so.
        on_try_refresh_token: for :class:`~asgi_session.TryRefreshTokenError` (expired or invalid access token,
            failed anti-CSRF check). The SuperTokens frontend refreshes only on ``session_expired_status_code``.
        on_token_theft_detected: for :class:`~asgi_session.TokenTheftDetectedError` (refresh only); the session is
            already revoked and the tokens are still cleared.
        on_invalid_claim: for :class:`~asgi_session.InvalidClaimsError`; ``error.errors`` lists the failures.
    """

    on_unauthorised: ErrorHandler | None = None
    on_try_refresh_token: ErrorHandler | None = None
    on_token_theft_detected: ErrorHandler | None = None
    on_invalid_claim: ErrorHandler | None = None

    def __post_init__(self) -> None:
        for name in ("on_unauthorised", "on_try_refresh_token", "on_token_theft_detected", "on_invalid_claim"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"ErrorHandlers.{name} must be an async callable (scope, error) -> ASGI app")

    def for_error(self, error: SessionError) -> ErrorHandler | None:
        """Return the handler for ``error``, or ``None`` (the protocol response)."""
        if isinstance(error, TokenTheftDetectedError):
            return self.on_token_theft_detected
        if isinstance(error, UnauthorisedError):
            return self.on_unauthorised
        if isinstance(error, TryRefreshTokenError):
            return self.on_try_refresh_token
        if isinstance(error, InvalidClaimsError):
            return self.on_invalid_claim
        return None
