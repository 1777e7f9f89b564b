"""The small app that several processes serve on one store (tests/test_multiprocess.py), and the fault tests' app.

    STORE_URL=sqlite:////tmp/s.db WORKER=a uvicorn --factory tests._multiprocess_app:app_from_environment

Environment: ``STORE_URL`` (required: any URL ``store_from_url`` reads), ``WORKER`` (a name echoed in every
answer), and optionally ``KEY_ROTATION_SECONDS`` with ``KEY_PUBLISH_AHEAD_SECONDS`` (a short signing-key rotation).
Blacklisting is on, so every verification reads the store.

Routes: ``GET /health`` (no store access), ``POST /login?user=``, ``GET /me`` (session required),
``POST /revoke-all?user=`` (the offline ``revoke_all_sessions_for_user``), ``GET /keys`` (the signing keys this
process holds in memory), and the protocol endpoints (``POST /auth/session/refresh``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session.stores import store_from_url


def config_from_environment(environ: Mapping[str, str] | None = None) -> SessionConfig:
    """Blacklisting on, plain-http cookies, and the key rotation the environment (default ``os.environ``) asks for."""
    environ = os.environ if environ is None else environ
    rotation: dict[str, Any] = {}
    if "KEY_ROTATION_SECONDS" in environ:
        rotation["key_rotation_interval"] = timedelta(seconds=float(environ["KEY_ROTATION_SECONDS"]))
        rotation["key_publish_ahead"] = timedelta(seconds=float(environ.get("KEY_PUBLISH_AHEAD_SECONDS", "1")))
    return SessionConfig(access_token_blacklisting=True, cookie_secure=False, **rotation)


def build_app(manager: SessionManager, worker: str = "in-process") -> Starlette:
    """The test app around ``manager``; every answer names the worker and its process id."""
    me = {"worker": worker, "pid": os.getpid()}

    async def health(request: Request) -> Response:
        return JSONResponse(me)

    async def login(request: Request) -> Response:
        session = await create_new_session(request, request.query_params["user"])
        return JSONResponse({**me, "user": session.get_user_id(), "handle": session.get_handle()})

    async def whoami(request: Request) -> Response:
        session = await get_session(request, session_required=True)
        assert session is not None
        return JSONResponse({**me, "user": session.get_user_id(), "handle": session.get_handle()})

    async def revoke_all(request: Request) -> Response:
        revoked = await manager.revoke_all_sessions_for_user(request.query_params["user"])
        return JSONResponse({**me, "revoked": revoked})

    async def keys(request: Request) -> Response:
        return JSONResponse({**me, "kids": [key["kid"] for key in manager.keys.describe()["keys"]]})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/me", whoami, methods=["GET"]),
        Route("/revoke-all", revoke_all, methods=["POST"]),
        Route("/keys", keys, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, manager=manager)])


def app_from_environment() -> Starlette:
    """The uvicorn ``--factory`` entry point: one manager on ``STORE_URL``."""
    manager = SessionManager(store=store_from_url(os.environ["STORE_URL"]), config=config_from_environment())
    return build_app(manager, os.environ.get("WORKER", "?"))
