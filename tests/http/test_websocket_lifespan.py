"""SessionMiddleware on websocket connections and on the lifespan protocol.

Websockets go through Starlette's ``TestClient`` (a handshake refused for a session reason is closed with 1008);
the lifespan protocol is checked both through ``TestClient`` (store opened on startup, closed on shutdown) and raw,
message by message, for the failure paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_session import (
    SessionConfig,
    SessionManager,
    SessionMiddleware,
    create_new_session,
    get_session,
)
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore, b64u_json
from tests._testclient import TestClient, https_client

T0 = 1_700_000_000.0
Message = MutableMapping[str, Any]


class Harness:
    """A Starlette app with SessionMiddleware inside it, a login route, a protected route and a websocket route."""

    def __init__(self, store: TrackingStore | None = None, config: SessionConfig | None = None) -> None:
        self.store = store or TrackingStore()
        self.clock = FakeClock(T0)
        self.manager = SessionManager(self.store, config or SessionConfig(), clock=self.clock)
        self.events: list[str] = []
        self.seen: list[Any] = []

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self.events.append("app-startup")
            yield
            self.events.append("app-shutdown")

        self.app = Starlette(
            routes=[
                Route("/login", self._login, methods=["POST"]),
                Route("/me", self._me, methods=["GET"]),
                WebSocketRoute("/ws", self._ws),
            ],
            middleware=[Middleware(SessionMiddleware, manager=self.manager)],
            lifespan=lifespan,
        )

    async def _login(self, request: Request) -> Response:
        session = await create_new_session(request, request.query_params["user"])
        return PlainTextResponse(session.user_id)

    async def _me(self, request: Request) -> Response:
        session = await get_session(request, session_required=True)
        assert session is not None
        return PlainTextResponse(session.user_id)

    async def _ws(self, websocket: WebSocket) -> None:
        scoped = websocket.scope["asgi_session"]
        self.seen.append(scoped)
        session = await get_session(websocket, session_required=True)
        assert session is not None
        await websocket.accept()
        await websocket.send_json(
            {
                "scope_user": None if scoped is None else scoped.user_id,
                "user": session.user_id,
                "handle": session.handle,
                "same_object": scoped is session,
            }
        )
        await websocket.close()


def login(client: TestClient, user: str) -> tuple[str, str]:
    """Log in through the app; return (access token, session handle) and leave the client's cookie jar empty."""
    response = client.post("/login", params={"user": user})
    assert response.status_code == 200
    assert response.text == user
    access = None
    for value in response.headers.get_list("set-cookie"):
        if value.startswith("sAccessToken="):
            access = value.split(";", 1)[0].split("=", 1)[1]
    assert access
    client.cookies.clear()  # every later request names its cookies explicitly
    return access, access_handle(access)


def access_handle(token: str) -> str:
    handle = b64u_json(token.split(".")[1])["sessionHandle"]
    assert isinstance(handle, str)
    return handle


@pytest.fixture
def harness() -> Harness:
    return Harness()


# -- websockets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["cookie", "bearer"])
def test_websocket_with_a_valid_token_sees_the_session(harness: Harness, client: TestClient, via: str) -> None:
    access, handle = login(client, "alice")
    headers = {"cookie": f"sAccessToken={access}"} if via == "cookie" else {"authorization": f"Bearer {access}"}
    with client.websocket_connect("/ws", headers=headers) as websocket:
        message = websocket.receive_json()
    assert message == {"scope_user": "alice", "user": "alice", "handle": handle, "same_object": True}
    assert [(s.user_id, s.handle) for s in harness.seen] == [("alice", handle)]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"cookie": "sAccessToken="},
        {"cookie": "sAccessToken=not.a.token"},
        {"cookie": "sFrontToken=abc; other=1"},
        {"authorization": "Bearer"},
        {"authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["no-token", "empty-cookie", "garbage-cookie", "other-cookies", "empty-bearer", "basic"],
)
def test_websocket_without_a_usable_token_is_closed_with_1008(
    harness: Harness, client: TestClient, headers: dict[str, str]
) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws", headers=headers):
        pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == 1008
    assert refused.value.reason == "unauthorised"
    assert harness.seen == [None]


