"""Token transfer methods (cookie, header, any) and the three anti-CSRF modes, over HTTP."""

from __future__ import annotations

import pytest

from asgi_session import SessionConfig
from asgi_session.config import AntiCsrfMode, SameSite
from tests.http.conftest import (
    EXPOSED,
    REFRESH,
    SIGNOUT,
    TRY_REFRESH,
    UNAUTHORISED,
    Site,
    assert_cleared,
    assert_untouched,
    decode_front_token,
    expected_cleared,
    jwt_claims,
    set_cookies,
)

pytestmark = pytest.mark.anyio


def assert_header_tokens(response, user: str = "alice") -> tuple[str, str]:
    """Header-mode tokens, no cookies; returns (access, refresh)."""
    assert response.headers.get_list("set-cookie") == []
    access = response.headers["st-access-token"]
    refresh = response.headers["st-refresh-token"]
    claims = jwt_claims(access)
    assert claims["sub"] == user
    assert refresh
    assert decode_front_token(response.headers["front-token"]) == {
        "uid": user,
        "ate": claims["exp"] * 1000,
        "up": claims,
    }
    assert response.headers.get_list("access-control-expose-headers") == [EXPOSED]
    assert response.headers.get_list("cache-control") == ["no-store"]
    return access, refresh


def assert_cookie_tokens(response) -> None:
    cookies = set_cookies(response)
    assert sorted(cookies) == ["sAccessToken", "sRefreshToken"]
    assert cookies["sAccessToken"].value
    assert cookies["sRefreshToken"].value
    assert "st-access-token" not in response.headers
    assert "st-refresh-token" not in response.headers
    assert decode_front_token(response.headers["front-token"])["uid"] == "alice"


# -- transfer methods ---------------------------------------------------------------------------------------------


async def test_any_with_st_auth_mode_header_uses_headers(site: Site) -> None:
    response = await site.client.post("/login", params={"user": "alice"}, headers={"st-auth-mode": "header"})

    assert response.status_code == 200
    access, _ = assert_header_tokens(response)
    me = await site.client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert me.status_code == 200
    assert me.json()["user"] == "alice"


@pytest.mark.parametrize("mode", [None, "cookie", "COOKIE", "something-else"])
async def test_any_without_st_auth_mode_header_uses_cookies(site: Site, mode: str | None) -> None:
    headers = {} if mode is None else {"st-auth-mode": mode}
    response = await site.client.post("/login", params={"user": "alice"}, headers=headers)
    assert response.status_code == 200
    assert_cookie_tokens(response)


async def test_forced_cookie_mode_ignores_st_auth_mode_and_bearer_tokens(make_site) -> None:
    site = make_site(SessionConfig(token_transfer_method="cookie"))
    response = await site.client.post("/login", params={"user": "alice"}, headers={"st-auth-mode": "header"})
    assert response.status_code == 200
    assert_cookie_tokens(response)
    access = set_cookies(response)["sAccessToken"].value
    refresh = set_cookies(response)["sRefreshToken"].value

    bearer = await site.client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert bearer.status_code == 401
    assert bearer.json() == UNAUTHORISED
    cookie = await site.client.get("/me", headers={"authorization": "Bearer junk", "cookie": f"sAccessToken={access}"})
    assert cookie.status_code == 200
    refreshed = await site.client.post(REFRESH, headers={"authorization": f"Bearer {refresh}"})
    assert refreshed.status_code == 401
    assert refreshed.json() == UNAUTHORISED


async def test_forced_header_mode_never_uses_cookies(make_site) -> None:
    site = make_site(SessionConfig(token_transfer_method="header"))
    response = await site.client.post("/login", params={"user": "alice"})
    assert response.status_code == 200
    access, refresh = assert_header_tokens(response)

    by_cookie = await site.client.get("/me", headers={"cookie": f"sAccessToken={access}"})
    assert by_cookie.status_code == 401
    assert by_cookie.json() == UNAUTHORISED
    by_header = await site.client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert by_header.status_code == 200
    refreshed = await site.client.post(REFRESH, headers={"authorization": f"Bearer {refresh}"})
    assert refreshed.status_code == 200
    assert_header_tokens(refreshed)


async def test_login_in_header_mode_clears_session_cookies_the_request_carried(site: Site) -> None:
    old = await site.login("alice")
    response = await site.client.post(
        "/login", params={"user": "alice"}, headers={"st-auth-mode": "header", "cookie": old.cookie}
    )
    assert response.status_code == 200
    assert set(response.headers.get_list("set-cookie")) == expected_cleared()
    assert jwt_claims(response.headers["st-access-token"])["sessionHandle"] == response.json()["handle"]
    assert await site.manager.get_session_information(old.handle) is None


