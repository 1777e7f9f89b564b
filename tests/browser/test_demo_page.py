"""The demo page (``asgi-session demo``) in Chromium, clicked through as a person would (issue 15, item 6).

Sign-in, the protected endpoint, the automatic refresh after expiry, two devices, "Sign out everywhere", the
per-row "Revoke" and the "Admin only" button (the ``st-role`` claim: a 403 ``invalid claim`` for anyone but
``admin``).

Two browser contexts are two devices of one user. The server's clock is moved past the access token's hour instead
of waiting it out. With ``ASGI_SESSION_SCREENSHOTS=1`` (or ``tox -e screenshots``), the main states are saved to
``docs/img/`` for the README and the docs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asgi_session import SessionConfig, SessionManager
from asgi_session.demo import ROLE_CLAIM, create_app
from asgi_session.stores import SQLiteStore
from tests._servers import serve_in_thread
from tests.browser._apps import ShiftedClock
from tests.browser._tab import REFRESH, SIGNOUT, TOKEN_COOKIES, Tab, expect

SCREENSHOTS = Path(__file__).parents[2] / "docs" / "img"
VIEWPORT = {"width": 1100, "height": 900}
LAPTOP = "Laptop: Chromium (asgi-session browser test)"
PHONE = "Phone: Chromium (asgi-session browser test)"
ACCESS_TOKEN_VALIDITY = SessionConfig().access_token_validity  # the demo keeps the default hour

pytestmark = pytest.mark.browser


def snap(tab: Tab, name: str) -> None:
    """Save a screenshot of the page to docs/img/<name>.png when ASGI_SESSION_SCREENSHOTS is set."""
    if os.environ.get("ASGI_SESSION_SCREENSHOTS"):
        tab.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, ShiftedClock]]:
    """The demo app as ``asgi-session demo`` builds it (SQLite, cookies without Secure, the role claim), on a clock
    a test moves."""
    clock = ShiftedClock()
    config = SessionConfig(cookie_secure=False)
    manager = SessionManager(SQLiteStore(tmp_path / "demo.db"), config, clock=clock, claims=[ROLE_CLAIM])
    with serve_in_thread(create_app(manager)) as url:
        yield url, clock


def open_demo(new_tab: Callable[..., Tab], url: str, device: str) -> Tab:
    tab = new_tab(user_agent=device, viewport=VIEWPORT)
    mark = tab.mark()
    tab.page.goto(url + "/")
    expect(tab.page.locator("#status")).to_have_text("Not signed in.")
    expect(tab.page.locator("#signed-out")).to_be_visible()
    # The page asked for the session, got a 401, tried one refresh (401: no session) and showed the sign-in form.
    assert tab.calls(mark) == [("GET", "/api/session", 401), ("POST", REFRESH, 401)]
    return tab


def sign_in(tab: Tab, user: str, sessions: int) -> None:
    mark = tab.mark()
    tab.page.fill("#user", user)
    tab.page.click("#signin-form button[type=submit]")
    expect(tab.page.locator("#status")).to_have_text(f"Signed in: {sessions} active session(s) for {user}.")
    assert tab.calls(mark) == [("POST", "/api/signin", 200)]
    expect(tab.page.locator("#who")).to_have_text(user)


def log_lines(tab: Tab, count: int) -> list[str]:
    """The newest ``count`` lines of the page's request log, oldest first."""
    lines = tab.page.locator("#log li").all_text_contents()[:count]
    return [line.split("  ", 1)[1] for line in reversed(lines)]  # without the time of day


