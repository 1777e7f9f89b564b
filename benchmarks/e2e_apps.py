"""The apps `benchmarks/e2e.sh` serves with uvicorn, and its helpers (log in and check, a fallback load generator).

    uvicorn --app-dir benchmarks e2e_apps:bare | e2e_apps:starlette_sessions | e2e_apps:asgi_session
    python benchmarks/e2e_apps.py prepare CASE URL      # log in, check 200 with the token and 401 without,
                                                        # print the request header that carries the token
    python benchmarks/e2e_apps.py load URL HEADER [--connections 32] [--duration 5]

Every app answers ``GET /`` with 200 only when it found the session (401 otherwise; the bare app has nothing to
check and always answers 200). ``POST /login`` creates a session for ``user-1``. CASE is one of ``bare``,
``starlette``, ``ours-cookie``, ``ours-bearer``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware

from asgi_session import SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session.stores import MemoryStore

Scope = dict[str, Any]


async def _respond(send: Any, status: int) -> None:
    body = b"ok" if status == 200 else b"no"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
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
    except Exception:  # TryRefreshTokenError: the token was bad
        session = None
    await _respond(send, 200 if session is not None else 401)


starlette_sessions = StarletteSessionMiddleware(_starlette_inner, secret_key=os.urandom(32).hex())
asgi_session = SessionMiddleware(_ours_inner, manager=SessionManager(store=MemoryStore()))


# -- helpers for e2e.sh ------------------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str]) -> int:
    import httpx

    return httpx.get(url, headers=headers).status_code


def prepare(case: str, url: str) -> str:
    """Wait for the server, log in, check 200 with the token (and 401 without); return the token's header."""
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
        header = ("X-Bench", "bare")
    elif case == "starlette":
        response = httpx.post(url + "login")
        header = ("Cookie", f"session={response.cookies['session']}")
    elif case == "ours-cookie":
        response = httpx.post(url + "login", headers={"st-auth-mode": "cookie"})
        header = ("Cookie", f"sAccessToken={response.cookies['sAccessToken']}")
    elif case == "ours-bearer":
        response = httpx.post(url + "login", headers={"st-auth-mode": "header"})
        header = ("Authorization", f"Bearer {response.headers['st-access-token']}")
    else:
        raise SystemExit(f"unknown case {case!r}")
    with_token = _get(url, {header[0]: header[1]})
    without = _get(url, {})
    if with_token != 200 or (case != "bare" and without != 401):
        raise SystemExit(f"{case}: expected 200 with the token and 401 without, got {with_token} and {without}")
    return f"{header[0]}: {header[1]}"


async def load(url: str, header: str, connections: int, duration: float) -> None:
    """A bounded load generator for machines without wrk: `connections` keep-alive HTTP/1.1 connections sending
    GET requests back to back for `duration` seconds. Prints its result in wrk's format."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    request = f"GET {parsed.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{header}\r\n\r\n".encode("latin-1")
    counts = {"ok": 0, "other": 0}
    deadline = time.perf_counter() + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                counts["ok" if 200 <= status < 400 else "other"] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    if counts["other"]:
        print(f"  Non-2xx or 3xx responses: {counts['other']}")
    print(f"Requests/sec: {(counts['ok'] + counts['other']) / elapsed:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare")
    prepare_parser.add_argument("case")
    prepare_parser.add_argument("url")
    load_parser = commands.add_parser("load")
    load_parser.add_argument("url")
    load_parser.add_argument("header")
    load_parser.add_argument("--connections", type=int, default=32)
    load_parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if args.command == "prepare":
        print(prepare(args.case, args.url))
    else:
        asyncio.run(load(args.url, args.header, args.connections, args.duration))