async def test_exposing_the_access_token_in_cookie_mode_also_sends_the_header(make_site) -> None:
    site = make_site(SessionConfig(expose_access_token_to_frontend_in_cookie_based_auth=True))
    first = await site.login("alice")
    assert first.response.headers["st-access-token"] == first.access
    assert "st-refresh-token" not in first.response.headers

    refreshed = await site.refresh(first.refresh)
    assert refreshed.status_code == 200
    assert refreshed.headers["st-access-token"] == set_cookies(refreshed)["sAccessToken"].value
    assert "st-refresh-token" not in refreshed.headers

    revoked = await site.client.post("/logout", headers={"cookie": first.cookie})
    assert revoked.status_code == 200
    assert set(revoked.headers.get_list("set-cookie")) == expected_cleared()
    assert revoked.headers["st-access-token"] == ""
    assert revoked.headers["front-token"] == "remove"


async def test_the_access_token_is_not_exposed_in_cookie_mode_by_default(site: Site) -> None:
    first = await site.login("alice")
    assert "st-access-token" not in first.response.headers
    refreshed = await site.refresh(first.refresh)
    assert "st-access-token" not in refreshed.headers


@pytest.mark.parametrize("path", ["/logout", SIGNOUT])
async def test_revoke_in_header_mode_empties_the_token_headers(site: Site, path: str) -> None:
    first = await site.login("alice", headers={"st-auth-mode": "header"})

    response = await site.client.post(path, headers={"authorization": f"Bearer {first.access}"})

    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == []
    assert response.headers.get_list("st-access-token") == [""]
    assert response.headers.get_list("st-refresh-token") == [""]
    assert response.headers.get_list("front-token") == ["remove"]
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert await site.store.get(first.handle) is None


async def test_merge_in_header_mode_reissues_only_the_access_token_header(site: Site) -> None:
    first = await site.login("alice", headers={"st-auth-mode": "header"})
    response = await site.client.post("/merge", headers={"authorization": f"Bearer {first.access}"}, json={"k": 1})
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == []
    assert "st-refresh-token" not in response.headers
    assert jwt_claims(response.headers["st-access-token"])["k"] == 1
    assert decode_front_token(response.headers["front-token"])["up"]["k"] == 1


# -- cookie attributes ----------------------------------------------------------------------------------------------


async def test_cookies_are_secure_httponly_and_lax_by_default(site: Site) -> None:
    first = await site.login("alice")
    for cookie in set_cookies(first.response).values():
        assert cookie.attrs["HttpOnly"] is True
        assert cookie.attrs["Secure"] is True
        assert cookie.attrs["SameSite"] == "Lax"
        assert "Domain" not in cookie.attrs


async def test_cookie_settings_reach_the_set_cookie_headers(make_site) -> None:
    site = make_site(SessionConfig(cookie_secure=False, cookie_same_site="strict", cookie_domain="example.com"))
    first = await site.login("alice")
    for cookie in set_cookies(first.response).values():
        assert cookie.attrs["HttpOnly"] is True
        assert "Secure" not in cookie.attrs
        assert cookie.attrs["SameSite"] == "Strict"
        assert cookie.attrs["Domain"] == "example.com"
    cleared = await site.client.post(SIGNOUT, headers={"cookie": first.cookie})
    for cookie in set_cookies(cleared).values():
        assert cookie.is_clearing
        assert cookie.attrs["Domain"] == "example.com"
        assert "Secure" not in cookie.attrs


# -- anti-CSRF ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("same_site", "mode"), [("lax", "NONE"), ("strict", "NONE"), ("none", "VIA_CUSTOM_HEADER")])
def test_the_default_anti_csrf_mode_follows_same_site(same_site: SameSite, mode: str) -> None:
    assert SessionConfig(cookie_same_site=same_site).anti_csrf_mode == mode


async def test_anti_csrf_none_lets_a_plain_cookie_post_through(site: Site) -> None:
    first = await site.login("alice")
    response = await site.client.post("/me", headers={"cookie": first.cookie})
    assert response.status_code == 200
    assert response.json()["user"] == "alice"
    refreshed = await site.refresh(first.refresh)
    assert refreshed.status_code == 200


async def test_same_site_none_implies_the_custom_header_check(make_site) -> None:
    site = make_site(SessionConfig(cookie_same_site="none"))
    first = await site.login("alice")
    assert set_cookies(first.response)["sAccessToken"].attrs["SameSite"] == "None"

    refused = await site.client.post("/me", headers={"cookie": first.cookie})
    assert refused.status_code == 401
    assert refused.json() == TRY_REFRESH
    allowed = await site.client.post("/me", headers={"cookie": first.cookie, "rid": "anti-csrf"})
    assert allowed.status_code == 200


