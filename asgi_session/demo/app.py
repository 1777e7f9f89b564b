"""create_app: the demo's Starlette application (a page, a sign-in route and a few session-aware JSON routes).

Routes:

- ``GET /``: the page (``index.html``, inline script and style, no external assets).
- ``POST /api/signin``: ``{"user": "alice", "remember": false}`` as JSON, or ``user`` and ``remember`` form fields;
  creates a session (``remember`` false or absent from the form: browser-session cookies, "Keep me signed in" unticked).
- ``GET /api/session``: the current session and every session of its user.
- ``GET /api/protected``: a JSON route that needs a session.
- ``GET /api/admin``: needs the role ``admin`` (the ``st-role`` claim); anyone else gets the 403 ``invalid claim``.
- ``POST /api/sessions/revoke``: ``{"handle": ...}``; revokes one session of the current user (one device).
- ``POST /api/signout-everywhere``: revokes every session of the current user.

Signing in as ``admin`` gives the role ``admin``; everyone else gets ``user``.

Refresh (``POST /auth/session/refresh``) and sign-out (``POST /auth/signout``) are the protocol endpoints that
:class:`~asgi_session.SessionMiddleware` serves itself.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from datetime import datetime, timezone
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .._context import create_new_session, get_session
from ..claims import PrimitiveArrayClaim, SessionClaimValidator
from ..config import SessionConfig
from ..exceptions import UnauthorisedError
from ..manager import SessionManager
from ..middleware import SessionMiddleware
from ..session import Session, SessionInformation
from ..stores.url import store_from_url

__all__ = ["DEMO_STORE_URL", "ROLE_CLAIM", "create_app", "demo_manager", "demo_store_url"]

DEMO_STORE_URL = "sqlite:///asgi_session_demo.db"
"""The demo's store when neither ``--store`` nor ``ASGI_SESSION_STORE_URL`` names one (relative to the cwd)."""

MAX_USER_LENGTH = 64
_JSON_MEDIA_TYPE = "application/json"
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def _demo_roles(user_id: str, tenant_id: str, payload: dict[str, Any]) -> list[str]:
    return ["admin"] if user_id == "admin" else ["user"]


ROLE_CLAIM = PrimitiveArrayClaim("st-role", _demo_roles)
"""The demo's roles, in the access token as SuperTokens' ``UserRoleClaim`` (``st-role``) carries them."""


