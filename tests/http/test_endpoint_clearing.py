"""The protocol endpoints clear tokens only when the request presented one (security finding 1, logout CSRF).

A cross-site form post to ``/auth/signout`` or ``/auth/session/refresh`` arrives without the SameSite cookies.
Browsers apply ``Set-Cookie`` from the response of such a top-level navigation, so an endpoint that answered it with
clearing headers would let any web page sign a user out. A refresh without a refresh token is 401 "unauthorised"
with ``front-token: remove`` only (that header touches no cookie; the SuperTokens client's no-cookie probe needs it);
a sign-out without a session is 200 ``{"status": "OK"}`` with ``front-token: remove`` only.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from asgi_session import SessionConfig, SessionManager, SessionMiddleware
from asgi_session.stores import MemoryStore
from tests.http.conftest import (
    REFRESH,
    SIGNOUT,
    UNAUTHORISED,
    Site,
    asgi_call,
    assert_cleared,
    by_name,
    start_headers,
)

pytestmark = pytest.mark.anyio

# What a hidden auto-submitting form on another site sends: no SameSite=Lax cookies, no custom headers.
CROSS_SITE_FORM = {
    "content-type": "application/x-www-form-urlencoded",
    "origin": "https://evil.example",
    "sec-fetch-site": "cross-site",
    "sec-fetch-mode": "navigate",
}


def assert_clears_nothing(response: httpx.Response) -> None:
    """No Set-Cookie, no empty st-* headers, no anti-csrf: only ``front-token: remove`` (and its cache headers)."""
    assert response.headers.get_list("set-cookie") == []
    assert "st-access-token" not in response.headers
    assert "st-refresh-token" not in response.headers
    assert "anti-csrf" not in response.headers
    assert response.headers.get_list("front-token") == ["remove"]


CONFIGS = {
    "default": SessionConfig(),
    "header-mode": SessionConfig(token_transfer_method="header"),
    "cookie-mode": SessionConfig(token_transfer_method="cookie"),
    "exposed-access-token": SessionConfig(expose_access_token_to_frontend_in_cookie_based_auth=True),
    "older-domain": SessionConfig(cookie_domain="example.com", older_cookie_domain="old.example.com"),
    "same-site-none": SessionConfig(cookie_same_site="none"),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
async def test_a_cross_site_post_to_refresh_clears_nothing(
    make_site: Callable[..., Site], config: SessionConfig
) -> None:
    site = make_site(config)
    response = await site.client.post(REFRESH, headers=CROSS_SITE_FORM, content=b"x=1")
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_clears_nothing(response)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
async def test_a_cross_site_post_to_signout_clears_nothing(
    make_site: Callable[..., Site], config: SessionConfig
) -> None:
    site = make_site(config)
    response = await site.client.post(SIGNOUT, headers=CROSS_SITE_FORM, content=b"x=1")
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}
    assert_clears_nothing(response)


async def test_the_sdk_no_cookie_probe_is_a_clean_401_with_front_token_remove(site: Site) -> None:
    response = await site.client.post(REFRESH, headers={"rid": "session", "fdi-version": "4.0"})
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_clears_nothing(response)
    assert response.headers["cache-control"] == "no-store"
    assert "front-token" in response.headers["access-control-expose-headers"]


async def test_a_refresh_with_only_the_access_cookie_clears_nothing(site: Site) -> None:
    """SuperTokens clears here; a path-scoped refresh cookie that is absent is no token presented."""
    alice = await site.login("alice")
    response = await site.client.post(REFRESH, headers={"cookie": f"{alice.cookie}; sFrontToken=abc="})
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_clears_nothing(response)
    assert (await site.client.get("/me", headers={"cookie": alice.cookie})).status_code == 200


async def test_a_refresh_with_an_empty_refresh_cookie_clears_nothing(site: Site) -> None:
    response = await site.client.post(REFRESH, headers={"cookie": "sRefreshToken="})
    assert response.status_code == 401
    assert_clears_nothing(response)


async def test_a_signout_with_only_unrelated_cookies_clears_nothing(site: Site) -> None:
    cookie = "sFrontToken=eyJ1aWQiOiJhbGljZSJ9+/==; st-last-access-token-update=1; theme=dark"
    response = await site.client.post(SIGNOUT, headers={"cookie": cookie, "rid": "session"})
    assert response.status_code == 200
    assert_clears_nothing(response)


async def test_the_exact_wire_of_a_refresh_without_a_token() -> None:
    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never reached
        raise AssertionError("the endpoint answers before the app")

    manager = SessionManager(MemoryStore())
    try:
        for path, status in ((REFRESH, 401), (SIGNOUT, 200)):
            messages = await asgi_call(SessionMiddleware(app, manager=manager), "POST", path, [])
            assert messages[0]["status"] == status
            headers = start_headers(messages)
            assert by_name(headers, "set-cookie") == []
            assert by_name(headers, "front-token") == ["remove"]
            assert by_name(headers, "st-access-token") == by_name(headers, "st-refresh-token") == []
            assert by_name(headers, "cache-control") == ["no-store"]
    finally:
        await manager.close()


# -- controls: a presented token is still cleared -----------------------------------------------------------------


async def test_a_presented_refresh_token_that_fails_is_still_cleared(site: Site) -> None:
    alice = await site.login("alice")
    await site.manager.revoke_session(alice.handle)
    response = await site.refresh(alice.refresh)
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_cleared(response)


async def test_a_signout_with_a_session_still_clears(site: Site) -> None:
    alice = await site.login("alice")
    response = await site.client.post(SIGNOUT, headers={"cookie": alice.cookie})
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}
    assert_cleared(response)
    assert await site.store.get(alice.handle) is None


async def test_a_header_mode_signout_with_a_session_still_clears_the_headers(site: Site) -> None:
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    response = await site.client.post(SIGNOUT, headers={"authorization": f"Bearer {bob.access}"})
    assert response.status_code == 200
    assert response.headers["st-access-token"] == ""
    assert response.headers["st-refresh-token"] == ""
    assert response.headers["front-token"] == "remove"


async def test_a_refresh_without_a_token_needs_no_store(site: Site) -> None:
    """The SDK's probe is answered without opening the manager, so a store outage cannot turn it into a 503."""
    response = await site.client.post(REFRESH, headers={"rid": "session"})
    assert response.status_code == 401
    assert not site.manager.opened
