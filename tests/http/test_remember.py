""" "Remember me": ``remember=False`` gives browser-session cookies, now and at every re-issue; ``idle_timeout``.

The cookies of a session created with ``remember=False`` carry no ``Expires`` and no ``Max-Age`` (the browser drops
them when it closes), at creation, at every refresh and when the access token is re-issued in a request; the
default keeps today's persistent cookies. A per-session idle timeout is stored with the session, so another manager
on the same store slides the expiry by it too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from asgi_session import InvalidPayloadError, SessionConfig, SessionManager, UnauthorisedError
from asgi_session.tokens import REMEMBER_CLAIM
from tests.http.conftest import ACCESS_COOKIE_LIFETIME, REFRESH, Site, http_date, jwt_claims, set_cookies

pytestmark = pytest.mark.anyio

TAIL = "; HttpOnly; Secure; SameSite=Lax"


async def test_default_cookies_persist(site: Site) -> None:
    now = site.clock.now()
    cookies = set_cookies((await site.login()).response)
    assert cookies["sAccessToken"].attrs["Expires"] == http_date(now + ACCESS_COOKIE_LIFETIME.total_seconds())
    assert cookies["sRefreshToken"].attrs["Expires"] == http_date(now + 100 * 86400)


async def test_not_remembered_gives_browser_session_cookies(site: Site) -> None:
    logged_in = await site.login(remember="0")
    cookies = set_cookies(logged_in.response)
    assert cookies["sAccessToken"].raw == f"sAccessToken={logged_in.access}; Path=/{TAIL}"
    assert cookies["sRefreshToken"].raw == f"sRefreshToken={logged_in.refresh}; Path={REFRESH}{TAIL}"
    assert jwt_claims(logged_in.access)[REMEMBER_CLAIM] is False
    assert logged_in.response.json()["payload"] == {}  # not a custom claim

    refreshed = await site.refresh(logged_in.refresh)
    assert refreshed.status_code == 200
    renewed = set_cookies(refreshed)
    assert set(renewed) == {"sAccessToken", "sRefreshToken"}
    assert all("Expires" not in c.attrs and "Max-Age" not in c.attrs for c in renewed.values())

    merged = await site.client.post("/merge", json={"plan": "pro"}, headers={"cookie": logged_in.cookie})
    assert merged.status_code == 200
    access = set_cookies(merged)["sAccessToken"]
    assert access.raw == f"sAccessToken={access.value}; Path=/{TAIL}"  # re-issued in a request: still no Expires
    assert jwt_claims(access.value)[REMEMBER_CLAIM] is False


async def test_a_remembered_session_has_no_remember_claim(site: Site) -> None:
    logged_in = await site.login()
    assert REMEMBER_CLAIM not in jwt_claims(logged_in.access)


async def test_signing_out_a_browser_session_clears_the_cookies(site: Site) -> None:
    logged_in = await site.login(remember="0")
    response = await site.client.post("/logout", headers={"cookie": logged_in.cookie})
    assert response.status_code == 200
    assert all(cookie.is_clearing for cookie in set_cookies(response).values())


async def test_header_mode_is_unaffected(site: Site) -> None:
    logged_in = await site.login(remember="0", headers={"st-auth-mode": "header"})
    assert logged_in.response.headers.get_list("set-cookie") == []
    assert logged_in.response.headers["st-access-token"] == logged_in.access


async def test_a_per_session_idle_timeout_slides_at_each_refresh(site: Site) -> None:
    start = site.clock.now()
    logged_in = await site.login(idle="7200")  # access tokens live 1 h, refresh_token_validity is 100 days
    assert set_cookies(logged_in.response)["sRefreshToken"].attrs["Expires"] == http_date(start + 7200)
    site.clock.advance(5000)
    refreshed = await site.refresh(logged_in.refresh)
    assert refreshed.status_code == 200
    assert set_cookies(refreshed)["sRefreshToken"].attrs["Expires"] == http_date(site.clock.now() + 7200)
    refresh_token = set_cookies(refreshed)["sRefreshToken"].value
    site.clock.advance(7200)  # idle for the whole timeout: the session has expired
    assert (await site.refresh(refresh_token)).status_code == 401


async def test_another_manager_on_the_store_honours_the_idle_timeout(site: Site) -> None:
    logged_in = await site.login(idle="7200", remember="0")
    other = SessionManager(store=site.store, config=site.manager.config, clock=site.clock)  # another process
    site.clock.advance(3600)
    session = await other.refresh_session_without_request_response(logged_in.refresh)
    assert session.refresh_token_expiry == site.clock.now() + 7200
    assert session.remember is False
    record = await site.store.get(logged_in.handle)
    assert record is not None
    assert (record.remember, record.idle_timeout, record.expires_at) == (False, 7200.0, site.clock.now() + 7200)


async def test_offline_counterpart(site: Site) -> None:
    manager = site.manager
    session = await manager.create_new_session_without_request_response(
        "alice", remember=False, idle_timeout=timedelta(hours=2)
    )
    assert session.remember is False
    assert session.access_token_payload == {}
    assert session.get_access_token_payload()[REMEMBER_CLAIM] is False
    verified = await manager.get_session_without_request_response(session.access_token)
    assert verified is not None
    assert verified.remember is False
    regenerated = await manager.regenerate_access_token(session.access_token, {"plan": "team"})
    assert regenerated is not None
    assert regenerated.remember is False
    assert regenerated.access_token_payload == {"plan": "team"}
    default = await manager.create_new_session_without_request_response("bob")
    assert default.remember is True


@pytest.mark.parametrize(
    "idle",
    [timedelta(minutes=59), timedelta(hours=1), timedelta(days=101), 7200, timedelta(seconds=-1)],
    ids=["shorter-than-access", "equal-to-access", "over-refresh-validity", "not-a-timedelta", "negative"],
)
async def test_an_idle_timeout_out_of_range_is_refused(site: Site, idle: object) -> None:
    with pytest.raises(ValueError, match=r"idle_timeout must be a datetime\.timedelta longer than"):
        await site.manager.create_new_session_without_request_response("alice", idle_timeout=idle)  # type: ignore[arg-type]
    assert await site.manager.get_sessions_for_user("alice") == []


async def test_the_remember_claim_cannot_come_from_a_payload(site: Site) -> None:
    with pytest.raises(InvalidPayloadError, match="rememberMe"):
        await site.manager.create_new_session_without_request_response("alice", access_token_payload={"rememberMe": 1})
    session = await site.manager.create_new_session_without_request_response("alice")
    with pytest.raises(InvalidPayloadError, match="rememberMe"):
        await site.manager.merge_into_access_token_payload(session.handle, {REMEMBER_CLAIM: False})


async def test_the_idle_timeout_respects_the_absolute_lifetime(make_site: object) -> None:
    config = SessionConfig(session_max_lifetime=timedelta(hours=3))
    site: Site = make_site(config)  # type: ignore[operator]
    logged_in = await site.login(idle="7200")
    site.clock.advance(6000)
    refreshed = await site.refresh(logged_in.refresh)
    assert set_cookies(refreshed)["sRefreshToken"].attrs["Expires"] == http_date(site.clock.now() - 6000 + 3 * 3600)
    site.clock.advance(3 * 3600)
    with pytest.raises(UnauthorisedError):
        await site.manager.refresh_session_without_request_response(set_cookies(refreshed)["sRefreshToken"].value)
