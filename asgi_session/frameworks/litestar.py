"""Litestar integration: ``SessionPlugin(manager)``, the ``session`` dependency, a guard and ``get_session(request)``.

::

    from asgi_session.frameworks.litestar import SessionPlugin


    @get("/me")
    async def me(session: Session) -> dict[str, str]:  # requires a session: 401 without one
        return {"user": session.user_id}


    @get("/hello")
    async def hello(session: Session | None) -> dict[str, str | None]:  # optional
        return {"user": session.user_id if session is not None else None}


    @get("/admin", opt={"override_global_claim_validators": lambda validators, session: [*validators, is_admin]})
    async def admin(session: Session) -> dict[str, str]:  # 403 "invalid claim" unless the validators pass
        return {"admin": session.user_id}


    app = Litestar([me, hello, admin], plugins=[SessionPlugin(manager)])

The plugin adds :class:`~asgi_session.SessionMiddleware` as app-level middleware, routes the protocol endpoints
(``POST /auth/session/refresh``, ``POST /auth/signout``, the JWKS) to it, opens and closes the store with the
app's lifespan (and runs the scheduled cleanup, ``SessionConfig.cleanup_interval``, meanwhile), maps session errors
to the protocol responses through Litestar exception handlers (Litestar turns an unhandled exception into its own
500 before an outer middleware could see it), or to the application's own :class:`~asgi_session.ErrorHandlers`,
provides the ``session`` dependency, and marks protected routes with the ``AccessTokenCookie`` /
``AccessTokenBearer`` security schemes in the OpenAPI document.

Session claims: the ``session`` dependency, :class:`SessionGuard` and :func:`get_session` run the manager's
``global_claim_validators``; a route (or router, controller) changes them with ``override_global_claim_validators``
in its ``opt``, a guard with its own argument, ``get_session`` with its own. A request's claims are validated once:
after a guard or the dependency passed, the dependency and ``get_session`` without an override of their own run no
validator again. A failure answers 403 ``invalid claim``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

from ..exceptions import (
    ConfigurationError,
    InvalidClaimsError,
    SessionError,
    StoreError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)

try:
    from litestar import Request, Response
    from litestar.config.app import AppConfig
    from litestar.connection import ASGIConnection
    from litestar.di import NamedDependency, Provide
    from litestar.exceptions import WebSocketException
    from litestar.handlers import BaseRouteHandler, HTTPRouteHandler, asgi
    from litestar.middleware import DefineMiddleware
    from litestar.openapi.datastructures import ResponseSpec
    from litestar.openapi.spec import Components, Example, SecurityScheme
    from litestar.plugins import InitPluginProtocol, ReceiveRoutePlugin
    from litestar.routes import BaseRoute, HTTPRoute
    from litestar.types import Scope as LitestarScope
except ImportError as exc:
    raise ConfigurationError(
        "asgi_session.frameworks.litestar needs Litestar: pip install 'asgi-session[litestar]'"
    ) from exc

from .._asgi import Receive, Scope, Send
from .._cleanup import ScheduledCleanup
from .._context import get_route_session as _get_route_session
from .._context import get_session as _get_session
from .._endpoints import Endpoints
from .._error_handlers import ErrorHandlers
from ..claims import OverrideGlobalClaimValidators
from ..manager import SessionManager
from ..middleware import SessionMiddleware
from ..session import Session
from ..transport import ACCESS_COOKIE
from ._errors import defer_to_override, protocol_error

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.response.base import ASGIResponse

__all__ = [
    "ACCESS_TOKEN_BEARER",
    "ACCESS_TOKEN_COOKIE",
    "CLAIM_VALIDATORS_OPT",
    "INVALID_CLAIM_RESPONSE",
    "SECURITY",
    "UNAUTHORISED_RESPONSE",
    "OptionalSessionDep",
    "SessionDep",
    "SessionGuard",
    "SessionPlugin",
    "get_session",
    "session_guard",
]

ACCESS_TOKEN_COOKIE = "AccessTokenCookie"
"""The OpenAPI security scheme name for the ``sAccessToken`` cookie."""

ACCESS_TOKEN_BEARER = "AccessTokenBearer"
"""The OpenAPI security scheme name for ``Authorization: Bearer <access token>``."""

CLAIM_VALIDATORS_OPT = "override_global_claim_validators"
"""The ``opt`` key of a route handler, controller or router whose value (``override(global_validators, session)``,
sync or async) replaces the manager's ``global_claim_validators`` for the ``session`` dependency and the guards."""

