"""Two session cookies of one name on the refresh endpoint (security finding 6, issue 16 item 2).

A browser sends a cookie name twice when it holds the cookie for two domains or paths: after ``cookie_domain``
changed, or because a sibling subdomain planted one (cookie tossing). On refresh, unless the refresh token comes in
the header: with ``older_cookie_domain`` set, the duplicated cookies are cleared on that domain only and the client
retries (200 without ``front-token``); without it, a 500 says how to fix it and nothing is cleared. Verification
with two access cookies stays "try refresh token".
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from asgi_session import SessionConfig
from tests.http.conftest import (
    EPOCH,
    REFRESH,
    TRY_REFRESH,
    Site,
    asgi_call,
    assert_untouched,
    body_of,
    by_name,
    set_cookies,
    start_headers,
)

pytestmark = pytest.mark.anyio

OLDER = SessionConfig(older_cookie_domain="example.com")
TAIL = "HttpOnly; Secure; SameSite=Lax"


def clearing(name: str, domain: str) -> str:
    path = "/" if name == "sAccessToken" else REFRESH
    return f"{name}=; Path={path}; Expires={EPOCH}; Max-Age=0; Domain={domain}; {TAIL}"


def assert_nothing_written(response: httpx.Response) -> None:
    assert response.headers.get_list("set-cookie") == []
    for name in ("front-token", "st-access-token", "st-refresh-token", "anti-csrf"):
        assert name not in response.headers, name


def assert_multiple_cookies_500(response: httpx.Response) -> None:
    assert response.status_code == 500
    message = response.json()["message"]
    assert "multiple session cookies" in message
    assert "older_cookie_domain" in message
    assert_nothing_written(response)


async def two_sessions(site: Site) -> tuple[str, str]:
    """The victim's refresh token, and another one (the attacker's own session, planted on a parent domain)."""
    victim = await site.login("alice")
    planted = await site.login("mallory")
    return victim.refresh, planted.refresh


# -- without older_cookie_domain: 500, nothing cleared -----------------------------------------------------------


@pytest.mark.parametrize("victim_first", [True, False], ids=["victim-first", "planted-first"])
async def test_two_refresh_cookies_are_a_500_that_clears_nothing(
    site: Site, victim_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    victim, planted = await two_sessions(site)
    pair = (victim, planted) if victim_first else (planted, victim)
    with caplog.at_level(logging.DEBUG, logger="asgi_session"):
        response = await site.client.post(
            REFRESH, headers={"cookie": f"sRefreshToken={pair[0]}; sRefreshToken={pair[1]}", "rid": "session"}
        )
    assert_multiple_cookies_500(response)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "older_cookie_domain" in warnings[0].getMessage()
    for record in caplog.records:
        assert victim not in record.getMessage()
        assert planted not in record.getMessage()
    assert victim not in response.text
    # The victim keeps a working session: nothing was rotated, revoked or cleared.
    assert (await site.refresh(victim)).status_code == 200


async def test_two_access_cookies_on_refresh_are_a_500_too(site: Site) -> None:
    alice = await site.login("alice")
    mallory = await site.login("mallory")
    cookie = f"sAccessToken={alice.access}; sAccessToken={mallory.access}; sRefreshToken={alice.refresh}"
    response = await site.client.post(REFRESH, headers={"cookie": cookie})
    assert_multiple_cookies_500(response)


async def test_duplicates_split_over_two_cookie_headers_are_found(site: Site) -> None:
    victim, planted = await two_sessions(site)
    headers = [("cookie", f"sRefreshToken={victim}"), ("cookie", f"sFrontToken=x; sRefreshToken={planted}")]
    assert_multiple_cookies_500(await site.client.post(REFRESH, headers=headers))


async def test_an_empty_duplicate_counts(site: Site) -> None:
    victim, _ = await two_sessions(site)
    assert_multiple_cookies_500(
        await site.client.post(REFRESH, headers={"cookie": f"sRefreshToken=; sRefreshToken={victim}"})
    )


@pytest.mark.parametrize("outer", [False, True], ids=["inside-starlette", "wrapping-starlette"])
async def test_the_500_passes_through_the_middleware_intact(make_site: Callable[..., Site], outer: bool) -> None:
    site = make_site(outer=outer, raise_app_exceptions=False)
    victim, planted = await two_sessions(site)
    assert_multiple_cookies_500(
        await site.client.post(REFRESH, headers={"cookie": f"sRefreshToken={victim}; sRefreshToken={planted}"})
    )


async def test_the_exact_wire_of_the_500(site: Site) -> None:
    victim, planted = await two_sessions(site)
    cookie = f"sRefreshToken={victim};sRefreshToken={planted}".encode()
    messages = await asgi_call(site.app, "POST", REFRESH, [(b"cookie", cookie)])
    assert messages[0]["status"] == 500
    headers = start_headers(messages)
    assert sorted(name for name, _ in headers) == ["content-length", "content-type"]
    assert by_name(headers, "content-type") == ["application/json"]
    assert b"older_cookie_domain" in body_of(messages)


@pytest.mark.parametrize(
    "config",
    [
        SessionConfig(cookie_domain="example.com", older_cookie_domain="example.com"),
        SessionConfig(cookie_domain="example.com", older_cookie_domain=".EXAMPLE.com"),
        SessionConfig(older_cookie_domain="testserver"),  # the host of the current host-only cookies
    ],
    ids=["same-as-cookie-domain", "same-spelled-differently", "same-as-the-host"],
)
async def test_an_older_domain_that_names_the_current_cookies_is_not_used(
    make_site: Callable[..., Site], config: SessionConfig
) -> None:
    """Clearing on it would clear the victim's own cookies: the 500 instead."""
    site = make_site(config)
    victim, planted = await two_sessions(site)
    response = await site.client.post(REFRESH, headers={"cookie": f"sRefreshToken={victim}; sRefreshToken={planted}"})
    assert_multiple_cookies_500(response)


