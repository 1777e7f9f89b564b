"""Session claims through the SuperTokens frontend SDK, in Chromium (issue 15, item 4).

The backend puts the ``st-role`` claim into every new session with asgi_session's ``PrimitiveArrayClaim`` and guards
``GET /api/admin`` with ``validators.includes("admin")``. The page runs the SDK's own ``UserRoleClaim`` (from the
user-roles bundle of supertokens-web-js) over the same access-token payload, and reads our 403 with the SDK's
``getInvalidClaimsFromResponse``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser._apps import ROLE_CLAIM, Backend
from tests.browser._tab import Tab

pytestmark = pytest.mark.browser

ADMIN_ROUTE = "/api/admin"
ROLE = "() => supertokensSession.getClaimValue({claim: supertokensUserRoles.UserRoleClaim})"
# validateClaims with the SDK's own validator in place of the global ones: [] when it passes, else the failures.
VALIDATE = """() => supertokensSession.validateClaims({
  overrideGlobalClaimValidators: () => [supertokensUserRoles.UserRoleClaim.validators.includes("admin")],
})"""
# The app's call of the claim-guarded route, and what the SDK makes of the answer.
CALL_ADMIN = """async (path) => {
  const response = await api(path);
  const invalidClaims = await supertokensSession.getInvalidClaimsFromResponse({response});
  return {status: response.status, body: await response.json(), invalidClaims, events: [...window.sessionEvents]};
}"""
WRONG_VALUE = {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}


def signed_in(serve: Callable[..., Backend], new_tab: Callable[..., Tab], *users: str) -> list[Tab]:
    """One backend with the role claim, and a browser context signed in for each user."""
    backend = serve(claims=(ROLE_CLAIM,))
    tabs = []
    for user in users:
        tab = new_tab()
        tab.open_sdk_page(backend.url)
        assert tab.sign_in(user)["status"] == 200
        tabs.append(tab)
    return tabs


def test_the_sdk_user_role_claim_passes_for_an_admin_and_fails_for_another_user(
    serve: Callable[..., Backend], new_tab: Callable[..., Tab]
) -> None:
    admin, alice = signed_in(serve, new_tab, "admin", "alice")

    # The SDK reads our st-role claim as its UserRoleClaim: {"v": [...], "t": ms} in the access-token payload.
    for tab, roles in ((admin, ["admin"]), (alice, ["user"])):
        mark = tab.mark()
        assert tab.js(ROLE) == roles
        claim = tab.payload()["st-role"]
        assert claim["v"] == roles
        assert isinstance(claim["t"], int)
        assert tab.since(mark) == []  # all local: the front token carries the payload

    # validateClaims() passes for the admin and fails for alice, with the SDK's own reason; no request either way.
    mark = admin.mark()
    assert admin.js(VALIDATE) == []
    assert admin.since(mark) == []
    mark = alice.mark()
    assert alice.js(VALIDATE) == [{"id": "st-role", "reason": WRONG_VALUE}]
    assert alice.since(mark) == []

    # The backend agrees: the claim-guarded route lets the admin in.
    mark = admin.mark()
    result: dict[str, Any] = admin.js(CALL_ADMIN, ADMIN_ROUTE)
    assert (result["status"], result["body"]) == (200, {"user": "admin", "admin": True})
    assert admin.calls(mark) == [("GET", ADMIN_ROUTE, 200)]
    assert "API_INVALID_CLAIM" not in result["events"]


def test_a_403_from_a_claim_guarded_route_is_read_by_get_invalid_claims_from_response(
    serve: Callable[..., Backend], new_tab: Callable[..., Tab]
) -> None:
    (alice,) = signed_in(serve, new_tab, "alice")
    before = alice.token_cookies()

    mark = alice.mark()
    result: dict[str, Any] = alice.js(CALL_ADMIN, ADMIN_ROUTE)

    # The network: one 403 with SuperTokens' body; a 403 is not a session expiry, so the SDK does not refresh.
    (call,) = alice.since(mark)
    assert call.brief() == ("GET", ADMIN_ROUTE, 403)
    assert call.request_headers["st-auth-mode"] == "cookie"
    assert json.loads(call.response.text()) == {
        "message": "invalid claim",
        "claimValidationErrors": [{"id": "st-role", "reason": WRONG_VALUE}],
    }

    # The page: the app's fetch gets the 403 as is, the SDK reads the claim id and the reason from it, and tells
    # the application through its API_INVALID_CLAIM event.
    assert result["status"] == 403
    assert result["body"]["message"] == "invalid claim"
    assert result["invalidClaims"] == [{"id": "st-role", "reason": WRONG_VALUE}]
    assert "API_INVALID_CLAIM" in result["events"]

    # A failed claim is not a lost session: the tokens stay, and the session's other routes still answer.
    assert alice.token_cookies() == before
    assert alice.session_exists() is True
    mark = alice.mark()
    assert alice.call("/api/protected")["status"] == 200
    assert alice.calls(mark) == [("GET", "/api/protected", 200)]
