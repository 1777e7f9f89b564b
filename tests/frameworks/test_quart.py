"""asgi_session.frameworks.quart through Quart's own test client: install, get_session, session_required."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from quart import Blueprint, Quart, websocket
from quart.typing import TestClientProtocol as Client

from asgi_session import ConfigurationError, SessionManager, SessionMiddleware, UnauthorisedError
from asgi_session.frameworks.quart import create_new_session, get_session, install, session_required
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore

from . import CLEARING, TRY_REFRESH, TWO_HOURS, UNAUTHORISED

pytestmark = pytest.mark.anyio

PROTECTED = ["/me", "/account", "/plain", "/sync", "/admin/stats"]


def build(*, testing: bool = False, installed: bool = True) -> tuple[Quart, SessionManager, FakeClock]:
    clock = FakeClock(start=time.time())  # the client's cookie jar drops cookies that expired in real time
    manager = SessionManager(TrackingStore(), clock=clock)
    app = Quart(__name__)
    app.testing = testing  # testing mode makes Quart show tracebacks instead of its 500: both must give the 401s
    if installed:
        install(app, manager)
    else:
        app.asgi_app = SessionMiddleware(app.asgi_app, manager=manager)  # type: ignore[method-assign,assignment,arg-type]

    @app.post("/signin")
    async def signin() -> dict[str, str]:
        body = await _json()
        session = await create_new_session(body["user"], access_token_payload={"role": "reader"})
        return {"handle": session.handle}

    @app.get("/me")
    @session_required
    async def me() -> dict[str, str]:
        session = await get_session(session_required=True)
        return {"user": session.user_id}

    @app.get("/account")
    @session_required(check_database=True)
    async def account() -> dict[str, str]:
        session = await get_session(session_required=True)
        return {"user": session.user_id}

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        session = await get_session(True)
        return {"user": session.user_id}

    @app.get("/sync")
    @session_required
    def sync() -> dict[str, str]:  # Quart runs sync views in its executor
        return {"kind": "sync", "user": "alice"}

    @app.get("/optional")
    @session_required(session_required=False)
    async def optional() -> dict[str, str | None]:
        session = await get_session()
        return {"user": None if session is None else session.user_id}

    @app.websocket("/feed")
    async def feed() -> None:
        session = await get_session(session_required=True)  # before accept: a refusal closes the handshake
        await websocket.accept()
        await websocket.send_json({"user": session.user_id})

    @app.websocket("/feed-checked")
    async def feed_checked() -> None:
        await get_session(session_required=True, check_database=True)
        await websocket.accept()  # pragma: no cover - the test makes the store fail

    admin = Blueprint("admin", __name__, url_prefix="/admin")

    @admin.before_request
    async def sessions_only() -> None:
        await get_session(session_required=True, check_database=True)

    @admin.get("/stats")
    async def stats() -> dict[str, str]:
        session = await get_session(session_required=True)
        return {"user": session.user_id}

    app.register_blueprint(admin)

    @app.post("/signout")
    @session_required
    async def signout() -> dict[str, str]:
        session = await get_session(session_required=True)
        await session.revoke()
        return {"status": "OK"}

    return app, manager, clock


async def _json() -> Any:
    from quart import request

    return await request.get_json()


@pytest.fixture(params=[False, True], ids=["production", "testing"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Quart, SessionManager, FakeClock]]:
    app, manager, clock = build(testing=request.param)
    async with app.test_app():  # runs the lifespan: the middleware opens and closes the store
        yield app, manager, clock


@pytest.fixture
def client(harness: tuple[Quart, SessionManager, FakeClock]) -> Client:
    return harness[0].test_client()


async def sign_in(client: Client, user: str = "alice") -> str:
    response = await client.post("/signin", json={"user": user})
    assert response.status_code == 200
    handle = (await response.get_json())["handle"]
    assert isinstance(handle, str)
    return handle


async def answer(client: Client, path: str) -> tuple[int, Any, list[str]]:
    response = await client.get(path)
    return response.status_code, await response.get_json(), sorted(response.headers.getlist("set-cookie"))


@pytest.mark.parametrize("path", PROTECTED)
async def test_protected_route_without_a_session_is_401_unauthorised(client: Client, path: str) -> None:
    assert await answer(client, path) == (401, UNAUTHORISED, [])


@pytest.mark.parametrize("path", PROTECTED)
async def test_protected_route_with_a_valid_session_is_200(client: Client, path: str) -> None:
    await sign_in(client)
    status, body, _ = await answer(client, path)
    assert status == 200
    assert body["user"] == "alice"


@pytest.mark.parametrize("path", PROTECTED)
async def test_protected_route_with_an_expired_token_asks_for_a_refresh(
    harness: tuple[Quart, SessionManager, FakeClock], client: Client, path: str
) -> None:
    await sign_in(client)
    harness[2].advance(TWO_HOURS)
    assert await answer(client, path) == (401, TRY_REFRESH, [])


async def test_sign_out_clears_the_cookies(client: Client) -> None:
    await sign_in(client)
    response = await client.post("/signout")
    assert response.status_code == 200
    assert sorted(response.headers.getlist("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"
    assert await answer(client, "/me") == (401, UNAUTHORISED, [])


async def test_check_database_refuses_a_revoked_sessions_token(
    harness: tuple[Quart, SessionManager, FakeClock], client: Client
) -> None:
    handle = await sign_in(client)
    assert await harness[1].revoke_session(handle) is True
    assert (await answer(client, "/me"))[0] == 200  # without the check, the token lives until its exp
    response = await client.get("/account")
    assert response.status_code == 401
    assert await response.get_json() == UNAUTHORISED
    assert sorted(response.headers.getlist("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"
    assert response.headers["content-type"] == "application/json"


async def test_optional_session_is_none_without_a_session(client: Client) -> None:
    assert (await answer(client, "/optional"))[:2] == (200, {"user": None})
    await sign_in(client)
    assert (await answer(client, "/optional"))[:2] == (200, {"user": "alice"})


async def test_a_websocket_with_a_session_is_accepted(client: Client) -> None:
    # The refused handshake is checked at the ASGI level below (test clients of different Quart releases
    # surface a close-before-accept differently).
    await sign_in(client)
    async with client.websocket("/feed") as connection:
        assert await connection.receive_json() == {"user": "alice"}


def websocket_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "wss",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 443),
        "subprotocols": [],
        "extensions": {},
    }


async def handshake(app: Quart, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> list[Any]:
    """Raw ASGI, to see the close code."""
    sent: list[Any] = []
    incoming = iter([{"type": "websocket.connect"}])

    async def receive() -> dict[str, Any]:
        return next(incoming, {"type": "websocket.disconnect", "code": 1008})

    async def send(message: Any) -> None:
        sent.append(message)

    await app(websocket_scope(path, headers or []), receive, send)  # type: ignore[arg-type]
    return sent


async def test_a_refused_websocket_handshake_is_closed_with_1008(
    harness: tuple[Quart, SessionManager, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    """The same 1008 that SessionMiddleware sends for other frameworks, and no error logged."""
    assert await handshake(harness[0], "/feed") == [{"type": "websocket.close", "code": 1008}]
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


async def test_a_store_failure_during_a_websocket_handshake_is_closed_with_1011(
    harness: tuple[Quart, SessionManager, FakeClock], client: Client
) -> None:
    await sign_in(client)
    cookies = [(b"cookie", f"{cookie.name}={cookie.value}".encode()) for cookie in client.cookie_jar or []]
    harness[1].store.fail_get = True  # type: ignore[attr-defined]
    assert await handshake(harness[0], "/feed-checked", cookies) == [{"type": "websocket.close", "code": 1011}]


async def test_the_lifespan_opens_and_closes_the_store() -> None:
    app, manager, _ = build()
    async with app.test_app() as test_app:
        assert manager.store.events == ["open"]  # type: ignore[attr-defined]
        await sign_in(test_app.test_client())
    assert manager.store.events == ["open", "close"]  # type: ignore[attr-defined]


async def test_without_the_error_handler_quart_answers_500() -> None:
    """Why install() registers an error handler: Quart makes its own 500 before the middleware sees the error."""
    app, _, _ = build(installed=False)
    status, _, _ = await answer(app.test_client(), "/me")
    assert status == 500


async def test_install_twice_is_refused() -> None:
    app, manager, _ = build()
    with pytest.raises(ConfigurationError, match="already installed"):
        install(app, manager)


async def test_outside_a_request_get_session_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="inside a view"):
        await get_session()


async def test_the_error_handler_keeps_developer_errors_as_500s() -> None:
    app, _, _ = build()

    @app.get("/broken")
    async def broken() -> dict[str, str]:
        raise ConfigurationError("a developer error")

    @app.get("/raises")
    async def raises() -> dict[str, str]:
        raise UnauthorisedError("refused by the view", clear_tokens=False)

    client = app.test_client()
    assert (await client.get("/broken")).status_code == 500
    assert await answer(client, "/raises") == (401, UNAUTHORISED, [])


def test_the_decorated_view_keeps_its_name() -> None:
    @session_required
    async def view() -> str:  # pragma: no cover
        return ""

    assert view.__name__ == "view"


def test_missing_quart_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "quart", None)  # makes `import quart` raise ImportError
    monkeypatch.delitem(sys.modules, "asgi_session.frameworks.quart")
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[quart\]'"):
        importlib.import_module("asgi_session.frameworks.quart")


# -- "Remember me": create_new_session(remember=..., idle_timeout=...) -----------------------------------------------


async def test_create_new_session_takes_remember_and_idle_timeout() -> None:
    clock = FakeClock(start=time.time())
    manager = SessionManager(TrackingStore(), clock=clock)
    app = Quart(__name__)
    install(app, manager)

    @app.post("/signin")
    async def signin() -> dict[str, Any]:
        body = await _json()
        hours = body.get("idle_hours")
        session = await create_new_session(
            body["user"], remember=body["remember"], idle_timeout=None if hours is None else timedelta(hours=hours)
        )
        return {"handle": session.handle, "remember": session.remember}

    async with app.test_app():
        client = app.test_client()
        kept = await client.post("/signin", json={"user": "alice", "remember": True})
        assert (await kept.get_json())["remember"] is True
        assert all("Expires=" in c for c in kept.headers.getlist("set-cookie"))  # persistent cookies

        brief = await client.post("/signin", json={"user": "alice", "remember": False, "idle_hours": 8})
        body = await brief.get_json()
        assert body["remember"] is False
        cookies = brief.headers.getlist("set-cookie")
        assert sorted(c.split("=", 1)[0] for c in cookies) == ["sAccessToken", "sRefreshToken"]
        assert not any("Expires=" in c or "Max-Age=" in c for c in cookies)  # browser-session cookies
        record = await manager.store.get(body["handle"])
        assert record is not None
        assert (record.remember, record.idle_timeout) == (False, 8 * 3600)
        assert record.expires_at == pytest.approx(record.created_at + 8 * 3600)

        too_short = await client.post("/signin", json={"user": "alice", "remember": True, "idle_hours": 0.5})
        assert too_short.status_code == 500  # ValueError: shorter than an access token's life
        assert await manager.get_all_session_handles_for_user("alice") == [body["handle"]]  # nothing revoked/stored
