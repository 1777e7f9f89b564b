"""asgi_session.frameworks.litestar through Litestar's own test client, and once through uvicorn."""

from __future__ import annotations

import importlib
import json
import sys
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import pytest
from litestar import Controller, Litestar, Request, Router, WebSocket, get, post, websocket
from litestar.exceptions import LitestarDeprecationWarning, WebSocketDisconnect
from litestar.openapi.datastructures import ResponseSpec
from litestar.testing import AsyncTestClient
from starlette.responses import JSONResponse as StarletteJSON
from starlette.responses import RedirectResponse as StarletteRedirect

import asgi_session
from asgi_session import (
    ConfigurationError,
    ErrorHandlers,
    InvalidClaimsError,
    Session,
    SessionConfig,
    SessionEvent,
    SessionHooks,
    SessionManager,
    UnauthorisedError,
    _cleanup,
    create_new_session,
)
from asgi_session.claims import OverrideGlobalClaimValidators, PrimitiveArrayClaim, SessionClaimValidator
from asgi_session.frameworks.litestar import (
    CLAIM_VALIDATORS_OPT,
    OptionalSessionDep,
    SessionDep,
    SessionGuard,
    SessionPlugin,
    get_session,
    session_guard,
)
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore
from tests._servers import serve_in_thread

from . import CLEARING, TRY_REFRESH, TWO_HOURS, UNAUTHORISED
from ._story import real_server_story

pytestmark = pytest.mark.anyio

PROTECTED = ["/me", "/account", "/plain", "/admin/stats", "/reports/daily"]


@post("/signin", status_code=200)
async def signin(request: Request[Any, Any, Any]) -> dict[str, str]:
    body = await request.json()
    session = await create_new_session(request, body["user"], access_token_payload={"role": "reader"})
    return {"handle": session.handle}


@get("/me")
async def me(session: SessionDep) -> dict[str, str]:
    return {"user": session.user_id}


@get("/account", guards=[SessionGuard(check_database=True)])
async def account(session: SessionDep) -> dict[str, str]:
    return {"user": session.user_id}


@get("/plain")
async def plain(request: Request[Any, Any, Any]) -> dict[str, str]:
    """No dependency, no guard: the handler raises the SessionError itself."""
    session = await get_session(request, session_required=True)
    return {"user": session.user_id}


@get("/optional")
async def optional(session: OptionalSessionDep) -> dict[str, str | None]:
    return {"user": None if session is None else session.user_id}


@post("/signout", status_code=200)
async def signout(session: SessionDep) -> dict[str, str]:
    await session.revoke()
    return {"status": "OK"}


@post("/revoke-then-fail", status_code=200)
async def revoke_then_fail(session: SessionDep) -> None:
    await session.revoke()
    await session.get_session_data_from_database()  # raises UnauthorisedError: it is gone


@get("/broken")
async def broken() -> None:
    raise ConfigurationError("a developer error")


@get("/stats")
async def stats(request: Request[Any, Any, Any]) -> dict[str, str]:
    session = await get_session(request, session_required=True)
    return {"user": session.user_id}


class Reports(Controller):
    path = "/reports"
    guards = [session_guard]  # noqa: RUF012 - Litestar's own layer attribute

    @get("/daily")
    async def daily(self) -> dict[str, str]:  # never reads the session: the guard requires one
        return {"user": "alice"}


@websocket("/feed")
async def feed(socket: WebSocket[Any, Any, Any], session: SessionDep) -> None:
    await socket.accept()
    await socket.send_json({"user": session.user_id})
    await socket.close()


