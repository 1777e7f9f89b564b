"""asgi_session.frameworks.starlette through Starlette's TestClient: requires_session, get_session, handlers."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_session import (
    ConfigurationError,
    SessionError,
    SessionManager,
    SessionMiddleware,
    create_new_session,
)
from asgi_session.frameworks.starlette import (
    get_session,
    install_exception_handlers,
    requires_session,
    session_error_handler,
)
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore
from tests._testclient import SwallowErrors, TestClient, https_client

from . import CLEARING, TRY_REFRESH, TWO_HOURS, UNAUTHORISED


def _user(session: Any) -> str | None:
    return None if session is None else str(session.user_id)


async def signin(request: Request) -> JSONResponse:
    session = await create_new_session(request, (await request.json())["user"])
    return JSONResponse({"handle": session.handle})


@requires_session
async def me(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.state.session.user_id})


@requires_session(check_database=True)
async def account(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.state.session.user_id})


@requires_session(session_required=False)
async def optional(request: Request) -> JSONResponse:
    return JSONResponse({"user": _user(request.state.session)})


@requires_session
def sync_me(request: Request) -> JSONResponse:  # Starlette runs it in a worker thread
    return JSONResponse({"user": request.state.session.user_id})


async def plain(request: Request) -> JSONResponse:
    """No decorator: the design's trap, a route that raises a SessionError itself."""
    session = await get_session(request, session_required=True)
    return JSONResponse({"user": session.user_id})


async def maybe(request: Request) -> JSONResponse:
    return JSONResponse({"user": _user(await get_session(request))})


@requires_session
async def signout(request: Request) -> JSONResponse:
    await request.state.session.revoke()
    return JSONResponse({"status": "OK"})


@requires_session
async def revoke_then_fail(request: Request) -> JSONResponse:
    await request.state.session.revoke()
    await request.state.session.get_session_data_from_database()  # raises UnauthorisedError: it is gone
    raise AssertionError("unreachable")  # pragma: no cover


class Profile(HTTPEndpoint):
    @requires_session
    async def get(self, request: Request) -> Response:
        return JSONResponse({"user": request.state.session.user_id})


@requires_session
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"user": websocket.state.session.user_id})
    await websocket.close()


ROUTES = [
    Route("/signin", signin, methods=["POST"]),
    Route("/me", me),
    Route("/account", account),
    Route("/optional", optional),
    Route("/sync", sync_me),
    Route("/plain", plain),
    Route("/maybe", maybe),
    Route("/signout", signout, methods=["POST"]),
    Route("/profile", Profile),
    Route("/revoke-then-fail", revoke_then_fail, methods=["POST"]),
    WebSocketRoute("/ws", ws),
]
PROTECTED = ["/me", "/account", "/sync", "/plain", "/profile"]


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock(start=time.time())  # the client's cookie jar drops cookies that expired in real time
        self.store = TrackingStore()
        self.manager = SessionManager(self.store, clock=self.clock)
        self.app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=self.manager)])


@pytest.fixture
def harness() -> Harness:
    return Harness()


def sign_in(client: TestClient, user: str = "alice") -> str:
    response = client.post("/signin", json={"user": user})
    assert response.status_code == 200
    handle = response.json()["handle"]
    assert isinstance(handle, str)
    return handle


