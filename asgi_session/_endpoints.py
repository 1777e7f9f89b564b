"""The protocol endpoints (refresh, sign-out, JWKS, OpenID discovery) and the mapping of errors to responses."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import _metrics
from ._asgi import Scope, Send, header_value, header_values
from ._context import RequestContext, check_anti_csrf
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
from .transport import ResponseChanges, duplicated_session_cookies, read_refresh_token

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["Endpoints", "error_response", "send_response"]

logger = logging.getLogger("asgi_session")

_DISCOVERY = "/.well-known/openid-configuration"
_ANY_ORIGIN = (b"access-control-allow-origin", b"*")  # public documents any site or service may read
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

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

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
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
        ours = _nothing_is_ours
        if config.token_transfer_method != "cookie" and header_values(scope, b"authorization"):
            # The refresh-token MAC tells our Bearer value from anyone else's; a request without one needs no key.
            try:
                await self.manager.open()
            except SessionError as exc:
                await self._fail(context, send, exc)
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
        changes.set_session_tokens(
            session, "cookie" if is_cookie else "header", now=self.manager.clock.now(), scope=scope
        )
        await send_response(send, 200, {}, changes, [])

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
        if context.source.token is None:
            # No session was presented: nothing to clear. A cross-site form post arrives without the SameSite
            # cookies and must not sign anyone out; ``front-token: remove`` touches no cookie.
            changes.remove_front_token()
        else:
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
        await send_response(send, 200, document, None, [(b"cache-control", cache), _ANY_ORIGIN])

    async def openid_configuration(self, context: RequestContext, send: Send) -> None:
        """Serve the OpenID discovery document: the ``issuer`` and where its keys are (``jwks_uri``).

        ``jwks_uri`` is absolute: on the issuer's origin when ``issuer`` is an ``http(s)://`` URL, else on the
        origin the request was sent to (behind a proxy, run the server with its proxy-headers option).
        """
        config = self.manager.config
        issuer = urlsplit(config.issuer)
        if issuer.scheme in ("http", "https") and issuer.netloc:
            origin = f"{issuer.scheme}://{issuer.netloc}"
        else:
            origin = _request_origin(context.scope)
        document: dict[str, Any] = {"issuer": config.issuer, "jwks_uri": origin + self.jwks_path}
        if config.signing_algorithm != "HS256":
            document["id_token_signing_alg_values_supported"] = [config.signing_algorithm]
        await send_response(send, 200, document, None, [(b"cache-control", b"max-age=3600"), _ANY_ORIGIN])
