"""The protocol endpoints (refresh, sign-out, JWKS) and the mapping of session errors to responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._asgi import Scope, Send, header_value
from ._context import RequestContext, check_anti_csrf
from .config import SessionConfig
from .exceptions import (
    InvalidClaimsError,
    SessionError,
    StoreError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from .transport import ResponseChanges, read_refresh_token, request_has_token_cookies

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["Endpoints", "error_response", "send_response"]

logger = logging.getLogger("asgi_session")

Response = tuple[int, Any, ResponseChanges | None, list[tuple[bytes, bytes]]]
Handler = Callable[[RequestContext, Send], Awaitable[None]]


async def send_response(
    send: Send,
    status: int,
    body: Any,
    changes: ResponseChanges | None,
    extra_headers: list[tuple[bytes, bytes]],
) -> None:
    """Send a complete JSON response with the queued token changes applied."""
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    message: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode("ascii")),
            *extra_headers,
        ],
    }
    if changes is not None:
        changes.apply(message)
    await send(message)
    await send({"type": "http.response.body", "body": payload})


def error_response(exc: SessionError, config: SessionConfig, context: RequestContext | None) -> Response | None:
    """The protocol response for a session error, or ``None`` for developer errors that must stay 500s."""
    changes = ResponseChanges(config)
    method = None
    if context is not None:
        method = context.session.transfer_method if context.session is not None else context.source.method
    if isinstance(exc, TryRefreshTokenError):
        return config.session_expired_status_code, {"message": "try refresh token"}, None, []
    if isinstance(exc, TokenTheftDetectedError):
        changes.clear_tokens(method)  # type: ignore[arg-type]
        return config.session_expired_status_code, {"message": "token theft detected"}, changes, []
    if isinstance(exc, UnauthorisedError):
        if exc.clear_tokens:
            changes.clear_tokens(method)  # type: ignore[arg-type]
        return config.session_expired_status_code, {"message": "unauthorised"}, changes, []
    if isinstance(exc, InvalidClaimsError):
        body = {"message": "invalid claim", "claimValidationErrors": exc.errors}
        return config.invalid_claim_status_code, body, None, []
    if isinstance(exc, StoreError):
        return 503, {"message": "session store unavailable"}, None, [(b"retry-after", b"1")]
    return None


class Endpoints:
    """Routes ``POST <base>/session/refresh``, ``POST <base>/signout`` and ``GET <base>/jwt/jwks.json``."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        base = manager.config.api_base_path
        self.refresh_path = f"{base}/session/refresh"
        self.routes: dict[str, tuple[str, Handler]] = {
            self.refresh_path: ("POST", self.refresh),
            f"{base}/signout": ("POST", self.signout),
            f"{base}/jwt/jwks.json": ("GET", self.jwks),
        }

    def match(self, scope: Scope) -> Handler | None:
        """Return the handler for this request, or ``None`` when it is not a protocol endpoint."""
        route = self.routes.get(scope.get("path", ""))
        if route is None:
            return None
        method, handler = route
        if scope.get("method") != method:
            return self._method_not_allowed(method)
        return handler

    @staticmethod
    def _method_not_allowed(allowed: str) -> Handler:
        async def handler(context: RequestContext, send: Send) -> None:
            # Never a state change on the wrong method (e.g. a GET on refresh or sign-out).
            body = {"message": "method not allowed"}
            await send_response(send, 405, body, None, [(b"allow", allowed.encode("ascii"))])

        return handler

    async def _fail(self, context: RequestContext, send: Send, exc: SessionError) -> None:
        response = error_response(exc, self.manager.config, context)
        if response is None:
            raise exc
        await send_response(send, *response)

    async def refresh(self, context: RequestContext, send: Send) -> None:
        """Rotate the refresh token; 200 ``{}`` with new tokens, or a 401 that says why."""
        config = self.manager.config
        scope = context.scope
        source = read_refresh_token(scope, config)
        if source.token is None:
            changes = ResponseChanges(config)
            changes.clear_tokens(None)
            await send_response(send, config.session_expired_status_code, {"message": "unauthorised"}, changes, [])
            return
        is_cookie = source.method == "cookie"
        if is_cookie and config.anti_csrf_mode == "VIA_CUSTOM_HEADER" and header_value(scope, b"rid") is None:
            logger.info("asgi_session: refresh refused: the rid anti-CSRF header is missing")
            await self._fail(context, send, UnauthorisedError("anti-csrf check failed", clear_tokens=False))
            return
        try:
            session = await self.manager.refresh_session_without_request_response(
                source.token,
                disable_anti_csrf=not is_cookie,
                anti_csrf_token=header_value(scope, b"anti-csrf"),
            )
        except SessionError as exc:
            if isinstance(exc, UnauthorisedError) and exc.reason.startswith("anti-csrf"):
                exc.clear_tokens = False  # a cross-site request must not be able to log the user out
            context.source = source
            context.session = None
            await self._fail(context, send, exc)
            return
        session.transfer_method = source.method
        changes = ResponseChanges(config)
        changes.set_tokens(
            "cookie" if is_cookie else "header",
            now=self.manager.clock.now(),
            access_token=session.access_token,
            front_token=session.get_front_token(),
            refresh_token=session.refresh_token,
            refresh_expiry=session.refresh_token_expiry,
            anti_csrf_token=session.anti_csrf_token,
            clear_cookies_first=not is_cookie and request_has_token_cookies(scope),
        )
        await send_response(send, 200, {}, changes, [])

    async def signout(self, context: RequestContext, send: Send) -> None:
        """Revoke the request's session and clear its tokens; 200 ``{"status": "OK"}``."""
        try:
            if context.error is not None:
                raise context.error
            session = context.session
            if session is not None:
                check_anti_csrf(context, session, None)
                await session.revoke()
        except SessionError as exc:
            await self._fail(context, send, exc)
            return
        changes = ResponseChanges(self.manager.config)
        changes.clear_tokens(context.source.method)
        await send_response(send, 200, {"status": "OK"}, changes, [])

    async def jwks(self, context: RequestContext, send: Send) -> None:
        """Serve the public keys that may still verify a live token."""
        try:
            document = await self.manager.get_jwks()
        except SessionError as exc:
            await self._fail(context, send, exc)
            return
        cache = f"max-age={self.manager.keys.jwks_max_age()}, must-revalidate".encode("ascii")
        await send_response(send, 200, document, None, [(b"cache-control", cache)])