def revoke(client: TestClient, harness: Harness, handle: str) -> bool:
    """Revoke a session offline, on the client's event loop (where the store lives)."""
    assert client.portal is not None
    return client.portal.call(harness.manager.revoke_session, handle)


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_route_without_a_session_is_401_unauthorised(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert response.headers.get_list("set-cookie") == []  # nothing cleared: a refresh may be writing them


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_route_with_a_valid_session_is_200(client: TestClient, path: str) -> None:
    sign_in(client)
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {"user": "alice"}


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_route_with_an_expired_token_asks_for_a_refresh(
    harness: Harness, client: TestClient, path: str
) -> None:
    sign_in(client)
    harness.clock.advance(TWO_HOURS)
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == TRY_REFRESH
    assert response.headers.get_list("set-cookie") == []


def test_sign_out_clears_the_cookies(client: TestClient) -> None:
    sign_in(client)
    response = client.post("/signout")
    assert response.status_code == 200
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"
    assert client.get("/me").json() == UNAUTHORISED


def test_check_database_refuses_a_revoked_sessions_token(harness: Harness, client: TestClient) -> None:
    handle = sign_in(client)
    assert revoke(client, harness, handle) is True
    assert client.get("/me").status_code == 200  # without the check, the token lives until its exp
    response = client.get("/account")
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING


@pytest.mark.parametrize("path", ["/optional", "/maybe"])
def test_optional_session_is_none_without_a_session(client: TestClient, path: str) -> None:
    assert client.get(path).json() == {"user": None}
    sign_in(client)
    assert client.get(path).json() == {"user": "alice"}


def test_optional_session_still_refuses_an_expired_token(harness: Harness, client: TestClient) -> None:
    sign_in(client)
    harness.clock.advance(TWO_HOURS)
    response = client.get("/optional")
    assert (response.status_code, response.json()) == (401, TRY_REFRESH)


def test_websocket_endpoint(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
        pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == 1008
    sign_in(client)
    access = client.cookies["sAccessToken"]
    with client.websocket_connect("/ws", headers={"cookie": f"sAccessToken={access}"}) as websocket:
        assert websocket.receive_json() == {"user": "alice"}


def test_the_decorated_endpoint_keeps_its_name_and_kind() -> None:
    assert me.__name__ == "me"
    assert sync_me.__wrapped__.__name__ == "sync_me"  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(me)
    assert not inspect.iscoroutinefunction(sync_me)


def test_an_endpoint_without_a_request_parameter_is_refused_at_decoration() -> None:
    async def endpoint(thing: Request) -> Response:  # pragma: no cover
        return Response()

    with pytest.raises(ConfigurationError, match='no "request" or "websocket" parameter'):
        requires_session(endpoint)


def test_without_the_middleware_the_developer_error_stays_a_500() -> None:
    app = Starlette(routes=ROUTES)
    install_exception_handlers(app)
    with https_client(app, raise_server_exceptions=False) as client:
        assert client.get("/me").status_code == 500
    with (
        https_client(app) as client,
        pytest.raises(ConfigurationError, match="SessionMiddleware"),
    ):
        client.get("/me")


def build_intercepted(harness: Harness, how: str) -> Starlette:
    middleware = [Middleware(SessionMiddleware, manager=harness.manager), Middleware(SwallowErrors)]
    if how == "constructor":
        return Starlette(routes=ROUTES, middleware=middleware, exception_handlers={SessionError: session_error_handler})
    app = Starlette(routes=ROUTES, middleware=middleware)
    if how == "install":
        install_exception_handlers(app, harness.manager)
    return app


def test_an_intercepting_layer_hides_the_error_from_the_middleware(harness: Harness) -> None:
    with https_client(build_intercepted(harness, "none")) as client:
        response = client.get("/me")
    assert (response.status_code, response.json()) == (500, {"error": "internal"})


@pytest.mark.parametrize("how", ["install", "constructor"])
def test_exception_handlers_answer_before_an_intercepting_layer(harness: Harness, how: str) -> None:
    with https_client(build_intercepted(harness, how)) as client:
        assert (client.get("/plain").status_code, client.get("/plain").json()) == (401, UNAUTHORISED)
        handle = sign_in(client)
        assert client.get("/me").json() == {"user": "alice"}
        revoke(client, harness, handle)
        response = client.get("/account")
        assert (response.status_code, response.json()) == (401, UNAUTHORISED)
        assert sorted(response.headers.get_list("set-cookie")) == CLEARING
        assert response.headers["front-token"] == "remove"
        assert response.headers["cache-control"] == "no-store"
        sign_in(client)
        harness.clock.advance(TWO_HOURS)
        response = client.get("/sync")
        assert (response.status_code, response.json()) == (401, TRY_REFRESH)
        assert response.headers.get_list("set-cookie") == []


def test_a_store_failure_is_a_503_through_the_handlers(harness: Harness) -> None:
    with https_client(build_intercepted(harness, "install")) as client:
        sign_in(client)
        harness.store.fail_get = True
        response = client.get("/account")
    assert (response.status_code, response.json()) == (503, {"message": "session store unavailable"})
    assert response.headers["retry-after"] == "1"
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize("how", ["none", "install"])
def test_each_cookie_is_cleared_once_when_a_revoke_is_followed_by_an_error(harness: Harness, how: str) -> None:
    app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=harness.manager)])
    if how == "install":
        install_exception_handlers(app, harness.manager)
    with https_client(app) as client:
        sign_in(client)
        response = client.post("/revoke-then-fail")
    assert (response.status_code, response.json()) == (401, UNAUTHORISED)
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers.get_list("front-token") == ["remove"]


def test_with_the_handlers_a_refused_websocket_is_still_closed_with_1008(harness: Harness) -> None:
    app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=harness.manager)])
    install_exception_handlers(app, harness.manager)
    with (
        https_client(app) as client,
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws"),
    ):
        pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == 1008


def test_the_middleware_outside_the_app_still_answers_with_the_protocol(harness: Harness) -> None:
    """SessionMiddleware wrapped around the whole app: ServerErrorMiddleware's 500 is held back and replaced."""
    app = SessionMiddleware(Starlette(routes=ROUTES), manager=harness.manager)
    with https_client(app) as client:
        response = client.get("/plain")
        assert (response.status_code, response.json()) == (401, UNAUTHORISED)


def test_importing_asgi_session_imports_no_framework() -> None:
    code = (
        "import sys, asgi_session, asgi_session.frameworks, asgi_session.stores\n"
        "loaded = sorted(m for m in ('starlette', 'fastapi', 'quart', 'django', 'litestar') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
