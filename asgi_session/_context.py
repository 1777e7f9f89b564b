"""The per-request session state the middleware keeps in the scope, and the request-bound helpers.

``get_session`` and ``create_new_session`` accept a Starlette/FastAPI request, a Quart request (anything with a
``scope`` attribute) or a raw ASGI scope.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import _metrics
from ._asgi import Scope, header_value
from .claims import OverrideGlobalClaimValidators, resolve_claim_validators
from .exceptions import (
    ConfigurationError,
    SessionError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from .hooks import hook_context
from .transport import Method, ResponseChanges, TokenSource, new_session_method

if TYPE_CHECKING:
    from ._error_handlers import ErrorHandlers
    from .manager import SessionManager
    from .session import Session

__all__ = [
    "CLAIMS_CHECKED_KEY",
    "CONTEXT_KEY",
    "SCOPE_KEY",
    "RequestContext",
    "create_new_session",
    "get_route_session",
    "get_session",
]

logger = logging.getLogger("asgi_session")

SCOPE_KEY = "asgi_session"
CONTEXT_KEY = "asgi_session.context"
# Set in the scope by a route helper (``requires_session``, ``verify_session``, ``session_required``,
# ``require_session``, Litestar's guard and dependency) once it has validated the request's claims with the route's
# ``override_global_claim_validators``: a later ``get_session`` without an override of its own then runs no validator
# again, so the route's claim policy is decided once and the route's own ``get_session(request)`` cannot undo it.
CLAIMS_CHECKED_KEY = "asgi_session.claims_checked"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class RequestContext:
    """What the middleware knows about one request's session, and the token changes for its response.

    It holds no reference to the scope (the scope holds it): a cycle would leave every request's scope, session
    and context to the garbage collector instead of freeing them when the request ends. Whoever needs the scope
    has it at hand (the middleware, and the helpers, which take the request or scope).

    Args:
        db_checked: whether verification already read the session from the store (blacklisting without an exact
            revocation probe), so ``check_database=True`` need not read it again.
    """

    __slots__ = ("db_checked", "deferred_error", "error", "error_handlers", "manager", "session", "source")

    # Set only when used (read with getattr), so that a request without them pays nothing: ``error_handlers`` by a
    # middleware that has some, ``deferred_error`` by a framework's exception handler that leaves a session error
    # to the middleware's override (see ``frameworks/_errors.py``).
    error_handlers: ErrorHandlers
    deferred_error: SessionError

    def __init__(
        self,
        manager: SessionManager,
        source: TokenSource,
        session: Session | None,
        error: SessionError | None,
        db_checked: bool,
    ) -> None:
        self.manager = manager
        self.source = source
        self.session = session
        self.error = error
        self.db_checked = db_checked
        if session is not None:
            session.transfer_method = source.method

    @property
    def changed(self) -> bool:
        """Whether the response must carry token changes (new tokens, or clearing)."""
        session = self.session
        return session is not None and (session.revoked or session.access_and_front_token_updated)

    def response_changes(self, scope: Scope) -> ResponseChanges:
        """The headers this response (to the request ``scope``) must carry for the session's state."""
        changes = ResponseChanges(self.manager.config)
        session = self.session
        if session is None:
            return changes
        if session.revoked:
            changes.clear_tokens(session.transfer_method)  # type: ignore[arg-type]
        elif session.access_and_front_token_updated:
            method: Method = "header" if session.transfer_method == "header" else "cookie"
            changes.set_session_tokens(session, method, now=self.manager.clock.now(), scope=scope)
        return changes


def _scope_of(request_or_scope: Any) -> Scope:
    if type(request_or_scope) is dict:
        return request_or_scope
    # A request's own scope first: a Starlette request is itself a read-only Mapping over its scope.
    scope = getattr(request_or_scope, "scope", None)
    if isinstance(scope, Mapping):
        return scope  # type: ignore[return-value]
    if isinstance(request_or_scope, Mapping):
        return request_or_scope  # type: ignore[return-value]
    raise TypeError("expected a Starlette/FastAPI/Quart request or an ASGI scope")


def context_of(request_or_scope: Any) -> RequestContext:
    """Return the middleware's context for a request.

    Raises:
        ConfigurationError: the request did not pass through ``SessionMiddleware``.
    """
    return _context_in(_scope_of(request_or_scope))


