"""require_session: wrap any ASGI app so that it only runs for requests with a valid session."""

from __future__ import annotations

from ._asgi import ASGIApp, Receive, Scope, Send
from ._context import get_route_session
from .claims import OverrideGlobalClaimValidators

__all__ = ["require_session"]


class _RequireSession:
    __slots__ = ("anti_csrf_check", "app", "check_database", "override", "session_required")

    def __init__(
        self,
        app: ASGIApp,
        session_required: bool,
        check_database: bool,
        anti_csrf_check: bool | None,
        override: OverrideGlobalClaimValidators | None,
    ) -> None:
        self.app = app
        self.session_required = session_required
        self.check_database = check_database
        self.anti_csrf_check = anti_csrf_check
        self.override = override

    def __repr__(self) -> str:
        return f"require_session({self.app!r}, session_required={self.session_required!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # A SessionError propagates: the SessionMiddleware outside answers it with the protocol response
            # (http) or closes the handshake with 1008 (websocket), before the wrapped app has run at all.
            await get_route_session(
                scope, self.session_required, self.check_database, self.anti_csrf_check, self.override
            )
        await self.app(scope, receive, send)


def require_session(
    app: ASGIApp,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> ASGIApp:
    """Wrap an ASGI app so that it only runs with a valid session (framework-free ``requires_session``).

    The wrapper must sit inside :class:`~asgi_session.SessionMiddleware` (e.g. a mounted sub-app, or
    ``SessionMiddleware(require_session(app), manager=manager)``). Lifespan and other scope types pass through.
    The wrapped app reads the session from ``scope["asgi_session"]`` or with :func:`asgi_session.get_session`.

    Args:
        app: the ASGI app to protect.
        session_required: refuse requests without a session (401 ``unauthorised``; websocket close 1008); with
            ``False`` the app also runs without a session, but an expired or invalid token is still refused.
        check_database: also check the store, so a revoked session's still-unexpired access token is refused
            (401 ``unauthorised``, tokens cleared).
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (a failure: 403
            ``invalid claim``). The wrapped app's own ``get_session`` calls without an override then run no
            validator again.

    Returns:
        The protecting ASGI app.
    """
    return _RequireSession(app, session_required, check_database, anti_csrf_check, override_global_claim_validators)
