"""The SuperTokens frontend SDK (supertokens-web-js, unchanged) against asgi-session in Chromium (issue 15, items 1-3).

Each step asserts what the page sees (the SDK's answers, the fetch results) and what the network shows (the calls in
order, their status and headers, the cookie jar).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from asgi_session import SessionConfig, SessionManager
from tests.browser._apps import PAYLOAD, Backend
from tests.browser._tab import REFRESH, SIGNOUT, TOKEN_COOKIES, Tab

PROTECTED = "/api/protected"
VALIDITY = timedelta(minutes=1)
PAST_EXPIRY = VALIDITY.total_seconds() + 1
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"

pytestmark = pytest.mark.browser


def user_of(result: dict[str, object]) -> object:
    assert result["status"] == 200, result
    return json.loads(str(result["body"]))["user"]


def events(tab: Tab) -> list[str]:
    """The SDK's ``onHandleEvent`` actions so far, in order (``window.sessionEvents`` of sdk_page.html)."""
    actions: list[str] = tab.js("() => [...window.sessionEvents]")
    return actions


def test_cookie_mode_session_life(serve: Callable[..., Backend], tab: Tab) -> None:
    backend = serve(SessionConfig(access_token_validity=VALIDITY))
    tab.open_sdk_page(backend.url)

    # Before sign-in: no session; the SDK, with no local state, asked the refresh endpoint, which said so.
    mark = tab.mark()
    assert tab.session_exists() is False
    (probe,) = tab.since(mark)
    assert probe.brief() == ("POST", REFRESH, 401)
    assert probe.response_headers["front-token"] == "remove"

    # Sign-in through the SDK's patched fetch: it announces the cookie mode and gets a front token back.
    mark = tab.mark()
    signed_in = tab.sign_in("alice")
    assert user_of(signed_in) == "alice"
    (signin,) = tab.since(mark)
    assert signin.brief() == ("POST", "/api/signin", 200)
    assert signin.request_headers["st-auth-mode"] == "cookie"
    assert signin.request_headers["rid"] == "anti-csrf"
    assert signin.response_headers["front-token"] not in ("", "remove")
    assert "st-access-token" not in signin.response_headers
    written = sorted(re.sub(r"=[^;]+;", "=...;", cookie, count=1) for cookie in signin.set_cookies())
    assert [re.sub(r"Expires=[^;]+;", "Expires=...;", cookie) for cookie in written] == [
        "sAccessToken=...; Path=/; Expires=...; HttpOnly; Secure; SameSite=Lax",
        f"sRefreshToken=...; Path={REFRESH}; Expires=...; HttpOnly; Secure; SameSite=Lax",
    ]
    handle = json.loads(signed_in["body"])["handle"]

    # The tokens are HttpOnly cookies with the protocol's paths; the SDK keeps only its own front token.
    cookies = tab.cookies()
    access, refresh = cookies["sAccessToken"], cookies["sRefreshToken"]
    assert (access["path"], refresh["path"]) == ("/", REFRESH)
    assert access["httpOnly"]
    assert refresh["httpOnly"]
    assert access["secure"]
    assert refresh["secure"]
    assert access["sameSite"] == refresh["sameSite"] == "Lax"
    assert not cookies["sFrontToken"]["httpOnly"]
    assert tab.js("() => document.cookie").count("sAccessToken") == 0  # the page cannot read the tokens

    # The session exists, without a request; its payload shows the custom claims.
    mark = tab.mark()
    assert tab.session_exists() is True
    payload = tab.payload()
    assert tab.since(mark) == []
    assert {key: payload[key] for key in PAYLOAD} == PAYLOAD
    assert (payload["sub"], payload["sessionHandle"], payload["tId"]) == ("alice", handle, "public")

    assert user_of(tab.call(PROTECTED)) == "alice"

    # The access token expires: the next protected call goes through exactly one refresh, and both tokens change.
    before = tab.token_cookies()
    seen = len(events(tab))
    backend.clock.advance(PAST_EXPIRY)
    mark = tab.mark()
    assert user_of(tab.call(PROTECTED)) == "alice"
    assert tab.calls(mark) == [("GET", PROTECTED, 401), ("POST", REFRESH, 200), ("GET", PROTECTED, 200)]
    _, refreshed, retried = tab.since(mark)
    # What the SDK told the app: the refresh's front token carries a new payload (exp, iat, refreshTokenHash1), then
    # the refresh itself; one of each for one refresh.
    refresh_events = ["ACCESS_TOKEN_PAYLOAD_UPDATED", "REFRESH_SESSION"]
    assert events(tab)[seen:] == refresh_events
    # The retried call is the first use of the refreshed access token: no new token (the rotation was committed at
    # refresh; a SuperTokens core would send another one here), so no further event, now or on the next call.
    assert "front-token" not in retried.response_headers
    assert retried.set_cookies() == []
    mark = tab.mark()
    assert json.loads(str(tab.call(PROTECTED)["body"]))["handle"] == handle  # the same session, new tokens
    (again,) = tab.since(mark)
    assert "front-token" not in again.response_headers
    assert events(tab)[seen:] == refresh_events
    assert refreshed.request_headers["rid"] == "session"
    assert refreshed.response_headers["front-token"] not in ("", "remove")
    after = tab.token_cookies()
    assert set(after) == set(TOKEN_COOKIES)
    assert all(after[name] != before[name] for name in TOKEN_COOKIES)
    assert tab.cookies()["sRefreshToken"]["path"] == REFRESH
    assert tab.payload()["exp"] > payload["exp"]

    # Sign-out: no session cookie is left, the SDK knows, and the next call is a plain 401 (nothing to refresh).
    mark = tab.mark()
    tab.sign_out()
    (signout,) = tab.since(mark)
    assert signout.brief() == ("POST", SIGNOUT, 200)
    assert signout.response_headers["front-token"] == "remove"
    assert sorted(signout.set_cookies()) == [
        f"sAccessToken=; Path=/; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
        f"sRefreshToken=; Path={REFRESH}; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    ]
    assert not {"sAccessToken", "sRefreshToken", "sFrontToken"} & set(tab.cookies())
    assert tab.session_exists() is False
    mark = tab.mark()
    assert tab.call(PROTECTED)["status"] == 401
    assert tab.calls(mark) == [("GET", PROTECTED, 401)]
    assert backend.offline(lambda manager: manager.get_all_session_handles_for_user("alice")) == []


def test_offline_revoke_all_ends_the_browser_session(serve: Callable[..., Backend], tab: Tab) -> None:
    backend = serve(SessionConfig(access_token_blacklisting=True))
    tab.open_sdk_page(backend.url)
    handle = json.loads(tab.sign_in("alice")["body"])["handle"]
    assert tab.session_exists() is True

    async def revoke(manager: SessionManager) -> list[str]:
        return await manager.revoke_all_sessions_for_user("alice")

    # A backend job, with no browser and no request, revokes every session of the user.
    assert backend.offline(revoke) == [handle]

    # The very next call is refused (blacklisting), with the tokens cleared: the SDK drops its session, no refresh.
    mark = tab.mark()
    assert tab.call(PROTECTED)["status"] == 401
    (refused,) = tab.since(mark)
    assert refused.brief() == ("GET", PROTECTED, 401)
    assert refused.response_headers["front-token"] == "remove"
    assert tab.session_exists() is False
    assert not {"sAccessToken", "sRefreshToken", "sFrontToken"} & set(tab.cookies())


def test_a_stolen_refresh_token_replayed_after_the_grace_window_ends_the_session(
    serve: Callable[..., Backend], tab: Tab
) -> None:
    config = SessionConfig(access_token_blacklisting=True)
    backend = serve(config)
    tab.open_sdk_page(backend.url)
    tab.sign_in("alice")
    stolen = tab.token_cookies()["sRefreshToken"]

    # The browser refreshes: its refresh token rotates; the stolen one is now a superseded parent.
    mark = tab.mark()
    assert tab.js("() => supertokensSession.attemptRefreshingSession()") is True
    assert tab.calls(mark) == [("POST", REFRESH, 200)]
    assert tab.token_cookies()["sRefreshToken"] != stolen

    # After the grace window, the thief replays it: theft detected, the session revoked.
    backend.clock.advance(config.refresh_token_grace_period.total_seconds() + 1)
    replay = httpx.post(
        backend.url + REFRESH, headers={"rid": "session", "cookie": f"sRefreshToken={stolen}"}, timeout=10
    )
    assert replay.status_code == 401
    assert replay.json() == {"message": "token theft detected"}

    # The browser's session has ended: its next call is refused and the SDK forgets the session.
    mark = tab.mark()
    assert tab.call(PROTECTED)["status"] == 401
    assert tab.calls(mark) == [("GET", PROTECTED, 401)]
    assert tab.session_exists() is False
    assert not {"sAccessToken", "sRefreshToken", "sFrontToken"} & set(tab.cookies())
    assert backend.offline(lambda manager: manager.get_all_session_handles_for_user("alice")) == []


def test_header_mode_session_life(serve: Callable[..., Backend], tab: Tab) -> None:
    backend = serve(SessionConfig(access_token_validity=VALIDITY))
    tab.open_sdk_page(backend.url, mode="header")
    assert tab.session_exists() is False

    mark = tab.mark()
    assert user_of(tab.sign_in("alice")) == "alice"
    (signin,) = tab.since(mark)
    assert signin.request_headers["st-auth-mode"] == "header"
    access, refresh = signin.response_headers["st-access-token"], signin.response_headers["st-refresh-token"]
    assert signin.response_headers["front-token"] not in ("", "remove")
    assert not set(TOKEN_COOKIES) & set(tab.cookies())  # no token cookie from the server

    assert tab.session_exists() is True
    assert {key: tab.payload()[key] for key in PAYLOAD} == PAYLOAD

    # The SDK sends the access token as a Bearer header.
    mark = tab.mark()
    assert user_of(tab.call(PROTECTED)) == "alice"
    (call,) = tab.since(mark)
    assert call.request_headers["authorization"] == f"Bearer {access}"

    # Expiry: one refresh with the refresh token as the Bearer header; both tokens change.
    seen = len(events(tab))
    backend.clock.advance(PAST_EXPIRY)
    mark = tab.mark()
    assert user_of(tab.call(PROTECTED)) == "alice"
    assert tab.calls(mark) == [("GET", PROTECTED, 401), ("POST", REFRESH, 200), ("GET", PROTECTED, 200)]
    _, refreshed, retried = tab.since(mark)
    assert refreshed.request_headers["authorization"] == f"Bearer {refresh}"
    new_access, new_refresh = (refreshed.response_headers[f"st-{name}-token"] for name in ("access", "refresh"))
    assert new_access != access
    assert new_refresh != refresh
    assert retried.request_headers["authorization"] == f"Bearer {new_access}"
    assert not set(TOKEN_COOKIES) & set(tab.cookies())
    # One refresh, one pair of events; the first use of the new access token brings no new token and no event.
    assert "st-access-token" not in retried.response_headers
    assert "front-token" not in retried.response_headers
    assert events(tab)[seen:] == ["ACCESS_TOKEN_PAYLOAD_UPDATED", "REFRESH_SESSION"]

    # Sign-out clears the headers' tokens too; the next call is a plain 401.
    mark = tab.mark()
    tab.sign_out()
    (signout,) = tab.since(mark)
    assert signout.brief() == ("POST", SIGNOUT, 200)
    assert signout.request_headers["authorization"] == f"Bearer {new_access}"
    assert signout.response_headers["front-token"] == "remove"
    assert signout.response_headers["st-access-token"] == ""
    assert tab.session_exists() is False
    mark = tab.mark()
    assert tab.call(PROTECTED)["status"] == 401
    (after,) = tab.since(mark)
    assert "authorization" not in after.request_headers