def _context_in(scope: Scope) -> RequestContext:
    context = scope.get(CONTEXT_KEY)
    if type(context) is not RequestContext:
        raise ConfigurationError(
            "no session context on this request: wrap the ASGI app in asgi_session.SessionMiddleware "
            "(e.g. Starlette(middleware=[Middleware(SessionMiddleware, manager=manager)]))"
        )
    return context


def check_anti_csrf(context: RequestContext, scope: Scope, session: Session, anti_csrf_check: bool | None) -> None:
    """Apply the configured anti-CSRF check to a cookie-authenticated request.

    Raises:
        TryRefreshTokenError: the check failed.
    """
    method = str(scope.get("method", "GET")).upper()
    check = anti_csrf_check if anti_csrf_check is not None else method not in _SAFE_METHODS
    if not check or context.source.method != "cookie":
        return
    mode = context.manager.config.anti_csrf_mode
    failure = None
    if mode == "VIA_CUSTOM_HEADER":
        if header_value(scope, b"rid") is None:
            failure = "anti-csrf check failed: the rid header is missing"
    elif mode == "VIA_TOKEN":
        expected = session._claims.get("antiCsrfToken")  # read only: no copy on the per-request path
        given = header_value(scope, b"anti-csrf")
        if (
            not isinstance(expected, str)
            or given is None
            or not hmac.compare_digest(given.encode("latin-1"), expected.encode("latin-1"))
        ):
            failure = "anti-csrf check failed: the anti-csrf header does not match"
    if failure is not None:
        _metrics.record_anti_csrf_failure(mode)
        logger.warning(
            "asgi_session: %s (%r %r; session %r, user %r, tenant %r)",  # %r: path and ids come from outside
            failure,
            method,
            scope.get("path", ""),
            session.handle,
            session.user_id,
            session.tenant_id,
        )
        raise TryRefreshTokenError(failure)


async def anti_csrf_failed(
    context: RequestContext, scope: Scope, session: Session, error: TryRefreshTokenError
) -> None:
    """Report a failed anti-CSRF check to the manager's ``on_anti_csrf_failure`` hook, if any."""
    hooks = context.manager._hooks
    if hooks is not None:
        with hook_context(scope):
            await hooks.emit("anti_csrf_failure", session.handle, session.user_id, session.tenant_id, error.reason)