SECURITY: list[dict[str, list[str]]] = [{ACCESS_TOKEN_COOKIE: []}, {ACCESS_TOKEN_BEARER: []}]
"""The security requirement of a protected route: either scheme (as the FastAPI integration documents it)."""

SECURITY_SCHEMES = {
    ACCESS_TOKEN_COOKIE: SecurityScheme(
        type="apiKey",
        name=ACCESS_COOKIE,
        security_scheme_in="cookie",
        description="The access token in the sAccessToken cookie (set by sign-in, refreshed at /auth/session/refresh).",
    ),
    ACCESS_TOKEN_BEARER: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="The access token in an Authorization: Bearer header (header-based token transfer).",
    ),
}


class SessionUnauthorised(TypedDict):
    """The body of a 401 from asgi-session (the schema in the OpenAPI document)."""

    message: Literal["unauthorised", "try refresh token"]


class SessionClaimValidationError(TypedDict):
    """One failed claim validator in a 403 ``invalid claim`` body: its id, and why (the validator's reason)."""

    id: str
    reason: Any


class SessionInvalidClaim(TypedDict):
    """The body of a 403 ``invalid claim``, as SuperTokens' frontend SDK reads it (``getInvalidClaimsFromResponse``)."""

    message: Literal["invalid claim"]
    claimValidationErrors: list[SessionClaimValidationError]


UNAUTHORISED_RESPONSE = ResponseSpec(
    SessionUnauthorised,
    description=(
        'No valid session. "unauthorised": none, or a revoked one (sign in again); "try refresh token": the access '
        "token expired or is invalid (the client refreshes at /auth/session/refresh and retries)"
    ),
    generate_examples=False,
    examples=[
        Example(summary="No session, or a revoked one", value={"message": "unauthorised"}),
        Example(summary="The access token expired: refresh, then retry", value={"message": "try refresh token"}),
    ],
)
"""The OpenAPI response of a protected route without a valid session (401), listed by :class:`SessionPlugin`."""

INVALID_CLAIM_RESPONSE = ResponseSpec(
    SessionInvalidClaim,
    description="A session claim validator refused the session (SuperTokens' invalid-claim response)",
    generate_examples=False,
    examples=[
        Example(
            summary="A missing role",
            value={
                "message": "invalid claim",
                "claimValidationErrors": [
                    {
                        "id": "st-role",
                        "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]},
                    }
                ],
            },
        )
    ],
)
"""The OpenAPI response of a protected route whose claims are validated (``invalid_claim_status_code``, 403)."""

SessionDep = NamedDependency[Session]
"""A handler parameter ``session: SessionDep`` receives the verified session; the route requires one.

The same as ``session: Session`` marked explicitly as a named dependency, which Litestar 2.23+ asks for (a bare
``session: Session`` also works; recent Litestar releases warn about such inferred dependencies)."""

OptionalSessionDep = NamedDependency[Session | None]
"""A handler parameter ``session: OptionalSessionDep`` receives the session, or ``None`` without one."""

# The errors that have a protocol response; developer errors (ConfigurationError, InvalidPayloadError) are left
# to Litestar's default handler and stay 500s.
_PROTOCOL_ERRORS = (TryRefreshTokenError, UnauthorisedError, TokenTheftDetectedError, InvalidClaimsError, StoreError)


def _route_override(handler: BaseRouteHandler | None) -> OverrideGlobalClaimValidators | None:
    """The override in the route's ``opt`` (merged over its layers), or ``None``."""
    override = handler.opt.get(CLAIM_VALIDATORS_OPT) if handler is not None else None
    if override is not None and not callable(override):
        raise ConfigurationError(
            f"opt[{CLAIM_VALIDATORS_OPT!r}] of {handler!r} must be a callable (global_validators, session) -> list, "
            f"got {override!r}"
        )
    return override


async def _checked(
    scope: Any,
    session_required: bool,
    check_database: bool | None,
    anti_csrf_check: bool | None,
    override: OverrideGlobalClaimValidators | None,
) -> Session | None:
    """``get_session`` for the plugin's guard and dependency; on a websocket, a refusal closes the handshake.

    With 1008, or 1011 when the store failed, as ``SessionMiddleware`` does, instead of Litestar's 4500. The claims
    are validated once per request (``override``, else the global validators); later helpers skip them.
    """
    try:
        return await _get_route_session(scope, session_required, check_database, anti_csrf_check, override)
    except _PROTOCOL_ERRORS as exc:
        if scope.get("type") != "websocket":
            raise
        if isinstance(exc, StoreError):
            raise WebSocketException(detail="session store unavailable", code=1011) from exc
        raise WebSocketException(detail="unauthorised", code=1008) from exc


