"""The demo app (through httpx.ASGITransport) and the ``asgi-session`` command line."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from asgi_session import SessionConfig, SessionManager, cli
from asgi_session.demo import DEMO_STORE_URL, create_app, demo_manager, demo_store_url
from asgi_session.stores import MemoryStore, SQLiteStore
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio

REFRESH = "/auth/session/refresh"
SESSION_COOKIES = ("sAccessToken", "sRefreshToken")


@pytest.fixture
async def manager() -> AsyncIterator[SessionManager]:
    config = SessionConfig(cookie_secure=False)
    # The cookie jar compares cookie expiry with the real time: start the fake clock now.
    clock = FakeClock(start=float(int(time.time())))
    async with SessionManager(store=MemoryStore(), config=config, clock=clock) as manager:
        yield manager


@pytest.fixture
def app(manager: SessionManager) -> Starlette:
    return create_app(manager)


def client_for(app: Starlette, user_agent: str = "test-browser") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"user-agent": user_agent})


def jar(client: httpx.AsyncClient | httpx.Client, name: str) -> list[Any]:
    return [cookie for cookie in client.cookies.jar if cookie.name == name]


async def sign_in(client: httpx.AsyncClient, user: str = "alice") -> dict[str, Any]:
    response = await client.post("/api/signin", json={"user": user})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the page ------------------------------------------------------------------------------------------------


async def test_page_is_served_with_a_policy_that_allows_only_its_own_script(app: Starlette) -> None:
    async with client_for(app) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert '<form id="signin-form" method="post" action="/api/signin">' in page
    assert 'data-auth-base="/auth"' in page
    assert "<script src" not in page
    assert "http://" not in page
    assert "https://" not in page
    policy = response.headers["content-security-policy"]
    (script,) = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_page_follows_a_custom_api_base_path() -> None:
    config = SessionConfig(cookie_secure=False, api_base_path="/session-api")
    manager = SessionManager(store=MemoryStore(), config=config)
    async with manager, client_for(create_app(manager)) as client:
        page = (await client.get("/")).text
        await sign_in(client)
        assert (await client.post("/session-api/session/refresh", headers={"rid": "session"})).status_code == 200
    assert 'data-auth-base="/session-api"' in page


# -- sign in ---------------------------------------------------------------------------------------------------


async def test_sign_in_with_json_sets_the_session_cookies_and_describes_the_session(
    app: Starlette, manager: SessionManager
) -> None:
    async with client_for(app) as client:
        response = await client.post("/api/signin", json={"user": "  alice  "})
        assert response.status_code == 200
        body = response.json()
        assert body["user"] == "alice"
        assert body["tenant"] == "public"
        assert "front-token" in response.headers
        cookies = response.headers.get_list("set-cookie")
        assert len(cookies) == 2
        assert all("HttpOnly" in c and "SameSite=Lax" in c and "Secure" not in c for c in cookies)
        assert [c.path for c in jar(client, "sRefreshToken")] == [REFRESH]
        assert [c.path for c in jar(client, "sAccessToken")] == ["/"]
    (info,) = await manager.get_sessions_for_user("alice")
    assert body["handle"] == info.session_handle
    assert body["sessions"] == [
        {
            "handle": info.session_handle,
            "tenant": "public",
            "current": True,
            "created": body["sessions"][0]["created"],
            "last_seen": body["sessions"][0]["last_seen"],
            "expires": body["sessions"][0]["expires"],
            "user_agent": "test-browser",
            "ip": "127.0.0.1",
        }
    ]
    created = datetime.fromisoformat(body["sessions"][0]["created"])
    expires = datetime.fromisoformat(body["sessions"][0]["expires"])
    assert created.timestamp() == manager.clock.now()
    assert expires - created == timedelta(days=100)
    access_expiry = datetime.fromisoformat(body["access_token_expires"])
    assert access_expiry - created == timedelta(hours=1)


async def test_sign_in_with_a_form_redirects_to_the_page(app: Starlette, manager: SessionManager) -> None:
    async with client_for(app) as client:
        response = await client.post("/api/signin", data={"user": "bob"})
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        assert len(jar(client, "sAccessToken")) == 1
        assert (await client.get("/api/session")).json()["user"] == "bob"
    assert len(await manager.get_sessions_for_user("bob")) == 1


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"user": ""}', "application/json", 400),
        (b'{"user": "   "}', "application/json", 400),
        (b"{}", "application/json", 400),
        (b'{"user": 7}', "application/json", 400),
        (b'["alice"]', "application/json", 400),
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"user=", "application/x-www-form-urlencoded", 400),
        (b"name=alice", "application/x-www-form-urlencoded", 400),
        (b"user=%FF", "application/x-www-form-urlencoded", 400),
        (('{"user": "' + "a" * 65 + '"}').encode(), "application/json", 400),
        (b'{"user": "al\\nice"}', "application/json", 400),
        (b"alice", "text/plain", 415),
    ],
)
async def test_sign_in_refuses_a_missing_or_bad_name(
    app: Starlette, manager: SessionManager, content: bytes, content_type: str, status: int
) -> None:
    async with client_for(app) as client:
        response = await client.post("/api/signin", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert "message" in response.json()
    assert "set-cookie" not in response.headers
    assert await manager.get_sessions_for_user("alice") == []


async def test_sign_in_again_replaces_the_session(app: Starlette, manager: SessionManager) -> None:
    async with client_for(app) as client:
        first = await sign_in(client)
        second = await sign_in(client)
    assert first["handle"] != second["handle"]
    assert await manager.get_all_session_handles_for_user("alice") == [second["handle"]]


# -- session info and the protected route -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/session"), ("GET", "/api/protected")])
async def test_session_routes_need_a_session(app: Starlette, method: str, path: str) -> None:
    async with client_for(app) as client:
        response = await client.request(method, path)
    assert response.status_code == 401
    assert response.json() == {"message": "unauthorised"}


async def test_session_info_lists_every_session_of_the_user(app: Starlette) -> None:
    async with client_for(app, "laptop") as laptop, client_for(app, "phone") as phone, client_for(app) as bob:
        on_laptop = await sign_in(laptop)
        on_phone = await sign_in(phone)
        await sign_in(bob, "bob")
        response = await laptop.get("/api/session")
    assert response.status_code == 200
    body = response.json()
    assert body["handle"] == on_laptop["handle"]
    listed = {s["handle"]: (s["current"], s["user_agent"]) for s in body["sessions"]}
    assert listed == {on_laptop["handle"]: (True, "laptop"), on_phone["handle"]: (False, "phone")}


async def test_protected_route_greets_the_user(app: Starlette) -> None:
    async with client_for(app) as client:
        session = await sign_in(client)
        response = await client.get("/api/protected")
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == "alice"
    assert body["handle"] == session["handle"]
    assert "alice" in body["message"]


async def test_an_expired_access_token_is_refreshed_and_the_call_retried(
    app: Starlette, manager: SessionManager
) -> None:
    clock = manager.clock
    assert isinstance(clock, FakeClock)
    async with client_for(app) as client:
        await sign_in(client)
        clock.advance(timedelta(hours=2))
        expired = await client.get("/api/protected")
        assert expired.status_code == 401
        assert expired.json() == {"message": "try refresh token"}
        assert len(jar(client, "sAccessToken")) == 1  # nothing cleared: the client refreshes
        refreshed = await client.post(REFRESH, headers={"rid": "session"})
        assert refreshed.status_code == 200
        assert (await client.get("/api/protected")).status_code == 200


# -- refresh, sign out, sign out everywhere --------------------------------------------------------------------------


async def test_refresh_replaces_both_cookies(app: Starlette) -> None:
    async with client_for(app) as client:
        await sign_in(client)
        before = {name: jar(client, name)[0].value for name in SESSION_COOKIES}
        response = await client.post(REFRESH, headers={"rid": "session"})
        assert response.status_code == 200
        assert response.json() == {}
        assert response.headers["front-token"] not in ("", "remove")
        after = {name: [c.value for c in jar(client, name)] for name in SESSION_COOKIES}
        assert all(len(values) == 1 for values in after.values())
        assert all(after[name][0] != before[name] for name in SESSION_COOKIES)
        assert (await client.get("/api/protected")).status_code == 200


async def test_sign_out_revokes_the_session_and_clears_the_cookies(app: Starlette, manager: SessionManager) -> None:
    async with client_for(app) as client:
        await sign_in(client)
        stale = jar(client, "sAccessToken")[0].value
        response = await client.post("/auth/signout", headers={"rid": "session"})
        assert response.status_code == 200
        assert response.json() == {"status": "OK"}
        assert response.headers["front-token"] == "remove"
        assert not [c for c in client.cookies.jar if c.name in SESSION_COOKIES]
        assert (await client.get("/api/session")).status_code == 401
    assert await manager.get_sessions_for_user("alice") == []
    # The demo checks the store, so the revoked session's still-unexpired access token is refused too.
    async with client_for(app) as replay:
        response = await replay.get("/api/protected", headers={"cookie": f"sAccessToken={stale}"})
    assert response.status_code == 401
    assert response.json() == {"message": "unauthorised"}


async def test_sign_out_everywhere_revokes_every_session_of_the_user(app: Starlette, manager: SessionManager) -> None:
    async with client_for(app, "laptop") as laptop, client_for(app, "phone") as phone, client_for(app) as bob:
        await sign_in(laptop)
        await sign_in(phone)
        bobs = await sign_in(bob, "bob")
        response = await laptop.post("/api/signout-everywhere", headers={"rid": "anti-csrf"})
        assert response.status_code == 200
        assert response.json() == {"status": "OK", "revoked": 2}
        assert response.headers["front-token"] == "remove"
        assert not [c for c in laptop.cookies.jar if c.name in SESSION_COOKIES]

        # The phone still holds its cookies, but the session behind them is gone.
        assert len(jar(phone, "sAccessToken")) == 1
        assert (await phone.get("/api/session")).status_code == 401
        refresh = await phone.post(REFRESH, headers={"rid": "session"})
        assert refresh.status_code == 401
        assert refresh.json() == {"message": "unauthorised"}
        assert not [c for c in phone.cookies.jar if c.name in SESSION_COOKIES]

        assert (await bob.get("/api/protected")).status_code == 200
    assert await manager.get_sessions_for_user("alice") == []
    assert await manager.get_all_session_handles_for_user("bob") == [bobs["handle"]]


async def test_sign_out_everywhere_needs_a_session(app: Starlette) -> None:
    async with client_for(app) as client:
        response = await client.post("/api/signout-everywhere", headers={"rid": "anti-csrf"})
    assert response.status_code == 401


async def test_state_changing_routes_refuse_get(app: Starlette) -> None:
    async with client_for(app) as client:
        await sign_in(client)
        assert (await client.get("/api/signout-everywhere")).status_code == 405
        assert (await client.get("/api/signin")).status_code == 405
        assert (await client.get("/api/session")).status_code == 200


# -- the default manager -------------------------------------------------------------------------------------------


def test_demo_store_defaults_to_a_file_in_the_current_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASGI_SESSION_STORE_URL", raising=False)
    assert demo_store_url() == DEMO_STORE_URL == "sqlite:///asgi_session_demo.db"
    monkeypatch.setenv("ASGI_SESSION_STORE_URL", "memory://")
    assert demo_store_url() == "memory://"
    assert demo_store_url("sqlite:///other.db") == "sqlite:///other.db"
    assert isinstance(demo_manager().store, MemoryStore)


def test_demo_manager_sends_cookies_without_secure_for_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASGI_SESSION_STORE_URL", raising=False)
    manager = demo_manager()
    assert manager.config.cookie_secure is False
    assert isinstance(manager.store, SQLiteStore)
    assert repr(manager.store) == "SQLiteStore('asgi_session_demo.db')"


async def test_create_app_without_a_manager_uses_sqlite_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASGI_SESSION_STORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    app = create_app()
    try:
        async with client_for(app) as client:
            await sign_in(client)
            assert (await client.get("/api/protected")).status_code == 200
    finally:
        await app.state.manager.close()
    assert (tmp_path / "asgi_session_demo.db").is_file()


# -- the command line ----------------------------------------------------------------------------------------------


def test_help_lists_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: asgi-session")
    assert "demo" in out


def test_demo_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--store"):
        assert option in out


@pytest.mark.parametrize(
    "argv", [[], ["nonsense"], ["demo", "--port", "http"], ["demo", "--port", "70000"], ["demo", "--bogus"]]
)
def test_bad_usage_exits_with_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage: asgi-session" in capsys.readouterr().err


class FakeRun:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, app: Any, **kwargs: Any) -> None:
        self.calls.append((app, kwargs))


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeRun:
    import uvicorn

    run = FakeRun()
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.delenv("ASGI_SESSION_STORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return run


def test_demo_runs_uvicorn_on_localhost_8000_by_default(fake_run: FakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo"]) == 0
    ((app, kwargs),) = fake_run.calls
    assert isinstance(app, Starlette)
    assert kwargs == {"host": "127.0.0.1", "port": 8000}
    assert repr(app.state.manager.store) == "SQLiteStore('asgi_session_demo.db')"
    captured = capsys.readouterr()
    assert "open http://127.0.0.1:8000/" in captured.out
    assert "sqlite:///asgi_session_demo.db" in captured.out
    assert captured.err == ""


def test_demo_passes_host_port_and_store(fake_run: FakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--host", "127.0.0.2", "--port", "9123", "--store", "memory://"]) == 0
    ((app, kwargs),) = fake_run.calls
    assert kwargs == {"host": "127.0.0.2", "port": 9123}
    assert isinstance(app.state.manager.store, MemoryStore)
    captured = capsys.readouterr()
    assert "open http://127.0.0.2:9123/" in captured.out
    assert captured.err == ""  # a loopback address: no warning


def test_demo_on_all_interfaces_prints_a_local_url_and_warns(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "--host", "0.0.0.0", "--port", "8001"]) == 0  # noqa: S104 - never bound: run is faked
    assert fake_run.calls[0][1] == {"host": "0.0.0.0", "port": 8001}  # noqa: S104
    captured = capsys.readouterr()
    assert "open http://127.0.0.1:8001/" in captured.out
    assert "warning" in captured.err


def test_demo_does_not_print_store_credentials(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("asgi_session.demo.demo_manager", lambda url: demo_manager("memory://"))
    assert cli.main(["demo", "--store", "redis://:hunter2@cache:6379/0"]) == 0
    out = capsys.readouterr().out
    assert "redis://..." in out
    assert "hunter2" not in out


def test_demo_refuses_a_bad_store_url(fake_run: FakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--store", "ftp://example.com/db"]) == 2
    assert fake_run.calls == []
    assert "unsupported store URL scheme" in capsys.readouterr().err


def test_demo_without_uvicorn_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` raise ImportError
    assert cli.main(["demo"]) == 2
    assert "pip install 'asgi-session[demo]'" in capsys.readouterr().err


def test_python_dash_m_asgi_session_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asgi_session", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: asgi-session")


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    from asgi_session import __version__

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"asgi-session {__version__}"
