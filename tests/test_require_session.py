"""require_session: any ASGI app, protected, as raw ASGI through httpx.ASGITransport (and a mounted sub-app)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from asgi_session import ConfigurationError, SessionManager, SessionMiddleware, create_new_session
from asgi_session._asgi import ASGIApp, Message, Receive, Scope, Send
from asgi_session._require import require_session
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio

EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
CLEARING = sorted(
    [
        f"sAccessToken=; Path=/; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
        f"sRefreshToken=; Path=/auth/session/refresh; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    ]
)


class Inner:
    """A bare ASGI app that answers with the scope's session user, and records every scope type it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope["type"])
        if scope["type"] != "http":
            return
        session = scope["asgi_session"]
        body = json.dumps({"user": None if session is None else session.user_id}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def signin(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    session = await create_new_session(scope, "alice")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": session.handle.encode()})


def router(routes: dict[str, ASGIApp]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            for route in routes.values():  # pass the lifespan scope to each app, then answer it
                await route(scope, receive, send)
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        await routes[scope["path"]](scope, receive, send)

    return app


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.manager = SessionManager(MemoryStore(), clock=self.clock)
        self.inner = Inner()
        routes: dict[str, ASGIApp] = {
            "/signin": signin,
            "/protected": require_session(self.inner),
            "/checked": require_session(self.inner, check_database=True),
            "/optional": require_session(self.inner, session_required=False),
        }
        self.app = SessionMiddleware(router(routes), manager=self.manager)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://testserver")


async def sign_in(client: httpx.AsyncClient) -> tuple[str, str]:
    response = await client.post("/signin")
    assert response.status_code == 200
    # The fake clock starts in 2023, so a cookie jar would drop the cookie as expired: read Set-Cookie directly.
    (access,) = [
        value.split(";", 1)[0].removeprefix("sAccessToken=")
        for value in response.headers.get_list("set-cookie")
        if value.startswith("sAccessToken=")
    ]
    client.cookies.clear()
    return response.text, access


def cookie(access: str) -> dict[str, str]:
    return {"cookie": f"sAccessToken={access}"}


async def test_without_a_session_the_app_never_runs() -> None:
    harness = Harness()
    async with harness.client() as client:
        response = await client.get("/protected")
    assert response.status_code == 401
    assert response.json() == {"message": "unauthorised"}
    assert response.headers.get_list("set-cookie") == []
    assert harness.inner.seen == []


async def test_with_a_valid_session_the_app_runs() -> None:
    harness = Harness()
    async with harness.client() as client:
        _, access = await sign_in(client)
        response = await client.get("/protected", headers=cookie(access))
        assert response.json() == {"user": "alice"}
        bearer = await client.get("/protected", headers={"authorization": f"Bearer {access}"})
        assert bearer.json() == {"user": "alice"}


async def test_an_expired_token_asks_for_a_refresh() -> None:
    harness = Harness()
    async with harness.client() as client:
        _, access = await sign_in(client)
        harness.clock.advance(2 * 3600)
        for path in ("/protected", "/optional"):
            response = await client.get(path, headers=cookie(access))
            assert (response.status_code, response.json()) == (401, {"message": "try refresh token"})
            assert response.headers.get_list("set-cookie") == []
    assert harness.inner.seen == []


async def test_check_database_refuses_a_revoked_sessions_token() -> None:
    harness = Harness()
    async with harness.client() as client:
        handle, access = await sign_in(client)
        await harness.manager.revoke_session(handle)
        assert (await client.get("/protected", headers=cookie(access))).status_code == 200
        response = await client.get("/checked", headers=cookie(access))
    assert (response.status_code, response.json()) == (401, {"message": "unauthorised"})
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING


async def test_an_optional_session_runs_the_app_with_none() -> None:
    harness = Harness()
    async with harness.client() as client:
        response = await client.get("/optional")
    assert response.json() == {"user": None}


async def test_lifespan_passes_through() -> None:
    harness = Harness()
    sent: list[Message] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    await harness.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert harness.inner.seen == ["lifespan"] * 3
    assert sent == [{"type": "lifespan.startup.complete"}]


async def test_a_websocket_without_a_session_is_closed_with_1008() -> None:
    harness = Harness()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "websocket", "path": "/protected", "headers": [], "asgi": {"version": "3.0"}}
    await harness.app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorised"}]
    assert harness.inner.seen == []


async def test_without_the_middleware_it_is_a_configuration_error() -> None:
    app = require_session(Inner())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        with pytest.raises(ConfigurationError, match="SessionMiddleware"):
            await client.get("/")


async def test_a_mounted_sub_app_in_starlette() -> None:
    manager = SessionManager(MemoryStore())

    async def login(request: Request) -> JSONResponse:
        await create_new_session(request, "bob")
        return JSONResponse({})

    inner = Inner()
    app = Starlette(
        routes=[Route("/login", login, methods=["POST"]), Mount("/api", app=require_session(inner))],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.get("/api/anything")
        assert (response.status_code, response.json()) == (401, {"message": "unauthorised"})
        await client.post("/login")
        assert (await client.get("/api/anything")).json() == {"user": "bob"}


def test_repr_names_the_wrapped_app() -> None:
    inner = Inner()
    assert repr(require_session(inner)) == f"require_session({inner!r}, session_required=True)"
