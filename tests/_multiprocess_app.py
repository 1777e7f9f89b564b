"""The small app that several processes serve on one store (tests/test_multiprocess.py), and the fault tests' app.

    STORE_URL=sqlite:////tmp/s.db WORKER=a uvicorn --factory tests._multiprocess_app:app_from_environment

Environment: ``STORE_URL`` (required: any URL ``store_from_url`` reads), ``WORKER`` (a name echoed in every
answer), and optionally ``KEY_ROTATION_SECONDS`` with ``KEY_PUBLISH_AHEAD_SECONDS`` (a short signing-key rotation),
``REVOCATION_MAX_LAG`` (seconds: ``revocation_max_lag``, so Redis and PostgreSQL follow the revocation feed) and
``REFRESH_GRACE_SECONDS`` (a short ``refresh_token_grace_period``, for theft tests on the real clock).
Blacklisting is on: every verification checks for revocation, from the revocation view when the store allows it
(SQLite; Redis and PostgreSQL with a lag and a fresh feed), else by reading the session from the store.

Routes: ``GET /health`` (no store access), ``POST /login?user=``, ``GET /me`` (session required),
``POST /revoke-all?user=`` (the offline ``revoke_all_sessions_for_user``), ``GET /keys`` (the signing keys this
process holds in memory), ``GET /revocation-state`` (how this process checks revocations right now, and how many
sessions it has read from the store), and the protocol endpoints (``POST /auth/session/refresh``,
``POST /auth/signout``).
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
from asgi_session.stores import SessionRecord, SessionStore, store_from_url


def config_from_environment(environ: Mapping[str, str] | None = None) -> SessionConfig:
    """Blacklisting on, plain-http cookies, and the rotation, lag and grace the environment (``os.environ``) sets."""
    environ = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    if "KEY_ROTATION_SECONDS" in environ:
        options["key_rotation_interval"] = timedelta(seconds=float(environ["KEY_ROTATION_SECONDS"]))
        options["key_publish_ahead"] = timedelta(seconds=float(environ.get("KEY_PUBLISH_AHEAD_SECONDS", "1")))
    if "REVOCATION_MAX_LAG" in environ:
        options["revocation_max_lag"] = float(environ["REVOCATION_MAX_LAG"])
    if "REFRESH_GRACE_SECONDS" in environ:
        options["refresh_token_grace_period"] = timedelta(seconds=float(environ["REFRESH_GRACE_SECONDS"]))
    return SessionConfig(access_token_blacklisting=True, cookie_secure=False, **options)


class SessionReads:
    """How many times a store's ``get`` ran: a blacklisted verification calls it only when memory cannot answer."""

    def __init__(self) -> None:
        self.count = 0


def count_session_reads(store: SessionStore) -> SessionReads:
    """Count every ``store.get`` from now on, by replacing the method on this one instance.

    Not a wrapping proxy: the manager picks its revocation check by the store's type and protocols (probe, feed),
    which a proxy would hide, so the counted store must still be the very store.
    """
    reads = SessionReads()
    read = store.get

    async def counted(handle: str) -> SessionRecord | None:
        reads.count += 1
        return await read(handle)

    store.get = counted  # type: ignore[method-assign]
    return reads


def revocation_state(manager: SessionManager, reads: SessionReads | None) -> dict[str, Any]:
    """How ``manager`` checks revocations now; the one place the test app reads the manager's private state.

    ``checks_revocations_in_memory``: it has an exact probe or follows a feed. ``feed_fresh``: ``None`` without a
    feed (SQLite, or no lag), else whether the feed confirmed the view within ``revocation_max_lag`` (only then
    does a verification trust the view). ``session_reads``: the store reads counted so far (``None`` uncounted).
    """
    follower = manager._follower
    return {
        "checks_revocations_in_memory": manager.checks_revocations_in_memory,
        "feed_fresh": None if follower is None else follower.fresh(),
        "session_reads": None if reads is None else reads.count,
    }


def build_app(manager: SessionManager, worker: str = "in-process", reads: SessionReads | None = None) -> Starlette:
    """The test app around ``manager``; every answer names the worker and its process id.

    ``reads``: the counter of ``manager``'s store reads that ``GET /revocation-state`` reports, if any.
    """
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

    async def state(request: Request) -> Response:
        return JSONResponse({**me, **revocation_state(manager, reads)})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/me", whoami, methods=["GET"]),
        Route("/revoke-all", revoke_all, methods=["POST"]),
        Route("/keys", keys, methods=["GET"]),
        Route("/revocation-state", state, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, manager=manager)])


def app_from_environment() -> Starlette:
    """The uvicorn ``--factory`` entry point: one manager on ``STORE_URL``, its session reads counted."""
    store = store_from_url(os.environ["STORE_URL"])
    reads = count_session_reads(store)
    manager = SessionManager(store=store, config=config_from_environment())
    return build_app(manager, os.environ.get("WORKER", "?"), reads)
