"""SessionAuthBackend: Starlette's AuthenticationMiddleware on top of the session SessionMiddleware verified."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_session import ConfigurationError, SessionConfig, SessionManager, SessionMiddleware, create_new_session
from asgi_session.claims import PrimitiveArrayClaim
from asgi_session.frameworks.starlette import SessionAuthBackend, SessionUser, requires_session
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore
from tests._servers import serve_in_thread
from tests._testclient import TestClient, https_client

from . import CLEARING, TRY_REFRESH, TWO_HOURS, UNAUTHORISED
from ._story import real_server_story


def roles(*names: Any) -> dict[str, Any]:
    return {"st-role": {"v": list(names), "t": 1_700_000_000_000}}


async def signin(request: Request) -> JSONResponse:
    body = await request.json()
    session = await create_new_session(request, body["user"], access_token_payload=body.get("payload"))
    return JSONResponse({"handle": session.handle})


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse(
        {
            "authenticated": user.is_authenticated,
            "identity": user.identity if user.is_authenticated else None,
            "name": user.display_name,
            "scopes": request.auth.scopes,
        }
    )


@requires("authenticated", status_code=401)
async def me(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.identity})


@requires("authenticated", status_code=401)
async def account(request: Request) -> JSONResponse:
    session = request.user.session  # the verified Session
    await session.get_session_data_from_database()  # a store read
    return JSONResponse({"user": request.user.identity})


@requires(["authenticated", "admin"])
async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"admin": request.user.identity})


@requires("authenticated", status_code=401)
async def signout(request: Request) -> JSONResponse:
    await request.user.session.revoke()
    return JSONResponse({"status": "OK"})


ROUTES = [
    Route("/signin", signin, methods=["POST"]),
    Route("/whoami", whoami, methods=["GET", "POST"]),
    Route("/me", me),
    Route("/account", account),
    Route("/admin", admin),
    Route("/signout", signout, methods=["POST"]),
]


class Harness:
    def __init__(
        self,
        backend: SessionAuthBackend | None = None,
        config: SessionConfig | None = None,
        routes: list[Route] | None = None,
        **manager_options: Any,
    ) -> None:
        self.clock = FakeClock(start=float(int(time.time())))  # cookie jars drop cookies expired in real time
        self.store = TrackingStore()
        self.manager = SessionManager(self.store, config, clock=self.clock, **manager_options)
        self.verifications = 0
        verify_now = self.manager.verify_now

        def counting_verify_now(token: str, key: bytes | None = None) -> Any:
            self.verifications += 1
            return verify_now(token, key)

        self.manager.verify_now = counting_verify_now  # type: ignore[method-assign,assignment]
        self.app = Starlette(
            routes=routes or ROUTES,
            middleware=[
                Middleware(SessionMiddleware, manager=self.manager),
                Middleware(AuthenticationMiddleware, backend=backend or SessionAuthBackend()),
            ],
        )


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def client(harness: Harness) -> Any:
    with https_client(harness.app) as client:
        yield client


def sign_in(client: TestClient, user: str = "alice", payload: dict[str, Any] | None = None) -> None:
    response = client.post("/signin", json={"user": user, "payload": payload})
    assert response.status_code == 200, response.text


def test_without_a_session_the_user_is_unauthenticated(client: TestClient) -> None:
    assert client.get("/whoami").json() == {"authenticated": False, "identity": None, "name": "", "scopes": []}


def test_a_protected_route_without_a_session_is_401(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401  # Starlette's own 401 (requires(..., status_code=401)), never a 500
    assert response.headers.get_list("set-cookie") == []


def test_with_a_session_the_user_is_the_sessions_user(client: TestClient) -> None:
    sign_in(client)
    assert client.get("/whoami").json() == {
        "authenticated": True,
        "identity": "alice",
        "name": "alice",
        "scopes": ["authenticated"],
    }
    assert client.get("/me").json() == {"user": "alice"}


def test_roles_from_the_st_role_claim_become_scopes(client: TestClient) -> None:
    sign_in(client, payload=roles("admin", "editor", "admin", 7))
    assert client.get("/whoami").json()["scopes"] == ["authenticated", "admin", "editor"]
    assert client.get("/admin").json() == {"admin": "alice"}


def test_a_user_without_the_role_is_refused_by_requires(client: TestClient) -> None:
    sign_in(client, payload=roles("editor"))
    assert client.get("/admin").status_code == 403


@pytest.mark.parametrize(
    "payload",
    [None, {"st-role": ["admin"]}, {"st-role": {"v": "admin"}}, {"st-role": "admin"}, {"st-role": {"t": 1}}],
)
def test_a_missing_or_malformed_roles_claim_grants_no_role(harness: Harness, payload: Any) -> None:
    with https_client(harness.app) as client:
        sign_in(client, payload=payload)
        assert client.get("/whoami").json()["scopes"] == ["authenticated"]
        assert client.get("/admin").status_code == 403


def test_the_claim_and_the_scope_names_are_configurable() -> None:
    backend = SessionAuthBackend(roles_claim="perm", role_scope=lambda role: None if role == "x" else f"perm:{role}")
    with https_client(Harness(backend).app) as client:
        sign_in(client, payload={"perm": {"v": ["read", "x"], "t": 1}, **roles("admin")})
        assert client.get("/whoami").json()["scopes"] == ["authenticated", "perm:read"]
    with https_client(Harness(SessionAuthBackend(roles_claim=None)).app) as client:
        sign_in(client, payload=roles("admin"))
        assert client.get("/whoami").json()["scopes"] == ["authenticated"]


def test_the_token_is_verified_once_per_request(harness: Harness, client: TestClient) -> None:
    sign_in(client)
    harness.verifications = 0
    assert client.get("/me").status_code == 200
    assert harness.verifications == 1  # by the middleware; the backend reads its result


def test_an_expired_access_token_asks_for_a_refresh_then_the_retry_works(harness: Harness, client: TestClient) -> None:
    sign_in(client)
    harness.clock.advance(TWO_HOURS)
    for path in ("/me", "/whoami"):  # the backend runs on every route: the client refreshes instead of signing out
        response = client.get(path)
        assert (response.status_code, response.json()) == (401, TRY_REFRESH)
        assert response.headers.get_list("set-cookie") == []
    assert client.post("/auth/session/refresh", headers={"rid": "session"}).status_code == 200
    assert client.get("/me").json() == {"user": "alice"}


def test_sign_out_clears_the_cookies(client: TestClient) -> None:
    sign_in(client)
    response = client.post("/signout")
    assert response.status_code == 200
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert client.get("/whoami").json()["authenticated"] is False


def test_check_database_refuses_a_revoked_session() -> None:
    harness = Harness(SessionAuthBackend(check_database=True))
    with https_client(harness.app) as client:
        sign_in(client)
        assert client.portal is not None  # revoke on the client's event loop, where the store lives
        (handle,) = client.portal.call(harness.manager.get_all_session_handles_for_user, "alice")
        client.portal.call(harness.manager.revoke_session, handle)
        response = client.get("/whoami")
        assert (response.status_code, response.json()) == (401, UNAUTHORISED)
        assert sorted(response.headers.get_list("set-cookie")) == CLEARING


def test_a_store_outage_is_503_and_keeps_the_session() -> None:
    harness = Harness(SessionAuthBackend(check_database=True))
    with https_client(harness.app) as client:
        sign_in(client)
        harness.store.fail_get = True
        response = client.get("/me")
        assert (response.status_code, response.json()) == (503, {"message": "session store unavailable"})
        assert response.headers.get_list("set-cookie") == []
        harness.store.fail_get = False
        assert client.get("/me").json() == {"user": "alice"}


def test_the_anti_csrf_check_runs_before_a_request_counts_as_authenticated() -> None:
    harness = Harness(config=SessionConfig(anti_csrf="VIA_CUSTOM_HEADER"))
    with https_client(harness.app) as client:
        sign_in(client)
        forged = client.post("/whoami")  # a cookie-authenticated POST without the rid header
        assert (forged.status_code, forged.json()) == (401, TRY_REFRESH)
        assert client.post("/whoami", headers={"rid": "anti-csrf"}).json()["authenticated"] is True


def test_without_session_middleware_the_backend_says_what_is_missing() -> None:
    app = Starlette(routes=ROUTES, middleware=[Middleware(AuthenticationMiddleware, backend=SessionAuthBackend())])
    with https_client(app) as client, pytest.raises(ConfigurationError, match="SessionMiddleware"):
        client.get("/whoami")


def test_the_user_object() -> None:
    manager = SessionManager(TrackingStore())
    session = manager_session(manager)
    user = SessionUser(session)
    assert (user.is_authenticated, user.identity, user.user_id, user.tenant_id) == (True, "bob", "bob", "public")
    assert repr(user) == "SessionUser(user_id='bob', tenant_id='public')"


def manager_session(manager: SessionManager) -> Any:
    import anyio

    async def create() -> Any:
        async with manager:
            return await manager.create_new_session_without_request_response("bob")

    return anyio.run(create)


def test_through_a_real_server() -> None:
    harness = Harness(config=SessionConfig(cookie_secure=False))  # plain http: no Secure
    with serve_in_thread(harness.app) as base_url:
        # Without a session, @requires answers with Starlette's own 401 (a plain-text body).
        real_server_story(base_url, harness.clock, harness.store, protocol_401=False)


# -- Claims: the backend says who is authenticated; the routes that need claims validate them -----------------------

BANNED = PrimitiveArrayClaim("st-role", lambda user_id, *_: ["banned"] if user_id == "mallory" else ["user"])
BANNED_BODY = {
    "message": "invalid claim",
    "claimValidationErrors": [
        {
            "id": "st-role",
            "reason": {"message": "wrong value", "expectedToNotInclude": "banned", "actualValue": ["banned"]},
        }
    ],
}


@requires_session
async def claims_checked(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.state.session.user_id})


CLAIM_ROUTES = [*ROUTES, Route("/claims-checked", claims_checked)]


def claims_harness(backend: SessionAuthBackend | None = None) -> Harness:
    return Harness(
        backend,
        routes=CLAIM_ROUTES,
        claims=[BANNED],
        global_claim_validators=[BANNED.validators.excludes("banned")],
    )


def test_the_backend_does_not_run_the_global_claim_validators() -> None:
    harness = claims_harness()
    with https_client(harness.app) as client:
        sign_in(client, "mallory")
        whoami = client.get("/whoami")  # a public route behind AuthenticationMiddleware
        assert (whoami.status_code, whoami.json()["identity"]) == (200, "mallory")
        assert client.get("/me").json() == {"user": "mallory"}  # @requires("authenticated"): who, not which claims
        refused = client.get("/claims-checked")  # a route that needs the claims validates them
        assert (refused.status_code, refused.json()) == (403, BANNED_BODY)
        sign_in(client, "alice")
        assert client.get("/claims-checked").json() == {"user": "alice"}


def test_the_backend_validates_claims_when_asked() -> None:
    backend = SessionAuthBackend(override_global_claim_validators=lambda validators, session: validators)
    harness = claims_harness(backend)
    with https_client(harness.app) as client:
        sign_in(client, "mallory")
        for path in ("/whoami", "/me"):
            refused = client.get(path)
            assert (refused.status_code, refused.json()) == (403, BANNED_BODY)
        # Every route behind the backend refuses her now, the sign-in route too: a fresh client signs in.
        assert client.post("/signin", json={"user": "alice"}).status_code == 403
        client.cookies.clear()
        sign_in(client, "alice")
        assert client.get("/whoami").json()["identity"] == "alice"


def test_the_backend_refuses_an_override_that_is_not_callable() -> None:
    with pytest.raises(ConfigurationError, match="override_global_claim_validators"):
        SessionAuthBackend(override_global_claim_validators=[BANNED.validators.excludes("banned")])  # type: ignore[arg-type]
