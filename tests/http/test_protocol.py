"""The SuperTokens wire protocol (PROTOCOL.md): refresh, sign-out, JWKS, verifying requests, in-route changes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta

import pytest

from asgi_session import InvalidPayloadError, SessionConfig
from tests.http.conftest import (
    ACCESS_COOKIE_LIFETIME,
    EXPOSED,
    JWKS,
    REFRESH,
    SIGNOUT,
    STREAM_CHUNKS,
    TRY_REFRESH,
    UNAUTHORISED,
    Site,
    asgi_call,
    assert_cleared,
    assert_untouched,
    body_of,
    by_name,
    decode_front_token,
    expected_cleared,
    http_date,
    jwt_claims,
    jwt_header,
    set_cookies,
    start_headers,
)

pytestmark = pytest.mark.anyio

HOUR = 3600
REFRESH_VALIDITY = timedelta(days=100).total_seconds()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- refresh ------------------------------------------------------------------------------------------------------


async def test_refresh_in_cookie_mode_issues_new_tokens_with_exact_attributes(site: Site) -> None:
    first = await site.login("alice")
    site.clock.advance(10)
    now = site.clock.now()

    response = await site.refresh(first.refresh, rid="session")

    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.headers.get_list("access-control-expose-headers") == [EXPOSED]
    assert "st-access-token" not in response.headers
    assert "st-refresh-token" not in response.headers
    cookies = set_cookies(response)
    assert sorted(cookies) == ["sAccessToken", "sRefreshToken"]
    access, refresh = cookies["sAccessToken"].value, cookies["sRefreshToken"].value
    assert access != first.access
    assert refresh != first.refresh
    info = await site.manager.get_session_information(first.handle)
    assert info is not None
    assert info.expiry == int((now + REFRESH_VALIDITY) * 1000)
    assert cookies["sAccessToken"].raw == (
        f"sAccessToken={access}; Path=/; Expires={http_date(now + ACCESS_COOKIE_LIFETIME.total_seconds())}; "
        "HttpOnly; Secure; SameSite=Lax"
    )
    assert cookies["sRefreshToken"].raw == (
        f"sRefreshToken={refresh}; Path=/auth/session/refresh; Expires={http_date(info.expiry / 1000)}; "
        "HttpOnly; Secure; SameSite=Lax"
    )
    claims = jwt_claims(access)
    assert claims["exp"] == int(now) + HOUR
    assert claims["sessionHandle"] == first.handle
    assert claims["refreshTokenHash1"] == sha256(refresh)
    assert claims["parentRefreshTokenHash1"] == sha256(first.refresh)
    assert decode_front_token(response.headers["front-token"]) == {
        "uid": "alice",
        "ate": claims["exp"] * 1000,
        "up": claims,
    }

    me = await site.client.get("/me", headers={"cookie": f"sAccessToken={access}"})
    assert me.status_code == 200
    assert me.json()["handle"] == first.handle
    again = await site.refresh(refresh)
    assert again.status_code == 200


async def test_login_front_token_carries_the_whole_payload(site: Site) -> None:
    role = "???~~~>>>"  # its JSON makes the standard base64 alphabet show '+' and '/'
    first = await site.login("alice", role=role)
    claims = jwt_claims(first.access)
    assert claims["role"] == role
    front = first.response.headers["front-token"]
    assert "+" in front or "/" in front
    assert claims["parentRefreshTokenHash1"] is None
    assert decode_front_token(first.response.headers["front-token"]) == {
        "uid": "alice",
        "ate": claims["exp"] * 1000,
        "up": claims,
    }
    header = jwt_header(first.access)
    assert header["typ"] == "JWT"
    assert header["version"] == "5"
    assert header["alg"] == "ES256"


async def test_expose_headers_are_appended_to_the_apps_own_value(site: Site) -> None:
    response = await site.client.post("/login", params={"user": "alice", "expose": "X-Request-Id"})
    assert response.status_code == 200
    assert response.headers.get_list("access-control-expose-headers") == [f"X-Request-Id, {EXPOSED}"]
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_refresh_in_header_mode_answers_in_headers_without_cookies(site: Site) -> None:
    first = await site.login("alice", headers={"st-auth-mode": "header"})
    site.clock.advance(5)

    response = await site.client.post(REFRESH, headers={"authorization": f"Bearer {first.refresh}"})

    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers.get_list("set-cookie") == []
    access = response.headers["st-access-token"]
    refresh = response.headers["st-refresh-token"]
    assert refresh != first.refresh
    claims = jwt_claims(access)
    assert claims["parentRefreshTokenHash1"] == sha256(first.refresh)
    assert claims["refreshTokenHash1"] == sha256(refresh)
    assert decode_front_token(response.headers["front-token"])["ate"] == claims["exp"] * 1000
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.headers.get_list("access-control-expose-headers") == [EXPOSED]
    me = await site.client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert me.status_code == 200


async def test_refresh_in_header_mode_clears_cookies_the_request_carried(site: Site) -> None:
    first = await site.login("alice", headers={"st-auth-mode": "header"})
    response = await site.client.post(
        REFRESH,
        headers={
            "authorization": f"Bearer {first.refresh}",
            "cookie": "sAccessToken=stale-access; sRefreshToken=stale-refresh",
        },
    )
    assert response.status_code == 200
    assert set(response.headers.get_list("set-cookie")) == expected_cleared()
    assert response.headers["st-refresh-token"] not in ("", first.refresh)
    assert jwt_claims(response.headers["st-access-token"])["sessionHandle"] == first.handle
    assert response.headers["front-token"] != "remove"


async def test_refresh_probe_without_any_token_is_a_clean_unauthorised(site: Site) -> None:
    response = await site.client.post(REFRESH, headers={"rid": "session", "fdi-version": "1.18,2.0"})
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    # No token was presented, so nothing is cleared (a cross-site post must not sign anyone out).
    assert response.headers.get_list("set-cookie") == []
    assert response.headers.get_list("front-token") == ["remove"]


@pytest.mark.parametrize("why", ["unknown", "expired", "revoked"])
async def test_refresh_with_a_dead_refresh_token_is_unauthorised_and_clears(site: Site, why: str) -> None:
    first = await site.login("alice")
    token = first.refresh
    if why == "unknown":
        token = "a-refresh-token-the-server-never-issued"
    elif why == "expired":
        site.clock.advance(REFRESH_VALIDITY + 1)
    else:
        assert await site.manager.revoke_session(first.handle) is True

    response = await site.refresh(token)

    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_cleared(response)


async def test_refresh_never_extends_past_the_absolute_lifetime(make_site) -> None:
    site = make_site(SessionConfig(session_max_lifetime=timedelta(days=1)))
    created = site.clock.now()
    first = await site.login("alice")
    assert set_cookies(first.response)["sRefreshToken"].attrs["Expires"] == http_date(created + 86400)
    site.clock.advance(86400 - 1800)

    response = await site.refresh(first.refresh)

    assert response.status_code == 200
    cookies = set_cookies(response)
    assert cookies["sRefreshToken"].attrs["Expires"] == http_date(created + 86400)
    assert jwt_claims(cookies["sAccessToken"].value)["exp"] == int(created) + 86400
    site.clock.advance(1800)
    late = await site.refresh(cookies["sRefreshToken"].value)
    assert late.status_code == 401
    assert late.json() == UNAUTHORISED
    assert_cleared(late)


async def test_replaying_the_parent_after_the_grace_window_is_theft(site: Site) -> None:
    first = await site.login("alice")
    child = await site.refresh(first.refresh)
    assert child.status_code == 200
    child_refresh = set_cookies(child)["sRefreshToken"].value
    site.clock.advance(31)

    response = await site.refresh(first.refresh)

    assert response.status_code == 401
    assert response.json() == {"message": "token theft detected"}
    assert_cleared(response)
    assert await site.manager.get_session_information(first.handle) is None
    assert await site.store.get(first.handle) is None
    after = await site.refresh(child_refresh)
    assert after.status_code == 401
    assert after.json() == UNAUTHORISED


@pytest.mark.parametrize("delay", [0, 29])
async def test_replaying_the_parent_within_the_grace_window_gets_the_same_child(site: Site, delay: int) -> None:
    first = await site.login("alice")
    child = await site.refresh(first.refresh)
    child_refresh = set_cookies(child)["sRefreshToken"].value
    site.clock.advance(delay)

    replay = await site.refresh(first.refresh)

    assert replay.status_code == 200
    assert replay.json() == {}
    cookies = set_cookies(replay)
    assert cookies["sRefreshToken"].value == child_refresh
    assert jwt_claims(cookies["sAccessToken"].value)["refreshTokenHash1"] == sha256(child_refresh)
    assert decode_front_token(replay.headers["front-token"])["uid"] == "alice"
    assert await site.manager.get_session_information(first.handle) is not None
    onward = await site.refresh(child_refresh)
    assert onward.status_code == 200


async def test_get_on_the_refresh_endpoint_is_405_and_changes_nothing(site: Site) -> None:
    first = await site.login("alice")
    before = await site.store.get(first.handle)

    response = await site.client.get(REFRESH, headers={"cookie": f"sRefreshToken={first.refresh}"})

    assert response.status_code == 405
    assert response.json() == {"message": "method not allowed"}
    assert response.headers["allow"] == "POST"
    assert_untouched(response)
    assert await site.store.get(first.handle) == before
    rotated = await site.refresh(first.refresh)
    assert rotated.status_code == 200
    record = await site.store.get(first.handle)
    assert record is not None
    assert record.previous_refresh_hash is not None


async def test_get_on_signout_is_405_and_the_session_survives(site: Site) -> None:
    first = await site.login("alice")

    response = await site.client.get(SIGNOUT, headers={"cookie": first.cookie})

    assert response.status_code == 405
    assert response.json() == {"message": "method not allowed"}
    assert response.headers["allow"] == "POST"
    assert_untouched(response)
    assert await site.manager.get_session_information(first.handle) is not None
    checked = await site.client.get("/checkdb", headers={"cookie": first.cookie})
    assert checked.status_code == 200


async def test_refresh_tolerates_the_clients_own_cookies(site: Site) -> None:
    first = await site.login("alice")
    front = base64.b64encode(b"\xfb\xff\xbf" + json.dumps({"uid": "alice"}).encode() + b"\x00").decode()
    assert "+" in front
    assert "/" in front
    assert front.endswith("=")
    site.clock.advance(HOUR + 1)  # the usual reason to refresh: the access token has expired
    cookie = (
        f"sAccessToken={first.access}; sFrontToken={front}; st-last-access-token-update=1700000000000; "
        f"sRefreshToken={first.refresh}"
    )

    response = await site.client.post(REFRESH, headers={"cookie": cookie, "rid": "session"})

    assert response.status_code == 200
    assert response.json() == {}
    cookies = set_cookies(response)
    assert cookies["sRefreshToken"].value != first.refresh
    assert jwt_claims(cookies["sAccessToken"].value)["sessionHandle"] == first.handle


# -- sign-out -----------------------------------------------------------------------------------------------------


async def test_signout_revokes_and_clears(site: Site) -> None:
    first = await site.login("alice")

    response = await site.client.post(SIGNOUT, headers={"cookie": first.cookie, "rid": "session"})

    assert response.status_code == 200
    assert response.json() == {"status": "OK"}
    assert_cleared(response)
    assert response.headers.get_list("access-control-expose-headers") == [EXPOSED]
    assert await site.store.get(first.handle) is None
    refreshed = await site.refresh(first.refresh)
    assert refreshed.status_code == 401
    assert refreshed.json() == UNAUTHORISED


async def test_signout_with_an_expired_access_token_asks_for_a_refresh(site: Site) -> None:
    first = await site.login("alice")
    site.clock.advance(HOUR)

    response = await site.client.post(SIGNOUT, headers={"cookie": first.cookie})

    assert response.status_code == 401
    assert response.json() == TRY_REFRESH
    assert_untouched(response)
    assert await site.manager.get_session_information(first.handle) is not None


async def test_signout_clears_each_cookie_with_the_path_it_was_set_with(make_site) -> None:
    site = make_site(SessionConfig(api_base_path="/api/v2/auth"))
    first = await site.login("alice")
    issued = set_cookies(first.response)
    assert issued["sRefreshToken"].attrs["Path"] == "/api/v2/auth/session/refresh"

    response = await site.client.post("/api/v2/auth/signout", headers={"cookie": first.cookie})

    assert response.status_code == 200
    cleared = set_cookies(response)
    assert sorted(cleared) == ["sAccessToken", "sRefreshToken"]
    for name, cookie in cleared.items():
        assert cookie.is_clearing
        assert cookie.attrs["Path"] == issued[name].attrs["Path"]
        assert cookie.attrs.get("Domain") == issued[name].attrs.get("Domain")
    assert set(response.headers.get_list("set-cookie")) == expected_cleared(refresh_path="/api/v2/auth/session/refresh")


async def test_after_signout_the_old_access_token_fails_the_database_check(site: Site) -> None:
    first = await site.login("alice")
    assert (await site.client.get("/checkdb", headers={"cookie": first.cookie})).status_code == 200
    signout = await site.client.post(SIGNOUT, headers={"cookie": first.cookie})
    assert signout.status_code == 200

    response = await site.client.get("/checkdb", headers={"cookie": first.cookie})

    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_cleared(response)


# -- JWKS ---------------------------------------------------------------------------------------------------------


async def test_jwks_lists_the_signing_key_with_a_cache_lifetime(site: Site) -> None:
    first = await site.login("alice")

    response = await site.client.get(JWKS)

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert set(response.json()) == {"keys"}
    assert keys
    for key in keys:
        assert key["alg"] == "ES256"
        assert key["kty"] == "EC"
        assert key["kid"]
        assert "d" not in key  # never the private part
    assert jwt_header(first.access)["kid"] in {key["kid"] for key in keys}
    match = re.fullmatch(r"max-age=(\d+), must-revalidate", response.headers["cache-control"])
    assert match is not None
    assert int(match.group(1)) > 0
    assert_untouched(response)


async def test_jwks_refuses_post(site: Site) -> None:
    response = await site.client.post(JWKS)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


# -- verifying a request ------------------------------------------------------------------------------------------


async def test_missing_token_on_a_required_route_is_unauthorised_without_clearing(site: Site) -> None:
    response = await site.client.get("/me")
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert_untouched(response)
    optional = await site.client.get("/optional")
    assert optional.status_code == 200
    assert optional.json() == {"user": None}


@pytest.mark.parametrize("path", ["/me", "/optional"])
async def test_expired_access_token_asks_for_a_refresh_without_clearing(site: Site, path: str) -> None:
    first = await site.login("alice")
    site.clock.advance(HOUR - 1)
    assert (await site.client.get(path, headers={"cookie": first.cookie})).status_code == 200
    site.clock.advance(1)

    response = await site.client.get(path, headers={"cookie": first.cookie})

    assert response.status_code == 401
    assert response.json() == TRY_REFRESH
    assert_untouched(response)


@pytest.mark.parametrize("order", ["alice-first", "bob-first"])
async def test_two_access_cookies_ask_for_a_refresh_instead_of_guessing(site: Site, order: str) -> None:
    alice = await site.login("alice")
    bob = await site.login("bob")
    pair = [alice.cookie, bob.cookie] if order == "alice-first" else [bob.cookie, alice.cookie]

    response = await site.client.get("/me", headers={"cookie": "; ".join(pair)})

    assert response.status_code == 401
    assert response.json() == TRY_REFRESH
    assert_untouched(response)


async def test_an_authorization_header_with_our_token_means_cookies_are_not_consulted(site: Site) -> None:
    alice = await site.login("alice")
    bob = await site.login("bob", headers={"st-auth-mode": "header"})

    # A token shaped like ours that fails (bob's, with a broken signature) is answered alone: no fall-through.
    broken = bob.access[:-4] + ("AAAA" if not bob.access.endswith("AAAA") else "BBBB")
    bad_bearer = await site.client.get("/me", headers={"cookie": alice.cookie, "authorization": f"Bearer {broken}"})
    assert bad_bearer.status_code == 401
    assert bad_bearer.json() == TRY_REFRESH
    assert_untouched(bad_bearer)

    good_bearer = await site.client.get(
        "/me", headers={"cookie": alice.cookie, "authorization": f"Bearer {bob.access}"}
    )
    assert good_bearer.status_code == 200
    assert good_bearer.json()["user"] == "bob"


async def test_the_session_cookie_in_a_second_cookie_header_is_read(site: Site) -> None:
    first = await site.login("alice")
    headers = [
        (b"cookie", b"sFrontToken=abc=; st-last-access-token-update=1"),
        (b"cookie", first.cookie.encode()),
    ]

    messages = await asgi_call(site.app, "GET", "/me", headers)

    assert messages[0]["status"] == 200
    assert json.loads(body_of(messages))["handle"] == first.handle


@pytest.mark.parametrize("outer", [False, True], ids=["middleware-inside-starlette", "middleware-outside"])
async def test_a_session_error_in_a_route_is_the_protocol_401_not_a_500(make_site, outer: bool) -> None:
    site = make_site(outer=outer, raise_app_exceptions=False)
    first = await site.login("alice")

    missing = await site.client.get("/me")
    assert missing.status_code == 401
    assert missing.text == '{"message":"unauthorised"}'
    assert_untouched(missing)

    site.clock.advance(HOUR)
    expired = await site.client.post("/me", headers={"cookie": first.cookie})
    assert expired.status_code == 401
    assert expired.text == '{"message":"try refresh token"}'

    garbage = await site.client.post("/logout", headers={"cookie": "sAccessToken=garbage"})
    assert garbage.status_code == 401
    assert garbage.json() == TRY_REFRESH


@pytest.mark.parametrize("outer", [False, True], ids=["middleware-inside-starlette", "middleware-outside"])
async def test_an_application_bug_stays_a_500(make_site, outer: bool) -> None:
    site = make_site(outer=outer, raise_app_exceptions=False)
    first = await site.login("alice")

    response = await site.client.get("/boom", headers={"cookie": first.cookie})

    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert_untouched(response)


async def test_an_application_bug_is_re_raised_to_the_server(make_site) -> None:
    site = make_site(outer=True)
    with pytest.raises(RuntimeError, match="an application bug"):
        await site.client.get("/boom")


async def test_a_custom_session_expired_status_code_is_used(make_site) -> None:
    site = make_site(SessionConfig(session_expired_status_code=440))
    first = await site.login("alice")

    missing = await site.client.get("/me")
    assert missing.status_code == 440
    assert missing.json() == UNAUTHORISED

    site.clock.advance(HOUR)
    expired = await site.client.get("/me", headers={"cookie": first.cookie})
    assert expired.status_code == 440
    assert expired.json() == TRY_REFRESH

    probe = await site.client.post(REFRESH)
    assert probe.status_code == 440
    assert probe.json() == UNAUTHORISED
    assert probe.headers.get_list("front-token") == ["remove"]


# -- create_new_session -------------------------------------------------------------------------------------------


async def test_every_login_mints_a_new_handle(site: Site) -> None:
    handles = {(await site.login("alice")).handle for _ in range(3)}
    assert len(handles) == 3
    assert sorted(await site.manager.get_all_session_handles_for_user("alice")) == sorted(handles)


async def test_login_while_carrying_a_valid_session_revokes_it(site: Site) -> None:
    old = await site.login("mallory")

    response = await site.client.post("/login", params={"user": "alice"}, headers={"cookie": old.cookie})

    assert response.status_code == 200
    new_handle = response.json()["handle"]
    assert new_handle != old.handle
    assert len(response.headers.get_list("set-cookie")) == 2
    cookies = set_cookies(response)
    assert sorted(cookies) == ["sAccessToken", "sRefreshToken"]
    assert not any(cookie.is_clearing for cookie in cookies.values())
    assert jwt_claims(cookies["sAccessToken"].value)["sessionHandle"] == new_handle
    assert decode_front_token(response.headers["front-token"])["uid"] == "alice"
    assert await site.manager.get_session_information(old.handle) is None
    refused = await site.client.get("/checkdb", headers={"cookie": old.cookie})
    assert refused.status_code == 401
    assert refused.json() == UNAUTHORISED
    stale = await site.refresh(old.refresh)
    assert stale.status_code == 401


@pytest.mark.parametrize(
    "value", ["made-up", "00000000-0000-0000-0000-000000000000", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."]
)
async def test_login_with_a_made_up_cookie_mints_a_new_session(site: Site, value: str) -> None:
    response = await site.client.post("/login", params={"user": "alice"}, headers={"cookie": f"sAccessToken={value}"})

    assert response.status_code == 200
    handle = response.json()["handle"]
    assert handle != value
    cookies = set_cookies(response)
    assert cookies["sAccessToken"].value not in ("", value)
    assert jwt_claims(cookies["sAccessToken"].value)["sessionHandle"] == handle
    assert await site.manager.get_all_session_handles_for_user("alice") == [handle]


# -- changes made inside a route ----------------------------------------------------------------------------------


async def test_revoke_in_a_route_clears_the_tokens_in_the_same_response(site: Site) -> None:
    first = await site.login("alice")

    response = await site.client.post("/logout", headers={"cookie": first.cookie})

    assert response.status_code == 200
    assert response.json() == {"status": "revoked"}
    assert_cleared(response)
    assert await site.store.get(first.handle) is None


async def test_merge_reissues_the_access_token_in_the_same_response(site: Site) -> None:
    first = await site.login("alice")
    old_claims = jwt_claims(first.access)
    site.clock.advance(60)

    response = await site.client.post("/merge", headers={"cookie": first.cookie}, json={"role": "admin"})

    assert response.status_code == 200
    assert response.json()["payload"] == {"role": "admin"}
    assert response.headers.get_list("cache-control") == ["no-store"]
    cookies = set_cookies(response)
    assert list(cookies) == ["sAccessToken"]
    access = cookies["sAccessToken"].value
    claims = jwt_claims(access)
    assert claims["role"] == "admin"
    assert claims["exp"] == old_claims["exp"]
    assert claims["sessionHandle"] == first.handle
    assert decode_front_token(response.headers["front-token"]) == {
        "uid": "alice",
        "ate": claims["exp"] * 1000,
        "up": claims,
    }
    me = await site.client.get("/me", headers={"cookie": f"sAccessToken={access}"})
    assert me.json()["payload"] == {"role": "admin"}
    refreshed = await site.refresh(first.refresh)
    assert jwt_claims(set_cookies(refreshed)["sAccessToken"].value)["role"] == "admin"

    removed = await site.client.post("/merge", headers={"cookie": f"sAccessToken={access}"}, json={"role": None})
    assert "role" not in jwt_claims(set_cookies(removed)["sAccessToken"].value)


async def test_a_streaming_response_streams_every_chunk_with_the_token_headers(site: Site) -> None:
    first = await site.login("alice")

    messages = await asgi_call(site.app, "GET", "/stream?merge=1", [(b"cookie", first.cookie.encode())])

    assert messages[0]["type"] == "http.response.start"
    assert messages[0]["status"] == 200
    headers = start_headers(messages)
    set_cookie = by_name(headers, "set-cookie")
    assert len(set_cookie) == 1
    assert set_cookie[0].startswith("sAccessToken=")
    access = set_cookie[0].split(";")[0].removeprefix("sAccessToken=")
    assert jwt_claims(access)["streamed"] is True
    assert decode_front_token(by_name(headers, "front-token")[0])["up"]["streamed"] is True
    assert by_name(headers, "cache-control") == ["no-store"]
    bodies = [m for m in messages[1:] if m["type"] == "http.response.body" and m.get("body")]
    assert len(bodies) == STREAM_CHUNKS
    assert all(m["type"] == "http.response.body" for m in messages[1:])
    assert messages[-1].get("more_body", False) is False
    assert body_of(messages) == b"".join(f"alice:{n}\n".encode() for n in range(STREAM_CHUNKS))

    plain = await site.client.get("/stream", headers={"cookie": first.cookie})
    assert plain.status_code == 200
    assert plain.text == "".join(f"alice:{n}\n" for n in range(STREAM_CHUNKS))
    assert_untouched(plain)


# -- tokens too big for a cookie ----------------------------------------------------------------------------------

BIG = "x" * 5000  # an access token carrying this cannot fit in a 4096-byte cookie


async def test_a_merge_too_big_for_a_cookie_does_not_poison_the_session(make_site) -> None:
    site = make_site(raise_app_exceptions=False)
    first = await site.login("alice")

    response = await site.client.post("/merge", headers={"cookie": first.cookie}, json={"big": BIG})

    assert response.status_code == 500  # documented: an oversized cookie is a developer error
    assert_untouched(response)
    # The failed merge must not leave a payload behind that no cookie can carry: the session still refreshes.
    refreshed = await site.refresh(first.refresh)
    assert refreshed.status_code == 200
    assert "big" not in jwt_claims(set_cookies(refreshed)["sAccessToken"].value)


async def test_an_offline_merge_too_big_for_a_cookie_is_refused_and_refresh_still_works(make_site) -> None:
    # A payload that no cookie could carry is refused before it is stored, so a later refresh can never rotate
    # the token and then fail to write it (which would turn the client's retry into a false theft verdict).
    site = make_site(raise_app_exceptions=False)
    first = await site.login("alice")
    with pytest.raises(InvalidPayloadError):
        await site.manager.merge_into_access_token_payload(first.handle, {"big": BIG})

    refreshed = await site.refresh(first.refresh)

    assert refreshed.status_code == 200
    assert refreshed.json() == {}
    assert "big" not in jwt_claims(set_cookies(refreshed)["sAccessToken"].value)


async def test_a_login_whose_cookie_cannot_be_written_is_a_500_without_cookies(make_site) -> None:
    # An oversized payload is a developer error (InvalidPayloadError, so a 500 here); nothing is stored.
    site = make_site(raise_app_exceptions=False)

    response = await site.client.post("/login", params={"user": "alice", "role": BIG})

    assert response.status_code == 500
    assert_untouched(response)
    assert await site.manager.get_all_session_handles_for_user("alice") == []
