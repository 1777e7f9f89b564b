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
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

from ..exceptions import ConfigurationError

try:
    from fastapi import Depends, FastAPI, Request, Security
    from fastapi.routing import APIRoute
    from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
except ImportError as exc:
    raise ConfigurationError(
        "asgi_session.frameworks.fastapi needs FastAPI: pip install 'asgi-session[fastapi]'"
    ) from exc

from .._context import get_route_session as _get_route_session
from ..claims import OverrideGlobalClaimValidators
from ..session import Session
from ..transport import ACCESS_COOKIE
from .starlette import install_exception_handlers as _install_starlette_handlers
from .starlette import session_error_handler

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant

    from ..manager import SessionManager

__all__ = [
    "INVALID_CLAIM_RESPONSE",
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

_Key = tuple[bool, bool, "bool | None", "OverrideGlobalClaimValidators | None"]
_dependencies: dict[_Key, OptionalSessionDependency] = {}
# Which dependencies validate claims: True (an override), None (the manager's global validators, if any).
_validates_claims: dict[Callable[..., Any], bool | None] = {}


def _build(
    session_required: bool,
    check_database: bool,
    anti_csrf_check: bool | None,
    override: OverrideGlobalClaimValidators | None,
) -> OptionalSessionDependency:
    if not session_required:
        # An optional session does not protect the route, so the route is not marked with the schemes.
        async def optional_session(request: Request) -> Session | None:
            return await _get_route_session(request, False, check_database, anti_csrf_check, override)

        return optional_session

    async def required_session(
        request: Request,
        _cookie: Annotated[str | None, Security(access_token_cookie)],
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(access_token_bearer)],
    ) -> Session | None:
        # The Security() parameters only document the route: the middleware already read and verified the token.
        return await _get_route_session(request, True, check_database, anti_csrf_check, override)

    return required_session


@overload
def verify_session(
    session_required: Literal[True] = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> SessionDependency: ...


@overload
def verify_session(
    session_required: bool,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> OptionalSessionDependency: ...


def verify_session(
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
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
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators``. A failure answers 403
            ``invalid claim``; :func:`install_exception_handlers` documents that 403 in OpenAPI. The route's own
            ``get_session(request)`` calls (without an override) then run no validator again, and neither does a
            ``verify_session`` dependency without an override that FastAPI resolves after it.

    Returns:
        An async dependency returning the :class:`~asgi_session.Session` (or ``None`` when not required).
    """
    key: _Key = (bool(session_required), bool(check_database), anti_csrf_check, override_global_claim_validators)
    dependency = _dependencies.get(key)
    if dependency is None:
        dependency = _dependencies[key] = _build(*key)
        _validates_claims[dependency] = True if override_global_claim_validators is not None else None
    return dependency


INVALID_CLAIM_RESPONSE: dict[str, Any] = {
    "description": "A session claim validator refused the session (SuperTokens' invalid-claim response)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["message", "claimValidationErrors"],
                "properties": {
                    "message": {"type": "string", "enum": ["invalid claim"]},
                    "claimValidationErrors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "reason"],
                            "properties": {"id": {"type": "string"}, "reason": {}},
                        },
                    },
                },
            },
            "example": {
                "message": "invalid claim",
                "claimValidationErrors": [
                    {
                        "id": "st-role",
                        "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]},
                    }
                ],
            },
        }
    },
}
"""The OpenAPI response object documenting the 403 ``invalid claim`` answer."""


def _route_validates_claims(dependant: Dependant, global_validators: bool) -> bool:
    for dependency in dependant.dependencies:
        marker = _validates_claims.get(dependency.call, False) if dependency.call is not None else False
        if marker or (marker is None and global_validators):
            return True
        if _route_validates_claims(dependency, global_validators):
            return True
    return False


def _document_invalid_claims(app: FastAPI, manager: SessionManager | None) -> None:
    original = app.openapi
    status = str(manager.config.invalid_claim_status_code if manager is not None else 403)
    global_validators = bool(manager is not None and manager.global_claim_validators)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        for route in app.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            if not _route_validates_claims(route.dependant, global_validators):
                continue
            operations = schema.get("paths", {}).get(route.path_format, {})
            for method in route.methods or ():
                operation = operations.get(method.lower())
                if operation is not None:
                    operation.setdefault("responses", {}).setdefault(status, INVALID_CLAIM_RESPONSE)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_exception_handlers(app: FastAPI, manager: SessionManager | None = None) -> None:
    """Register the session-error handler and document the 403 ``invalid claim`` response in OpenAPI.

    The handler is Starlette's (:func:`asgi_session.frameworks.starlette.install_exception_handlers`). In the
    OpenAPI document, every route whose ``verify_session`` dependency validates claims (it has
    ``override_global_claim_validators``, or ``manager`` has ``global_claim_validators``) lists the
    ``invalid_claim_status_code`` response.

    Args:
        app: the FastAPI application.
        manager: the session manager (its config and global validators); the middleware's wins per request.
    """
    _install_starlette_handlers(app, manager)
    if isinstance(app, FastAPI):
        _document_invalid_claims(app, manager)


SessionDep = Annotated[Session, Depends(verify_session())]
"""A route parameter annotated ``SessionDep`` receives the verified session; the route requires one."""

OptionalSessionDep = Annotated[Session | None, Depends(verify_session(session_required=False))]
"""A route parameter annotated ``OptionalSessionDep`` receives the session, or ``None`` without one."""