async def get_session(
    request_or_scope: Any,
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None:
    """Return the request's verified session, or ``None`` when there is none and it is not required.

    Args:
        request_or_scope: a Starlette/FastAPI request, a Quart request, or an ASGI scope.
        session_required: raise ``UnauthorisedError`` instead of returning ``None``.
        check_database: also check the store (the session must not be revoked); default: the config's
            ``access_token_blacklisting``.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (add, remove or replace).
            Without one, on a request whose claims a route helper already validated (``requires_session``,
            ``verify_session``, ``session_required``, ``require_session``, Litestar's guard or dependency), no
            validator runs again: the route's check stands.

    Raises:
        TryRefreshTokenError: the access token is expired or invalid, or the anti-CSRF check failed.
        UnauthorisedError: no session while required, or (with the database check) the session was revoked.
        InvalidClaimsError: a claim validator failed (403 ``invalid claim``). A value re-fetched on the way is
            stored, and the re-issued access token is sent with the response.
        StoreError: the store failed during the database check.
        ConfigurationError: ``SessionMiddleware`` is not installed.
    """
    scope = request_or_scope if type(request_or_scope) is dict else _scope_of(request_or_scope)
    context = scope.get(CONTEXT_KEY)
    if type(context) is not RequestContext:
        context = _context_in(scope)  # raises, saying how to install the middleware
    if context.error is not None:
        raise context.error
    session = context.session
    if session is None or session.revoked:
        if session_required:
            raise UnauthorisedError("no session", clear_tokens=False)
        return None
    if session.refresh_token is not None:  # created in this request: nothing to check
        return session
    manager = context.manager
    if manager._hooks is not None:
        session._scope = scope  # so that a revoke in the route reports the request to the hook
    if anti_csrf_check is not None or scope.get("method") not in _SAFE_METHODS:  # a GET needs no call
        try:
            check_anti_csrf(context, scope, session, anti_csrf_check)
        except TryRefreshTokenError as exc:
            await anti_csrf_failed(context, scope, session, exc)
            raise
    # Blacklisting was applied when the middleware verified the token; check_database=True asks for the store
    # itself, on every store, unless that very read was already made for this request.
    if check_database and not context.db_checked:
        await manager.check_session_in_store(session)
        context.db_checked = True
    # Nothing to do, and nothing awaited, when no validator is configured and the route overrides nothing, or when
    # a route helper already validated the claims with the route's policy and this call brings no override.
    if override_global_claim_validators is not None or (
        manager.global_claim_validators and not scope.get(CLAIMS_CHECKED_KEY)
    ):
        validators = await resolve_claim_validators(
            manager.global_claim_validators, override_global_claim_validators, session
        )
        if validators:
            await session.assert_claims(validators)
    return session


async def get_route_session(
    request_or_scope: Any,
    session_required: bool,
    check_database: bool | None,
    anti_csrf_check: bool | None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None,
) -> Session | None:
    """:func:`get_session` for a route helper: validate the claims with the route's policy, once per request.

    After it returns, the request is marked (``CLAIMS_CHECKED_KEY``) so that the route's own ``get_session`` calls
    without an override run no claim validator again. It takes the same arguments and raises the same errors as
    :func:`get_session`; a refused request is not marked.
    """
    scope = request_or_scope if type(request_or_scope) is dict else _scope_of(request_or_scope)
    session = await get_session(
        scope, session_required, check_database, anti_csrf_check, override_global_claim_validators
    )
    scope[CLAIMS_CHECKED_KEY] = True
    return session


async def create_new_session(
    request_or_scope: Any,
    user_id: str,
    *,
    tenant_id: str = "public",
    access_token_payload: Mapping[str, Any] | None = None,
    session_data_in_database: Mapping[str, Any] | None = None,
    remember: bool = True,
    idle_timeout: timedelta | None = None,
) -> Session:
    """Create a session for this request; the middleware writes its tokens to the response.

    ``remember=False`` (a "keep me signed in" box left unticked) makes its cookies browser-session cookies, at
    creation and at every refresh; ``idle_timeout`` gives the session an idle timeout of its own, shorter than
    ``refresh_token_validity`` (see :meth:`SessionManager.create_new_session_without_request_response
    <asgi_session.SessionManager.create_new_session_without_request_response>`).

    The session the request carried is revoked first (a valid access token's, or one whose token expired less
    than ``refresh_token_grace_period`` ago; an older expired token revokes nothing), and a new handle is always
    minted (no fixation).

    Raises:
        StoreError: the store failed; no tokens are issued.
        InvalidPayloadError: the payload sets a protected claim, or would make the access-token cookie larger than
            browsers keep (nothing is stored).
        ConfigurationError: ``SessionMiddleware`` is not installed.
        ValueError: ``idle_timeout`` is out of range (nothing is revoked or stored).
    """
    scope = _scope_of(request_or_scope)
    context = _context_in(scope)
    if idle_timeout is not None:
        context.manager._check_idle_timeout(idle_timeout)  # before the request's session is revoked
    with hook_context(scope):  # lifecycle hooks (the revoke of the old session, the creation) see this request
        if context.session is not None and not context.session.revoked:
            await context.session.revoke()
        elif context.session is None and context.source.token:
            # A just-expired (but genuine) access token still names the session this browser holds: end it too. Only
            # just-expired: anyone can send an old token as a Bearer header, and a token that expired long ago must not
            # let its sender end its owner's current session (the handle survives refreshes).
            manager = context.manager
            try:
                claims = await manager.verify_access_token(context.source.token, allow_expired=True)
            except TryRefreshTokenError:
                pass
            else:
                recent = manager.clock.now() - manager.config.refresh_token_grace_period.total_seconds()
                if claims["exp"] > recent:
                    await manager.revoke_session(claims["sessionHandle"])
        client = scope.get("client")
        session = await context.manager.create_new_session_without_request_response(
            user_id,
            tenant_id,
            access_token_payload,
            session_data_in_database,
            user_agent=header_value(scope, b"user-agent"),
            ip=str(client[0]) if client else None,
            remember=remember,
            idle_timeout=idle_timeout,
        )
    if context.manager._hooks is not None:
        session._scope = scope  # so that a revoke in the route reports the request to the hook
    session.transfer_method = new_session_method(scope, context.manager.config)
    context.session = session
    context.error = None
    scope[SCOPE_KEY] = session
    return session