def _admin_only(validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
    return [*validators, ROLE_CLAIM.validators.includes("admin")]


def demo_store_url(store_url: str | None = None) -> str:
    """Return the store URL the demo uses.

    Args:
        store_url: an explicit URL (the ``--store`` option); wins over everything else.

    Returns:
        ``store_url``, else ``$ASGI_SESSION_STORE_URL``, else :data:`DEMO_STORE_URL`.
    """
    return store_url or os.environ.get("ASGI_SESSION_STORE_URL") or DEMO_STORE_URL


def demo_manager(store_url: str | None = None) -> SessionManager:
    """Build the demo's session manager (unopened; the app's lifespan opens it).

    Args:
        store_url: the store URL; see :func:`demo_store_url` for the default.

    Returns:
        A manager on that store with ``SessionConfig(cookie_secure=False)`` and the role claim (:data:`ROLE_CLAIM`).

    Raises:
        ConfigurationError: the store URL is malformed or needs an extra that is not installed.
    """
    # The demo is served over plain http://127.0.0.1. Browsers accept Secure cookies from localhost, but other
    # clients (curl's cookie jar, Python's http.cookiejar) drop them over http, so the demo turns Secure off.
    # Production keeps the default cookie_secure=True.
    config = SessionConfig(cookie_secure=False)
    return SessionManager(store=store_from_url(demo_store_url(store_url)), config=config, claims=[ROLE_CLAIM])


def _load_page(auth_base: str) -> tuple[str, str]:
    """The page, and a Content-Security-Policy that allows exactly its inline script and style (by hash)."""
    page = resources.files("asgi_session.demo").joinpath("index.html").read_text(encoding="utf-8")
    # The protocol endpoints' base path goes into a data attribute, so the hashed script stays the same.
    page = page.replace("__AUTH_BASE__", html.escape(auth_base, quote=True))

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii") for body in bodies)
        return " ".join(f"'sha256-{digest}'" for digest in digests)

    policy = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
        "img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return page, policy


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


def _describe_session(info: SessionInformation, current: str) -> dict[str, Any]:
    return {
        "handle": info.session_handle,
        "tenant": info.tenant_id,
        "current": info.session_handle == current,
        "created": _iso(info.time_created / 1000),
        "last_seen": _iso(info.last_seen / 1000),
        "expires": _iso(info.expiry / 1000),
        "user_agent": info.user_agent,
        "ip": info.ip,
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class _DemoRoutes:
    """The demo's endpoints, bound to one manager."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.page, policy = _load_page(manager.config.api_base_path)
        self.page_headers = {
            "content-security-policy": policy,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        }

    async def _current(self, request: Request) -> Session:
        # check_database: a session revoked elsewhere (sign out everywhere, another device) is refused at once.
        # Without it, verification is local and a revoked session's access token lives until its exp.
        session = await get_session(request, session_required=True, check_database=True)
        if session is None:  # pragma: no cover - session_required=True raises instead
            raise UnauthorisedError("no session", clear_tokens=False)
        return session

    async def _describe(self, session: Session) -> dict[str, Any]:
        sessions = await self.manager.get_sessions_for_user(session.user_id)
        return {
            "user": session.user_id,
            "tenant": session.tenant_id,
            "roles": await session.get_claim_value(ROLE_CLAIM),
            "handle": session.handle,
            "access_token_expires": _iso(session.access_token_expiry),
            "sessions": [_describe_session(info, session.handle) for info in sessions],
        }

    async def index(self, request: Request) -> Response:
        """``GET /``: the page."""
        return HTMLResponse(self.page, headers=self.page_headers)

    async def signin(self, request: Request) -> Response:
        """``POST /api/signin``: create a session for the user named in the JSON body or the form."""
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        body = await request.body()
        if media_type == _JSON_MEDIA_TYPE:
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, ValueError):
                return _error(400, "the body is not valid JSON")
            user = data.get("user") if isinstance(data, dict) else None
            remember = data.get("remember", True) is not False if isinstance(data, dict) else True
        elif media_type == _FORM_MEDIA_TYPE:
            try:
                fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict"))
            except (UnicodeDecodeError, ValueError):
                return _error(400, "the form is not valid UTF-8")
            user = fields.get("user")
            remember = "remember" in fields  # an unticked checkbox is not sent
        else:
            return _error(415, 'send {"user": "..."} as application/json, or a form')
        if not isinstance(user, str) or not user.strip():
            return _error(400, "enter a user name")
        user = user.strip()
        if len(user) > MAX_USER_LENGTH or not user.isprintable():
            return _error(400, f"a user name is at most {MAX_USER_LENGTH} printable characters")
        session = await create_new_session(request, user, remember=remember)
        if media_type == _FORM_MEDIA_TYPE:
            # A plain HTML form (no JavaScript): back to the page, which now finds the session cookie.
            return RedirectResponse("/", status_code=303)
        return JSONResponse(await self._describe(session))

    async def session(self, request: Request) -> Response:
        """``GET /api/session``: the current session and every session of its user."""
        return JSONResponse(await self._describe(await self._current(request)))

    async def protected(self, request: Request) -> Response:
        """``GET /api/protected``: something only a signed-in user may see."""
        session = await self._current(request)
        return JSONResponse(
            {
                "message": f"Hello {session.user_id}, this response needed a valid session.",
                "user": session.user_id,
                "handle": session.handle,
                "time": _iso(self.manager.clock.now()),
            }
        )

    async def admin(self, request: Request) -> Response:
        """``GET /api/admin``: only for the role ``admin``; others get the protocol's 403 ``invalid claim``."""
        session = await get_session(
            request, session_required=True, check_database=True, override_global_claim_validators=_admin_only
        )
        assert session is not None  # noqa: S101 - session_required=True raises instead
        return JSONResponse({"message": f"Hello {session.user_id}, you hold the admin role.", "user": session.user_id})

    async def revoke_one(self, request: Request) -> Response:
        """``POST /api/sessions/revoke``: sign out one device of the current user (``{"handle": ...}``)."""
        session = await self._current(request)
        try:
            data = await request.json()
        except ValueError:
            return _error(400, 'send {"handle": "..."} as application/json')
        handle = data.get("handle") if isinstance(data, dict) else None
        if not isinstance(handle, str):
            return _error(400, 'send {"handle": "..."} as application/json')
        info = await self.manager.get_session_information(handle)
        if info is None or info.user_id != session.user_id:
            return _error(404, "no such session of yours")  # never someone else's: the same answer as "absent"
        if handle == session.handle:
            await session.revoke()  # this browser: the response clears its tokens too
        else:
            await self.manager.revoke_session(handle)
        return JSONResponse({"status": "OK", "current": handle == session.handle})

    async def signout_everywhere(self, request: Request) -> Response:
        """``POST /api/signout-everywhere``: revoke every session of the user, and clear this browser's tokens."""
        session = await self._current(request)
        revoked = await self.manager.revoke_all_sessions_for_user(session.user_id)
        # The store no longer has this session; revoke() marks it so that this response clears the cookies.
        await session.revoke()
        return JSONResponse({"status": "OK", "revoked": len(revoked)})


def create_app(manager: SessionManager | None = None) -> Starlette:
    """Build the demo application.

    Args:
        manager: the session manager; default :func:`demo_manager` (``ASGI_SESSION_STORE_URL``, else a SQLite
            file ``asgi_session_demo.db`` in the current directory; cookies without ``Secure`` for plain http).

    Returns:
        A Starlette app wrapped in :class:`~asgi_session.SessionMiddleware`, which opens the manager on
        ``lifespan.startup`` (or on the first request) and serves ``/auth/session/refresh`` and ``/auth/signout``.
        The manager is also available as ``app.state.manager``.
    """
    if manager is None:
        manager = demo_manager()
    routes = _DemoRoutes(manager)
    app = Starlette(
        routes=[
            Route("/", routes.index, methods=["GET"]),
            Route("/api/signin", routes.signin, methods=["POST"]),
            Route("/api/session", routes.session, methods=["GET"]),
            Route("/api/protected", routes.protected, methods=["GET"]),
            Route("/api/admin", routes.admin, methods=["GET"]),
            Route("/api/sessions/revoke", routes.revoke_one, methods=["POST"]),
            Route("/api/signout-everywhere", routes.signout_everywhere, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
    )
    app.state.manager = manager
    return app
