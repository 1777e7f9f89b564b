"""FastAPI integration: the ``verify_session()`` dependency, the ``SessionDep`` alias and the OpenAPI schemes.

Install :class:`~asgi_session.SessionMiddleware` on the app, then declare the session as a dependency::

    from asgi_session.frameworks.fastapi import SessionDep, verify_session


    @app.get("/me")
    async def me(session: SessionDep) -> dict[str, str]:
        return {"user": session.user_id}


    @app.get("/account")
    async def account(session: Session = Depends(verify_session(check_database=True))) -> dict[str, str]: ...

A route that requires a session is marked in the OpenAPI document with two alternative security schemes, the
``sAccessToken`` cookie (``AccessTokenCookie``) and an ``Authorization: Bearer`` header (``AccessTokenBearer``),
so ``/docs`` shows which routes need a session. The schemes only document: the middleware reads and verifies the
token, and a refused request gets the protocol response (401 ``unauthorised`` or ``try refresh token``), never
FastAPI's 403 bodies. When another layer turns exceptions into responses before the middleware sees them, also
call :func:`install_exception_handlers`.

Names used in the dependency signatures are real (run-time) imports: FastAPI reads those annotations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, overload

from ..exceptions import ConfigurationError

try:
    from fastapi import Depends, Request, Security
    from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
except ImportError as exc:
    raise ConfigurationError(
        "asgi_session.frameworks.fastapi needs FastAPI: pip install 'asgi-session[fastapi]'"
    ) from exc

from .._context import get_session as _get_session
from ..session import Session
from ..transport import ACCESS_COOKIE
from .starlette import install_exception_handlers, session_error_handler

__all__ = [
    "OptionalSessionDep",
    "SessionDep",
    "access_token_bearer",
    "access_token_cookie",
    "install_exception_handlers",
    "session_error_handler",
    "verify_session",
]

access_token_cookie = APIKeyCookie(
    name=ACCESS_COOKIE,
    scheme_name="AccessTokenCookie",
    description="The access token in the sAccessToken cookie (set by sign-in, refreshed at /auth/session/refresh).",
    auto_error=False,
)
"""The OpenAPI security scheme for the ``sAccessToken`` cookie (documentation only; it never refuses a request)."""

access_token_bearer = HTTPBearer(
    scheme_name="AccessTokenBearer",
    bearerFormat="JWT",
    description="The access token in an Authorization: Bearer header (header-based token transfer).",
    auto_error=False,
)
"""The OpenAPI security scheme for ``Authorization: Bearer <access token>`` (documentation only)."""

SessionDependency = Callable[..., Awaitable[Session]]
"""What ``verify_session()`` returns: a FastAPI dependency giving the verified session."""

OptionalSessionDependency = Callable[..., Awaitable[Session | None]]
"""What ``verify_session(session_required=False)`` returns: a dependency giving the session or ``None``."""

_dependencies: dict[tuple[bool, bool, bool | None], OptionalSessionDependency] = {}


def _build(session_required: bool, check_database: bool, anti_csrf_check: bool | None) -> OptionalSessionDependency:
    if not session_required:
        # An optional session does not protect the route, so the route is not marked with the schemes.
        async def optional_session(request: Request) -> Session | None:
            return await _get_session(request, False, check_database, anti_csrf_check)

        return optional_session

    async def required_session(
        request: Request,
        _cookie: Annotated[str | None, Security(access_token_cookie)],
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(access_token_bearer)],
    ) -> Session | None:
        # The Security() parameters only document the route: the middleware already read and verified the token.
        return await _get_session(request, True, check_database, anti_csrf_check)

    return required_session


@overload
def verify_session(
    session_required: Literal[True] = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
) -> SessionDependency: ...


@overload
def verify_session(
    session_required: bool,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
) -> OptionalSessionDependency: ...


def verify_session(
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
) -> SessionDependency | OptionalSessionDependency:
    """Return a dependency that yields the request's verified session; use it as ``Depends(verify_session())``.

    The same options give the same dependency callable, so FastAPI resolves it once per request however many
    parameters ask for it.

    Args:
        session_required: refuse requests without a session (401 ``unauthorised``) and mark the route with the
            security schemes in OpenAPI; with ``False`` the dependency gives ``None`` when there is no session.
        check_database: also check the store, so a revoked session's still-unexpired access token is refused
            (401 ``unauthorised``, tokens cleared). With ``access_token_blacklisting`` on, every request is
            checked anyway.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.

    Returns:
        An async dependency returning the :class:`~asgi_session.Session` (or ``None`` when not required).
    """
    key = (bool(session_required), bool(check_database), anti_csrf_check)
    dependency = _dependencies.get(key)
    if dependency is None:
        dependency = _dependencies[key] = _build(*key)
    return dependency


SessionDep = Annotated[Session, Depends(verify_session())]
"""A route parameter annotated ``SessionDep`` receives the verified session; the route requires one."""

OptionalSessionDep = Annotated[Session | None, Depends(verify_session(session_required=False))]
"""A route parameter annotated ``OptionalSessionDep`` receives the session, or ``None`` without one."""