def test_the_demo_page_two_devices_expiry_and_sign_out_everywhere(
    demo: tuple[str, ShiftedClock], new_tab: Callable[..., Tab]
) -> None:
    url, clock = demo
    laptop = open_demo(new_tab, url, LAPTOP)
    snap(laptop, "demo-signed-out")

    sign_in(laptop, "alice", sessions=1)
    cookies = laptop.cookies()
    assert cookies["sAccessToken"]["httpOnly"]
    assert cookies["sRefreshToken"]["httpOnly"]
    assert cookies["sRefreshToken"]["path"] == REFRESH
    rows = laptop.page.locator("#sessions tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("this browser")
    expect(rows.first).to_contain_text(LAPTOP)

    # The protected endpoint answers with the user's name.
    mark = laptop.mark()
    laptop.page.click("#protected")
    expect(laptop.page.locator("#protected-result")).to_contain_text(
        "Hello alice, this response needed a valid session."
    )
    assert laptop.calls(mark) == [("GET", "/api/protected", 200)]

    # An hour later the access token has expired: the page refreshes once, by itself, and retries.
    before = laptop.token_cookies()
    clock.advance(ACCESS_TOKEN_VALIDITY.total_seconds() + 1)
    mark = laptop.mark()
    logged = laptop.page.locator("#log li").count()
    laptop.page.click("#protected")
    expect(laptop.page.locator("#log li")).to_have_count(logged + 3)  # the page logs each request it makes
    expect(laptop.page.locator("#log li").first).to_contain_text("GET /api/protected -> 200")
    assert laptop.calls(mark) == [
        ("GET", "/api/protected", 401),
        ("POST", REFRESH, 200),
        ("GET", "/api/protected", 200),
    ]
    assert log_lines(laptop, 3) == [
        "GET /api/protected -> 401",
        f"POST {REFRESH} -> 200  (new front-token)",
        "GET /api/protected -> 200",
    ]
    after = laptop.token_cookies()
    assert all(after[name] != before[name] for name in TOKEN_COOKIES)
    expect(laptop.page.locator("#front-token")).to_contain_text("uid alice, access token valid until")
    snap(laptop, "demo-refreshed")

    # The same user on a second device: two sessions.
    phone = open_demo(new_tab, url, PHONE)
    sign_in(phone, "alice", sessions=2)
    phone_rows = phone.page.locator("#sessions tr")
    expect(phone_rows).to_have_count(2)
    expect(phone_rows.filter(has_text="this browser")).to_contain_text(PHONE)

    # The laptop's "Refresh" rotates its tokens and lists both devices.
    mark = laptop.mark()
    laptop.page.click("#refresh")
    expect(laptop.page.locator("#status")).to_have_text("Signed in: 2 active session(s) for alice.")
    assert laptop.calls(mark) == [("POST", REFRESH, 200), ("GET", "/api/session", 200)]
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="this browser")).to_contain_text(LAPTOP)
    expect(rows.filter(has_text=PHONE)).not_to_contain_text("this browser")
    snap(laptop, "demo-two-devices")

    # "Sign out everywhere" on the phone ends the laptop's session too.
    mark = phone.mark()
    phone.page.click("#signout-everywhere")
    expect(phone.page.locator("#status")).to_have_text("Signed out everywhere: 2 session(s) revoked.")
    assert phone.calls(mark) == [("POST", "/api/signout-everywhere", 200)]
    assert not set(TOKEN_COOKIES) & set(phone.cookies())

    mark = laptop.mark()
    laptop.page.click("#protected")
    expect(laptop.page.locator("#status")).to_have_text("Your session has ended: sign in again.")
    expect(laptop.page.locator("#signed-out")).to_be_visible()
    expect(laptop.page.locator("#signed-in")).to_be_hidden()
    # The revoked session's access token is refused (the demo checks the store); the refresh fails and clears.
    assert laptop.calls(mark) == [("GET", "/api/protected", 401), ("POST", REFRESH, 401)]
    assert not set(TOKEN_COOKIES) & set(laptop.cookies())
    snap(laptop, "demo-signed-out-everywhere")


def test_the_demo_page_sign_in_and_sign_out(demo: tuple[str, ShiftedClock], new_tab: Callable[..., Tab]) -> None:
    url, _ = demo
    tab = open_demo(new_tab, url, LAPTOP)
    sign_in(tab, "bob", sessions=1)
    assert set(TOKEN_COOKIES) <= set(tab.cookies())

    mark = tab.mark()
    tab.page.click("#signout")
    expect(tab.page.locator("#status")).to_have_text("Signed out.")
    (signout,) = tab.since(mark)
    assert signout.brief() == ("POST", SIGNOUT, 200)
    assert signout.request_headers["rid"] == "session"
    assert signout.response_headers["front-token"] == "remove"
    assert not set(TOKEN_COOKIES) & set(tab.cookies())
    expect(tab.page.locator("#front-token")).to_have_text("removed by the server")

    # A reload finds no session.
    mark = tab.mark()
    tab.page.reload()
    expect(tab.page.locator("#status")).to_have_text("Not signed in.")
    assert tab.calls(mark) == [("GET", "/api/session", 401), ("POST", REFRESH, 401)]


def result_of(tab: Tab) -> tuple[int, dict[str, object]]:
    """The status and JSON body the page shows under the buttons (the "Admin only" button writes both)."""
    status, _, body = tab.page.locator("#protected-result").inner_text().partition("\n")
    return int(status), json.loads(body)


