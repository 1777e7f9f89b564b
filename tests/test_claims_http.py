"""Claims over HTTP (raw ASGI through httpx): the 403 body, re-fetching, re-issued tokens, the by-handle API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asgi_session import InvalidClaimsError, SessionConfig, SessionInformation
from asgi_session.claims import PrimitiveClaim, SessionClaimValidator
from tests._claims_app import REFRESH, Browser, ClaimsApp, front_payload

pytestmark = pytest.mark.anyio

MS = 1_700_000_000_000  # the fake clock's start, in ms


async def test_a_new_session_carries_the_claims_in_the_supertokens_shape() -> None:
    app = ClaimsApp()
    async with app.client() as client:
        browser = Browser(client)
        response = await client.post("/signin?user=admin")
        browser.take(response)
        assert front_payload(response)["st-role"] == {"v": ["admin"], "t": MS}
        claims = await app.manager.verify_access_token(browser.access)
        assert claims["st-role"] == {"v": ["admin"], "t": MS}


async def test_the_invalid_claim_body_is_exactly_supertokens() -> None:
    app = ClaimsApp()
    async with app.client() as client:
        browser = Browser(client)
        await browser.sign_in("alice")
        response = await browser.request("GET", "/admin")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert response.content == (
        b'{"message":"invalid claim","claimValidationErrors":[{"id":"st-role","reason":'
        b'{"message":"wrong value","expectedToInclude":"admin","actualValue":["user"]}}]}'
    )
    # The 403 neither clears nor re-issues anything when no value was re-fetched.
    assert response.headers.get_list("set-cookie") == []
    assert "front-token" not in response.headers


async def test_the_admin_passes_and_the_status_code_is_configurable() -> None:
    app = ClaimsApp(config=SessionConfig(invalid_claim_status_code=400))
    async with app.client() as client:
        admin, alice = Browser(client), Browser(client)
        await admin.sign_in("admin")
        await alice.sign_in("alice")
        assert (await admin.request("GET", "/admin")).json() == {"admin": "admin"}
        refused = await alice.request("GET", "/admin")
        assert refused.status_code == 400
        assert refused.json()["message"] == "invalid claim"


async def test_a_missing_claim_is_fetched_and_the_token_reissued_in_the_same_response() -> None:
    app = ClaimsApp()
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        await app.manager.remove_claim(handle, app.role)  # stored only; the token still has the value
        await browser.request("POST", REFRESH, rid="session")  # now the token lacks it too
        assert "st-role" not in await app.manager.verify_access_token(browser.access)
        app.roles.of["alice"] = ["admin"]
        fetches = app.roles.fetches
        old = browser.access
        response = await browser.request("GET", "/admin")
        assert response.status_code == 200
        assert app.roles.fetches == fetches + 1
        assert browser.access != old
        assert front_payload(response)["st-role"] == {"v": ["admin"], "t": MS}
        assert (await app.manager.get_session_information(handle)).custom_claims_in_access_token_payload == {  # type: ignore[union-attr]
            "st-role": {"v": ["admin"], "t": MS}
        }


async def test_a_stale_value_is_refetched_and_a_refusal_still_carries_the_new_token() -> None:
    app = ClaimsApp(global_validators=True, global_max_age=60)
    async with app.client() as client:
        browser = Browser(client)
        await browser.sign_in("alice")
        fetches = app.roles.fetches
        assert (await browser.request("GET", "/me")).status_code == 200
        assert app.roles.fetches == fetches  # fresh: no fetch
        app.clock.advance(61)
        app.roles.of["alice"] = ["banned"]
        old = browser.access
        refused = await browser.request("GET", "/me")
        assert app.roles.fetches == fetches + 1
        assert refused.status_code == 403
        assert refused.json() == {
            "message": "invalid claim",
            "claimValidationErrors": [
                {
                    "id": "st-role",
                    "reason": {"message": "wrong value", "expectedToNotInclude": "banned", "actualValue": ["banned"]},
                }
            ],
        }
        # The re-fetched value was stored and its token sent with the 403: the frontend sees the new roles.
        assert browser.access != old
        assert front_payload(refused)["st-role"] == {"v": ["banned"], "t": MS + 61_000}
        assert refused.headers["cache-control"] == "no-store"
        # The next request carries the fresh value: no second fetch.
        again = await browser.request("GET", "/me")
        assert again.status_code == 403
        assert app.roles.fetches == fetches + 1


async def test_global_validators_run_on_every_helper_and_an_override_removes_them() -> None:
    app = ClaimsApp(global_validators=True)
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        await app.manager.set_claim_value(handle, app.role, ["banned"])
        await browser.request("POST", REFRESH, rid="session")
        assert (await browser.request("GET", "/me")).status_code == 403
        assert (await browser.request("GET", "/admin")).json()["claimValidationErrors"] == [
            {
                "id": "st-role",
                "reason": {"message": "wrong value", "expectedToNotInclude": "banned", "actualValue": ["banned"]},
            },
            {
                "id": "st-role",
                "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["banned"]},
            },
        ]
        assert (await browser.request("GET", "/open")).json() == {"user": "alice"}


async def test_session_claim_methods_reissue_the_token_in_the_response() -> None:
    app = ClaimsApp()
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        response = await browser.request("POST", "/claim/set")
        assert response.json() == {"roles": ["editor"]}
        assert front_payload(response)["st-role"] == {"v": ["editor"], "t": MS}
        assert (await app.manager.get_claim_value(handle, app.role)) == ["editor"]

        response = await browser.request("POST", "/claim/remove")
        assert response.json() == {"roles": None}
        assert "st-role" not in front_payload(response)
        assert await app.manager.get_claim_value(handle, app.role) is None

        app.clock.advance(5)
        response = await browser.request("POST", "/claim/fetch")
        assert response.json() == {"roles": ["user"]}
        assert front_payload(response)["st-role"] == {"v": ["user"], "t": MS + 5000}


async def test_offline_changes_by_handle_reach_the_token_at_the_next_refresh() -> None:
    app = ClaimsApp()
    manager = app.manager
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in("alice")
        assert await manager.get_claim_value(handle, app.role) == ["user"]
        assert await manager.set_claim_value(handle, app.role, ["editor"])
        assert await manager.get_claim_value(handle, app.role) == ["editor"]
        # The live access token is unchanged until a refresh...
        assert (await browser.request("GET", "/me")).json()["roles"] == ["user"]
        refreshed = await browser.request("POST", REFRESH, rid="session")
        assert refreshed.status_code == 200
        assert front_payload(refreshed)["st-role"] == {"v": ["editor"], "t": MS}
        assert (await browser.request("GET", "/me")).json()["roles"] == ["editor"]

        assert await manager.remove_claim(handle, app.role)
        assert await manager.get_claim_value(handle, app.role) is None
        refreshed = await browser.request("POST", REFRESH, rid="session")
        assert "st-role" not in front_payload(refreshed)

        app.roles.of["alice"] = ["admin"]
        app.clock.advance(1)
        assert await manager.fetch_and_set_claim(handle, app.role)
        refreshed = await browser.request("POST", REFRESH, rid="session")
        assert front_payload(refreshed)["st-role"] == {"v": ["admin"], "t": MS + 1000}
        assert (await browser.request("GET", "/admin")).status_code == 200


async def test_offline_claim_calls_on_a_missing_session() -> None:
    app = ClaimsApp()
    manager = app.manager
    assert await manager.set_claim_value("no-such-handle", app.role, ["x"]) is False
    assert await manager.remove_claim("no-such-handle", app.role) is False
    assert await manager.fetch_and_set_claim("no-such-handle", app.role) is False
    assert await manager.get_claim_value("no-such-handle", app.role) is None
    assert await manager.validate_claims_for_session_handle("no-such-handle") is None
    async with app.client() as client:
        handle = await Browser(client).sign_in("alice")
    await manager.revoke_session(handle)
    assert await manager.get_claim_value(handle, app.role) is None
    assert await manager.set_claim_value(handle, app.role, ["x"]) is False


async def test_validate_claims_for_session_handle_refetches_and_stores() -> None:
    app = ClaimsApp(global_validators=True, global_max_age=10)
    manager = app.manager
    async with app.client() as client:
        handle = await Browser(client).sign_in("alice")
    assert await manager.validate_claims_for_session_handle(handle) == []
    app.clock.advance(11)
    app.roles.of["alice"] = ["banned"]
    errors = await manager.validate_claims_for_session_handle(handle)
    assert errors == [
        {
            "id": "st-role",
            "reason": {"message": "wrong value", "expectedToNotInclude": "banned", "actualValue": ["banned"]},
        }
    ]
    assert await manager.get_claim_value(handle, app.role) == ["banned"]
    seen: list[Any] = []

    async def only_admin(validators: list[SessionClaimValidator], info: Any) -> list[SessionClaimValidator]:
        seen.append(info)
        return [app.role.validators.includes("admin")]

    errors = await manager.validate_claims_for_session_handle(handle, override_global_claim_validators=only_admin)
    assert errors is not None
    assert [e["reason"]["expectedToInclude"] for e in errors] == ["admin"]
    assert isinstance(seen[0], SessionInformation)
    assert seen[0].session_handle == handle


async def test_get_session_without_request_response_runs_the_validators() -> None:
    app = ClaimsApp(global_validators=True)
    manager = app.manager
    created = await manager.create_new_session_without_request_response("alice")
    token = created.access_token
    session = await manager.get_session_without_request_response(token, anti_csrf_check=False)
    assert session is not None
    with pytest.raises(InvalidClaimsError) as refused:
        await manager.get_session_without_request_response(
            token,
            anti_csrf_check=False,
            override_global_claim_validators=lambda g, s: [app.role.validators.includes("admin")],
        )
    assert refused.value.errors == [
        {"id": "st-role", "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}}
    ]
    # A validator that re-fetches re-issues the token; the caller reads it from the session.
    plan = PrimitiveClaim("plan", lambda *_: "pro")
    session = await manager.get_session_without_request_response(
        token, anti_csrf_check=False, override_global_claim_validators=lambda g, s: [plan.validators.has_value("pro")]
    )
    assert session is not None
    tokens = session.get_all_session_tokens_dangerously()
    assert tokens["accessAndFrontTokenUpdated"] is True
    assert (await manager.verify_access_token(tokens["accessToken"]))["plan"] == {"v": "pro", "t": MS}


def test_the_manager_refuses_bad_claim_configuration() -> None:
    from asgi_session import ConfigurationError, SessionManager
    from asgi_session.stores import MemoryStore

    one = PrimitiveClaim("plan", lambda *_: "a")
    with pytest.raises(ConfigurationError, match="share a key"):
        SessionManager(MemoryStore(), claims=[one, PrimitiveClaim("plan", lambda *_: "b")])
    with pytest.raises(ConfigurationError, match="SessionClaim"):
        SessionManager(MemoryStore(), claims=["plan"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="not a claim validator"):
        SessionManager(MemoryStore(), global_claim_validators=[one])  # type: ignore[list-item]


async def test_a_claim_value_that_is_not_json_is_refused_before_anything_is_stored() -> None:
    from asgi_session import InvalidPayloadError

    app = ClaimsApp()
    async with app.client() as client:
        handle = await Browser(client).sign_in("alice")
    bad: Any = [object()]
    with pytest.raises(InvalidPayloadError):
        await app.manager.set_claim_value(handle, app.role, bad)
    assert await app.manager.get_claim_value(handle, app.role) == ["user"]
    assert json.dumps(await app.manager.get_claim_value(handle, app.role)) == '["user"]'


async def test_in_header_mode_the_refused_request_gets_the_new_token_in_a_header() -> None:
    app = ClaimsApp(global_validators=True, global_max_age=10)
    async with app.client() as client:
        signed_in = await client.post("/signin?user=alice", headers={"st-auth-mode": "header"})
        access = signed_in.headers["st-access-token"]
        app.clock.advance(11)
        app.roles.of["alice"] = ["banned"]
        refused = await client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert refused.status_code == 403
    reissued = refused.headers["st-access-token"]
    assert reissued != access
    assert (await app.manager.verify_access_token(reissued))["st-role"] == {"v": ["banned"], "t": MS + 11_000}
    assert refused.headers.get_list("set-cookie") == []
