"""Revocation seen over HTTP (access-token blacklisting, per-route database checks) and store failures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from asgi_session import SessionConfig
from tests.http.conftest import (
    REFRESH,
    SIGNOUT,
    TRY_REFRESH,
    UNAUTHORISED,
    Site,
    assert_cleared,
    assert_untouched,
    set_cookies,
)

pytestmark = pytest.mark.anyio

UNAVAILABLE = {"message": "session store unavailable"}
HOUR = 3600


def assert_unavailable(response: httpx.Response) -> None:
    """503 with the protocol's body, and no token set or cleared: a store outage never logs anyone out."""
    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert_untouched(response)


@pytest.fixture
def blacklisting(make_site: Callable[..., Site]) -> Site:
    return make_site(SessionConfig(access_token_blacklisting=True))


# -- blacklisting -------------------------------------------------------------------------------------------------


async def test_with_blacklisting_an_offline_revoke_locks_the_access_token_out(blacklisting: Site) -> None:
    site = blacklisting
    first = await site.login("alice")
    assert (await site.client.get("/me", headers={"cookie": first.cookie})).status_code == 200

    assert await site.manager.revoke_session(first.handle) is True
    response = await site.client.get("/me", headers={"cookie": first.cookie})

    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_cleared(response)
    optional = await site.client.get("/optional", headers={"cookie": first.cookie})
    assert optional.status_code == 401
    assert optional.json() == UNAUTHORISED


async def test_with_blacklisting_revoke_all_for_user_locks_every_token_out(blacklisting: Site) -> None:
    site = blacklisting
    phone = await site.login("alice")
    laptop = await site.login("alice", tenant="other")
    bob = await site.login("bob")

    revoked = await site.manager.revoke_all_sessions_for_user("alice")

    assert sorted(revoked) == sorted([phone.handle, laptop.handle])
    for session in (phone, laptop):
        response = await site.client.get("/me", headers={"cookie": session.cookie})
        assert response.status_code == 401
        assert response.json() == UNAUTHORISED
        assert_cleared(response)
        refreshed = await site.refresh(session.refresh)
        assert refreshed.status_code == 401
    still = await site.client.get("/me", headers={"cookie": bob.cookie})
    assert still.status_code == 200
    assert still.json()["user"] == "bob"


async def test_with_blacklisting_a_revoked_header_mode_token_is_cleared_in_header_mode(blacklisting: Site) -> None:
    site = blacklisting
    first = await site.login("alice", headers={"st-auth-mode": "header"})
    await site.manager.revoke_session(first.handle)

    response = await site.client.get("/me", headers={"authorization": f"Bearer {first.access}"})

    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert response.headers.get_list("set-cookie") == []
    assert response.headers.get_list("st-access-token") == [""]
    assert response.headers.get_list("st-refresh-token") == [""]
    assert response.headers.get_list("front-token") == ["remove"]


async def test_without_blacklisting_a_revoked_token_lives_until_its_exp(site: Site) -> None:
    first = await site.login("alice")
    assert await site.manager.revoke_session(first.handle) is True

    accepted = await site.client.get("/me", headers={"cookie": first.cookie})
    assert accepted.status_code == 200
    assert accepted.json()["handle"] == first.handle

    site.clock.advance(HOUR - 1)
    assert (await site.client.get("/me", headers={"cookie": first.cookie})).status_code == 200
    site.clock.advance(1)
    expired = await site.client.get("/me", headers={"cookie": first.cookie})
    assert expired.status_code == 401
    assert expired.json() == TRY_REFRESH
    assert_untouched(expired)
    refreshed = await site.refresh(first.refresh)
    assert refreshed.status_code == 401
    assert refreshed.json() == UNAUTHORISED
    assert_cleared(refreshed)


async def test_check_database_per_route_refuses_a_revoked_token_without_blacklisting(site: Site) -> None:
    first = await site.login("alice")
    assert (await site.client.get("/checkdb", headers={"cookie": first.cookie})).status_code == 200
    await site.manager.revoke_all_sessions_for_user("alice")

    refused = await site.client.get("/checkdb", headers={"cookie": first.cookie})

    assert refused.status_code == 401
    assert refused.json() == UNAUTHORISED
    assert_cleared(refused)
    assert (await site.client.get("/me", headers={"cookie": first.cookie})).status_code == 200


# -- store failures -----------------------------------------------------------------------------------------------


async def test_a_store_failure_on_a_protected_route_is_a_503(blacklisting: Site) -> None:
    site = blacklisting
    first = await site.login("alice")
    site.store.failing = {"*"}

    for path in ("/me", "/optional", "/checkdb"):
        response = await site.client.get(path, headers={"cookie": first.cookie})
        assert response.status_code == 503, path
        assert response.json() == UNAVAILABLE
        assert response.headers["retry-after"] == "1"
        assert_untouched(response)

    site.store.failing = set()
    recovered = await site.client.get("/me", headers={"cookie": first.cookie})
    assert recovered.status_code == 200


async def test_a_store_failure_in_a_per_route_database_check_is_a_503(site: Site) -> None:
    first = await site.login("alice")
    site.store.failing = {"get"}

    response = await site.client.get("/checkdb", headers={"cookie": first.cookie})

    assert_unavailable(response)


@pytest.mark.parametrize("outer", [False, True], ids=["middleware-inside-starlette", "middleware-outside"])
async def test_a_store_failure_raised_in_a_route_is_a_503_not_a_500(make_site, outer: bool) -> None:
    site = make_site(outer=outer, raise_app_exceptions=False)
    first = await site.login("alice")
    site.store.failing = {"*"}

    checked = await site.client.get("/checkdb", headers={"cookie": first.cookie})
    assert checked.status_code == 503
    assert checked.json() == UNAVAILABLE
    revoke = await site.client.post("/logout", headers={"cookie": first.cookie})
    assert_unavailable(revoke)


@pytest.mark.parametrize("failing", ["*", "get", "rotate"])
async def test_a_store_failure_during_refresh_is_a_503_and_the_old_token_survives(site: Site, failing: str) -> None:
    first = await site.login("alice")
    before = await site.store.get(first.handle)
    site.store.failing = {failing}

    response = await site.refresh(first.refresh)

    assert_unavailable(response)
    site.store.failing = set()
    assert await site.store.get(first.handle) == before
    retried = await site.refresh(first.refresh)
    assert retried.status_code == 200
    assert set_cookies(retried)["sRefreshToken"].value != first.refresh


async def test_login_during_an_outage_issues_nothing(site: Site) -> None:
    site.store.failing = {"*"}

    response = await site.client.post("/login", params={"user": "alice"})

    assert_unavailable(response)
    site.store.failing = set()
    assert await site.manager.get_all_session_handles_for_user("alice") == []


async def test_login_over_an_old_session_during_an_outage_issues_nothing(site: Site) -> None:
    old = await site.login("alice")
    site.store.failing = {"create"}

    response = await site.client.post("/login", params={"user": "alice"}, headers={"cookie": old.cookie})

    assert_unavailable(response)
    site.store.failing = set()
    assert await site.manager.get_all_session_handles_for_user("alice") == []


async def test_signout_during_an_outage_is_a_503_and_clears_nothing(site: Site) -> None:
    first = await site.login("alice")
    site.store.failing = {"delete"}

    response = await site.client.post(SIGNOUT, headers={"cookie": first.cookie})

    assert_unavailable(response)
    site.store.failing = set()
    assert await site.manager.get_session_information(first.handle) is not None
    assert (await site.client.post(REFRESH, headers={"cookie": f"sRefreshToken={first.refresh}"})).status_code == 200