def test_websocket_with_duplicate_or_expired_tokens_is_closed_with_1008(harness: Harness, client: TestClient) -> None:
    alice, _ = login(client, "alice")
    bob, _ = login(client, "bob")
    for headers in (
        {"cookie": f"sAccessToken={alice}; sAccessToken={bob}"},
        {"authorization": f"Bearer {alice}, Bearer {bob}"},
        # A token shaped like ours that fails (bob's, with a broken signature) never falls through to the cookie.
        {
            "cookie": f"sAccessToken={alice}",
            "authorization": f"Bearer {bob[:-4]}{'BBBB' if bob.endswith('AAAA') else 'AAAA'}",
        },
    ):
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws", headers=headers):
            pytest.fail("the handshake was accepted")  # pragma: no cover
        assert refused.value.code == 1008
    harness.clock.advance(timedelta(hours=2))  # past the access token's exp
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws", headers={"cookie": f"sAccessToken={alice}"}),
    ):
        pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == 1008
    assert harness.seen == [None, None, None, None]


# -- raw websocket driving -----------------------------------------------------------------------------------------


def _ws_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "wss",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 443),
        "subprotocols": [],
        "state": {},
    }


async def _drive_websocket(app: Any, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(dict(message))

    with anyio.fail_after(10):
        await app(_ws_scope(headers), receive, send)
    return sent


@pytest.mark.anyio
async def test_raw_websocket_store_failure_closes_with_1011_before_the_app_runs() -> None:
    store = TrackingStore()
    manager = SessionManager(store, SessionConfig(access_token_blacklisting=True), clock=FakeClock(T0))
    async with manager:
        session = await manager.create_new_session_without_request_response("alice")
        called: list[Any] = []

        async def inner(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            called.append(scope)  # pragma: no cover - must not be reached

        app = SessionMiddleware(inner, manager=manager)
        store.fail_get = True
        sent = await _drive_websocket(app, [(b"cookie", b"sAccessToken=" + session.access_token.encode())])
    assert sent == [{"type": "websocket.close", "code": 1011, "reason": "session store unavailable"}]
    assert called == []


@pytest.mark.anyio
async def test_raw_websocket_with_junk_header_bytes_is_refused_not_crashed() -> None:
    manager = SessionManager(TrackingStore(), clock=FakeClock(T0))
    async with manager:
        seen: list[Any] = []

        async def inner(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            seen.append(scope["asgi_session"])
            await get_session(scope, session_required=True)
            await send({"type": "websocket.accept"})  # pragma: no cover - get_session raises

        app = SessionMiddleware(inner, manager=manager)
        for headers in (
            [(b"cookie", b"sAccessToken=\x80\xff\x00\r\n")],
            [(b"authorization", b"Bearer \xff\xfe"), (b"authorization", b"Bearer x")],
            [(b"cookie", b"\x00" * 70_000)],
        ):
            sent = await _drive_websocket(app, headers)
            assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorised"}]
    assert seen == [None, None, None]


# -- lifespan through TestClient ---------------------------------------------------------------------------------


def test_lifespan_opens_the_store_on_startup_and_closes_it_on_shutdown(harness: Harness) -> None:
    store, manager = harness.store, harness.manager
    assert (store.opens, store.closes, manager._opened) == (0, 0, False)
    with https_client(harness.app) as client:
        assert (store.opens, store.closes, manager._opened) == (1, 0, True)
        assert harness.events == ["app-startup"]  # the app's own lifespan still runs
        access, _ = login(client, "alice")
        response = client.get("/me", headers={"cookie": f"sAccessToken={access}"})
        assert (response.status_code, response.text) == (200, "alice")
        assert store.opens == 1  # opened once, on startup, not again per request
    assert (store.opens, store.closes, manager._opened) == (1, 1, False)
    assert harness.events == ["app-startup", "app-shutdown"]


def test_without_lifespan_the_first_request_opens_the_store(harness: Harness) -> None:
    store, manager = harness.store, harness.manager
    client = https_client(harness.app)  # not entered: no lifespan events at all
    assert (store.opens, manager._opened) == (0, False)
    access, handle = login(client, "alice")
    assert (store.opens, manager._opened) == (1, True)
    response = client.get("/me", headers={"cookie": f"sAccessToken={access}"})
    assert (response.status_code, response.text) == (200, "alice")
    with client.websocket_connect("/ws", headers={"cookie": f"sAccessToken={access}"}) as websocket:
        assert websocket.receive_json()["handle"] == handle
    assert (store.opens, store.closes) == (1, 0)
    assert harness.events == []


@pytest.mark.anyio
async def test_an_app_without_lifespan_support_still_serves_requests() -> None:
    """The inner app refuses the lifespan scope (as ASGI allows), and the server runs no lifespan: the first
    request opens the store. (With a lifespan, the middleware runs it itself: tests/test_lifespan_unsupported.py.)"""
    store = TrackingStore()
    manager = SessionManager(store, clock=FakeClock(T0))

    async def inner(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("lifespan not supported")
        session = await create_new_session(scope, "alice")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": session.user_id.encode()})

    app = SessionMiddleware(inner, manager=manager)

    assert (store.opens, manager._opened) == (0, False)

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "method": "POST",
        "path": "/login",
        "query_string": b"",
        "headers": [],
        "client": ("203.0.113.7", 50000),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"alice"
    assert any(k == b"set-cookie" and v.startswith(b"sAccessToken=") for k, v in sent[0]["headers"])
    assert (store.opens, manager._opened) == (1, True)
    await manager.close()


# -- lifespan driven raw: a store that cannot open -----------------------------------------------------------------


def _raw_lifespan_app(events: list[str]) -> Callable[..., Awaitable[None]]:
    """A minimal ASGI app that speaks the lifespan protocol (no framework)."""

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                events.append("app-startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                events.append("app-shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


class LifespanDriver:
    """Runs an app's lifespan in a task and exchanges messages with it, as a server would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app, self.app_inbox = anyio.create_memory_object_stream[Message](10)
        self.app_outbox, self.from_app = anyio.create_memory_object_stream[Message](10)
        self.sent: list[Message] = []
        self.done = False
        self.error: BaseException | None = None

    async def run(self) -> None:
        async def send(message: Message) -> None:
            self.sent.append(dict(message))
            await self.app_outbox.send(dict(message))

        try:
            await self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, self.app_inbox.receive, send)
        except Exception as exc:  # the server would log it
            self.error = exc
        finally:
            self.done = True

    async def __aenter__(self) -> LifespanDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for stream in (self.to_app, self.app_inbox, self.app_outbox, self.from_app):
            await stream.aclose()

    async def exchange(self, message: Message) -> Message:
        await self.to_app.send(message)
        with anyio.fail_after(10):
            return await self.from_app.receive()


@asynccontextmanager
async def failed_startup(app: Any) -> AsyncIterator[tuple[LifespanDriver, Message, TaskGroup]]:
    """``app``'s lifespan running in a task and sent ``lifespan.startup``, which it refused with startup.failed.

    Yields the driver, the refusal, and the task group the lifespan runs in (cancel it not to wait for its end).
    """
    async with LifespanDriver(app) as driver, anyio.create_task_group() as tasks:
        tasks.start_soon(driver.run)
        reply = await driver.exchange({"type": "lifespan.startup"})
        assert reply["type"] == "lifespan.startup.failed"
        yield driver, reply, tasks


def _failing_apps(events: list[str], manager: SessionManager) -> dict[str, Any]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("app-startup")
        yield
        events.append("app-shutdown")

    return {
        "raw": SessionMiddleware(_raw_lifespan_app(events), manager=manager),
        "starlette-inner": Starlette(lifespan=lifespan, middleware=[Middleware(SessionMiddleware, manager=manager)]),
        "starlette-outer": SessionMiddleware(Starlette(lifespan=lifespan), manager=manager),
    }


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["raw", "starlette-inner", "starlette-outer"])
async def test_a_store_that_cannot_open_fails_startup(kind: str) -> None:
    store = TrackingStore(fail_open=True)
    manager = SessionManager(store, clock=FakeClock(T0))
    async with failed_startup(_failing_apps([], manager)[kind]) as (driver, reply, _):
        assert "the session database is unavailable" in reply["message"]
        assert store.opens == 1
        assert manager._opened is False
        # A server exits now; one that still sends lifespan.shutdown gets a clean shutdown.
        if not driver.done:
            shutdown = await driver.exchange({"type": "lifespan.shutdown"})
            assert shutdown["type"] == "lifespan.shutdown.complete"
    assert [m["type"] for m in driver.sent if "startup" in m["type"]] == ["lifespan.startup.failed"]
    assert manager._opened is False


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["raw", "starlette-inner", "starlette-outer"])
async def test_a_failed_startup_ends_the_lifespan_call(kind: str) -> None:
    """After ``lifespan.startup.failed`` the app's lifespan call must end by itself, as Starlette's own failing
    lifespan does (it sends startup.failed and re-raises).

    ASGI servers exit after startup.failed without sending ``lifespan.shutdown``; Starlette's ``TestClient`` waits
    for the lifespan call to end after startup.failed, so ``with TestClient(app):`` hangs forever when the store
    cannot open unless the call ends.
    """
    manager = SessionManager(TrackingStore(fail_open=True), clock=FakeClock(T0))
    async with failed_startup(_failing_apps([], manager)[kind]) as (driver, _, tasks):
        await anyio.wait_all_tasks_blocked()
        finished = driver.done
        tasks.cancel_scope.cancel()  # do not leave the app waiting forever if it did not end
    assert finished, "the lifespan call is still waiting for a message after lifespan.startup.failed"
