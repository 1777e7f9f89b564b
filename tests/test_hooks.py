"""Lifecycle hooks: every event and revocation reason, after the store write, with the request scope; the documented
subclassing recipe (examples/manager_overrides.py); a raising hook never changes the response; each framework."""

from __future__ import annotations

import logging
import runpy
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from quart import Quart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_session import (
    SessionConfig,
    SessionEvent,
    SessionHooks,
    SessionManager,
    SessionMiddleware,
    create_new_session,
    get_session,
)
from asgi_session.frameworks import quart as quart_session
from asgi_session.frameworks.fastapi import SessionDep
from asgi_session.frameworks.starlette import requires_session
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock
from tests._claims_app import REFRESH, Browser, ClaimsApp
from tests._testclient import https_client

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "manager_overrides.py"


class Recorder:
    """Hooks that record each event and what the store held when the hook ran."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.stored: list[bool] = []
        self.manager: SessionManager | None = None

    async def record(self, event: SessionEvent) -> None:
        self.events.append(event)
        if self.manager is not None and event.handle is not None:
            self.stored.append(await self.manager.get_session_information(event.handle) is not None)

    def hooks(self) -> SessionHooks:
        return SessionHooks(
            on_created=self.record,
            on_refreshed=self.record,
            on_revoked=self.record,
            on_token_theft_detected=self.record,
            on_anti_csrf_failure=self.record,
        )

    def summary(self) -> list[tuple[str, str | None, str | None, bool]]:
        return [(e.kind, e.user_id, e.reason, e.scope is not None) for e in self.events]


def recorded_app(config: SessionConfig | None = None) -> tuple[ClaimsApp, Recorder]:
    recorder = Recorder()
    app = ClaimsApp(hooks=recorder.hooks(), config=config)
    recorder.manager = app.manager
    return app, recorder


async def test_the_documented_recipe_subclass_and_audit_log() -> None:
    example = runpy.run_path(str(EXAMPLE))
    audit = example["AuditLog"]()
    manager = example["AppSessionManager"](MemoryStore(), hooks=audit.hooks())
    app = example["create_app"](manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        browser = Browser(client)
        response = await client.post("/signin?user=alice")
        browser.take(response)
        handle = response.text
        # The override ran for a request-bound create too: the token carries the plan.
        assert (await manager.verify_access_token(browser.access))["plan"] == "pro"
        assert (await browser.request("POST", REFRESH, rid="session")).status_code == 200
        assert (await browser.request("POST", "/auth/signout", rid="session")).json() == {"status": "OK"}
    assert audit.entries == [
        {"event": "created", "session": handle, "user": "alice", "tenant": "public", "reason": None, "ip": "127.0.0.1"},
        {
            "event": "refreshed",
            "session": handle,
            "user": "alice",
            "tenant": "public",
            "reason": None,
            "ip": "127.0.0.1",
        },
        {
            "event": "revoked",
            "session": handle,
            "user": "alice",
            "tenant": "public",
            "reason": "sign-out",
            "ip": "127.0.0.1",
        },
    ]
    entries = await example["main"]()
    assert [(e["event"], e["user"], e["reason"]) for e in entries] == [
        ("created", "alice", None),
        ("created", "kiosk", None),
        ("revoked", "alice", "revoke-all"),
    ]


async def test_created_refreshed_and_revoked_in_a_route_run_after_the_store_write() -> None:
    app, recorder = recorded_app()
    async with app.client() as client:
        browser = Browser(client)
        await browser.sign_in("alice")
        await browser.request("POST", REFRESH, rid="session")
        await browser.request("POST", "/revoke")
    assert recorder.summary() == [
        ("created", "alice", None, True),
        ("refreshed", "alice", None, True),
        ("revoked", "alice", "revoke", True),
    ]
    assert recorder.stored == [True, True, False]  # committed: created and refreshed are there, revoked is gone
    assert recorder.events[0].scope is not None
    assert recorder.events[0].scope["path"] == "/signin"
    assert {e.tenant_id for e in recorder.events} == {"public"}


async def test_signing_in_again_revokes_the_old_session_with_the_request() -> None:
    app, recorder = recorded_app()
    async with app.client() as client:
        browser = Browser(client)
        first = await browser.sign_in("alice")
        second = await browser.request("POST", "/signin?user=alice")
    assert [(e.kind, e.handle) for e in recorder.events] == [
        ("created", first),
        ("revoked", first),
        ("created", second.json()["handle"]),
    ]
    assert all(e.scope is not None for e in recorder.events)


async def test_offline_revocations_by_handle_and_by_user() -> None:
    app, recorder = recorded_app()
    manager = app.manager
    a = (await manager.create_new_session_without_request_response("alice")).handle
    b = (await manager.create_new_session_without_request_response("alice", "acme")).handle
    c = (await manager.create_new_session_without_request_response("bob")).handle
    d = (await manager.create_new_session_without_request_response("carol")).handle
    assert await manager.revoke_session(c)
    assert not await manager.revoke_session(c)  # nothing deleted: no second event
    assert await manager.revoke_multiple_sessions([d, "missing"]) == [d]
    assert sorted(await manager.revoke_all_sessions_for_user("alice")) == sorted([a, b])
    revoked = [(e.handle, e.user_id, e.tenant_id, e.reason, e.scope) for e in recorder.events if e.kind == "revoked"]
    assert revoked[:2] == [(c, "bob", "public", "revoke", None), (d, "carol", "public", "revoke", None)]
    assert sorted(revoked[2:]) == sorted(
        [(a, "alice", "public", "revoke-all", None), (b, "alice", "acme", "revoke-all", None)]
    )


async def test_theft_revokes_then_reports_the_theft() -> None:
    app, recorder = recorded_app()
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        stolen = browser.refresh
        await browser.request("POST", REFRESH, rid="session")
        app.clock.advance(60)
        browser.refresh = stolen
        assert (await browser.request("POST", REFRESH, rid="session")).json() == {"message": "token theft detected"}
    assert [(e.kind, e.handle, e.reason) for e in recorder.events[-2:]] == [
        ("revoked", handle, "theft"),
        ("token_theft_detected", handle, None),
    ]
    assert recorder.stored[-2:] == [False, False]
    assert recorder.events[-1].scope is not None


async def test_a_refresh_that_finds_the_session_expired() -> None:
    app, recorder = recorded_app()
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        app.clock.advance(101 * 86400)
        assert (await browser.request("POST", REFRESH, rid="session")).status_code == 401
    assert [(e.kind, e.handle, e.user_id, e.reason) for e in recorder.events[-1:]] == [
        ("revoked", handle, "alice", "expired")
    ]


async def test_anti_csrf_failures_in_a_route_and_at_refresh() -> None:
    app, recorder = recorded_app(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        refused = await browser.request("POST", "/revoke")  # no rid header
        assert refused.json() == {"message": "try refresh token"}
        assert (await browser.request("POST", REFRESH)).status_code == 401
    failures = [(e.handle, e.user_id, e.reason) for e in recorder.events if e.kind == "anti_csrf_failure"]
    assert failures == [
        (handle, "alice", "anti-csrf check failed: the rid header is missing"),
        (handle, "alice", "anti-csrf check failed: the rid header is missing"),
    ]
    assert all(e.scope is not None for e in recorder.events if e.kind == "anti_csrf_failure")


async def test_anti_csrf_failure_via_token_offline_and_at_refresh() -> None:
    app, recorder = recorded_app(SessionConfig(anti_csrf="VIA_TOKEN"))
    manager = app.manager
    session = await manager.create_new_session_without_request_response("alice")
    with pytest.raises(Exception, match="anti-csrf"):
        await manager.get_session_without_request_response(session.access_token, anti_csrf_token="wrong")
    with pytest.raises(Exception, match="anti-csrf"):
        await manager.refresh_session_without_request_response(session.refresh_token or "", anti_csrf_token="wrong")
    kinds = [(e.kind, e.user_id) for e in recorder.events]
    assert kinds == [("created", "alice"), ("anti_csrf_failure", "alice"), ("anti_csrf_failure", "alice")]


async def test_a_raising_hook_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(event: SessionEvent) -> None:  # sync hooks work too
        calls.append(event.kind)
        raise RuntimeError("audit database down")

    app = ClaimsApp(hooks=SessionHooks(on_created=broken, on_revoked=broken, on_refreshed=broken))
    with caplog.at_level(logging.ERROR, logger="asgi_session"):
        async with app.client() as client:
            browser = Browser(client)
            handle = await browser.sign_in("alice")
            assert (await browser.request("POST", REFRESH, rid="session")).status_code == 200
            assert (await browser.request("GET", "/me")).json() == {"user": "alice", "roles": ["user"]}
            assert (await browser.request("POST", "/revoke")).json() == {"status": "OK"}
    assert calls == ["created", "refreshed", "revoked"]
    assert await app.manager.get_session_information(handle) is None
    assert caplog.text.count("hook raised") == 3


def test_hooks_must_be_callables() -> None:
    from asgi_session import ConfigurationError

    with pytest.raises(ConfigurationError):
        SessionHooks(on_created="audit")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SessionManager(MemoryStore(), hooks=[print])  # type: ignore[arg-type]


# -- through each framework: a route that signs in, and one that revokes this session ---------------------------


def _starlette(manager: SessionManager) -> Any:
    async def signin(request: Request) -> JSONResponse:
        await create_new_session(request, "alice")
        return JSONResponse({})

    @requires_session
    async def revoke(request: Request) -> JSONResponse:
        await request.state.session.revoke()
        return JSONResponse({})

    routes = [Route("/signin", signin, methods=["POST"]), Route("/revoke", revoke, methods=["POST"])]
    return SessionMiddleware(Starlette(routes=routes), manager=manager)


def _fastapi(manager: SessionManager) -> Any:
    api = FastAPI()

    @api.post("/signin")
    async def signin(request: Request) -> dict[str, str]:
        await create_new_session(request, "alice")
        return {}

    @api.post("/revoke")
    async def revoke(session: SessionDep) -> dict[str, str]:
        await session.revoke()
        return {}

    return SessionMiddleware(api, manager=manager)


def _raw(manager: SessionManager) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/signin":
            await create_new_session(scope, "alice")
        else:
            session = await get_session(scope, session_required=True)
            assert session is not None
            await session.revoke()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return SessionMiddleware(app, manager=manager)


@pytest.mark.parametrize("build", [_starlette, _fastapi, _raw], ids=["starlette", "fastapi", "raw-asgi"])
def test_hooks_see_the_request_in_each_framework(build: Any) -> None:
    recorder = Recorder()
    manager = SessionManager(MemoryStore(), clock=FakeClock(start=time.time()), hooks=recorder.hooks())
    with https_client(build(manager)) as client:
        client.post("/signin")
        client.post("/auth/session/refresh", headers={"rid": "session"})
        client.post("/revoke")
    assert [(e.kind, e.reason, e.scope["path"] if e.scope else None) for e in recorder.events] == [
        ("created", None, "/signin"),
        ("refreshed", None, "/auth/session/refresh"),
        ("revoked", "revoke", "/revoke"),
    ]


async def test_hooks_see_the_request_in_quart() -> None:
    recorder = Recorder()
    manager = SessionManager(MemoryStore(), clock=FakeClock(start=time.time()), hooks=recorder.hooks())
    app = Quart(__name__)
    quart_session.install(app, manager)

    @app.post("/signin")
    async def signin() -> dict[str, str]:
        await quart_session.create_new_session("alice")
        return {}

    @app.post("/revoke")
    @quart_session.session_required
    async def revoke() -> dict[str, str]:
        await (await quart_session.get_session(True)).revoke()
        return {}

    async with app.test_app():
        client = app.test_client()
        await client.post("/signin")
        await client.post("/revoke")
    assert [(e.kind, e.reason, e.scope["path"] if e.scope else None) for e in recorder.events] == [
        ("created", None, "/signin"),
        ("revoked", "revoke", "/revoke"),
    ]
