"""A request leaves nothing for the garbage collector: its scope, session and context are freed when it ends.

The middleware keeps a context in the scope; a context that pointed back at the scope made a reference cycle, so
every request's scope, headers, session and context waited for a collection (a measurable part of the per-request
cost, see docs/performance.md). These tests count what a full collection finds after requests ran with the
collector off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from asgi_session import Session, SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session._asgi import Message, Receive, Scope, Send
from asgi_session._context import CONTEXT_KEY, RequestContext
from asgi_session.stores import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/login":
        await create_new_session(scope, "alice")
        status = 200
    else:
        status = 200 if await get_session(scope) is not None else 401
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _garbage() -> list[str]:
    """The per-request objects of ours that only the collector could free: sessions, contexts, scopes.

    Other tests' background tasks may leave garbage of their own (frames, futures) while these run; only ours counts.
    """
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [
            type(o).__name__
            for o in gc.garbage
            if isinstance(o, (Session, RequestContext)) or (type(o) is dict and CONTEXT_KEY in o)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("header", ["cookie", "bearer", "none"])
async def test_verified_requests_leave_no_garbage(collector_off: None, header: str) -> None:
    manager = SessionManager(store=MemoryStore())
    middleware = SessionMiddleware(_app, manager=manager)
    session = await manager.create_new_session_without_request_response("alice")
    token = session.access_token.encode("ascii")
    headers = {
        "cookie": [(b"cookie", b"sAccessToken=" + token)],
        "bearer": [(b"authorization", b"Bearer " + token)],
        "none": [],
    }[header]
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await middleware(_scope("/", headers), _receive, send)  # warm-up: the first request fills caches
    _garbage()
    for _ in range(50):
        await middleware(_scope("/", headers), _receive, send)
    assert statuses == [401 if header == "none" else 200] * 51
    assert _garbage() == []
    await manager.close()


async def test_a_login_leaves_no_garbage_either(collector_off: None) -> None:
    manager = SessionManager(store=MemoryStore())
    middleware = SessionMiddleware(_app, manager=manager)
    cookies: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookies.extend(v for k, v in message["headers"] if k == b"set-cookie")

    await middleware(_scope("/login", []), _receive, send)
    _garbage()
    await middleware(_scope("/login", []), _receive, send)
    assert any(c.startswith(b"sAccessToken=") for c in cookies)
    assert _garbage() == []
    await manager.close()
