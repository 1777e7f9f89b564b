"""The request-bound helpers: what they refuse and what they log."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_session import (
    ConfigurationError,
    InvalidPayloadError,
    SessionConfig,
    SessionManager,
    SessionMiddleware,
    create_new_session,
    get_session,
)
from asgi_session.stores import MemoryStore

pytestmark = pytest.mark.anyio


def build(config: SessionConfig | None = None) -> tuple[Starlette, SessionManager]:
    manager = SessionManager(store=MemoryStore(), config=config)

    async def login(request: Request) -> JSONResponse:
        size = int(request.query_params.get("size", "0"))
        try:
            session = await create_new_session(request, "alice", access_token_payload={"blob": "x" * size})
        except InvalidPayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"handle": session.handle})

    async def write(request: Request) -> JSONResponse:
        session = await get_session(request, session_required=True)
        assert session is not None
        return JSONResponse({"user": session.user_id})

    routes = [Route("/login", login, methods=["POST"]), Route("/write", write, methods=["POST"])]
    app = Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, manager=manager)])
    return app, manager


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")


async def test_oversized_access_cookie_is_refused_and_nothing_kept() -> None:
    app, manager = build()
    async with client(app) as c:
        response = await c.post("/login", params={"size": 5000})
        assert response.status_code == 400
        assert "4096" in response.json()["error"]
        assert response.headers.get_list("set-cookie") == []
        assert await manager.get_all_session_handles_for_user("alice") == []
        # just under the limit is fine, and every later refresh of it fits too
        response = await c.post("/login", params={"size": 2000})
        assert response.status_code == 200
        assert all(len(value) <= 4096 for value in response.headers.get_list("set-cookie"))


async def test_header_only_transfer_has_the_same_token_size_limit() -> None:
    """Security finding 7: a 9.9 kB st-access-token header is dropped by proxies and loops the client."""
    app, manager = build(SessionConfig(token_transfer_method="header"))
    async with client(app) as c:
        response = await c.post("/login", params={"size": 5000})
        assert response.status_code == 400
        assert "4096" in response.json()["error"]
        assert "st-access-token" not in response.headers
        assert await manager.get_all_session_handles_for_user("alice") == []
        response = await c.post("/login", params={"size": 2000})
        assert response.status_code == 200
        assert len(response.headers["st-access-token"]) <= 4096


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "EdDSA", "HS256"])
async def test_cookie_size_bound_is_an_upper_bound(algorithm: str) -> None:
    secret = "s" * 32 if algorithm == "HS256" else None
    config = SessionConfig(signing_algorithm=algorithm, signing_secret=secret, anti_csrf="VIA_TOKEN")  # type: ignore[arg-type]
    async with SessionManager(store=MemoryStore(), config=config) as manager:
        for size in (0, 100, 1000, 2000):
            try:
                session = await manager.create_new_session_without_request_response(
                    "alice", access_token_payload={"blob": "x" * size}
                )
            except InvalidPayloadError:
                continue
            refreshed = await manager.refresh_session_without_request_response(
                session.get_all_session_tokens_dangerously()["refreshToken"],
                anti_csrf_token=session.anti_csrf_token,
            )
            assert len("sAccessToken") + len(refreshed.access_token) <= 4096


async def test_merge_too_big_for_a_cookie_is_refused_before_storing() -> None:
    async with SessionManager(store=MemoryStore()) as manager:
        session = await manager.create_new_session_without_request_response("alice", access_token_payload={"a": 1})
        with pytest.raises(InvalidPayloadError):
            await manager.merge_into_access_token_payload(session.handle, {"big": "x" * 5000})
        with pytest.raises(InvalidPayloadError):
            await manager.regenerate_access_token(session.access_token, {"big": "x" * 5000})
        info = await manager.get_session_information(session.handle)
        assert info is not None
        assert info.custom_claims_in_access_token_payload == {"a": 1}


async def test_helpers_without_middleware_say_how_to_fix() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(ConfigurationError, match="SessionMiddleware"):
        await get_session(scope)
    with pytest.raises(ConfigurationError, match="SessionMiddleware"):
        await create_new_session(scope, "alice")
    with pytest.raises(TypeError):
        await get_session(object())


async def test_csrf_failure_is_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = build(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    async with client(app) as c:
        login = await c.post("/login")
        handle = login.json()["handle"]
        token = c.cookies["sAccessToken"]
        caplog.set_level(logging.INFO, logger="asgi_session")
        refused = await c.post("/write")
        assert refused.status_code == 401
        assert refused.json() == {"message": "try refresh token"}
        accepted = await c.post("/write", headers={"rid": "anti-csrf"})
        assert accepted.status_code == 200
    messages = [record.getMessage() for record in caplog.records if "anti-csrf" in record.getMessage()]
    assert len(messages) == 1
    assert handle in messages[0]
    assert "alice" in messages[0]
    assert token not in messages[0]


async def test_login_with_an_expired_access_token_revokes_that_session() -> None:
    from asgi_session.testing import FakeClock

    clock = FakeClock()
    manager = SessionManager(store=MemoryStore(), clock=clock)
    issued: list[str] = []

    async def login(request: Request) -> JSONResponse:
        session = await create_new_session(request, "alice")
        issued.append(session.access_token)
        return JSONResponse({"handle": session.handle})

    app = Starlette(
        routes=[Route("/login", login, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
    )
    async with client(app) as c:
        first = (await c.post("/login")).json()["handle"]
    clock.advance(3600 + 10)  # the access token expired 10 s ago (within the 30 s grace); the session lives
    async with client(app) as c:
        second = (await c.post("/login", headers={"cookie": f"sAccessToken={issued[0]}"})).json()["handle"]
    assert second != first
    assert await manager.get_all_session_handles_for_user("alice") == [second]


@pytest.mark.parametrize("transport", ["cookie", "bearer"])
async def test_login_with_a_long_expired_access_token_revokes_nothing(transport: str) -> None:
    """Security finding 4: anyone holding a days-old token of a victim must not end the victim's session."""
    from asgi_session.testing import FakeClock

    clock = FakeClock()
    manager = SessionManager(store=MemoryStore(), clock=clock)

    async def login(request: Request) -> JSONResponse:
        body = await request.json()
        session = await create_new_session(request, body["user"])
        return JSONResponse({"handle": session.handle, "token": session.access_token})

    app = Starlette(
        routes=[Route("/login", login, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
    )
    async with client(app) as c:
        victim = (await c.post("/login", json={"user": "victim"})).json()
    clock.advance(3 * 24 * 3600)  # days later: the token is long expired, the session (100-day idle) lives
    old = victim["token"]
    headers = {"cookie": f"sAccessToken={old}"} if transport == "cookie" else {"authorization": f"Bearer {old}"}
    async with client(app) as c:
        attacker = (await c.post("/login", json={"user": "mallory"}, headers=headers)).json()
    assert attacker["handle"] != victim["handle"]
    assert await manager.get_all_session_handles_for_user("victim") == [victim["handle"]]


def test_token_cookies_replace_earlier_set_cookie_headers_of_the_same_name() -> None:
    from asgi_session.transport import ResponseChanges

    changes = ResponseChanges(SessionConfig())
    changes.clear_tokens("cookie")
    message: dict[str, Any] = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"set-cookie", b"sAccessToken=; Path=/; Max-Age=0"),
            (b"set-cookie", b"theme=dark; Path=/"),
            (b"set-cookie", b"sAccessTokenX=keep; Path=/"),
        ],
    }
    changes.apply(message)
    cookies = [value for key, value in message["headers"] if key == b"set-cookie"]
    assert sum(c.startswith(b"sAccessToken=") for c in cookies) == 1
    assert sum(c.startswith(b"sRefreshToken=") for c in cookies) == 1
    assert b"theme=dark; Path=/" in cookies
    assert b"sAccessTokenX=keep; Path=/" in cookies