@overload
async def get_session(
    request: ASGIConnection[Any, Any, Any, Any],
    session_required: Literal[True],
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session: ...


@overload
async def get_session(
    request: ASGIConnection[Any, Any, Any, Any],
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None: ...


async def get_session(
    request: ASGIConnection[Any, Any, Any, Any],
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None:
    """Return the request's verified session, or ``None`` when there is none and it is not required.

    The same as :func:`asgi_session.get_session`, typed for a Litestar ``Request`` or ``WebSocket``.

    Args:
        request: the Litestar request (or websocket).
        session_required: raise ``UnauthorisedError`` instead of returning ``None``.
        check_database: also check the store (the session must not be revoked); default: the config's
            ``access_token_blacklisting``.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (a failure: 403
            ``invalid claim``). Without one, on a request whose claims a guard or the ``session`` dependency
            already validated, no validator runs again.

    Returns:
        The session, or ``None``.

    Raises:
        TryRefreshTokenError: the access token is expired or invalid, or the anti-CSRF check failed.
        UnauthorisedError: no session while required, or (with the database check) the session was revoked.
        InvalidClaimsError: a claim validator failed (403 ``invalid claim``); a value re-fetched on the way is
            stored, and its re-issued access token is sent with the 403.
        StoreError: the store failed during the database check.
        ConfigurationError: ``SessionPlugin`` (or ``SessionMiddleware``) is not installed.
    """
    # On a request a guard or the dependency checked, the scope is marked: no validator again without an override.
    return await _get_session(
        request.scope, session_required, check_database, anti_csrf_check, override_global_claim_validators
    )


class SessionGuard:
    """A Litestar guard that refuses requests without a valid session (401 ``unauthorised``).

    For routers, controllers and handlers that need a session without reading it: ``guards=[session_guard]``,
    or ``guards=[SessionGuard(check_database=True)]``. Routes behind it are marked as protected in OpenAPI.
    It also validates the session's claims (403 ``invalid claim``): the manager's ``global_claim_validators``, or
    what ``override_global_claim_validators`` (the guard's, else the route's ``opt``) makes of them. The
    ``session`` dependency and ``get_session`` of a request the guard passed do not validate them again.

    Args:
        check_database: also check the store, so a revoked session's still-unexpired access token is refused
            (401 ``unauthorised``, tokens cleared).
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (add, remove or replace
            them); by default the route's ``opt["override_global_claim_validators"]``, if any.

    Raises:
        ConfigurationError: ``override_global_claim_validators`` is not callable.
    """

    __slots__ = ("anti_csrf_check", "check_database", "override_global_claim_validators")

    def __init__(
        self,
        *,
        check_database: bool = False,
        anti_csrf_check: bool | None = None,
        override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
    ) -> None:
        if override_global_claim_validators is not None and not callable(override_global_claim_validators):
            raise ConfigurationError(
                "SessionGuard: override_global_claim_validators must be a callable (global_validators, session) "
                f"-> list, got {override_global_claim_validators!r}"
            )
        self.check_database = check_database
        self.anti_csrf_check = anti_csrf_check
        self.override_global_claim_validators = override_global_claim_validators

    def __repr__(self) -> str:
        override = self.override_global_claim_validators
        extra = f", override_global_claim_validators={override!r}" if override is not None else ""
        return f"SessionGuard(check_database={self.check_database!r}, anti_csrf_check={self.anti_csrf_check!r}{extra})"

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        """Raise the session error that refuses this request, if any."""
        override = self.override_global_claim_validators or _route_override(handler)
        await _checked(connection.scope, True, self.check_database, self.anti_csrf_check, override)


session_guard = SessionGuard()
"""The guard with the default options: a valid session is required."""


class _ProtocolResponse(Response[bytes]):
    """A Litestar response carrying asgi-session's headers as written (several ``Set-Cookie`` among them)."""

    def __init__(self, body: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(body, status_code=status, media_type="application/json")
        self.raw_headers = headers

    def to_asgi_response(self, app: Litestar | None, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(app, request, **kwargs)
        for name, value in self.raw_headers:
            response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
        return response


def _exception_handler(manager: SessionManager) -> Any:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        # Litestar calls exception handlers for HTTP requests only (a websocket is closed by ``_checked``).
        if isinstance(exc, SessionError) and defer_to_override(exc, request.scope):
            # A placeholder: SessionMiddleware holds back every 5xx, and sends the override's answer instead.
            return Response(b"", status_code=500)
        answer = protocol_error(exc, request.scope, manager) if isinstance(exc, SessionError) else None
        if answer is None:  # pragma: no cover - only protocol errors are registered
            raise exc
        status, body, headers = answer
        return _ProtocolResponse(body, status, headers)

    return handle


def _field_requires_session(handler: BaseRouteHandler, key: str) -> bool | None:
    """Whether the handler's ``key`` parameter requires a session: ``None`` when it has no such parameter."""
    field = handler.parsed_fn_signature.parameters.get(key)
    if field is None:
        return None
    return not field.is_optional


def _session_guards(handler: HTTPRouteHandler) -> list[SessionGuard]:
    return [
        guard for layer in handler.ownership_layers for guard in (layer.guards or ()) if isinstance(guard, SessionGuard)
    ]


class SessionPlugin(InitPluginProtocol, ReceiveRoutePlugin):
    """Sessions for a Litestar app: ``Litestar(..., plugins=[SessionPlugin(manager)])``.

    What it adds to the app:

    - :class:`~asgi_session.SessionMiddleware` as app-level middleware (first, so it wraps the app's other
      middleware), and routes for the protocol endpoints so that they reach it;
    - the store opened on startup and closed on shutdown (Litestar keeps its lifespan from middleware), and in
      between the scheduled cleanup (``delete_expired_sessions()`` every ``SessionConfig.cleanup_interval``
      seconds, one process per interval), as :class:`~asgi_session.SessionMiddleware` runs it under a lifespan;
    - exception handlers answering ``TryRefreshTokenError``, ``UnauthorisedError``, ``TokenTheftDetectedError``,
      ``InvalidClaimsError`` and ``StoreError`` with the protocol responses (401 / 403 / 503), or with the
      ``error_handlers`` overrides where they have one (the protocol's token changes still applied);
    - the ``session`` dependency: a parameter ``session: SessionDep`` requires a session (401 ``unauthorised``
      without one), ``session: OptionalSessionDep`` is optional (``None`` without one); the bare annotations
      ``Session`` and ``Session | None`` work too. Either way an expired or invalid access token is answered
      401 ``try refresh token``, so the client refreshes. It validates the session's claims (403 ``invalid
      claim``): the manager's ``global_claim_validators``, or ``opt["override_global_claim_validators"]`` of
      the route (any layer: handler, controller, router, app);
    - ``Session``, ``SessionDep`` and ``OptionalSessionDep`` in the signature namespace (handlers may import
      them under ``TYPE_CHECKING``);
    - the ``AccessTokenCookie`` and ``AccessTokenBearer`` security schemes in the OpenAPI components, and
      either one as the security requirement of every route that requires a session (a required ``session``
      parameter, or a :class:`SessionGuard` on any layer); those routes also list the 401 response
      (``unauthorised`` / ``try refresh token``) and, when they validate claims (the manager has
      ``global_claim_validators``, or the route or its guard an override), the 403 ``invalid claim`` one.

    Args:
        manager: the :class:`~asgi_session.SessionManager`.
        dependency_key: the name of the dependency (and handler parameter); change it when ``session`` is
            already taken, e.g. by a database session.
        check_database: the ``session`` dependency also checks the store, so a revoked session's
            still-unexpired access token is refused at once. A store read per request.
        error_handlers: the application's own answers to session errors (:class:`~asgi_session.ErrorHandlers`),
            as ``SessionMiddleware(..., error_handlers=...)`` takes them: for errors raised in handlers, guards and
            dependencies, and at the protocol endpoints.

    Raises:
        ConfigurationError: ``manager`` is not a ``SessionManager``, ``dependency_key`` is not an identifier, or
            ``error_handlers`` is not an ``ErrorHandlers``.
    """

    __slots__ = ("_cleanup", "check_database", "dependency_key", "error_handlers", "manager")

    def __init__(
        self,
        manager: SessionManager,
        *,
        dependency_key: str = "session",
        check_database: bool = False,
        error_handlers: ErrorHandlers | None = None,
    ) -> None:
        if not isinstance(manager, SessionManager):
            raise ConfigurationError("SessionPlugin needs a SessionManager: SessionPlugin(SessionManager(...))")
        if not dependency_key.isidentifier():
            raise ConfigurationError(f"dependency_key must be a Python identifier, got {dependency_key!r}")
        if error_handlers is not None and not isinstance(error_handlers, ErrorHandlers):
            raise ConfigurationError("error_handlers must be an asgi_session.ErrorHandlers(...)")
        self.manager = manager
        self.dependency_key = dependency_key
        self.check_database = check_database
        self.error_handlers = error_handlers
        self._cleanup: ScheduledCleanup | None = None  # the running schedule, between startup and shutdown

    def __repr__(self) -> str:
        return f"SessionPlugin({self.manager!r}, dependency_key={self.dependency_key!r})"

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the middleware, endpoints, lifespan, exception handlers, dependency and OpenAPI schemes."""
        manager = self.manager
        # Our ASGI types are plain dicts, Litestar's are TypedDicts: the same messages at run time.
        middleware = DefineMiddleware(
            SessionMiddleware,  # type: ignore[arg-type]
            manager=manager,
            error_handlers=self.error_handlers,
        )
        app_config.middleware.insert(0, middleware)
        app_config.route_handlers.append(_endpoint_routes(Endpoints(manager, self.error_handlers).routes))
        app_config.lifespan.append(self._lifespan)
        handle = _exception_handler(manager)
        for error in _PROTOCOL_ERRORS:
            app_config.exception_handlers.setdefault(error, handle)
        app_config.dependencies.setdefault(self.dependency_key, Provide(self._provide_session))
        for name, value in (
            ("Session", Session),
            ("SessionDep", SessionDep),
            ("OptionalSessionDep", OptionalSessionDep),
        ):
            app_config.signature_namespace.setdefault(name, value)
        openapi = app_config.openapi_config
        if openapi is not None:
            components = openapi.components if isinstance(openapi.components, list) else [openapi.components]
            schemes = Components(security_schemes=dict(SECURITY_SCHEMES))
            # A copy: the default OpenAPIConfig is one object shared by every app of the process.
            openapi = copy.copy(openapi)  # dataclasses.replace would read the config's deprecated fields
            openapi.components = [*components, schemes]
            app_config.openapi_config = openapi
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        """Mark the route's handlers that require a session with the security requirement and their responses.

        Raises:
            ConfigurationError: a handler's ``opt["override_global_claim_validators"]`` is not callable.
        """
        for handler in getattr(route, "route_handlers", ()):
            _route_override(handler)  # refuse a bad override when the app is built, not at the first request
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            guards = _session_guards(handler)
            if _field_requires_session(handler, self.dependency_key) or guards:
                existing = list(handler.security or ())
                handler.security = [*existing, *(item for item in SECURITY if item not in existing)]
                self._document_responses(handler, guards)

    def _document_responses(self, handler: HTTPRouteHandler, guards: list[SessionGuard]) -> None:
        """List the 401 and, when the route validates claims, the 403 ``invalid claim`` (the handler's own win)."""
        validates_claims = (
            bool(self.manager.global_claim_validators)
            or _route_override(handler) is not None
            or any(guard.override_global_claim_validators is not None for guard in guards)
        )
        responses = dict(handler.responses or {})
        responses.setdefault(401, UNAUTHORISED_RESPONSE)
        if validates_claims:
            responses.setdefault(self.manager.config.invalid_claim_status_code, INVALID_CLAIM_RESPONSE)
        handler.responses = responses

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Litestar) -> AsyncIterator[None]:
        manager = self.manager
        await manager.open()
        # Litestar runs the lifespan itself and never passes it to the middleware: the schedule SessionMiddleware
        # would start on lifespan.startup is started here instead.
        interval = manager.config.cleanup_interval
        cleanup = ScheduledCleanup(manager, interval) if interval is not None else None
        self._cleanup = cleanup
        try:
            if cleanup is not None:
                cleanup.start()
            yield
        finally:
            try:
                if cleanup is not None:
                    await cleanup.stop()
            finally:
                await manager.close()

    async def _provide_session(self, scope: LitestarScope) -> Session | None:
        # ``scope`` rather than ``request``: the dependency also serves websocket handlers.
        handler = scope.get("route_handler")
        required = _field_requires_session(handler, self.dependency_key) if handler is not None else None
        # A dependency of another dependency (not a handler parameter): required, the safe reading.
        return await _checked(scope, required is not False, self.check_database, None, _route_override(handler))


def _endpoint_routes(routes: Iterable[str]) -> asgi:
    """One ASGI route for the protocol endpoints' paths: app-level middleware only runs on matched routes."""

    async def not_served(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        # SessionMiddleware answers every request to these paths (405 for a wrong method); this runs only when
        # the middleware was removed from the route's stack.
        body = b'{"message":"not found"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return asgi(sorted(routes), copy_scope=False, name="asgi_session_endpoints")(not_served)