def test_the_demo_page_admin_only_button(demo: tuple[str, ShiftedClock], new_tab: Callable[..., Tab]) -> None:
    url, _ = demo

    # alice holds the role "user": the claim-guarded route answers 403, and the page shows the body as it came.
    alice = open_demo(new_tab, url, LAPTOP)
    sign_in(alice, "alice", sessions=1)
    expect(alice.page.locator("#roles")).to_have_text("user")
    mark = alice.mark()
    alice.page.click("#admin")
    expect(alice.page.locator("#protected-result")).to_contain_text("invalid claim")
    expect(alice.page.locator("#log li").first).to_contain_text("GET /api/admin -> 403")
    (call,) = alice.since(mark)  # a 403 is not an expired session: no refresh, no retry
    assert call.brief() == ("GET", "/api/admin", 403)
    refused = {
        "message": "invalid claim",
        "claimValidationErrors": [
            {
                "id": "st-role",
                "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]},
            }
        ],
    }
    assert json.loads(call.response.text()) == refused
    assert result_of(alice) == (403, refused)
    expect(alice.page.locator("#status")).to_have_text("Signed in: 1 active session(s) for alice.")  # still signed in
    assert set(TOKEN_COOKIES) <= set(alice.cookies())
    snap(alice, "demo-invalid-claim")

    # The user "admin" holds the role "admin": the same button succeeds.
    admin = open_demo(new_tab, url, PHONE)
    sign_in(admin, "admin", sessions=1)
    expect(admin.page.locator("#roles")).to_have_text("admin")
    mark = admin.mark()
    admin.page.click("#admin")
    expect(admin.page.locator("#protected-result")).to_contain_text("you hold the admin role")
    expect(admin.page.locator("#log li").first).to_contain_text("GET /api/admin -> 200")
    assert admin.calls(mark) == [("GET", "/api/admin", 200)]
    assert result_of(admin) == (200, {"message": "Hello admin, you hold the admin role.", "user": "admin"})


def test_the_demo_page_revoke_buttons(demo: tuple[str, ShiftedClock], new_tab: Callable[..., Tab]) -> None:
    url, _ = demo
    laptop = open_demo(new_tab, url, LAPTOP)
    sign_in(laptop, "carol", sessions=1)
    phone = open_demo(new_tab, url, PHONE)
    sign_in(phone, "carol", sessions=2)
    phone_handle = phone.page.locator("#handle").inner_text()

    # The laptop lists both devices, then revokes the phone's row.
    laptop.page.click("#refresh")
    rows = laptop.page.locator("#sessions tr")
    expect(rows).to_have_count(2)
    mark = laptop.mark()
    rows.filter(has_text=PHONE).get_by_role("button", name="Revoke").click()
    expect(laptop.page.locator("#status")).to_have_text("Signed in: 1 active session(s) for carol.")
    assert laptop.calls(mark) == [("POST", "/api/sessions/revoke", 200), ("GET", "/api/session", 200)]
    revoke = laptop.since(mark)[0]
    assert revoke.response.request.post_data_json == {"handle": phone_handle}
    assert json.loads(revoke.response.text()) == {"status": "OK", "current": False}
    assert revoke.set_cookies() == []  # the laptop's own tokens are untouched
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("this browser")
    expect(rows.first).to_contain_text(LAPTOP)

    # The phone's session has ended: its next call is refused (the demo checks the store), the refresh fails and
    # clears its tokens, and the page shows the sign-in form.
    mark = phone.mark()
    phone.page.click("#protected")
    expect(phone.page.locator("#status")).to_have_text("Your session has ended: sign in again.")
    expect(phone.page.locator("#signed-out")).to_be_visible()
    expect(phone.page.locator("#signed-in")).to_be_hidden()
    assert phone.calls(mark) == [("GET", "/api/protected", 401), ("POST", REFRESH, 401)]
    assert not set(TOKEN_COOKIES) & set(phone.cookies())

    # Revoking the laptop's own row signs this browser out: the response clears its tokens.
    mark = laptop.mark()
    rows.first.get_by_role("button", name="Revoke").click()
    expect(laptop.page.locator("#status")).to_have_text("This browser's session was revoked.")
    expect(laptop.page.locator("#signed-out")).to_be_visible()
    (own,) = laptop.since(mark)
    assert own.brief() == ("POST", "/api/sessions/revoke", 200)
    assert json.loads(own.response.text()) == {"status": "OK", "current": True}
    assert own.response_headers["front-token"] == "remove"
    assert sorted(cookie.split("=", 1)[0] for cookie in own.set_cookies()) == sorted(TOKEN_COOKIES)
    assert not set(TOKEN_COOKIES) & set(laptop.cookies())
    mark = laptop.mark()
    laptop.page.reload()
    expect(laptop.page.locator("#status")).to_have_text("Not signed in.")
    assert laptop.calls(mark) == [("GET", "/api/session", 401), ("POST", REFRESH, 401)]
