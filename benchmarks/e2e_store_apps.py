"""The apps `benchmarks/e2e_blacklist.sh` serves with uvicorn (P4 end to end), and its check.

    STORE_URL=sqlite:////tmp/s.db uvicorn --app-dir benchmarks --factory e2e_store_apps:asgi_session_blacklisting
    NAIVE_DB=/tmp/naive.db uvicorn --app-dir benchmarks --factory e2e_store_apps:naive_blacklisting
    uvicorn --app-dir benchmarks e2e_apps:bare
    python benchmarks/e2e_store_apps.py prepare CASE URL   # log in, check, print the header that carries the token

``GET /`` answers 200 only when the session was found in the store (401 otherwise). ``POST /login`` creates a
session for ``user-1``; ``POST /revoke`` revokes the request's session. ``asgi_session_blacklisting`` is
``SessionMiddleware`` with ``access_token_blacklisting=True`` on the store ``STORE_URL`` names;
``naive_blacklisting`` is the PERFORMANCE.md anchor: a PyJWT HS256 decode and one aiosqlite round trip per request.
``prepare`` checks 200 with the token, 401 without it, and 401 with a token whose session was revoked (so a case
that did not read the store could not pass), then prints the ``Cookie`` header to load the server with.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
import uuid
from typing import Any

import aiosqlite
import jwt

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session.stores import store_from_url

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
    except Exception:  # the middleware already answered for a revoked or invalid token
        session = None
    if session is not None and scope["method"] == "POST" and scope["path"] == "/revoke":
        await session.revoke()
    await _respond(send, 200 if session is not None else 401)


def asgi_session_blacklisting() -> Any:
    """asgi-session, blacklisting on, on the store ``STORE_URL`` names (opened by the lifespan)."""
    config = SessionConfig(access_token_blacklisting=True, cookie_secure=False)
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
        token = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                for chunk in value.decode("latin-1").split(";"):
                    cookie_name, _, cookie_value = chunk.strip().partition("=")
                    if cookie_name == "sAccessToken":
                        token = cookie_value
        found = False
        if token is not None:
            try:
                claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
            except jwt.InvalidTokenError:
                claims = None
            if claims is not None:
                rows = await db.execute_fetchall("SELECT user_id FROM sessions WHERE handle = ?", (claims["sid"],))
                found = bool(rows)
                if found and scope["method"] == "POST" and scope["path"] == "/revoke":
                    await db.execute("DELETE FROM sessions WHERE handle = ?", (claims["sid"],))
                    await db.commit()
        await _respond(send, 200 if found else 401)

    return app


def prepare(case: str, url: str) -> str:
    """Wait for the server, log in, check it; return the header that carries the token."""
    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{case}: no server at {url}") from None
            time.sleep(0.1)
    if case == "bare":
        return "X-Bench: bare"

    def login() -> str:
        response = httpx.post(url + "login", headers={"st-auth-mode": "cookie"})
        if response.status_code != 200:
            raise SystemExit(f"{case}: login answered {response.status_code}")
        return f"sAccessToken={response.cookies['sAccessToken']}"

    kept, doomed = login(), login()
    statuses = {
        "with the token": httpx.get(url, headers={"cookie": kept}).status_code,
        "without a token": httpx.get(url).status_code,
        "revoke": httpx.post(url + "revoke", headers={"cookie": doomed}).status_code,
        "after revoking": httpx.get(url, headers={"cookie": doomed}).status_code,
    }
    expected = {"with the token": 200, "without a token": 401, "revoke": 200, "after revoking": 401}
    if statuses != expected:
        raise SystemExit(f"{case}: expected {expected}, got {statuses}")
    return f"Cookie: {kept}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare")
    prepare_parser.add_argument("case")
    prepare_parser.add_argument("url")
    args = parser.parse_args()
    print(prepare(args.case, args.url))
