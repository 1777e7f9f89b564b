"""An unrelated ``Authorization`` header never hides the session cookie (issue 16, item 1).

With ``token_transfer_method="any"`` each allowed method is tried in turn, header then cookie, and a token is taken
only when it is shaped like ours. ``Bearer undefined``, another service's API key or JWT, or our refresh token sent
to an app route are ignored, and the cookie decides. A token shaped like ours that fails verification is "try
refresh token", with no fall-through. The refresh endpoint does the same with refresh tokens (their MAC decides).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from asgi_session import SessionConfig, SessionManager
from asgi_session.stores import MemoryStore
from asgi_session.tokens import looks_like_access_token
from tests.http.conftest import (
    REFRESH,
    TRY_REFRESH,
    UNAUTHORISED,
    LoggedIn,
    Site,
    assert_untouched,
    jwt_claims,
    jwt_header,
    set_cookies,
)

pytestmark = pytest.mark.anyio


def _b64u(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _jwt(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64u(header)}.{_b64u(payload)}.c2lnbmF0dXJl"


# A JWT of another issuer (an identity provider's ID token, another API's access token): kid, no version.
FOREIGN_JWT = _jwt(
    {"alg": "RS256", "typ": "JWT", "kid": "provider-key-1"},
    {"iss": "https://idp.example", "sub": "someone", "aud": "api", "exp": 4102444800, "iat": 1700000000},
)

NOT_OURS: dict[str, Callable[[LoggedIn], str]] = {
    "undefined": lambda alice: "Bearer undefined",
    "null": lambda alice: "Bearer null",
    "empty": lambda alice: "Bearer ",
    "scheme-alone": lambda alice: "Bearer",
    "api-key": lambda alice: "Bearer sk_live_51HqLyjWDarjtT1zdp7dc",
    "opaque-token": lambda alice: "Bearer 2YotnFZFEjr1zCsicMWpAA",
    "foreign-jwt": lambda alice: f"Bearer {FOREIGN_JWT}",
    "two-segments": lambda alice: "Bearer " + ".".join(alice.access.split(".")[:2]),
    "our-refresh-token": lambda alice: f"Bearer {alice.refresh}",
    "comma-joined-junk": lambda alice: "Bearer a, Bearer b",
    "basic": lambda alice: "Basic dXNlcjpwYXNz",
}


def _shaped_but_not_valid(alice: LoggedIn, other: str) -> dict[str, str]:
    header, payload, signature = alice.access.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    return {
        "bad-signature": f"{header}.{payload}.{flipped}",
        "truncated-signature": f"{header}.{payload}.{signature[:-8]}",
        "another-key-ring": other,
    }


async def _foreign_access_token() -> str:
    """A token with our exact structure, signed by a key ring this site does not hold."""
    other = SessionManager(MemoryStore())
    try:
        session = await other.create_new_session_without_request_response("mallory")
        return session.access_token
    finally:
        await other.close()


# -- the access token -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", NOT_OURS.values(), ids=NOT_OURS.keys())
async def test_an_authorization_value_that_is_not_ours_leaves_the_cookie_in_charge(
    site: Site, build: Callable[[LoggedIn], str]
) -> None:
    alice = await site.login("alice")
    response = await site.client.get("/me", headers={"authorization": build(alice), "cookie": alice.cookie})
    assert response.status_code == 200, response.text
    assert response.json()["user"] == "alice"
    assert_untouched(response)


@pytest.mark.parametrize("build", NOT_OURS.values(), ids=NOT_OURS.keys())
async def test_without_a_cookie_an_authorization_value_that_is_not_ours_is_no_session(
    site: Site, build: Callable[[LoggedIn], str]
) -> None:
    alice = await site.login("alice")
    response = await site.client.get("/me", headers={"authorization": build(alice)})
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_untouched(response)
    optional = await site.client.get("/optional", headers={"authorization": build(alice)})
    assert optional.status_code == 200
    assert optional.json() == {"user": None}


async def test_the_sdk_loop_of_issue_16_ends(site: Site) -> None:
    """The reported loop: an app sends ``Bearer undefined``; the SDK refreshed and retried forever."""
    alice = await site.login("alice")
    headers = {"authorization": "Bearer undefined", "cookie": alice.cookie}
    for _ in range(3):
        response = await site.client.post("/me", headers=headers)
        assert response.status_code == 200
        assert response.json()["user"] == "alice"


async def test_a_session_found_through_the_fallthrough_is_a_cookie_session(site: Site) -> None:
    """Changes to it go back as cookies, never as st-access-token headers."""
    alice = await site.login("alice")
    response = await site.client.post(
        "/merge", headers={"authorization": "Bearer undefined", "cookie": alice.cookie}, json={"plan": "pro"}
    )
    assert response.status_code == 200
    assert set(set_cookies(response)) == {"sAccessToken"}
    assert "st-access-token" not in response.headers
    assert jwt_claims(set_cookies(response)["sAccessToken"].value)["plan"] == "pro"


async def test_the_fallthrough_keeps_the_cookie_anti_csrf_check(make_site: Callable[..., Site]) -> None:
    """A junk Bearer header must not make a cookie request look like a header-mode one (which is never checked)."""
    site = make_site(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    alice = await site.login("alice")
    forged = await site.client.post("/me", headers={"authorization": "Bearer undefined", "cookie": alice.cookie})
    assert forged.status_code == 401
    assert forged.json() == TRY_REFRESH
    genuine = await site.client.post(
        "/me", headers={"authorization": "Bearer undefined", "cookie": alice.cookie, "rid": "anti-csrf"}
    )
    assert genuine.status_code == 200


@pytest.mark.parametrize("case", ["bad-signature", "truncated-signature", "another-key-ring", "expired"])
async def test_a_token_shaped_like_ours_that_fails_never_falls_through(site: Site, case: str) -> None:
    alice = await site.login("alice")
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    tokens = _shaped_but_not_valid(bob, await _foreign_access_token())
    if case == "expired":
        site.clock.advance(timedelta(hours=2))
        alice = await site.login("alice")  # a fresh cookie, while bob's header token has expired
        token = bob.access
    else:
        token = tokens[case]
    assert looks_like_access_token(token, 8192)
    response = await site.client.get("/me", headers={"authorization": f"Bearer {token}", "cookie": alice.cookie})
    assert response.status_code == 401
    assert response.json() == TRY_REFRESH
    assert_untouched(response)


async def test_a_valid_bearer_token_still_wins_over_the_cookie(site: Site) -> None:
    alice = await site.login("alice")
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    response = await site.client.get("/me", headers={"authorization": f"Bearer {bob.access}", "cookie": alice.cookie})
    assert response.status_code == 200
    assert response.json()["user"] == "bob"


@pytest.mark.parametrize(
    "values",
    [["Bearer undefined", "Bearer {bob}"], ["Basic dXNlcjpwYXNz", "Bearer {bob}"], ["Bearer {bob} trailing"]],
    ids=["two-headers-one-ours", "another-scheme-and-ours", "ours-with-trailing-garbage"],
)
async def test_a_token_of_ours_in_an_ambiguous_header_is_never_a_guess(site: Site, values: list[str]) -> None:
    alice = await site.login("alice")
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    headers = [("authorization", value.format(bob=bob.access)) for value in values]
    response = await site.client.get("/me", headers=[*headers, ("cookie", alice.cookie)])
    assert response.status_code == 401
    assert response.json() == TRY_REFRESH


async def test_header_only_mode_never_falls_back_to_the_cookie(make_site: Callable[..., Site]) -> None:
    site = make_site(SessionConfig(token_transfer_method="header"))
    response = await site.client.post("/login", params={"user": "alice"})
    access = response.headers["st-access-token"]
    junk = await site.client.get(
        "/me", headers={"authorization": "Bearer undefined", "cookie": f"sAccessToken={access}"}
    )
    assert junk.status_code == 401
    assert junk.json() == UNAUTHORISED
    good = await site.client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert good.status_code == 200


async def test_a_token_already_verified_skips_the_shape_check(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    calls: list[str] = []

    def counting(token: str, max_length: int) -> bool:
        calls.append(token)
        return looks_like_access_token(token, max_length)

    monkeypatch.setattr("asgi_session.transport.looks_like_access_token", counting)
    headers = {"authorization": f"Bearer {bob.access}"}
    assert (await site.client.get("/me", headers=headers)).status_code == 200
    checked = len(calls)
    assert (await site.client.get("/me", headers=headers)).status_code == 200
    assert len(calls) == checked  # the verified-token cache said "ours": a dict lookup, no JSON parse


# -- the shape check itself -------------------------------------------------------------------------------------


async def test_the_shape_of_our_access_token(site: Site) -> None:
    alice = await site.login("alice")
    assert looks_like_access_token(alice.access, 8192)
    header, payload, signature = alice.access.split(".")
    claims = jwt_claims(alice.access)
    fields = jwt_header(alice.access)
    without_version = {key: value for key, value in fields.items() if key != "version"}
    without_kid = {key: value for key, value in fields.items() if key != "kid"}
    without_claim = {key: value for key, value in claims.items() if key != "sessionHandle"}
    for value in (
        alice.access[:100],
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.x",
        f"{_b64u(without_version)}.{payload}.{signature}",
        f"{_b64u(without_kid)}.{payload}.{signature}",
        f"{header}.{_b64u(without_claim)}.{signature}",
        f"{header}.{_b64u([claims])}.{signature}",
        f"{header}.{payload}!.{signature}",
        f"{header}.{payload}.{signature}+",
        f"{_b64u('x')}.{payload}.{signature}",
        FOREIGN_JWT,
        alice.refresh,
        "undefined",
        "",
        "..",
    ):
        assert not looks_like_access_token(value, 8192), value
    assert not looks_like_access_token(alice.access, len(alice.access) - 1)
    # An empty or bad signature is still our shape: verification, not the shape check, refuses it.
    assert looks_like_access_token(f"{header}.{payload}.", 8192)


async def test_the_shape_check_survives_hostile_json() -> None:
    deep = "[" * 5000 + "]" * 5000
    for header, payload in (
        (deep, "{}"),
        ('{"kid":"a","version":"5","kid":"b"}', "{}"),
        ('{"kid":"a","version":"5"}', deep),
        ('{"kid":"a","version":"5"}', '{"sub":NaN}'),
    ):
        token = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode() + "."
        token += base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode() + ".sig"
        assert not looks_like_access_token(token, 10**6)
    assert not looks_like_access_token("\xff\xfe.\x00.a", 8192)


# -- the refresh endpoint ---------------------------------------------------------------------------------------


REFRESH_NOT_OURS: dict[str, Callable[[LoggedIn], str]] = {
    "undefined": lambda alice: "Bearer undefined",
    "empty": lambda alice: "Bearer ",
    "api-key": lambda alice: "Bearer sk_live_51HqLyjWDarjtT1zdp7dc",
    "our-access-token": lambda alice: f"Bearer {alice.access}",
    "forged-tag": lambda alice: f"Bearer {alice.refresh[:-4]}AAAA",
    "basic": lambda alice: "Basic dXNlcjpwYXNz",
}


@pytest.mark.parametrize("build", REFRESH_NOT_OURS.values(), ids=REFRESH_NOT_OURS.keys())
async def test_an_authorization_value_that_is_not_our_refresh_token_leaves_the_refresh_cookie_in_charge(
    site: Site, build: Callable[[LoggedIn], str]
) -> None:
    alice = await site.login("alice")
    assert build(alice) != f"Bearer {alice.refresh}"
    response = await site.refresh(alice.refresh, authorization=build(alice))
    assert response.status_code == 200, response.text
    assert response.json() == {}
    cookies = set_cookies(response)
    assert set(cookies) == {"sAccessToken", "sRefreshToken"}
    assert cookies["sRefreshToken"].value not in ("", alice.refresh)
    assert "st-refresh-token" not in response.headers
    assert response.headers["front-token"] not in ("", "remove")


async def test_our_refresh_token_in_the_header_still_wins_over_the_cookie(site: Site) -> None:
    alice = await site.login("alice")
    bob = await site.login("bob", headers={"st-auth-mode": "header"})
    response = await site.refresh(alice.refresh, authorization=f"Bearer {bob.refresh}")
    assert response.status_code == 200
    assert response.headers["st-refresh-token"] not in ("", bob.refresh)
    assert jwt_claims(response.headers["st-access-token"])["sub"] == "bob"


async def test_header_only_refresh_ignores_a_value_that_is_not_ours(make_site: Callable[..., Site]) -> None:
    site = make_site(SessionConfig(token_transfer_method="header"))
    response = await site.client.post(REFRESH, headers={"authorization": "Bearer undefined"})
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert response.headers.get_list("set-cookie") == []
    assert "st-access-token" not in response.headers
    assert "st-refresh-token" not in response.headers