async def test_via_custom_header_requires_rid_on_cookie_posts(make_site) -> None:
    site = make_site(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    first = await site.login("alice")

    refused = await site.client.post("/me", headers={"cookie": first.cookie})
    assert refused.status_code == 401
    assert refused.json() == TRY_REFRESH
    assert_untouched(refused)

    allowed = await site.client.post("/me", headers={"cookie": first.cookie, "rid": "anti-csrf"})
    assert allowed.status_code == 200
    get = await site.client.get("/me", headers={"cookie": first.cookie})
    assert get.status_code == 200


async def test_via_custom_header_refresh_by_cookie_needs_rid_and_is_not_cleared(make_site) -> None:
    site = make_site(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    first = await site.login("alice")

    refused = await site.refresh(first.refresh)
    assert refused.status_code == 401
    assert refused.json() == UNAUTHORISED
    assert_untouched(refused)
    record = await site.store.get(first.handle)
    assert record is not None
    assert record.previous_refresh_hash is None

    allowed = await site.refresh(first.refresh, rid="session")
    assert allowed.status_code == 200
    assert set_cookies(allowed)["sRefreshToken"].value != first.refresh


async def test_via_custom_header_signout_needs_rid(make_site) -> None:
    site = make_site(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    first = await site.login("alice")

    refused = await site.client.post(SIGNOUT, headers={"cookie": first.cookie})
    assert refused.status_code == 401
    assert refused.json() == TRY_REFRESH
    assert_untouched(refused)
    assert await site.manager.get_session_information(first.handle) is not None

    allowed = await site.client.post(SIGNOUT, headers={"cookie": first.cookie, "rid": "session"})
    assert allowed.status_code == 200
    assert_cleared(allowed)


async def test_via_token_returns_an_anti_csrf_token_bound_to_the_access_token(make_site) -> None:
    site = make_site(SessionConfig(anti_csrf="VIA_TOKEN"))
    first = await site.login("alice")

    assert first.anti_csrf
    assert jwt_claims(first.access)["antiCsrfToken"] == first.anti_csrf
    assert first.response.headers.get_list("access-control-expose-headers") == [EXPOSED]


async def test_via_token_checks_cookie_posts(make_site) -> None:
    site = make_site(SessionConfig(anti_csrf="VIA_TOKEN"))
    alice = await site.login("alice")
    other = await site.login("alice")
    assert other.anti_csrf != alice.anti_csrf

    for given in (None, "wrong", other.anti_csrf):
        headers = {"cookie": alice.cookie}
        if given is not None:
            headers["anti-csrf"] = given
        refused = await site.client.post("/me", headers=headers)
        assert refused.status_code == 401, given
        assert refused.json() == TRY_REFRESH
        assert_untouched(refused)

    assert alice.anti_csrf is not None
    allowed = await site.client.post("/me", headers={"cookie": alice.cookie, "anti-csrf": alice.anti_csrf})
    assert allowed.status_code == 200
    assert allowed.json()["handle"] == alice.handle
    get = await site.client.get("/me", headers={"cookie": alice.cookie})
    assert get.status_code == 200


async def test_via_token_refresh_by_cookie_needs_the_token_and_returns_a_new_one(make_site) -> None:
    site = make_site(SessionConfig(anti_csrf="VIA_TOKEN"))
    first = await site.login("alice")
    other = await site.login("bob")
    assert first.anti_csrf is not None
    assert other.anti_csrf is not None

    for given in ({}, {"anti-csrf": "wrong"}, {"anti-csrf": other.anti_csrf}):
        refused = await site.refresh(first.refresh, **given)
        assert refused.status_code == 401, given
        assert refused.json() == UNAUTHORISED
        assert_untouched(refused)
    record = await site.store.get(first.handle)
    assert record is not None
    assert record.previous_refresh_hash is None

    allowed = await site.refresh(first.refresh, **{"anti-csrf": first.anti_csrf})
    assert allowed.status_code == 200
    new_token = allowed.headers["anti-csrf"]
    assert new_token not in ("", first.anti_csrf)
    access = set_cookies(allowed)["sAccessToken"].value
    assert jwt_claims(access)["antiCsrfToken"] == new_token

    stale = await site.client.post("/me", headers={"cookie": f"sAccessToken={access}", "anti-csrf": first.anti_csrf})
    assert stale.status_code == 401
    assert stale.json() == TRY_REFRESH
    fresh = await site.client.post("/me", headers={"cookie": f"sAccessToken={access}", "anti-csrf": new_token})
    assert fresh.status_code == 200


@pytest.mark.parametrize("anti_csrf", ["VIA_CUSTOM_HEADER", "VIA_TOKEN"])
async def test_anti_csrf_is_never_checked_in_header_mode(make_site, anti_csrf: AntiCsrfMode) -> None:
    site = make_site(SessionConfig(anti_csrf=anti_csrf))
    first = await site.login("alice", headers={"st-auth-mode": "header"})
    response = await site.client.post("/me", headers={"authorization": f"Bearer {first.access}"})
    assert response.status_code == 200
    refreshed = await site.client.post(REFRESH, headers={"authorization": f"Bearer {first.refresh}"})
    assert refreshed.status_code == 200
