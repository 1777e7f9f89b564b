"""End to end on real uvicorn servers: the scheduled cleanup in their lifespans, and "remember me" cookies in a jar.

Two servers (each with its own manager, as two processes would have) share one SQLite file: their lifespans start
the schedule, and the store's lease lets exactly one of them clean up. The cookie jar of a real client shows the
"Keep me signed in" box unticked as session cookies (no expiry) at sign-in and after a refresh.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, _cleanup
from asgi_session.demo import create_app
from asgi_session.stores import SQLiteStore
from asgi_session.testing import FakeClock
from tests._servers import serve_in_thread

REFRESH = "/auth/session/refresh"
DAY = 86400.0


def test_two_servers_on_one_store_clean_up_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cleanup, "_TICK", 0.01)
    path = tmp_path / "sessions.db"
    config = SessionConfig(refresh_token_validity=timedelta(days=1), cleanup_interval=600)
    clock = FakeClock(start=float(int(time.time())))

    async def populate() -> None:
        async with SessionManager(store=SQLiteStore(path), config=config, clock=clock) as manager:
            for user in ("alice", "bob", "carol"):
                await manager.create_new_session_without_request_response(user)

    anyio.run(populate)
    clock.advance(DAY + 1)  # every session has expired
    apps = [
        SessionMiddleware(Starlette(), manager=SessionManager(SQLiteStore(path), config, clock=clock)) for _ in "ab"
    ]
    schedules = [app._cleanup for app in apps]
    assert None not in schedules
    with serve_in_thread(apps[0]), serve_in_thread(apps[1]):
        assert all(schedule is not None and schedule.running for schedule in schedules)
        clock.advance(61)  # the first run is due a minute after startup, on both servers
        deadline = time.monotonic() + 10
        while sum(s.runs for s in schedules if s) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # both schedules have looked at the clock many times since: the loser skipped
        assert sorted(s.runs for s in schedules if s) == [0, 1]
        assert sum(s.deleted for s in schedules if s) == 3
    assert not any(schedule is not None and schedule.running for schedule in schedules)


@pytest.mark.parametrize("remember", [True, False])
def test_keep_me_signed_in_in_a_real_cookie_jar(tmp_path: Path, remember: bool) -> None:
    config = SessionConfig(cookie_secure=False)  # http.cookiejar sends no Secure cookie over plain http
    app = create_app(SessionManager(store=SQLiteStore(tmp_path / "sessions.db"), config=config))
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.post("/api/signin", json={"user": "alice", "remember": remember}).status_code == 200
        for _ in range(2):  # at sign-in, then after a refresh
            cookies = [cookie for cookie in client.cookies.jar if cookie.name in ("sAccessToken", "sRefreshToken")]
            assert len(cookies) == 2
            for cookie in cookies:
                assert (cookie.expires is not None) is remember
                assert cookie.discard is not remember  # a session cookie: dropped when the browser closes
            assert client.get("/api/protected").status_code == 200
            assert client.post(REFRESH, headers={"rid": "session"}).status_code == 200
