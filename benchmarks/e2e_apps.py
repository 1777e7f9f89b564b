"""The apps the end-to-end benchmark (``benchmarks/e2e.py``) serves with uvicorn, one server per app.

    uvicorn --app-dir benchmarks e2e_apps:bare
    uvicorn --app-dir benchmarks --factory e2e_apps:starlette_sessions
    uvicorn --app-dir benchmarks --factory e2e_apps:asgi_session
    STORE_URL=sqlite:////tmp/s.db uvicorn --app-dir benchmarks --factory e2e_apps:asgi_session_blacklisting
    NAIVE_DB=/tmp/naive.db uvicorn --app-dir benchmarks --factory e2e_apps:naive_blacklisting

Every app answers ``GET /`` with 200 only when it found the session, 401 otherwise (the bare app has nothing to
check and always answers 200). ``POST /login`` creates a session for ``user-1``; ``POST /revoke`` revokes the
request's session (the apps that read a store on every request: so a benchmark can check that they really do).

- ``bare``: the limit, no middleware.
- ``starlette_sessions``: Starlette's ``SessionMiddleware`` (a signed cookie), the P2 anchor.
- ``asgi_session``: ``SessionMiddleware`` on a ``MemoryStore``, default settings (P2).
- ``asgi_session_blacklisting``: ``SessionMiddleware`` with ``access_token_blacklisting=True`` on the store
  ``STORE_URL`` names (P4).
- ``naive_blacklisting``: the PERFORMANCE.md P4 anchor, a PyJWT HS256 decode and one aiosqlite round trip per
  request, on the file ``NAIVE_DB``.

All but ``bare`` are factories (``uvicorn --factory``), so importing this module builds nothing.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from typing import Any

import aiosqlite
import jwt
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from stores import naive_session

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session.stores import MemoryStore, store_from_url

Scope = dict[str, Any]


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = b"ok" if status == 200 else b"no"
    base = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": status, "headers": base + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def bare(scope: Scope, receive: Any, send: Any) -> None:
    """The limit: no middleware, nothing to check."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _respond(send, 200)


async def _starlette_inner(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["method"] == "POST" and scope["path"] == "/login":
        scope["session"]["user"] = "user-1"
        await _respond(send, 200)
        return
    await _respond(send, 200 if scope["session"].get("user") == "user-1" else 401)


async def _ours_inner(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["method"] == "POST" and scope["path"] == "/login":
        await create_new_session(scope, "user-1")
        await _respond(send, 200)
        return
    try:
        session = await get_session(scope)
    except Exception:  # the middleware already answered for a bad, revoked or expired token
        session = None
    if session is not None and scope["method"] == "POST" and scope["path"] == "/revoke":
        await session.revoke()
    await _respond(send, 200 if session is not None else 401)


def starlette_sessions() -> Any:
    """Starlette's ``SessionMiddleware``, with a random secret key."""
    return StarletteSessionMiddleware(_starlette_inner, secret_key=os.urandom(32).hex())


def asgi_session() -> Any:
    """asgi-session with its default settings on a ``MemoryStore``."""
    return SessionMiddleware(_ours_inner, manager=SessionManager(store=MemoryStore()))


def asgi_session_blacklisting() -> Any:
    """asgi-session, blacklisting on, on the store ``STORE_URL`` names (opened by the lifespan).

    ``REVOCATION_MAX_LAG`` (default 0.1, P4's setting) bounds the revocation view's lag on Redis and PostgreSQL;
    SQLite is exact whatever it says.
    """
    lag = float(os.environ.get("REVOCATION_MAX_LAG", "0.1"))
    config = SessionConfig(access_token_blacklisting=True, cookie_secure=False, revocation_max_lag=lag)
    manager = SessionManager(store=store_from_url(os.environ["STORE_URL"]), config=config)
    return SessionMiddleware(_ours_inner, manager=manager)


def naive_blacklisting() -> Any:
    """The anchor: a PyJWT HS256 decode and one aiosqlite round trip per request, on the file ``NAIVE_DB``."""
    secret = secrets.token_bytes(32)
    state: dict[str, aiosqlite.Connection] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    db = await aiosqlite.connect(os.environ["NAIVE_DB"])
                    await db.execute("PRAGMA journal_mode=WAL")
                    await db.execute("CREATE TABLE IF NOT EXISTS sessions (handle TEXT PRIMARY KEY, user_id TEXT)")
                    await db.commit()
                    state["db"] = db
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["db"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        db = state["db"]
        if scope["method"] == "POST" and scope["path"] == "/login":
            handle = str(uuid.uuid4())
            await db.execute("INSERT INTO sessions VALUES (?, ?)", (handle, "user-1"))
            await db.commit()
            token = jwt.encode({"sub": "user-1", "sid": handle, "exp": int(time.time()) + 3600}, secret, "HS256")
            await _respond(send, 200, [(b"set-cookie", f"sAccessToken={token}; Path=/; HttpOnly".encode())])
            return
        claims = await naive_session(db, secret, scope["headers"])
        if claims is not None and scope["method"] == "POST" and scope["path"] == "/revoke":
            await db.execute("DELETE FROM sessions WHERE handle = ?", (claims["sid"],))
            await db.commit()
        await _respond(send, 200 if claims is not None else 401)

    return app
