"""The first request with a refreshed access token brings no new token (issue 16, item 4).

A SuperTokens core keeps a refreshed session "unconfirmed" until the first request that uses the new access token,
and answers that request with yet another access token (it commits the rotation then). asgi-session commits the
rotation when it answers the refresh, so the first use is an ordinary request: no new ``front-token``, no new
access token, no store write; and the refresh token that refresh issued is the one that works next
(docs/frontend.md, "What differs from a SuperTokens backend").
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from tests.http.conftest import REFRESH, Site, assert_untouched, jwt_claims, set_cookies

pytestmark = pytest.mark.anyio

GRACE = 30  # SessionConfig.refresh_token_grace_period, in seconds


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _tokens_after_refresh(site: Site, mode: str, refresh_token: str) -> tuple[str, str]:
    """Refresh as the SDK does in ``mode``; return the new access and refresh tokens."""
    if mode == "cookie":
        response = await site.refresh(refresh_token, rid="session")
    else:
        response = await site.client.post(
            REFRESH, headers={"authorization": f"Bearer {refresh_token}", "rid": "session"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert response.headers["front-token"] != "remove"
    if mode == "cookie":
        cookies = set_cookies(response)
        return cookies["sAccessToken"].value, cookies["sRefreshToken"].value
    return response.headers["st-access-token"], response.headers["st-refresh-token"]


def _credentials(mode: str, access_token: str) -> dict[str, str]:
    if mode == "cookie":
        return {"cookie": f"sAccessToken={access_token}", "rid": "anti-csrf"}
    return {"authorization": f"Bearer {access_token}", "rid": "anti-csrf"}


async def _stored(site: Site, handle: str) -> dict[str, Any]:
    record = await site.store.get(handle)
    assert record is not None
    return dataclasses.asdict(record)


@pytest.mark.parametrize("mode", ["cookie", "header"])
async def test_the_first_request_with_a_refreshed_access_token_is_answered_without_a_new_token(
    site: Site, mode: str
) -> None:
    first = await site.login("alice", headers={"st-auth-mode": mode})
    site.clock.advance(10)
    access, refresh = await _tokens_after_refresh(site, mode, first.refresh)
    # The new access token names its parent refresh token: the claim a SuperTokens core keys its first-use
    # commit on. Here the rotation is already in the store.
    assert jwt_claims(access)["parentRefreshTokenHash1"] == sha256(first.refresh)
    committed = await _stored(site, first.handle)
    assert committed["refresh_hash"] == sha256(sha256(refresh))
    assert committed["previous_refresh_hash"] == sha256(sha256(first.refresh))
    assert committed["rotated_at"] == site.clock.now()

    site.clock.advance(1)
    for method, path in (("GET", "/me"), ("POST", "/me")):  # the first use, then another
        response = await site.client.request(method, path, headers=_credentials(mode, access))
        assert response.status_code == 200, response.text
        assert response.json()["handle"] == first.handle
        assert_untouched(response)  # no Set-Cookie, front-token, st-access-token, st-refresh-token or anti-csrf
        assert "access-control-expose-headers" not in response.headers
    assert await _stored(site, first.handle) == committed  # the first use wrote nothing

    # The refresh token of that refresh is the one that works next, after the grace window as well.
    site.clock.advance(GRACE + 1)
    _, onward = await _tokens_after_refresh(site, mode, refresh)
    assert onward != refresh
    rotated = await _stored(site, first.handle)
    assert rotated["previous_refresh_hash"] == sha256(sha256(refresh))
    assert rotated["refresh_hash"] == sha256(sha256(onward))


async def test_the_rotation_is_committed_at_refresh_even_if_the_new_access_token_is_never_used(site: Site) -> None:
    """No first use is needed: once the grace window has passed, the parent refresh token is superseded."""
    first = await site.login("alice")
    _, refresh = await _tokens_after_refresh(site, "cookie", first.refresh)
    site.clock.advance(GRACE + 1)

    replay = await site.refresh(first.refresh, rid="session")

    assert replay.status_code == 401
    assert replay.json() == {"message": "token theft detected"}
    assert await site.store.get(first.handle) is None
    after = await site.refresh(refresh, rid="session")
    assert after.status_code == 401