@websocket("/guarded-feed", guards=[SessionGuard(check_database=True)])
async def guarded_feed(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.close()


admin = Router("/admin", route_handlers=[stats], guards=[session_guard])
HANDLERS: list[Any] = [
    *(signin, me, account, plain, optional, signout, revoke_then_fail, broken, admin, Reports),
    *(feed, guarded_feed),
]


@dataclass
class Harness:
    clock: FakeClock
    store: TrackingStore
    manager: SessionManager
    app: Litestar
    client: AsyncTestClient[Litestar]


def build(
    config: SessionConfig | None = None, **plugin: Any
) -> tuple[FakeClock, TrackingStore, SessionManager, Litestar]:
    clock = FakeClock(start=time.time())  # the client's cookie jar drops cookies that expired in real time
    store = TrackingStore()
    manager = SessionManager(store, config, clock=clock)
    return clock, store, manager, Litestar(HANDLERS, plugins=[SessionPlugin(manager, **plugin)])


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock, store, manager, app = build()
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:  # runs the lifespan
        yield Harness(clock, store, manager, app, client)


async def sign_in(harness: Harness, user: str = "alice") -> str:
    response = await harness.client.post("/signin", json={"user": user})
    assert response.status_code == 200, response.text
    handle = response.json()["handle"]
    assert isinstance(handle, str)
    return handle


async def answer(harness: Harness, path: str, method: str = "GET") -> tuple[int, Any, list[str]]:
    response = await harness.client.request(method, path)
    return response.status_code, response.json(), sorted(response.headers.get_list("set-cookie"))


@pytest.mark.parametrize("path", PROTECTED)
async def test_protected_route_without_a_session_is_401_unauthorised(harness: Harness, path: str) -> None:
    assert await answer(harness, path) == (401, UNAUTHORISED, [])


@pytest.mark.parametrize("path", PROTECTED)
async def test_protected_route_with_a_session_is_200(harness: Harness, path: str) -> None:
    await sign_in(harness)
    status, body, _ = await answer(harness, path)
    assert (status, body) == (200, {"user": "alice"})


@pytest.mark.parametrize("path", [*PROTECTED, "/optional"])
async def test_an_expired_access_token_asks_for_a_refresh_then_the_retry_works(harness: Harness, path: str) -> None:
    await sign_in(harness)
    harness.clock.advance(TWO_HOURS)
    assert await answer(harness, path) == (401, TRY_REFRESH, [])
    refreshed = await harness.client.post("/auth/session/refresh", headers={"rid": "session"})
    assert refreshed.status_code == 200
    assert (await answer(harness, path))[:2] == (200, {"user": "alice"})


async def test_optional_session_is_none_without_a_session(harness: Harness) -> None:
    assert (await answer(harness, "/optional"))[:2] == (200, {"user": None})
    await sign_in(harness)
    assert (await answer(harness, "/optional"))[:2] == (200, {"user": "alice"})


async def test_sign_out_clears_the_cookies(harness: Harness) -> None:
    await sign_in(harness)
    assert await answer(harness, "/signout", "POST") == (200, {"status": "OK"}, CLEARING)
    assert await answer(harness, "/me") == (401, UNAUTHORISED, [])


async def test_the_protocol_endpoints_are_served(harness: Harness) -> None:
    await sign_in(harness)
    signed_out = await harness.client.post("/auth/signout", headers={"rid": "session"})
    assert (signed_out.status_code, signed_out.json()) == (200, {"status": "OK"})
    assert sorted(signed_out.headers.get_list("set-cookie")) == CLEARING
    assert signed_out.headers["front-token"] == "remove"
    assert (await harness.client.get("/auth/jwt/jwks.json")).json()["keys"]
    assert (await harness.client.get("/.well-known/openid-configuration")).status_code == 200
    wrong_method = await harness.client.get("/auth/session/refresh")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    assert (await harness.client.post("/auth/session/refresh")).json() == UNAUTHORISED


async def test_check_database_refuses_a_revoked_session_and_clears_its_tokens(harness: Harness) -> None:
    handle = await sign_in(harness)
    assert await harness.manager.revoke_session(handle) is True
    assert (await answer(harness, "/me"))[0] == 200  # without the check, the token lives until its exp
    response = await harness.client.get("/account")
    assert (response.status_code, response.json()) == (401, UNAUTHORISED)
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"


async def test_a_store_outage_is_503_and_keeps_the_session(harness: Harness) -> None:
    await sign_in(harness)
    harness.store.fail_get = True
    response = await harness.client.get("/account")
    assert (response.status_code, response.json()) == (503, {"message": "session store unavailable"})
    assert response.headers["retry-after"] == "1"
    assert response.headers.get_list("set-cookie") == []
    assert "front-token" not in response.headers
    harness.store.fail_get = False
    assert (await answer(harness, "/account"))[0] == 200


async def test_a_revoke_then_a_failure_clears_each_cookie_once(harness: Harness) -> None:
    await sign_in(harness)
    assert await answer(harness, "/revoke-then-fail", "POST") == (401, UNAUTHORISED, CLEARING)


async def test_developer_errors_stay_500s(harness: Harness) -> None:
    assert (await harness.client.get("/broken")).status_code == 500


async def test_the_lifespan_opens_and_closes_the_store() -> None:
    _, store, _, app = build()
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        assert store.events == ["open"]
        assert (await client.post("/signin", json={"user": "alice"})).status_code == 200
    assert store.events == ["open", "close"]


async def test_the_openapi_document_marks_the_protected_routes(harness: Harness) -> None:
    schema = (await harness.client.get("/schema/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["AccessTokenCookie"] == {
        "type": "apiKey",
        "name": "sAccessToken",
        "in": "cookie",
        "description": schemes["AccessTokenCookie"]["description"],
    }
    assert schemes["AccessTokenBearer"]["scheme"] == "bearer"
    secured = {
        path: operation["security"]
        for path, methods in schema["paths"].items()
        for operation in methods.values()
        if "security" in operation
    }
    both: list[dict[str, list[str]]] = [{"AccessTokenCookie": []}, {"AccessTokenBearer": []}]
    assert secured == {
        "/me": both,
        "/account": both,
        "/signout": both,
        "/revoke-then-fail": both,
        "/admin/stats": both,
        "/reports/daily": both,
    }


def responses_by_path(schema: dict[str, Any]) -> dict[str, list[str]]:
    """The documented status codes of every operation, by path (one method per path in these apps)."""
    return {
        path: sorted(operation["responses"])
        for path, methods in schema["paths"].items()
        for operation in methods.values()
        if path != "/auth/session/refresh" and not path.startswith(("/auth/signout", "/.well-known", "/auth/jwt"))
    }


async def test_the_openapi_document_lists_the_401_of_the_protected_routes(harness: Harness) -> None:
    schema = (await harness.client.get("/schema/openapi.json")).json()
    protected = {"/me", "/account", "/signout", "/revoke-then-fail", "/admin/stats", "/reports/daily"}
    for path, statuses in responses_by_path(schema).items():
        # No global validator and no override here: no 403 is documented, only the 401 of a missing session.
        assert ("401" in statuses, "403" in statuses) == (path in protected, False), path
    unauthorised = schema["paths"]["/me"]["get"]["responses"]["401"]
    assert unauthorised["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SessionUnauthorised"}
    assert schema["components"]["schemas"]["SessionUnauthorised"]["properties"]["message"] == {
        "type": "string",
        "enum": ["unauthorised", "try refresh token"],
    }


async def test_the_openapi_document_lists_the_invalid_claim_response(claims: Harness) -> None:
    schema = (await claims.client.get("/schema/openapi.json")).json()
    responses = responses_by_path(schema)
    for path in ("/claims/me", "/claims/open", "/claims/admin", "/claims/guarded-admin", "/claims/staff/daily"):
        assert responses[path] == ["200", "401", "403"], path
    for path in ("/signin", "/claims/plain"):  # no session dependency, no guard: not protected
        assert not {"401", "403"} & set(responses[path]), path
    invalid = schema["paths"]["/claims/admin"]["get"]["responses"]["403"]["content"]["application/json"]
    assert invalid["schema"] == {"$ref": "#/components/schemas/SessionInvalidClaim"}
    assert next(iter(invalid["examples"].values()))["value"] == json.loads(NOT_ADMIN_BODY)
    body = schema["components"]["schemas"]["SessionInvalidClaim"]
    assert body["properties"]["message"] == {"type": "string", "const": "invalid claim"}
    assert sorted(body["required"]) == ["claimValidationErrors", "message"]
    error = schema["components"]["schemas"]["SessionClaimValidationError"]
    assert (sorted(error["properties"]), sorted(error["required"])) == (["id", "reason"], ["id", "reason"])


async def test_the_invalid_claim_response_follows_overrides_status_and_the_handlers_own() -> None:
    @get("/guarded", guards=[SessionGuard(override_global_claim_validators=also_admin)])
    async def guarded() -> None: ...

    @get("/opted", opt={CLAIM_VALIDATORS_OPT: also_admin})
    async def opted(session: SessionDep) -> None: ...

    own = ResponseSpec(None, description="our own 401")

    @get("/own", responses={401: own})
    async def own_401(session: SessionDep) -> None: ...

    manager = SessionManager(TrackingStore(), SessionConfig(invalid_claim_status_code=409))
    app = Litestar([signin, me, guarded, opted, own_401], plugins=[SessionPlugin(manager)])
    paths = app.openapi_schema.to_schema()["paths"]
    statuses = {path: sorted(methods["get"]["responses"]) for path, methods in paths.items() if "get" in methods}
    assert statuses["/me"] == ["200", "401"]  # no global validator: no claim is checked there
    assert statuses["/guarded"] == statuses["/opted"] == ["200", "401", "409"]
    assert paths["/own"]["get"]["responses"]["401"]["description"] == "our own 401"  # the handler's own wins


async def test_a_bare_session_annotation_works_too() -> None:
    @get("/bare")
    async def bare(session: Session) -> dict[str, str]:
        return {"user": session.user_id}

    @get("/bare-optional")
    async def bare_optional(session: Session | None) -> dict[str, str | None]:
        return {"user": None if session is None else session.user_id}

    manager = SessionManager(TrackingStore())
    # Newer Litestar releases warn about inferred dependencies (SessionDep is the explicit marker); they still work.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*Inferred dependency", LitestarDeprecationWarning)
        app = Litestar([signin, bare, bare_optional], plugins=[SessionPlugin(manager)])
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        assert (await client.get("/bare")).json() == UNAUTHORISED
        assert (await client.get("/bare-optional")).json() == {"user": None}
        await client.post("/signin", json={"user": "alice"})
        assert (await client.get("/bare")).json() == {"user": "alice"}
        assert (await client.get("/bare-optional")).json() == {"user": "alice"}


async def test_the_dependency_key_and_check_database_are_options() -> None:
    @get("/who")
    async def who(auth: SessionDep) -> dict[str, str]:
        return {"user": auth.user_id}

    manager = SessionManager(TrackingStore())
    app = Litestar([signin, who], plugins=[SessionPlugin(manager, dependency_key="auth", check_database=True)])
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        handle = (await client.post("/signin", json={"user": "alice"})).json()["handle"]
        assert (await client.get("/who")).json() == {"user": "alice"}
        await manager.revoke_session(handle)
        response = await client.get("/who")  # the dependency checks the store on every request
        assert (response.status_code, response.json()) == (401, UNAUTHORISED)
        assert "/who" in app.openapi_schema.paths  # type: ignore[operator]
        assert app.openapi_schema.paths["/who"].get.security  # type: ignore[index,union-attr]


@pytest.mark.parametrize("path", ["/feed", "/guarded-feed"])
async def test_a_refused_websocket_handshake_is_closed_with_1008(harness: Harness, path: str) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, await harness.client.websocket_connect(path) as connection:
        connection.receive_json()  # pragma: no cover
    assert (refused.value.code, refused.value.detail) == (1008, "unauthorised")


async def test_a_websocket_with_a_session_is_accepted(harness: Harness) -> None:
    signed_in = await harness.client.post("/signin", json={"user": "alice"})
    cookie = {"cookie": f"sAccessToken={signed_in.cookies['sAccessToken']}"}
    with await harness.client.websocket_connect("/feed", headers=cookie) as connection:
        assert connection.receive_json() == {"user": "alice"}
    harness.store.fail_get = True
    guarded = await harness.client.websocket_connect("/guarded-feed", headers=cookie)
    with pytest.raises(WebSocketDisconnect) as failed, guarded as connection:
        connection.receive_json()  # pragma: no cover
    assert failed.value.code == 1011


async def test_litestars_csrf_protection_stays_on_for_handlers_not_for_the_protocol_endpoints() -> None:
    from litestar.config.csrf import CSRFConfig

    manager = SessionManager(TrackingStore())
    app = Litestar(HANDLERS, plugins=[SessionPlugin(manager)], csrf_config=CSRFConfig(secret="s" * 32))
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        assert (await client.post("/signin", json={"user": "alice"})).status_code == 403  # Litestar's CSRF check
        refresh = await client.post("/auth/session/refresh", headers={"rid": "session"})
        assert (refresh.status_code, refresh.json()) == (401, UNAUTHORISED)  # answered before Litestar's CSRF


def test_the_plugin_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="SessionManager"):
        SessionPlugin(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="identifier"):
        SessionPlugin(SessionManager(TrackingStore()), dependency_key="not a name")


def test_missing_litestar_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litestar", None)  # makes `import litestar` raise ImportError
    monkeypatch.delitem(sys.modules, "asgi_session.frameworks.litestar")
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[litestar\]'"):
        importlib.import_module("asgi_session.frameworks.litestar")


def test_the_example_app_under_uvicorn() -> None:
    from tests.test_framework_examples import load

    clock = FakeClock(start=float(int(time.time())))  # the jar compares cookie expiry with the real time
    store = TrackingStore()
    manager = SessionManager(store, SessionConfig(cookie_secure=False), clock=clock)  # plain http: no Secure
    with serve_in_thread(load("litestar").create_app(manager)) as base_url:
        real_server_story(base_url, clock, store)
    assert store.events == ["open", "close"]  # the plugin's lifespan opened and closed the store


# -- Session claims: the manager's global validators, and per-route overrides --------------------------------------

ROLES: dict[str, list[str]] = {}


async def fetch_roles(user_id: str, tenant_id: str, payload: dict[str, Any]) -> list[str]:
    return ROLES.get(user_id, ["user"])


ROLE = PrimitiveArrayClaim("st-role", fetch_roles)
IS_ADMIN = ROLE.validators.includes("admin")


def without_globals(validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
    """A sync override removing the global validators."""
    assert session.user_id  # the override receives the session
    return []


async def also_admin(validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
    """An async override adding a validator to the global ones."""
    return [*validators, IS_ADMIN]


@get("/claims/me")
async def claims_me(session: SessionDep) -> dict[str, str]:
    return {"user": session.user_id}


@get("/claims/open", opt={CLAIM_VALIDATORS_OPT: without_globals})
async def claims_open(session: SessionDep) -> dict[str, str]:
    return {"user": session.user_id}


@get("/claims/admin", opt={CLAIM_VALIDATORS_OPT: also_admin})
async def claims_admin(session: SessionDep) -> dict[str, str]:
    return {"user": session.user_id}


@get("/claims/guarded-open", guards=[SessionGuard(override_global_claim_validators=without_globals)])
async def claims_guarded_open(request: Request[Any, Any, Any], session: SessionDep) -> dict[str, str]:
    # The guard's override is the route's claim policy: neither the dependency nor get_session validates again.
    again = await get_session(request, session_required=True)
    return {"user": again.user_id}


@get("/claims/guarded-open-core", guards=[SessionGuard(override_global_claim_validators=without_globals)])
async def claims_guarded_open_core(request: Request[Any, Any, Any]) -> dict[str, str]:
    # The framework-free asgi_session.get_session honours the guard's check too.
    session = await asgi_session.get_session(request, session_required=True)
    assert session is not None
    return {"user": session.user_id}


@get("/claims/guarded-admin", guards=[SessionGuard(override_global_claim_validators=also_admin)])
async def claims_guarded_admin() -> dict[str, str]:
    return {"user": "an admin"}


@get("/claims/plain")
async def claims_plain(request: Request[Any, Any, Any]) -> dict[str, str]:
    """``get_session`` runs the global validators, or the override named in ``?override=``."""
    overrides: dict[str, OverrideGlobalClaimValidators] = {"none": lambda g, s: [], "admin": also_admin}
    override = overrides.get(request.query_params.get("override", ""))
    session = await get_session(request, session_required=True, override_global_claim_validators=override)
    return {"user": session.user_id}


@get("/claims/fresh-admin")
async def claims_fresh_admin(request: Request[Any, Any, Any]) -> dict[str, str]:
    session = await get_session(
        request,
        session_required=True,
        override_global_claim_validators=lambda g, s: [ROLE.validators.includes("admin", max_age_in_seconds=60)],
    )
    return {"user": session.user_id}


@get("/daily")
async def staff_daily() -> dict[str, str]:
    return {"user": "staff"}


# The router's opt reaches its handlers' guard (and dependency).
staff = Router(
    "/claims/staff", route_handlers=[staff_daily], guards=[session_guard], opt={CLAIM_VALIDATORS_OPT: also_admin}
)
CLAIM_HANDLERS: list[Any] = [
    *(signin, claims_me, claims_open, claims_admin, claims_guarded_open, claims_guarded_open_core),
    claims_guarded_admin,
    *(claims_plain, claims_fresh_admin, staff),
]

BANNED_BODY = (
    b'{"message":"invalid claim","claimValidationErrors":[{"id":"st-role","reason":'
    b'{"message":"wrong value","expectedToNotInclude":"banned","actualValue":["banned"]}}]}'
)
NOT_ADMIN_BODY = (
    b'{"message":"invalid claim","claimValidationErrors":[{"id":"st-role","reason":'
    b'{"message":"wrong value","expectedToInclude":"admin","actualValue":["user"]}}]}'
)


@pytest.fixture
async def claims() -> AsyncIterator[Harness]:
    """An app with ``st-role`` on every session and ``excludes("banned")`` as a global validator."""
    ROLES.clear()
    ROLES.update({"admin": ["admin"], "mallory": ["banned"]})
    clock = FakeClock(start=time.time())
    store = TrackingStore()
    manager = SessionManager(
        store, clock=clock, claims=[ROLE], global_claim_validators=[ROLE.validators.excludes("banned")]
    )
    app = Litestar(CLAIM_HANDLERS, plugins=[SessionPlugin(manager)])
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        yield Harness(clock, store, manager, app, client)


@pytest.mark.parametrize("path", ["/claims/me", "/claims/plain"])
async def test_a_failing_global_validator_is_403_with_supertokens_body(claims: Harness, path: str) -> None:
    await sign_in(claims, "mallory")
    response = await claims.client.get(path)
    assert (response.status_code, response.content) == (403, BANNED_BODY)
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get_list("set-cookie") == []  # nothing re-fetched: nothing re-issued or cleared
    await sign_in(claims, "alice")
    assert (await claims.client.get(path)).json() == {"user": "alice"}


@pytest.mark.parametrize(
    "path", ["/claims/open", "/claims/guarded-open", "/claims/guarded-open-core", "/claims/plain?override=none"]
)
async def test_an_override_removing_the_global_validator_is_200(claims: Harness, path: str) -> None:
    await sign_in(claims, "mallory")
    response = await claims.client.get(path)
    assert (response.status_code, response.json()) == (200, {"user": "mallory"})


@pytest.mark.parametrize(
    "path", ["/claims/admin", "/claims/guarded-admin", "/claims/plain?override=admin", "/claims/staff/daily"]
)
async def test_an_override_adding_a_validator_is_403(claims: Harness, path: str) -> None:
    await sign_in(claims, "alice")
    response = await claims.client.get(path)
    assert (response.status_code, response.content) == (403, NOT_ADMIN_BODY)
    await sign_in(claims, "admin")
    assert (await claims.client.get(path)).status_code == 200
    await sign_in(claims, "mallory")  # the added validator comes after the global ones, which still run
    refused = await claims.client.get(path)
    assert [error["reason"]["message"] for error in refused.json()["claimValidationErrors"]] == ["wrong value"] * 2


async def test_a_refused_refetch_still_sends_the_reissued_token(claims: Harness) -> None:
    await sign_in(claims, "admin")
    old = claims.client.cookies["sAccessToken"]
    assert (await claims.client.get("/claims/fresh-admin")).status_code == 200
    claims.clock.advance(61)
    ROLES["admin"] = ["user"]  # demoted: the stale value is fetched again, and fails
    refused = await claims.client.get("/claims/fresh-admin")
    assert (refused.status_code, refused.content) == (403, NOT_ADMIN_BODY)
    assert [c.split("=", 1)[0] for c in refused.headers.get_list("set-cookie")] == ["sAccessToken"]
    assert len(refused.headers.get_list("front-token")) == 1
    new = claims.client.cookies["sAccessToken"]
    assert new != old
    assert (await claims.manager.verify_access_token(new))["st-role"]["v"] == ["user"]


async def test_a_websocket_refused_by_a_claim_is_closed_with_1008(claims: Harness) -> None:
    @websocket("/claims/feed", opt={CLAIM_VALIDATORS_OPT: also_admin})
    async def feed(socket: WebSocket[Any, Any, Any], session: SessionDep) -> None:
        await socket.accept()
        await socket.send_json({"user": session.user_id})
        await socket.close()

    app = Litestar([signin, feed], plugins=[SessionPlugin(claims.manager)])
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        for user, allowed in (("admin", True), ("alice", False)):
            signed_in = await client.post("/signin", json={"user": user})
            cookie = {"cookie": f"sAccessToken={signed_in.cookies['sAccessToken']}"}
            if allowed:
                with await client.websocket_connect("/claims/feed", headers=cookie) as connection:
                    assert connection.receive_json() == {"user": "admin"}
                continue
            refused = await client.websocket_connect("/claims/feed", headers=cookie)
            with pytest.raises(WebSocketDisconnect) as closed, refused as connection:
                connection.receive_json()  # pragma: no cover
            assert closed.value.code == 1008


def test_an_override_that_is_not_callable_is_refused_when_the_app_is_built() -> None:
    with pytest.raises(ConfigurationError, match="override_global_claim_validators"):
        SessionGuard(override_global_claim_validators=[IS_ADMIN])  # type: ignore[arg-type]

    @get("/bad", opt={CLAIM_VALIDATORS_OPT: "admin"})
    async def bad() -> None:  # pragma: no cover
        return None

    with pytest.raises(ConfigurationError, match="must be a callable"):
        Litestar([bad], plugins=[SessionPlugin(SessionManager(TrackingStore()))])


# -- ErrorHandlers: the application's own answers, as under Starlette, FastAPI, Quart and Django -------------------


async def to_sign_in(scope: Any, error: UnauthorisedError) -> Any:
    return StarletteRedirect("/sign-in-page", status_code=303)


async def please_refresh(scope: Any, error: Exception) -> Any:
    return StarletteJSON({"custom": "refresh"}, status_code=401)


async def denied(scope: Any, error: InvalidClaimsError) -> Any:
    return StarletteJSON({"custom": "denied", "ids": [e["id"] for e in error.errors]}, status_code=403)


OVERRIDES = ErrorHandlers(on_unauthorised=to_sign_in, on_try_refresh_token=please_refresh, on_invalid_claim=denied)


@pytest.fixture
async def overridden() -> AsyncIterator[Harness]:
    """Every test route (claims as in ``claims``) behind ``SessionPlugin(manager, error_handlers=OVERRIDES)``."""
    ROLES.clear()
    ROLES.update({"admin": ["admin"], "mallory": ["banned"]})
    clock = FakeClock(start=time.time())
    store = TrackingStore()
    manager = SessionManager(
        store, clock=clock, claims=[ROLE], global_claim_validators=[ROLE.validators.excludes("banned")]
    )
    handlers = [*HANDLERS, *(handler for handler in CLAIM_HANDLERS if handler is not signin)]
    app = Litestar(handlers, plugins=[SessionPlugin(manager, error_handlers=OVERRIDES)])
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        yield Harness(clock, store, manager, app, client)


@pytest.mark.parametrize("path", [*PROTECTED, "/claims/me", "/claims/guarded-admin"])
async def test_error_handlers_answer_a_route_without_a_session(overridden: Harness, path: str) -> None:
    response = await overridden.client.get(path, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
    assert response.headers.get_list("set-cookie") == []


async def test_error_handlers_answer_at_the_protocol_endpoints(overridden: Harness) -> None:
    unknown = {"rid": "session", "cookie": "sRefreshToken=not-a-refresh-token"}
    response = await overridden.client.post("/auth/session/refresh", headers=unknown, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")


async def test_error_handlers_still_clear_a_revoked_sessions_tokens(overridden: Harness) -> None:
    handle = await sign_in(overridden)
    await overridden.manager.revoke_session(handle)
    response = await overridden.client.get("/account", follow_redirects=False)  # its guard checks the store
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"


async def test_error_handlers_answer_an_expired_access_token(overridden: Harness) -> None:
    await sign_in(overridden)
    overridden.clock.advance(TWO_HOURS)
    response = await overridden.client.get("/me")
    assert (response.status_code, response.json()) == (401, {"custom": "refresh"})
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize(
    ("path", "user"),
    [("/claims/me", "mallory"), ("/claims/plain", "mallory"), ("/claims/guarded-admin", "alice")],
)
async def test_error_handlers_answer_an_invalid_claim(overridden: Harness, path: str, user: str) -> None:
    await sign_in(overridden, user)
    response = await overridden.client.get(path)
    assert (response.status_code, response.json()) == (403, {"custom": "denied", "ids": ["st-role"]})


async def test_errors_without_a_handler_keep_the_protocol_response() -> None:
    _, store, _, app = build(error_handlers=ErrorHandlers(on_invalid_claim=denied))
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        refused = await client.get("/me")
        assert (refused.status_code, refused.json()) == (401, UNAUTHORISED)
        assert (await client.get("/broken")).status_code == 500  # developer errors stay 500s
        await client.post("/signin", json={"user": "alice"})
        store.fail_get = True
        outage = await client.get("/account")
        assert (outage.status_code, outage.json()) == (503, {"message": "session store unavailable"})


async def test_a_websocket_refused_with_error_handlers_is_still_closed_with_1008(overridden: Harness) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, await overridden.client.websocket_connect("/feed") as conn:
        conn.receive_json()  # pragma: no cover
    assert refused.value.code == 1008


def test_the_plugin_refuses_error_handlers_of_the_wrong_type() -> None:
    with pytest.raises(ConfigurationError, match="ErrorHandlers"):
        SessionPlugin(SessionManager(TrackingStore()), error_handlers={})  # type: ignore[arg-type]


# -- The scheduled cleanup runs between the app's startup and shutdown ---------------------------------------------


async def eventually(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - polls what a background task counts
            await anyio.sleep(0.005)


async def test_the_lifespan_runs_the_scheduled_cleanup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cleanup, "_TICK", 0.005)  # the schedule looks at the fake clock every 5 ms
    clock = FakeClock(start=time.time())
    store = TrackingStore()
    config = SessionConfig(refresh_token_validity=timedelta(days=1), cleanup_interval=600)
    manager = SessionManager(store, config, clock=clock)
    runs: list[int] = []
    delete_expired_sessions = manager.delete_expired_sessions

    async def counting() -> int:
        runs.append(await delete_expired_sessions())
        return runs[-1]

    monkeypatch.setattr(manager, "delete_expired_sessions", counting)
    plugin = SessionPlugin(manager)
    app = Litestar(HANDLERS, plugins=[plugin])
    await manager.create_new_session_without_request_response("alice")
    clock.advance(86400 + 1)  # alice's session has expired
    async with AsyncTestClient(app, base_url="https://testserver.local"):
        schedule = plugin._cleanup
        assert schedule is not None
        assert schedule.running
        await anyio.sleep(0.05)
        assert runs == []  # the first run comes a minute (of the manager's clock) after startup
        clock.advance(60)
        await eventually(lambda: runs == [1])
        clock.advance(599)
        await anyio.sleep(0.05)
        assert runs == [1]  # not before the interval has passed
        clock.advance(1)
        await eventually(lambda: runs == [1, 0])
    assert not schedule.running  # shutdown stopped it
    assert store.events == ["open", "close"]
    clock.advance(3600)
    await anyio.sleep(0.05)
    assert runs == [1, 0]


async def test_no_scheduled_cleanup_when_turned_off() -> None:
    _, store, _, app = build(SessionConfig(cleanup_interval=None))
    (plugin,) = [p for p in app.plugins.init if isinstance(p, SessionPlugin)]
    async with AsyncTestClient(app, base_url="https://testserver.local"):
        assert plugin._cleanup is None
        assert store.events == ["open"]


# -- Lifecycle hooks through Litestar: created, refreshed and revoked, each with the request -----------------------


async def test_hooks_fire_through_litestar() -> None:
    events: list[SessionEvent] = []
    clock = FakeClock(start=time.time())
    manager = SessionManager(
        TrackingStore(),
        clock=clock,
        hooks=SessionHooks(on_created=events.append, on_refreshed=events.append, on_revoked=events.append),
    )
    app = Litestar(HANDLERS, plugins=[SessionPlugin(manager)])
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        harness = Harness(clock, TrackingStore(), manager, app, client)
        first = await sign_in(harness)
        assert (await client.post("/auth/session/refresh", headers={"rid": "session"})).status_code == 200
        assert (await client.post("/signout")).status_code == 200  # a handler revoking its own session
        second = await sign_in(harness)
        assert (await client.post("/auth/signout", headers={"rid": "session"})).status_code == 200
    assert [(e.kind, e.handle, e.user_id, e.reason, e.scope["path"] if e.scope else None) for e in events] == [
        ("created", first, "alice", None, "/signin"),
        ("refreshed", first, "alice", None, "/auth/session/refresh"),
        ("revoked", first, "alice", "revoke", "/signout"),
        ("created", second, "alice", None, "/signin"),
        ("revoked", second, "alice", "sign-out", "/auth/signout"),
    ]
