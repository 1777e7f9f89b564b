"""Quart integration: ``install(app, manager)``, request-bound helpers reading ``quart.request``, a decorator.

::

    from asgi_session.frameworks.quart import create_new_session, get_session, install, session_required

    app = Quart(__name__)
    install(app, SessionManager())


    @app.get("/me")
    @session_required
    async def me() -> dict[str, str]:
        session = await get_session(session_required=True)
        return {"user": session.user_id}

``install`` wraps ``app.asgi_app`` in :class:`~asgi_session.SessionMiddleware` and registers an error handler, so a
refused request gets the protocol response (401 ``unauthorised`` or ``try refresh token``). Quart turns an
unhandled exception into its own 500 before an outer middleware could see it, so the handler is what makes this
work in production mode. In a websocket view, a refusal raised before ``websocket.accept()`` closes the handshake
with code 1008, as the middleware does for other frameworks.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, overload

from ..exceptions import ConfigurationError, SessionError

try:
    from quart import Quart, Response, current_app, has_request_context, has_websocket_context, request, websocket
except ImportError as exc:
    raise ConfigurationError("asgi_session.frameworks.quart needs Quart: pip install 'asgi-session[quart]'") from exc

from .._asgi import ASGIApp, Scope
from .._context import create_new_session as _create_new_session
from .._context import get_route_session as _get_route_session
from .._context import get_session as _get_session
from .._error_handlers import ErrorHandlers
from ..claims import OverrideGlobalClaimValidators
from ..middleware import SessionMiddleware
from ._errors import defer_to_override, protocol_error

if TYPE_CHECKING:
    from ..manager import SessionManager
    from ..session import Session

__all__ = ["create_new_session", "get_session", "install", "session_required"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def install(app: Quart, manager: SessionManager, *, error_handlers: ErrorHandlers | None = None) -> None:
    """Add sessions to a Quart app: wrap ``app.asgi_app`` in ``SessionMiddleware`` and map session errors.

    The middleware opens the manager's store on startup and closes it on shutdown. The error handler answers a
    :class:`~asgi_session.SessionError` with its protocol response (on a websocket: close code 1008, or 1011
    when the store failed); developer errors (``ConfigurationError``, ``InvalidPayloadError``) are re-raised and
    stay 500s.

    Args:
        app: the Quart application.
        manager: the :class:`~asgi_session.SessionManager`.
        error_handlers: the application's own answers to session errors (:class:`~asgi_session.ErrorHandlers`).

    Raises:
        ConfigurationError: ``install`` was already called on this app.
    """
    if isinstance(app.asgi_app, SessionMiddleware):
        raise ConfigurationError("asgi-session is already installed on this Quart app")
    inner: ASGIApp = app.asgi_app  # type: ignore[assignment]  # Quart's precise ASGI types are narrower
    app.asgi_app = SessionMiddleware(  # type: ignore[method-assign,assignment]
        inner, manager=manager, error_handlers=error_handlers
    )

    async def handle(exc: SessionError) -> Response | None:
        if has_request_context() and defer_to_override(exc, request.scope):
            return Response("", status=500)  # a placeholder the middleware replaces with the override's answer
        answer = protocol_error(exc, _current_scope(), manager)
        if answer is None:
            raise exc
        status, body, headers = answer
        if has_websocket_context():
            # As SessionMiddleware does for other frameworks: a refused handshake is closed with 1008 (policy
            # violation), a store failure with 1011; a websocket cannot carry the HTTP answer.
            if status >= 500:
                await websocket.close(1011, "session store unavailable")
            else:
                await websocket.close(1008, "unauthorised")
            return None
        response = Response(body, status=status, content_type="application/json")
        for name, value in headers:
            response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
        return response

    app.register_error_handler(SessionError, handle)  # type: ignore[arg-type]  # None is valid for websockets


def _current_scope() -> Scope:
    if has_request_context():
        return request.scope  # type: ignore[return-value]
    if has_websocket_context():
        return websocket.scope  # type: ignore[return-value]
    raise ConfigurationError("no Quart request or websocket context: call this inside a view")


@overload
async def get_session(
    session_required: Literal[True],
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session: ...


@overload
async def get_session(
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None: ...


async def get_session(
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None:
    """Return the current request's (or websocket's) verified session, or ``None`` when there is none.

    Args:
        session_required: raise ``UnauthorisedError`` instead of returning ``None``.
        check_database: also check the store (the session must not be revoked); default: the config's
            ``access_token_blacklisting``.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (a failure: 403
            ``invalid claim``). Without one, in a view that :func:`session_required` already checked, no claim
            validator runs again: the decorator's check stands for the view.

    Returns:
        The session, or ``None``.

    Raises:
        TryRefreshTokenError: the access token is expired or invalid, or the anti-CSRF check failed.
        UnauthorisedError: no session while required, or (with the database check) the session was revoked.
        InvalidClaimsError: a claim validator failed.
        StoreError: the store failed during the database check.
        ConfigurationError: outside a request, or :func:`install` was not called.
    """
    return await _get_session(
        _current_scope(), session_required, check_database, anti_csrf_check, override_global_claim_validators
    )


async def create_new_session(
    user_id: str,
    *,
    tenant_id: str = "public",
    access_token_payload: Mapping[str, Any] | None = None,
    session_data_in_database: Mapping[str, Any] | None = None,
    remember: bool = True,
    idle_timeout: timedelta | None = None,
) -> Session:
    """Create a session for the current request; its tokens are written to this response.

    Any session the request carried is revoked first, and a new handle is always minted (no fixation).

    Args:
        user_id: the user.
        tenant_id: the tenant (default ``"public"``).
        access_token_payload: custom claims for the access token.
        session_data_in_database: server-side session data.
        remember: ``False`` (a "keep me signed in" box left unticked) makes the session's cookies
            browser-session cookies, at creation and at every refresh.
        idle_timeout: an idle timeout for this session, shorter than ``refresh_token_validity`` and longer than
            ``access_token_validity`` (see :func:`asgi_session.create_new_session`).

    Returns:
        The new session.

    Raises:
        StoreError: the store failed; no tokens are issued.
        InvalidPayloadError: the payload sets a protected claim or is too large for a cookie.
        ValueError: ``idle_timeout`` is out of range; nothing is stored or revoked.
        ConfigurationError: outside a request, or :func:`install` was not called.
    """
    return await _create_new_session(
        _current_scope(),
        user_id,
        tenant_id=tenant_id,
        access_token_payload=access_token_payload,
        session_data_in_database=session_data_in_database,
        remember=remember,
        idle_timeout=idle_timeout,
    )


class _ViewDecorator(Protocol):
    @overload
    def __call__(self, view: Callable[_P, Awaitable[_R]], /) -> Callable[_P, Awaitable[_R]]: ...

    @overload
    def __call__(self, view: Callable[_P, _R], /) -> Callable[_P, Awaitable[_R]]: ...


@overload
def session_required(view: Callable[_P, Awaitable[_R]], /) -> Callable[_P, Awaitable[_R]]: ...


@overload
def session_required(view: Callable[_P, _R], /) -> Callable[_P, Awaitable[_R]]: ...


@overload
def session_required(
    view: None = None,
    /,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> _ViewDecorator: ...


def session_required(
    view: Callable[..., Any] | None = None,
    /,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Any:
    """Protect a Quart view: verify the session before the view runs.

    Use it bare (``@session_required``) or with options (``@session_required(check_database=True)``), below
    the route decorator. The view reads the session with :func:`get_session` (already verified, so no second
    store read). A sync view becomes async and runs in Quart's executor, as Quart runs sync views.

    Args:
        view: the view, when used bare.
        session_required: refuse requests without a session (401 ``unauthorised``); with ``False`` the view
            runs and :func:`get_session` returns ``None``.
        check_database: also check the store, so a revoked session's still-unexpired access token is refused
            (401 ``unauthorised``, tokens cleared). With ``access_token_blacklisting`` on, every request is
            checked anyway.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators this view runs instead of the manager's ``global_claim_validators`` (add, remove or
            replace them; a failure: 403 ``invalid claim``). The view's own :func:`get_session` then runs no
            validator again.

    Returns:
        The wrapped (async) view (bare form), or a decorator (called form).
    """
    required = session_required

    def decorator(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            await _get_route_session(
                _current_scope(), required, check_database, anti_csrf_check, override_global_claim_validators
            )
            return await current_app.ensure_async(func)(*args, **kwargs)

        return wrapper

    if view is not None:
        return decorator(view)
    return decorator
