"""Starlette integration: the ``requires_session`` endpoint decorator and a Starlette-typed ``get_session``.

Install :class:`~asgi_session.SessionMiddleware` on the app, then protect endpoints::

    from asgi_session.frameworks.starlette import requires_session


    @requires_session
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.session.user_id})

A refused request gets the protocol response (401 ``unauthorised`` or ``try refresh token``) from the middleware.
When another layer turns exceptions into responses before the middleware sees them, also call
:func:`install_exception_handlers`.

For Starlette's own authentication (``request.user``, ``request.auth``, ``@requires("authenticated")``), add
``AuthenticationMiddleware(backend=SessionAuthBackend())`` inside ``SessionMiddleware``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

import anyio.from_thread

from ..exceptions import ConfigurationError, SessionError

try:
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket
except ImportError as exc:  # pragma: no cover - starlette is a core dependency
    raise ConfigurationError("asgi_session.frameworks.starlette needs Starlette: pip install starlette") from exc

from .._context import get_route_session as _get_route_session
from .._context import get_session as _get_session
from ..claims import OverrideGlobalClaimValidators, no_claim_validators
from ._errors import defer_to_override, protocol_error

if TYPE_CHECKING:
    from ..manager import SessionManager
    from ..session import Session

__all__ = [
    "SessionAuthBackend",
    "SessionUser",
    "get_session",
    "install_exception_handlers",
    "requires_session",
    "session_error_handler",
]

_F = TypeVar("_F", bound=Callable[..., Any])


@overload
async def get_session(
    request: HTTPConnection,
    session_required: Literal[True],
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session: ...


@overload
async def get_session(
    request: HTTPConnection,
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None: ...


async def get_session(
    request: HTTPConnection,
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None:
    """Return the request's verified session, or ``None`` when there is none and it is not required.

    The same as :func:`asgi_session.get_session`, typed for a Starlette ``Request`` or ``WebSocket``.

    Args:
        request: the Starlette request (or websocket).
        session_required: raise ``UnauthorisedError`` instead of returning ``None``.
        check_database: also check the store (the session must not be revoked); default: the config's
            ``access_token_blacklisting``.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (a failure: 403
            ``invalid claim``). Without one, in an endpoint that :func:`requires_session` already checked, no
            claim validator runs again: the decorator's check stands for the endpoint.

    Returns:
        The session, or ``None``.

    Raises:
        TryRefreshTokenError: the access token is expired or invalid, or the anti-CSRF check failed.
        UnauthorisedError: no session while required, or (with the database check) the session was revoked.
        InvalidClaimsError: a claim validator failed.
        StoreError: the store failed during the database check.
        ConfigurationError: ``SessionMiddleware`` is not installed.
    """
    return await _get_session(
        request, session_required, check_database, anti_csrf_check, override_global_claim_validators
    )


def _connection_index(func: Callable[..., Any]) -> int:
    for index, parameter in enumerate(inspect.signature(func).parameters.values()):
        if parameter.name in ("request", "websocket"):
            return index
    raise ConfigurationError(f'requires_session: {func!r} has no "request" or "websocket" parameter')


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any], index: int) -> HTTPConnection:
    found = kwargs.get("request", kwargs.get("websocket"))
    if found is None and index < len(args):
        found = args[index]
    if not isinstance(found, HTTPConnection):
        raise ConfigurationError(
            f"requires_session: expected a Starlette Request or WebSocket, got {type(found).__name__}"
        )
    return found


@overload
def requires_session(endpoint: _F, /) -> _F: ...


@overload
def requires_session(
    endpoint: None = None,
    /,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Callable[[_F], _F]: ...


def requires_session(
    endpoint: _F | None = None,
    /,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> _F | Callable[[_F], _F]:
    """Protect a Starlette endpoint: verify the session first and put it on ``request.state.session``.

    Use it bare (``@requires_session``) or with options (``@requires_session(check_database=True)``). The
    endpoint is a function (or an ``HTTPEndpoint`` method) with a ``request`` or ``websocket`` parameter; sync
    endpoints stay sync (Starlette runs them in a thread).

    Args:
        endpoint: the endpoint, when used bare.
        session_required: refuse requests without a session (401 ``unauthorised``); with ``False`` the
            endpoint runs and ``request.state.session`` is ``None``.
        check_database: also check the store, so a revoked session's still-unexpired access token is refused
            (401 ``unauthorised``, tokens cleared). With ``access_token_blacklisting`` on, every request is
            checked anyway.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators this endpoint runs instead of the manager's ``global_claim_validators`` (add, remove
            or replace them; a failure: 403 ``invalid claim``). The endpoint's own ``get_session(request)`` then
            runs no validator again.

    Returns:
        The wrapped endpoint (bare form), or a decorator (called form).

    Raises:
        ConfigurationError: the endpoint has no ``request`` or ``websocket`` parameter.
    """

    def decorator(func: _F) -> _F:
        index = _connection_index(func)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                connection = _connection(args, kwargs, index)
                connection.state.session = await _get_route_session(
                    connection, session_required, check_database, anti_csrf_check, override_global_claim_validators
                )
                return await func(*args, **kwargs)

            return cast(_F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            # Starlette runs sync endpoints in an anyio worker thread: hop back to the event loop to verify.
            connection = _connection(args, kwargs, index)
            connection.state.session = anyio.from_thread.run(
                _get_route_session,
                connection,
                session_required,
                check_database,
                anti_csrf_check,
                override_global_claim_validators,
            )
            return func(*args, **kwargs)

        return cast(_F, sync_wrapper)

    if endpoint is not None:
        return decorator(endpoint)
    return decorator


def _handler(manager: SessionManager | None) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> Response:
        if (
            isinstance(exc, SessionError)
            and not isinstance(request, WebSocket)
            and defer_to_override(exc, request.scope)
        ):
            return Response(status_code=500)  # a placeholder the middleware replaces with the override's answer
        answer = protocol_error(exc, request.scope, manager) if isinstance(exc, SessionError) else None
        if answer is None or isinstance(request, WebSocket):
            # Developer errors stay 500s; a websocket is closed by the middleware (1008) instead.
            raise exc
        status, body, headers = answer
        response = Response(body, status_code=status, media_type="application/json")
        response.raw_headers.extend(headers)
        return response

    return handle


session_error_handler = _handler(None)
"""A Starlette/FastAPI exception handler that answers a :class:`~asgi_session.SessionError` with its protocol
response; pass it as ``exception_handlers={SessionError: session_error_handler}``."""


def install_exception_handlers(app: Starlette, manager: SessionManager | None = None) -> None:
    """Register an exception handler that answers a ``SessionError`` with the protocol response.

    :class:`~asgi_session.SessionMiddleware` already maps a ``SessionError`` that reaches it. The handler makes
    the app answer correctly even when a layer between the middleware and the route (another middleware, a
    catch-all handler) would turn the exception into a different response first. Errors that are not the
    client's fault (``ConfigurationError``, ``InvalidPayloadError``) are re-raised and stay 500s.

    Args:
        app: the Starlette (or FastAPI) application.
        manager: whose config to use when a request did not pass through the middleware; the middleware's
            manager wins when it did.
    """
    app.add_exception_handler(SessionError, _handler(manager))


# -- Starlette authentication ------------------------------------------------------------------------------------

# The access-token claim SuperTokens' user-roles recipe writes: {"st-role": {"v": ["admin", ...], "t": <ms>}}.
_ROLES_CLAIM = "st-role"


class SessionUser(BaseUser):
    """``request.user`` for a request with a verified session.

    Attributes:
        session: the verified :class:`~asgi_session.Session`.
    """

    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session

    def __repr__(self) -> str:
        return f"SessionUser(user_id={self.session.user_id!r}, tenant_id={self.session.tenant_id!r})"

    @property
    def is_authenticated(self) -> bool:
        """Always ``True``: a request without a session gets Starlette's ``UnauthenticatedUser``."""
        return True

    @property
    def display_name(self) -> str:
        """The user id (asgi-session knows no other name for the user)."""
        return self.session.user_id

    @property
    def identity(self) -> str:
        """The user id."""
        return self.session.user_id

    @property
    def user_id(self) -> str:
        """The user id."""
        return self.session.user_id

    @property
    def tenant_id(self) -> str:
        """The session's tenant."""
        return self.session.tenant_id


