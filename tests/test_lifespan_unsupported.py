"""SessionMiddleware around an app that does not speak the lifespan protocol (Django, a bare ASGI app).

ASGI lets an app raise for a scope type it does not support; Django's ``ASGIHandler`` does so for ``lifespan``
before it receives anything. The middleware then answers the lifespan itself: the store opens on startup, the
scheduled cleanup runs, and shutdown closes both. An app that took part in the protocol keeps its own errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, _cleanup
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore
from tests._servers import serve_in_thread

pytestmark = pytest.mark.anyio

Message = MutableMapping[str, Any]
DAY = 86400.0
CONFIG = SessionConfig(refresh_token_validity=timedelta(days=1), cleanup_interval=600)


async def refuses(scope: Message, receive: Any, send: Any) -> None:
    """A plain HTTP-only app: raises for any other scope type, as Django does."""
    if scope["type"] != "http":
        raise ValueError(f"only http, not {scope['type']}")
    await send({"type": "http.response.start", "status": 204, "headers": []})  # pragma: no cover
    await send({"type": "http.response.body", "body": b""})  # pragma: no cover


async def ignores(scope: Message, receive: Any, send: Any) -> None:
    """An app that returns at once from a scope it does not handle."""


class Server:
    """Plays the server's side of one lifespan: the app runs in a task, messages go through streams."""

    def __init__(self) -> None:
        self.to_app, self.inbox = anyio.create_memory_object_stream[Message](4)
        self.outbox, self.from_app = anyio.create_memory_object_stream[Message](4)
        self.error: BaseException | None = None
        self.ended = anyio.Event()

    async def run(self, app: Any) -> None:
        try:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            await app(scope, self.inbox.receive, self.outbox.send)
        except Exception as exc:  # a server logs it and runs without lifespan
            self.error = exc
        finally:
            self.ended.set()

    async def exchange(self, kind: str) -> str:
        await self.to_app.send({"type": kind})
        with anyio.fail_after(10):
            reply: str = (await self.from_app.receive())["type"]
        return reply


@asynccontextmanager
async def lifespan_of(app: Any) -> AsyncIterator[Server]:
    server = Server()
    async with anyio.create_task_group() as group, server.to_app, server.from_app, server.inbox, server.outbox:
        group.start_soon(server.run, app)
        yield server
        with anyio.fail_after(10):
            await server.ended.wait()


@pytest.fixture
def fast_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cleanup, "_TICK", 0.005)


async def eventually(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - polls what a background task counts
            await anyio.sleep(0.005)


@pytest.mark.parametrize("app", [refuses, ignores], ids=["raises", "returns"])
async def test_the_middleware_runs_the_lifespan_the_app_does_not_speak(app: Any, fast_tick: None) -> None:
    clock = FakeClock()
    store = TrackingStore()
    manager = SessionManager(store=store, config=CONFIG, clock=clock)
    middleware = SessionMiddleware(app, manager=manager)
    schedule = middleware._cleanup
    assert schedule is not None
    async with lifespan_of(middleware) as server:
        assert await server.exchange("lifespan.startup") == "lifespan.startup.complete"
        assert (store.opens, manager._opened, schedule.running) == (1, True, True)
        await manager.create_new_session_without_request_response("alice")
        clock.advance(DAY + 60)  # expired, and the first run is due
        await eventually(lambda: schedule.runs == 1)
        assert schedule.deleted == 1
        assert await server.exchange("lifespan.shutdown") == "lifespan.shutdown.complete"
    assert server.error is None  # the app's refusal does not reach the server: the lifespan ran
    assert (store.closes, manager._opened, schedule.running) == (1, False, False)


async def test_a_store_that_cannot_open_fails_the_startup() -> None:
    manager = SessionManager(store=TrackingStore(fail_open=True), config=CONFIG, clock=FakeClock())
    middleware = SessionMiddleware(refuses, manager=manager)
    async with lifespan_of(middleware) as server:
        assert await server.exchange("lifespan.startup") == "lifespan.startup.failed"
    assert server.ended.is_set()  # the call ended by itself; the server exits without a shutdown
    assert manager._opened is False
    assert middleware._cleanup is not None
    assert not middleware._cleanup.running


async def test_an_app_that_fails_inside_the_protocol_keeps_its_error() -> None:
    """The app received ``lifespan.startup`` and then raised: its own failure, not a missing lifespan."""

    async def broken(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("the app's startup failed")

    manager = SessionManager(store=TrackingStore(), config=CONFIG, clock=FakeClock())
    async with lifespan_of(SessionMiddleware(broken, manager=manager)) as server:
        await server.to_app.send({"type": "lifespan.startup"})
    assert isinstance(server.error, RuntimeError)
    assert manager._opened is False


async def test_django_gets_the_lifespan_from_the_middleware(fast_tick: None) -> None:
    from tests.frameworks._django_project import create_app

    clock = FakeClock()
    manager = SessionManager(store=MemoryStore(), config=CONFIG, clock=clock)
    app = create_app(manager)
    with pytest.raises(ValueError, match="Django can only handle ASGI/HTTP connections, not lifespan"):
        await app.app({"type": "lifespan"}, None, None)  # Django itself refuses the scope before receiving
    schedule = app._cleanup
    async with lifespan_of(app) as server:
        assert await server.exchange("lifespan.startup") == "lifespan.startup.complete"
        assert manager._opened
        assert schedule.running
        await manager.create_new_session_without_request_response("alice")
        clock.advance(DAY + 60)
        await eventually(lambda: schedule.runs == 1)
        assert schedule.deleted == 1
        assert await server.exchange("lifespan.shutdown") == "lifespan.shutdown.complete"
    assert server.error is None
    assert not manager._opened
    assert not schedule.running


def test_django_under_uvicorn_with_lifespan_on() -> None:
    """``uvicorn --lifespan on`` used to refuse to start a Django app (startup failed); now the store opens at
    startup and the schedule runs until the server stops."""
    from tests.frameworks._django_project import create_app

    manager = SessionManager(store=TrackingStore(), config=SessionConfig(cleanup_interval=3600))
    app = create_app(manager)
    with serve_in_thread(app, lifespan="on") as base_url:
        assert manager._opened  # before any request
        assert app._cleanup.running
        assert httpx.get(f"{base_url}/me", timeout=10).status_code == 401
    assert not manager._opened  # closed by the lifespan's shutdown
    assert not app._cleanup.running