# -- with older_cookie_domain: clear that domain only, the retry succeeds ------------------------------------------


async def test_with_an_older_domain_only_its_duplicated_cookie_is_cleared(make_site: Callable[..., Site]) -> None:
    site = make_site(OLDER)
    victim, planted = await two_sessions(site)
    response = await site.client.post(
        REFRESH, headers={"cookie": f"sRefreshToken={planted}; sRefreshToken={victim}", "rid": "session"}
    )
    assert response.status_code == 200
    assert set(response.json()) == {"message"}
    assert response.headers.get_list("set-cookie") == [clearing("sRefreshToken", "example.com")]
    assert "front-token" not in response.headers
    assert "st-access-token" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    # Nothing was rotated: the retry, with one cookie, refreshes.
    retry = await site.refresh(victim, rid="session")
    assert retry.status_code == 200
    assert set(set_cookies(retry)) == {"sAccessToken", "sRefreshToken"}
    assert retry.headers["front-token"] not in ("", "remove")


async def test_with_an_older_domain_both_duplicated_names_are_cleared(make_site: Callable[..., Site]) -> None:
    site = make_site(SessionConfig(cookie_domain="app.example.com", older_cookie_domain="example.com"))
    alice = await site.login("alice")
    mallory = await site.login("mallory")
    cookie = (
        f"sAccessToken={mallory.access}; sAccessToken={alice.access}; "
        f"sRefreshToken={alice.refresh}; sRefreshToken={mallory.refresh}"
    )
    response = await site.client.post(REFRESH, headers={"cookie": cookie})
    assert response.status_code == 200
    assert sorted(response.headers.get_list("set-cookie")) == [
        clearing("sAccessToken", "example.com"),
        clearing("sRefreshToken", "example.com"),
    ]
    assert "Domain=app.example.com" not in response.headers.get("set-cookie", "")
    assert "front-token" not in response.headers


async def test_with_an_older_domain_only_the_name_that_is_duplicated_is_cleared(make_site: Callable[..., Site]) -> None:
    site = make_site(OLDER)
    alice = await site.login("alice")
    mallory = await site.login("mallory")
    cookie = f"sAccessToken={alice.access}; sAccessToken={mallory.access}; sRefreshToken={alice.refresh}"
    response = await site.client.post(REFRESH, headers={"cookie": cookie})
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == [clearing("sAccessToken", "example.com")]


# -- where duplicates do not matter ------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SessionConfig(), OLDER], ids=["no-older-domain", "older-domain"])
async def test_a_header_mode_refresh_ignores_duplicated_cookies(
    make_site: Callable[..., Site], config: SessionConfig
) -> None:
    site = make_site(config)
    victim, planted = await two_sessions(site)
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    response = await site.client.post(
        REFRESH,
        headers={
            "authorization": f"Bearer {bob.refresh}",
            "cookie": f"sRefreshToken={victim}; sRefreshToken={planted}",
        },
    )
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["st-refresh-token"] not in ("", bob.refresh)


async def test_header_only_config_ignores_duplicated_cookies(make_site: Callable[..., Site]) -> None:
    site = make_site(SessionConfig(token_transfer_method="header"))
    response = await site.client.post("/login", params={"user": "bob"})
    refresh = response.headers["st-refresh-token"]
    refreshed = await site.client.post(
        REFRESH, headers={"authorization": f"Bearer {refresh}", "cookie": "sRefreshToken=a; sRefreshToken=b"}
    )
    assert refreshed.status_code == 200


@pytest.mark.parametrize("config", [SessionConfig(), OLDER], ids=["no-older-domain", "older-domain"])
async def test_two_access_cookies_on_an_app_route_stay_try_refresh_token(
    make_site: Callable[..., Site], config: SessionConfig
) -> None:
    site = make_site(config)
    alice = await site.login("alice")
    mallory = await site.login("mallory")
    for cookie in (
        f"sAccessToken={alice.access}; sAccessToken={mallory.access}",
        f"sAccessToken={alice.access}; sAccessToken={alice.access}",
    ):
        response = await site.client.get("/me", headers={"cookie": cookie})
        assert response.status_code == 401
        assert response.json() == TRY_REFRESH
        assert_untouched(response)
