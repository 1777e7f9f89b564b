"""The protocol endpoints (refresh, sign-out, JWKS, OpenID discovery) and the mapping of errors to responses."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import _metrics
from ._asgi import ASGIApp, Message, Receive, Scope, Send, header_value, header_values
from ._context import RequestContext, anti_csrf_failed, check_anti_csrf
from ._error_handlers import ErrorHandlers
from ._refresh_token import refresh_token_handle
from .config import SessionConfig
from .exceptions import (
    InvalidClaimsError,
    SessionError,
    StoreError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from .hooks import hook_context
from .transport import ResponseChanges, duplicated_session_cookies, read_refresh_token

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["Endpoints", "answer_error", "error_response", "send_response"]

logger = logging.getLogger("asgi_session")

_DISCOVERY = "/.well-known/openid-configuration"
_ANY_ORIGIN = (b"access-control-allow-origin", b"*")  # public documents any site or service may read
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

Response = tuple[int, Any, ResponseChanges | None, list[tuple[bytes, bytes]]]
Handler = Callable[[RequestContext, Scope, Send], Awaitable[None]]


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


def error_response(
    exc: SessionError, config: SessionConfig, context: RequestContext | None, scope: Scope | None
) -> Response | None:
    """The protocol response for a session error, or ``None`` for developer errors that must stay 500s.

    ``scope`` is the request's (``None`` only without a context): a re-issued access token is written for it.
    """
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
        # A claim re-fetched before the validation failed re-issued the access token: the 403 carries it too.
        reissued = context.response_changes(scope or {}) if context is not None and context.changed else None
        return config.invalid_claim_status_code, body, reissued, []
    if isinstance(exc, StoreError):
        return 503, {"message": "session store unavailable"}, None, [(b"retry-after", b"1")]
    return None


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def answer_error(
    exc: SessionError,
    context: RequestContext | None,
    handlers: ErrorHandlers | None,
    config: SessionConfig,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> bool:
    """Send the answer to a session error: the app's override when one is set, else the protocol response.

    Either way the token changes of the protocol response (clearing, a re-issued token) are applied.

    Returns:
        ``False`` (nothing sent) for an error that must stay a 500.
    """
    response = error_response(exc, config, context, scope)
    if response is None:
        return False
    handler = handlers.for_error(exc) if handlers is not None else None
    app: ASGIApp | None = None
    if handler is not None:
        try:
            app = await handler(scope, exc)
        except Exception:
            logger.exception("asgi_session: the error handler for %s raised; sending the protocol response", exc)
    if app is None:
        await send_response(send, *response)
        return True
    changes = response[2]

    async def send_with_changes(message: Message) -> None:
        if changes is not None and message["type"] == "http.response.start":
            changes.apply(message)
        await send(message)

    await app(scope, receive, send_with_changes)
    return True


def _nothing_is_ours(token: str) -> bool:
    return False


def _bare(domain: str) -> str:
    return domain.strip().lstrip(".").lower()


def _request_origin(scope: Scope) -> str:
    scheme = str(scope.get("scheme") or "http")
    host = header_value(scope, b"host")
    if host is None or not _HOST.fullmatch(host):  # never echo a forged Host into a document others trust
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return f"{scheme}://{host}"


def _request_host(scope: Scope) -> str:
    host = header_value(scope, b"host") or ""
    name, _, port = host.rpartition(":")
    return name if port.isdigit() else host


class Endpoints:
    """Routes refresh, sign-out, the JWKS and the OpenID discovery document.

    ``POST <base>/session/refresh``, ``POST <base>/signout``, ``GET <base>/jwt/jwks.json``, and
    ``GET /.well-known/openid-configuration`` (also under ``<base>``, where SuperTokens serves it).
    """

    def __init__(self, manager: SessionManager, error_handlers: ErrorHandlers | None = None) -> None:
        self.manager = manager
        self.error_handlers = error_handlers
        base = manager.config.api_base_path
        self.refresh_path = f"{base}/session/refresh"
        self.routes: dict[str, tuple[str, Handler]] = {
            self.refresh_path: ("POST", self.refresh),
            f"{base}/signout": ("POST", self.signout),
            f"{base}/jwt/jwks.json": ("GET", self.jwks),
            _DISCOVERY: ("GET", self.openid_configuration),
            f"{base}{_DISCOVERY}": ("GET", self.openid_configuration),
        }
        self.jwks_path = f"{base}/jwt/jwks.json"

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
        async def handler(context: RequestContext, scope: Scope, send: Send) -> None:
            # Never a state change on the wrong method (e.g. a GET on refresh or sign-out).
            body = {"message": "method not allowed"}
            await send_response(send, 405, body, None, [(b"allow", allowed.encode("ascii"))])

        return handler

    async def _fail(self, context: RequestContext, scope: Scope, send: Send, exc: SessionError) -> None:
        # The endpoints read no request body, so an override app reading one sees an empty body.
        config = self.manager.config
        if not await answer_error(exc, context, self.error_handlers, config, scope, _no_body, send):
            raise exc

    async def refresh(self, context: RequestContext, scope: Scope, send: Send) -> None:
        """Rotate the refresh token; 200 ``{}`` with new tokens, or a 401 that says why."""
        config = self.manager.config
        ours = _nothing_is_ours
        if config.token_transfer_method != "cookie" and header_values(scope, b"authorization"):
            # The refresh-token MAC tells our Bearer value from anyone else's; a request without one needs no key.
            try:
                await self.manager.open()
            except SessionError as exc:
                await self._fail(context, scope, send, exc)
                return
            mac_key = self.manager.keys.refresh_mac_key

            def ours(token: str) -> bool:
                return refresh_token_handle(mac_key, token) is not None

        source = read_refresh_token(scope, config, ours)
        if source.method != "header" and config.token_transfer_method != "header":
            duplicated = duplicated_session_cookies(scope)
            if duplicated:
                await self._duplicated_cookies(duplicated, scope, send)
                return
        if source.token is None:
            # No refresh token was presented, so nothing is cleared: a cross-site form post reaches this endpoint
            # without the SameSite cookies, and clearing here would sign the user out. ``front-token: remove``
            # only tells the SuperTokens client (its no-cookie probe) that there is no session.
            changes = ResponseChanges(config)
            changes.remove_front_token()
            await send_response(send, config.session_expired_status_code, {"message": "unauthorised"}, changes, [])
            return
        is_cookie = source.method == "cookie"
        if is_cookie and config.anti_csrf_mode == "VIA_CUSTOM_HEADER" and header_value(scope, b"rid") is None:
            _metrics.record_anti_csrf_failure("VIA_CUSTOM_HEADER")
            logger.info("asgi_session: refresh refused: the rid anti-CSRF header is missing")
            if self.manager._hooks is not None:
                await self._rid_missing_hook(scope, source.token)
            await self._fail(context, scope, send, UnauthorisedError("anti-csrf check failed", clear_tokens=False))
            return
        try:
            with hook_context(scope):
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
            await self._fail(context, scope, send, exc)
            return
        session.transfer_method = source.method
        changes = ResponseChanges(config)
        changes.set_session_tokens(
            session, "cookie" if is_cookie else "header", now=self.manager.clock.now(), scope=scope
        )
        await send_response(send, 200, {}, changes, [])

    async def _rid_missing_hook(self, scope: Scope, refresh_token: str) -> None:
        try:
            await self.manager.open()
        except SessionError:
            return  # the refresh itself reports the store failure
        handle = refresh_token_handle(self.manager.keys.refresh_mac_key, refresh_token)
        with hook_context(scope):
            await self.manager._anti_csrf_failed(handle, "anti-csrf check failed: the rid header is missing")

    async def _duplicated_cookies(self, names: list[str], scope: Scope, send: Send) -> None:
        """Answer a refresh whose request carries a session cookie twice, without ever clearing the current ones.

        With ``older_cookie_domain`` set, the cookies of that domain are cleared and the client retries (200, no
        ``front-token``); without it, a 500 says how to fix the configuration, and nothing is cleared: the
        duplicate may have been planted by a sibling subdomain, and clearing would sign the victim out.
        """
        config = self.manager.config
        older = config.older_cookie_domain
        current = config.cookie_domain
        # Clearing on a domain is clearing the current cookies too when it names the same domain: cookie_domain,
        # or this host when the current cookies are host-only (a browser keys cookies on name, domain and path).
        if older is not None and _bare(older) != _bare(current or _request_host(scope)):
            logger.info(
                "asgi_session: refresh: clearing duplicated %s cookies of the domain %r", " and ".join(names), older
            )
            changes = ResponseChanges(config)
            changes.clear_cookies_on_domain(names, older)
            body = {
                "message": "The request contains multiple session cookies; the ones for the older cookie domain "
                "are cleared: refresh again"
            }
            await send_response(send, 200, body, changes, [])
            return
        logger.warning(
            "asgi_session: refresh refused: the request carries more than one %s cookie (an old cookie_domain, "
            "or a cookie planted by another subdomain); set SessionConfig.older_cookie_domain to the domain the "
            "old cookies were set for, different from cookie_domain (%r)",
            " and ".join(names),
            current,
        )
        message = (
            "The request contains multiple session cookies. This happens after cookie_domain changed; set "
            "older_cookie_domain (different from cookie_domain) in the session configuration to clear the old ones."
        )
        await send_response(send, 500, {"message": message}, None, [])

    async def signout(self, context: RequestContext, scope: Scope, send: Send) -> None:
        """Revoke the request's session and clear its tokens; 200 ``{"status": "OK"}``."""
        try:
            if context.error is not None:
                raise context.error
            session = context.session
            if session is not None:
                try:
                    check_anti_csrf(context, scope, session, None)
                except TryRefreshTokenError as exc:
                    await anti_csrf_failed(context, scope, session, exc)
                    raise
                with hook_context(scope, "sign-out"):
                    await session.revoke()
        except SessionError as exc:
            await self._fail(context, scope, send, exc)
            return
        changes = ResponseChanges(self.manager.config)
        if context.source.token is None:
            # No session was presented: nothing to clear. A cross-site form post arrives without the SameSite
            # cookies and must not sign anyone out; ``front-token: remove`` touches no cookie.
            changes.remove_front_token()
        else:
            changes.clear_tokens(context.source.method)
        await send_response(send, 200, {"status": "OK"}, changes, [])

    async def jwks(self, context: RequestContext, scope: Scope, send: Send) -> None:
        """Serve the public keys that may still verify a live token."""
        try:
            document = await self.manager.get_jwks()
        except SessionError as exc:
            await self._fail(context, scope, send, exc)
            return
        cache = f"max-age={self.manager.keys.jwks_max_age()}, must-revalidate".encode("ascii")
        await send_response(send, 200, document, None, [(b"cache-control", cache), _ANY_ORIGIN])

    async def openid_configuration(self, context: RequestContext, scope: Scope, send: Send) -> None:
        """Serve the OpenID discovery document: the ``issuer`` and where its keys are (``jwks_uri``).

        ``jwks_uri`` is absolute: on the issuer's origin when ``issuer`` is an ``http(s)://`` URL, else on the
        origin the request was sent to (behind a proxy, run the server with its proxy-headers option).
        """
        config = self.manager.config
        issuer = urlsplit(config.issuer)
        if issuer.scheme in ("http", "https") and issuer.netloc:
            origin = f"{issuer.scheme}://{issuer.netloc}"
        else:
            origin = _request_origin(scope)
        document: dict[str, Any] = {"issuer": config.issuer, "jwks_uri": origin + self.jwks_path}
        if config.signing_algorithm != "HS256":
            document["id_token_signing_alg_values_supported"] = [config.signing_algorithm]
        await send_response(send, 200, document, None, [(b"cache-control", b"max-age=3600"), _ANY_ORIGIN])
