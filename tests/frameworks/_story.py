"""One end-to-end story for every framework, through a real server and a real cookie jar.

Sign-in, a protected call, an expired access token answered 401 ``try refresh token``, the refresh and the retry,
a store outage answered 503 (never 500, never a logout), sign-out clearing the cookies, and a missing session
answered 401 (never 500). The app must serve ``POST /signin`` (``{"user": ...}``), a protected ``GET /me``
answering ``{"user": ...}``, and ``GET /account`` that checks the store; sign-out is the middleware's own.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore

from . import TRY_REFRESH, UNAUTHORISED

REFRESH = "/auth/session/refresh"
SESSION_COOKIES = ("sAccessToken", "sRefreshToken")


def session_cookies(client: httpx.Client) -> list[str]:
    return sorted(cookie.name for cookie in client.cookies.jar if cookie.name in SESSION_COOKIES)


def real_server_story(
    base_url: str, clock: FakeClock, store: TrackingStore, *, me: str = "/me", protocol_401: bool = True
) -> None:
    """Drive the story against ``base_url``; the server's manager uses ``clock`` and ``store``.

    ``protocol_401=False``: the app answers a missing session with a 401 of its own (any body).
    """
    with httpx.Client(base_url=base_url, timeout=10) as client:
        missing = client.get(me)
        assert missing.status_code == 401
        assert missing.json() == UNAUTHORISED if protocol_401 else "set-cookie" not in missing.headers

        signed_in = client.post("/signin", json={"user": "alice"})
        assert signed_in.status_code == 200, signed_in.text
        assert session_cookies(client) == ["sAccessToken", "sRefreshToken"]
        assert client.get(me).json()["user"] == "alice"

        clock.advance(timedelta(hours=1, seconds=1))
        expired = client.get(me)
        assert (expired.status_code, expired.json()) == (401, TRY_REFRESH)
        assert "set-cookie" not in expired.headers  # nothing cleared: the client refreshes
        refreshed = client.post(REFRESH, headers={"rid": "session"})
        assert refreshed.status_code == 200
        assert refreshed.headers["front-token"] not in ("", "remove")
        retried = client.get(me)
        assert (retried.status_code, retried.json()["user"]) == (200, "alice")

        store.fail_get = True
        try:
            outage = client.get("/account")
        finally:
            store.fail_get = False
        assert outage.status_code == 503, outage.text
        assert outage.json() == {"message": "session store unavailable"}
        assert "set-cookie" not in outage.headers  # never a logout
        assert session_cookies(client) == ["sAccessToken", "sRefreshToken"]
        assert client.get("/account").status_code == 200

        signed_out = client.post("/auth/signout", headers={"rid": "session"})
        assert (signed_out.status_code, signed_out.json()) == (200, {"status": "OK"})
        assert signed_out.headers["front-token"] == "remove"
        assert session_cookies(client) == []
        after = client.get(me)
        assert after.status_code == 401
        assert after.json() == UNAUTHORISED if protocol_401 else "set-cookie" not in after.headers
