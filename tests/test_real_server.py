"""End to end: a real uvicorn server on 127.0.0.1, a real client with a real cookie jar.

ASGITransport skips what only a server shows: the lifespan opening and closing the store, real ``Set-Cookie``
parsing by ``http.cookiejar`` (Path scoping, deletion by an expired cookie), and the ``asgi-session demo`` command.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp

from asgi_session import SessionConfig, SessionManager
from asgi_session.demo import create_app
from asgi_session.stores import SQLiteStore
from asgi_session.testing import FakeClock
from tests._servers import ServerProcess, serve_in_thread, start_server, stop_servers

REFRESH = "/auth/session/refresh"
SESSION_COOKIES = ("sAccessToken", "sRefreshToken")


def jar(client: httpx.Client, name: str) -> list[Any]:
    return [cookie for cookie in client.cookies.jar if cookie.name == name]


def session_cookies(client: httpx.Client) -> list[Any]:
    return [cookie for cookie in client.cookies.jar if cookie.name in SESSION_COOKIES]


def demo_app(tmp_path: Path, clock: FakeClock | None = None) -> ASGIApp:
    # cookie_secure=False: http.cookiejar does not send Secure cookies over plain http.
    config = SessionConfig(cookie_secure=False)
    manager = SessionManager(store=SQLiteStore(tmp_path / "sessions.db"), config=config, clock=clock)
    return create_app(manager)


def test_cookie_lifecycle_against_a_real_server(tmp_path: Path) -> None:
    with serve_in_thread(demo_app(tmp_path)) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        # With no local state the SuperTokens client probes refresh with no cookies: a clean 401.
        probe = client.post(REFRESH, headers={"rid": "session"})
        assert probe.status_code == 401
        assert probe.json() == {"message": "unauthorised"}
        assert probe.headers["front-token"] == "remove"

        signed_in = client.post("/api/signin", json={"user": "alice"})
        assert signed_in.status_code == 200
        assert signed_in.json()["user"] == "alice"
        (access,) = jar(client, "sAccessToken")
        (refresh,) = jar(client, "sRefreshToken")
        assert (access.path, refresh.path) == ("/", REFRESH)
        assert not access.secure
        assert access.has_nonstandard_attr("HttpOnly")
        assert refresh.has_nonstandard_attr("HttpOnly")

        protected = client.get("/api/protected")
        assert protected.status_code == 200
        assert protected.json()["user"] == "alice"

        # The jar sends sAccessToken (Path=/) and sRefreshToken (Path=/auth/session/refresh) here, as browsers do.
        refreshed = client.post(REFRESH, headers={"rid": "session"})
        assert refreshed.status_code == 200
        assert refreshed.json() == {}
        assert refreshed.headers["front-token"] not in ("", "remove")
        assert refreshed.headers["cache-control"] == "no-store"
        accesses, refreshes = jar(client, "sAccessToken"), jar(client, "sRefreshToken")
        assert len(accesses) == 1
        assert len(refreshes) == 1
        assert accesses[0].value != access.value
        assert refreshes[0].value != refresh.value
        assert refreshes[0].path == REFRESH
        assert client.get("/api/protected").status_code == 200

        signed_out = client.post("/auth/signout", headers={"rid": "session"})
        assert signed_out.status_code == 200
        assert signed_out.json() == {"status": "OK"}
        assert signed_out.headers["front-token"] == "remove"
        assert session_cookies(client) == []

        after = client.get("/api/protected")
        assert after.status_code == 401
        assert after.json() == {"message": "unauthorised"}
        # The access token from before the sign-out has not expired, but its session is gone.
        replay = httpx.get(base_url + "/api/protected", headers={"cookie": f"sAccessToken={accesses[0].value}"})
        assert replay.status_code == 401


def test_expired_access_token_then_refresh_then_retry(tmp_path: Path) -> None:
    # What the SuperTokens client does on a 401: refresh once, retry the original request.
    clock = FakeClock(start=float(int(time.time())))  # the jar compares cookie expiry with the real time
    with serve_in_thread(demo_app(tmp_path, clock)) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.post("/api/signin", json={"user": "alice"}).status_code == 200
        clock.advance(timedelta(hours=1, seconds=1))
        expired = client.get("/api/protected")
        assert expired.status_code == 401
        assert expired.json() == {"message": "try refresh token"}
        assert len(jar(client, "sAccessToken")) == 1  # nothing is cleared: a refresh follows
        assert client.post(REFRESH, headers={"rid": "session"}).status_code == 200
        assert client.get("/api/protected").status_code == 200


def test_sign_out_everywhere_against_a_real_server(tmp_path: Path) -> None:
    with (
        serve_in_thread(demo_app(tmp_path)) as base_url,
        httpx.Client(base_url=base_url, timeout=10) as laptop,
        httpx.Client(base_url=base_url, timeout=10) as phone,
    ):
        for client in (laptop, phone):
            assert client.post("/api/signin", json={"user": "alice"}).status_code == 200
        assert len(laptop.get("/api/session").json()["sessions"]) == 2
        everywhere = laptop.post("/api/signout-everywhere", headers={"rid": "anti-csrf"})
        assert everywhere.status_code == 200
        assert everywhere.json() == {"status": "OK", "revoked": 2}
        assert session_cookies(laptop) == []
        assert phone.get("/api/protected").status_code == 401
        assert phone.post(REFRESH, headers={"rid": "session"}).status_code == 401
        assert session_cookies(phone) == []


def test_demo_page_served_by_uvicorn(tmp_path: Path) -> None:
    with serve_in_thread(demo_app(tmp_path)) as base_url:
        response = httpx.get(base_url + "/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<form id="signin-form" method="post" action="/api/signin">' in response.text
    assert "content-security-policy" in response.headers


def test_the_demo_command_serves_the_demo(tmp_path: Path) -> None:
    env = {"ASGI_SESSION_STORE_URL": None}  # the demo's default store: a file in the current directory
    started: list[ServerProcess] = []
    try:
        demo = start_server(
            "demo", ["-m", "asgi_session", "demo"], folder=tmp_path, cwd=tmp_path, env=env, started=started
        )
        with httpx.Client(base_url=demo.url, timeout=10) as client:
            assert "signin-form" in client.get("/").text
            assert client.post("/api/signin", json={"user": "alice"}).status_code == 200
            assert client.post(REFRESH, headers={"rid": "session"}).status_code == 200
            assert client.post("/auth/signout", headers={"rid": "session"}).status_code == 200
            assert session_cookies(client) == []
    finally:
        stop_servers(started, signal.SIGINT)
    assert demo.process.returncode == 0, demo.stderr.read_text()
    assert f"open {demo.url}/" in demo.stdout.read_text()
    assert (tmp_path / "asgi_session_demo.db").is_file()