def _claim_values(payload: Mapping[str, Any], claim: str) -> list[str]:
    # The string values of a SuperTokens-style array claim {claim: {"v": [...], "t": ms}}. A missing or malformed
    # claim gives [] and non-strings are left out: a claim that cannot be read grants nothing.
    entry = payload.get(claim)
    values = entry.get("v") if isinstance(entry, Mapping) else None
    if not isinstance(values, list):
        return []
    return [value for value in values if isinstance(value, str)]


class SessionAuthBackend(AuthenticationBackend):
    """A Starlette ``AuthenticationBackend`` reading the session ``SessionMiddleware`` verified.

    ::

        middleware = [
            Middleware(SessionMiddleware, manager=manager),
            Middleware(AuthenticationMiddleware, backend=SessionAuthBackend()),  # inside SessionMiddleware
        ]

    With a session, ``request.user`` is a :class:`SessionUser` (``is_authenticated``, ``identity`` = the user id)
    and ``request.auth.scopes`` is ``["authenticated"]`` plus one scope per role in the access token's
    ``st-role`` claim, so ``@requires("authenticated")`` and ``@requires("admin")`` work. Without a session,
    ``request.user`` is Starlette's ``UnauthenticatedUser`` and the scopes are empty. The token is never
    verified again: the backend reads the middleware's result, as :func:`get_session` does.

    Like ``get_session(request)``, an expired or invalid access token (or a failed anti-CSRF check) is answered
    401 ``try refresh token`` by the middleware, on every route behind ``AuthenticationMiddleware``: the
    SuperTokens client then refreshes and retries instead of seeing the user signed out.

    Session claims are not validated here by default: the backend says who is authenticated, on every route
    behind ``AuthenticationMiddleware``, public ones included, and a failing global claim validator must not turn
    a public page into a 403. Routes that need the claims use :func:`requires_session` or :func:`get_session`,
    which run the manager's ``global_claim_validators``. To validate them for every request here instead, pass
    ``override_global_claim_validators=lambda validators, session: validators``.

    Args:
        roles_claim: the access-token claim holding the roles (SuperTokens' ``{"v": [...], "t": ms}`` shape);
            ``None`` adds no role scopes.
        role_scope: maps a role name to its scope name (e.g. ``lambda role: f"role:{role}"``); by default the
            scope is the role name. Return ``None`` to leave a role out.
        check_database: also check the store on every request, so a revoked session's still-unexpired access
            token is refused (401 ``unauthorised``, tokens cleared). A store read per request: usually better
            left to the routes that need it.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE. Skipping it would make a
            forged cross-site request look authenticated.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run on every request with a session (a failure: 403 ``invalid claim``, from the
            middleware); by default none run.

    Raises:
        ConfigurationError: ``override_global_claim_validators`` is not callable.
    """

    def __init__(
        self,
        *,
        roles_claim: str | None = _ROLES_CLAIM,
        role_scope: Callable[[str], str | None] | None = None,
        check_database: bool = False,
        anti_csrf_check: bool | None = None,
        override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
    ) -> None:
        if override_global_claim_validators is not None and not callable(override_global_claim_validators):
            raise ConfigurationError(
                "SessionAuthBackend: override_global_claim_validators must be a callable "
                f"(global_validators, session) -> list, got {override_global_claim_validators!r}"
            )
        self.roles_claim = roles_claim
        self.role_scope = role_scope
        self.check_database = check_database
        self.anti_csrf_check = anti_csrf_check
        self.override_global_claim_validators = override_global_claim_validators

    def scopes(self, session: Session) -> list[str]:
        """The scopes of a session: ``"authenticated"``, then its roles (each once, in claim order)."""
        scopes = ["authenticated"]
        if self.roles_claim is not None:
            roles: Iterable[str] = _claim_values(session.access_token_payload, self.roles_claim)
            for role in roles:
                scope = role if self.role_scope is None else self.role_scope(role)
                if scope is not None and scope not in scopes:
                    scopes.append(scope)
        return scopes

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        """Return the credentials and user of the request's session, or ``None`` without one.

        Raises:
            TryRefreshTokenError: the access token is expired or invalid, or the anti-CSRF check failed.
            UnauthorisedError: with ``check_database``, the session was revoked.
            InvalidClaimsError: with ``override_global_claim_validators``, a claim validator failed.
            StoreError: the store failed during the database check.
            ConfigurationError: ``SessionMiddleware`` is not installed outside ``AuthenticationMiddleware``.
        """
        override = self.override_global_claim_validators or no_claim_validators
        session = await _get_session(conn, False, self.check_database, self.anti_csrf_check, override)
        if session is None:
            return None
        return AuthCredentials(self.scopes(session)), SessionUser(session)
