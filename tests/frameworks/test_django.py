"""asgi_session.frameworks.django: the example project's ASGI application, driven in-process and by uvicorn.

Django's own test client calls the request handler directly, without the ASGI application around it, so it never
runs ``SessionMiddleware``: the requests here go through ``httpx.ASGITransport`` (the ASGI application exactly as a
server calls it) and, once, through a real uvicorn server. Django's client is used for what it can show: a request
that did not come through the middleware gets a clear ``ConfigurationError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, RequestFactory, override_settings
from django.urls import include, path
from starlette.responses import JSONResponse as StarletteJSON
from starlette.responses import RedirectResponse as StarletteRedirect

import asgi_session
from asgi_session import (
    ConfigurationError,
    ErrorHandlers,
    InvalidClaimsError,
    SessionConfig,
    SessionEvent,
    SessionHooks,
    SessionManager,
    SessionMiddleware,
    StoreError,
    UnauthorisedError,
)
from asgi_session.claims import OverrideGlobalClaimValidators, PrimitiveArrayClaim, SessionClaimValidator
from asgi_session.frameworks.django import SessionErrorMiddleware, get_session, protocol_response, session_required
from asgi_session.testing import FakeClock
from tests._helpers import TrackingStore
from tests._servers import ServerProcess, serve_in_thread, start_server, stop_servers

from . import CLEARING, TRY_REFRESH, TWO_HOURS, UNAUTHORISED
from ._django_project import EXAMPLES, create_app
from ._django_project import views as _django_views
from ._story import real_server_story

pytestmark = pytest.mark.anyio

PROTECTED = ["/me", "/account", "/report", "/plain", "/profile", "/numbers/7"]
TEST_URLS = "tests.frameworks._django_project"


@dataclass
class Harness:
    clock: FakeClock
    store: TrackingStore
    manager: SessionManager
    client: httpx.AsyncClient


@pytest.fixture(autouse=True)
def test_urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=TEST_URLS):
        yield


def build(config: SessionConfig | None = None) -> tuple[FakeClock, TrackingStore, SessionManager, Any]:
    clock = FakeClock(start=time.time())  # the cookie jar drops cookies that expired in real time
    store = TrackingStore()
    manager = SessionManager(store, config, clock=clock)
    return clock, store, manager, create_app(manager)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock, store, manager, app = build()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield Harness(clock, store, manager, client)
    await manager.close()


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
async def test_protected_view_without_a_session_is_401_unauthorised(harness: Harness, path: str) -> None:
    assert await answer(harness, path) == (401, UNAUTHORISED, [])


@pytest.mark.parametrize("path", PROTECTED)
async def test_protected_view_with_a_session_is_200(harness: Harness, path: str) -> None:
    await sign_in(harness)
    status, body, _ = await answer(harness, path)
    assert (status, body["user"]) == (200, "alice")


@pytest.mark.parametrize("path", PROTECTED)
async def test_an_expired_access_token_asks_for_a_refresh_then_the_retry_works(harness: Harness, path: str) -> None:
    await sign_in(harness)
    harness.clock.advance(TWO_HOURS)
    assert await answer(harness, path) == (401, TRY_REFRESH, [])
    refreshed = await harness.client.post("/auth/session/refresh", headers={"rid": "session"})
    assert refreshed.status_code == 200
    assert (await answer(harness, path))[0] == 200


async def test_views_get_their_arguments_and_kinds(harness: Harness) -> None:
    await sign_in(harness)
    assert (await answer(harness, "/numbers/7"))[1] == {"user": "alice", "number": 7}
    assert (await answer(harness, "/report"))[1] == {"user": "alice", "kind": "sync"}
    assert (await answer(harness, "/profile"))[1] == {"user": "alice", "view": "class"}


async def test_sign_out_view_clears_the_cookies(harness: Harness) -> None:
    await sign_in(harness)
    status, body, cookies = await answer(harness, "/signout", "POST")
    assert (status, body, cookies) == (200, {"status": "OK"}, CLEARING)
    assert await answer(harness, "/me") == (401, UNAUTHORISED, [])


async def test_the_middlewares_sign_out_endpoint_clears_the_cookies(harness: Harness) -> None:
    await sign_in(harness)
    response = await harness.client.post("/auth/signout", headers={"rid": "session"})
    assert (response.status_code, response.json()) == (200, {"status": "OK"})
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"


async def test_check_database_refuses_a_revoked_session_and_clears_its_tokens(harness: Harness) -> None:
    handle = await sign_in(harness)
    assert await harness.manager.revoke_session(handle) is True
    assert (await answer(harness, "/me"))[0] == 200  # without the check, the token lives until its exp
    response = await harness.client.get("/account")
    assert (response.status_code, response.json()) == (401, UNAUTHORISED)
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"
    assert response.headers["content-type"] == "application/json"


async def test_a_store_outage_is_503_and_keeps_the_session(harness: Harness) -> None:
    await sign_in(harness)
    harness.store.fail_get = True
    response = await harness.client.get("/account")
    assert response.status_code == 503
    assert response.json() == {"message": "session store unavailable"}
    assert response.headers["retry-after"] == "1"
    assert response.headers.get_list("set-cookie") == []
    assert "front-token" not in response.headers
    harness.store.fail_get = False
    assert (await answer(harness, "/account"))[0] == 200


async def test_a_revoke_then_a_failure_clears_each_cookie_once(harness: Harness) -> None:
    await sign_in(harness)
    response = await harness.client.post("/revoke-then-fail")
    assert (response.status_code, response.json()) == (401, UNAUTHORISED)
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING


async def test_optional_session(harness: Harness) -> None:
    assert (await answer(harness, "/optional"))[:2] == (200, {"user": None})
    assert (await answer(harness, "/hello"))[:2] == (200, {"user": None})
    await sign_in(harness)
    assert (await answer(harness, "/optional"))[:2] == (200, {"user": "alice"})
    assert (await answer(harness, "/hello"))[:2] == (200, {"user": "alice"})


async def test_a_session_error_raised_by_a_view_is_the_protocol_response(harness: Harness) -> None:
    assert await answer(harness, "/raises") == (401, UNAUTHORISED, [])


async def test_developer_errors_stay_500s(harness: Harness) -> None:
    response = await harness.client.get("/broken")
    assert response.status_code == 500


async def test_without_the_error_middleware_django_answers_500() -> None:
    """Why SessionErrorMiddleware exists: Django makes its own 500 and never re-raises the error."""
    from django.conf import settings

    without = [name for name in settings.MIDDLEWARE if not name.endswith("SessionErrorMiddleware")]
    with override_settings(MIDDLEWARE=without):
        _, _, manager, app = build()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
            assert (await client.get("/plain")).status_code == 500
        await manager.close()


async def test_djangos_csrf_middleware_stays_on_for_views_that_are_not_exempt(harness: Harness) -> None:
    await sign_in(harness)
    refused = await harness.client.post("/me")  # not csrf_exempt: Django's CSRF middleware refuses it first
    assert refused.status_code == 403
    assert "CSRF" in refused.text


async def test_a_sign_in_without_a_user_is_400_and_sets_no_cookie(harness: Harness) -> None:
    response = await harness.client.post("/signin", json={"name": "alice"})
    assert response.status_code == 400
    assert response.headers.get_list("set-cookie") == []


async def test_djangos_test_client_does_not_run_the_asgi_middleware() -> None:
    with pytest.raises(ConfigurationError, match="SessionMiddleware"):
        await AsyncClient().get("/plain")


async def test_a_wsgi_request_is_a_clear_configuration_error() -> None:
    request = RequestFactory().get("/me")
    with pytest.raises(ConfigurationError, match="Django under ASGI"):
        await get_session(request)


def test_the_error_middleware_leaves_other_exceptions_to_django() -> None:
    middleware = SessionErrorMiddleware(lambda request: None)  # type: ignore[arg-type]
    assert middleware.process_exception(RequestFactory().get("/"), ValueError("not ours")) is None


def test_protocol_response_for_a_middleware_of_your_own() -> None:
    request = RequestFactory().get("/")
    cleared = protocol_response(UnauthorisedError("revoked"), request)
    assert cleared is not None
    assert cleared.status_code == 401
    assert json.loads(cleared.content) == UNAUTHORISED
    headers = list(cleared.items())
    assert sorted(value for name, value in headers if name == "Set-Cookie") == CLEARING  # exactly as written
    assert ("front-token", "remove") in headers
    outage = protocol_response(StoreError("down"), request)
    assert outage is not None
    assert (outage.status_code, outage.headers["retry-after"]) == (503, "1")
    assert protocol_response(ConfigurationError("a bug"), request) is None


def test_the_decorated_view_keeps_its_name_and_is_async() -> None:
    @session_required
    def view(request: Any) -> str:  # pragma: no cover
        return ""

    import inspect

    assert view.__name__ == "view"
    assert inspect.iscoroutinefunction(view)


async def test_the_decorator_refuses_a_call_without_a_request() -> None:
    @session_required
    async def view(request: Any) -> str:  # pragma: no cover
        return ""

    with pytest.raises(ConfigurationError, match="method_decorator"):
        await view(object())


async def test_djangos_own_sessions_can_stay_on(harness: Harness) -> None:
    """django.contrib.sessions keeps its own cookie (sessionid); the two never touch each other's state."""
    from django.conf import settings

    contrib = "django.contrib.sessions.middleware.SessionMiddleware"
    with override_settings(
        MIDDLEWARE=[contrib, *settings.MIDDLEWARE], SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"
    ):
        _, _, manager, app = build()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            signed_in = await client.post("/signin", json={"user": "alice"})
            assert signed_in.status_code == 200
            first = await client.get("/visits")
            assert first.json() == {"user": "alice", "visits": 1}
            assert [cookie.split("=", 1)[0] for cookie in first.headers.get_list("set-cookie")] == ["sessionid"]
            assert (await client.get("/visits")).json() == {"user": "alice", "visits": 2}
            signed_out = await client.post("/auth/signout", headers={"rid": "session"})
            assert sorted(signed_out.headers.get_list("set-cookie")) == CLEARING  # sessionid is Django's to clear
            refused = await client.get("/visits")
            assert (refused.status_code, refused.json()) == (401, UNAUTHORISED)
        await manager.close()


def test_the_example_main_serves_on_localhost_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    import uvicorn

    served: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    runpy.run_module("django_app", run_name="__main__")
    ((app, options),) = served
    assert options == {"host": "127.0.0.1", "port": 8000, "lifespan": "on"}
    assert isinstance(app, SessionMiddleware)


def test_the_example_project_as_a_user_runs_it(tmp_path: Path) -> None:
    """``uvicorn django_app.asgi:application`` in a process of its own, with a SQLite store opened on first use."""
    env = {
        "ASGI_SESSION_STORE_URL": f"sqlite:///{tmp_path / 'sessions.db'}",
        "PYTHONPATH": str(EXAMPLES),
        "DJANGO_SETTINGS_MODULE": None,
    }
    # uvicorn's default lifespan mode: it finds out that Django has none, and the store opens on first use.
    arguments = ["-m", "uvicorn", "django_app.asgi:application", "--host", "127.0.0.1"]
    started: list[ServerProcess] = []
    try:
        server = start_server("django", arguments, folder=tmp_path, cwd=tmp_path, env=env, started=started)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/me").json() == UNAUTHORISED
            # The cookies are Secure (the example keeps the default): send the access token by hand over http.
            signed_in = client.post("/signin", json={"user": "alice"})
            assert signed_in.status_code == 200, signed_in.text
            token = _cookie(signed_in, "sAccessToken")
            refresh = _cookie(signed_in, "sRefreshToken")
            headers = {"cookie": f"sAccessToken={token}"}
            assert client.get("/me", headers=headers).json() == {"user": "alice", "tenant": "public"}
            assert client.get("/report", headers=headers).json() == {"user": "alice", "kind": "sync"}
            refreshed = client.post(
                "/auth/session/refresh", headers={"cookie": f"sRefreshToken={refresh}", "rid": "session"}
            )
            assert refreshed.status_code == 200
            signed_out = client.post("/signout", headers=headers)
            assert (signed_out.status_code, signed_out.json()) == (200, {"status": "OK"})
            assert client.get("/account", headers=headers).json() == UNAUTHORISED
    finally:
        stop_servers(started)
    assert (tmp_path / "sessions.db").is_file()


def _cookie(response: httpx.Response, name: str) -> str:
    (value,) = [
        header.split(";", 1)[0].removeprefix(f"{name}=")
        for header in response.headers.get_list("set-cookie")
        if header.startswith(f"{name}=")
    ]
    return value


def test_the_example_project_under_uvicorn() -> None:
    clock = FakeClock(start=float(int(time.time())))  # the jar compares cookie expiry with the real time
    store = TrackingStore()
    manager = SessionManager(store, SessionConfig(cookie_secure=False), clock=clock)  # plain http: no Secure
    with serve_in_thread(create_app(manager), lifespan="off") as base_url:  # Django speaks no lifespan
        real_server_story(base_url, clock, store)
    assert (EXAMPLES / "django_app" / "asgi.py").is_file()


def test_missing_django_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "django.http", None)  # makes `from django.http import ...` raise ImportError
    monkeypatch.delitem(sys.modules, "asgi_session.frameworks.django")
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[django\]'"):
        importlib.import_module("asgi_session.frameworks.django")


# -- Session claims: the manager's global validators, and per-view overrides ---------------------------------------

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


@session_required
async def claims_me(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.asgi_session.user_id})  # type: ignore[attr-defined]


@session_required(override_global_claim_validators=without_globals)
async def claims_open(request: HttpRequest) -> JsonResponse:
    # The decorator's override is the view's claim policy: this call runs no global validator again.
    session = await get_session(request, session_required=True)
    return JsonResponse({"user": session.user_id})


@session_required(override_global_claim_validators=without_globals)
async def claims_open_core(request: HttpRequest) -> JsonResponse:
    # The framework-free asgi_session.get_session honours the decorator's check too.
    session = await asgi_session.get_session(request, session_required=True)
    assert session is not None
    return JsonResponse({"user": session.user_id})


@session_required(override_global_claim_validators=also_admin)
def claims_admin(request: HttpRequest) -> JsonResponse:  # a sync view behind an async override
    return JsonResponse({"admin": request.asgi_session.user_id})  # type: ignore[attr-defined]


async def claims_plain(request: HttpRequest) -> JsonResponse:
    """No decorator: ``get_session`` runs the global validators, or the override in ``?override=``."""
    overrides: dict[str, OverrideGlobalClaimValidators] = {"none": lambda g, s: [], "admin": also_admin}
    override = overrides.get(request.GET.get("override", ""))
    session = await get_session(request, session_required=True, override_global_claim_validators=override)
    return JsonResponse({"user": session.user_id})


async def claims_fresh_admin(request: HttpRequest) -> JsonResponse:
    session = await get_session(
        request,
        session_required=True,
        override_global_claim_validators=lambda g, s: [ROLE.validators.includes("admin", max_age_in_seconds=60)],
    )
    return JsonResponse({"admin": session.user_id})


urlpatterns = [
    path("", include(TEST_URLS)),
    path("claims/me", claims_me),
    path("claims/open", claims_open),
    path("claims/open-core", claims_open_core),
    path("claims/admin", claims_admin),
    path("claims/plain", claims_plain),
    path("claims/fresh-admin", claims_fresh_admin),
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
    """The test project with ``st-role`` on every session and ``excludes("banned")`` as a global validator."""
    ROLES.clear()
    ROLES.update({"admin": ["admin"], "mallory": ["banned"]})
    clock = FakeClock(start=time.time())
    store = TrackingStore()
    manager = SessionManager(
        store, clock=clock, claims=[ROLE], global_claim_validators=[ROLE.validators.excludes("banned")]
    )
    with override_settings(ROOT_URLCONF=__name__):
        transport = httpx.ASGITransport(app=create_app(manager))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            yield Harness(clock, store, manager, client)
    await manager.close()


@pytest.mark.parametrize("path", ["/claims/me", "/claims/plain", "/me"])
async def test_a_failing_global_validator_is_403_with_supertokens_body(claims: Harness, path: str) -> None:
    await sign_in(claims, "mallory")
    response = await claims.client.get(path)
    assert response.status_code == 403
    assert response.content == BANNED_BODY
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get_list("set-cookie") == []  # nothing re-fetched: nothing re-issued or cleared
    await sign_in(claims, "alice")
    assert (await claims.client.get(path)).json()["user"] == "alice"


@pytest.mark.parametrize("path", ["/claims/open", "/claims/open-core", "/claims/plain?override=none"])
async def test_an_override_removing_the_global_validator_is_200(claims: Harness, path: str) -> None:
    await sign_in(claims, "mallory")
    response = await claims.client.get(path)
    assert (response.status_code, response.json()) == (200, {"user": "mallory"})


@pytest.mark.parametrize("path", ["/claims/admin", "/claims/plain?override=admin"])
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


def test_the_decorator_refuses_an_override_that_is_not_callable() -> None:
    with pytest.raises(ConfigurationError, match="override_global_claim_validators"):
        session_required(override_global_claim_validators=[IS_ADMIN])  # type: ignore[call-overload]


# -- ErrorHandlers: the application's own answers, as under Starlette, FastAPI and Quart ----------------------------


async def to_sign_in(scope: Any, error: UnauthorisedError) -> Any:
    return StarletteRedirect("/sign-in-page", status_code=303)


async def please_refresh(scope: Any, error: Exception) -> Any:
    return StarletteJSON({"custom": "refresh"}, status_code=401)


async def denied(scope: Any, error: InvalidClaimsError) -> Any:
    return StarletteJSON({"custom": "denied", "ids": [e["id"] for e in error.errors]}, status_code=403)


OVERRIDES = ErrorHandlers(on_unauthorised=to_sign_in, on_try_refresh_token=please_refresh, on_invalid_claim=denied)


def with_handlers(manager: SessionManager, handlers: ErrorHandlers) -> SessionMiddleware:
    """The example's application, built as ``asgi.create_app`` does, with ``error_handlers``."""
    from django.core.asgi import get_asgi_application

    setattr(_django_views, "manager", manager)  # noqa: B010 - the views module is imported by name
    django_app: Any = get_asgi_application()  # Django's ASGI types are narrower than ours
    return SessionMiddleware(django_app, manager=manager, error_handlers=handlers)


@pytest.fixture
async def overridden() -> AsyncIterator[Harness]:
    """The test project (claims as in ``claims``) under ``SessionMiddleware(..., error_handlers=OVERRIDES)``."""
    ROLES.clear()
    ROLES.update({"admin": ["admin"], "mallory": ["banned"]})
    clock = FakeClock(start=time.time())
    store = TrackingStore()
    manager = SessionManager(
        store, clock=clock, claims=[ROLE], global_claim_validators=[ROLE.validators.excludes("banned")]
    )
    app = with_handlers(manager, OVERRIDES)
    with override_settings(ROOT_URLCONF=__name__):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            yield Harness(clock, store, manager, client)
    await manager.close()


@pytest.mark.parametrize("path", ["/me", "/plain", "/raises", "/claims/me", "/report"])
async def test_error_handlers_answer_a_view_without_a_session(overridden: Harness, path: str) -> None:
    response = await overridden.client.get(path)
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
    assert response.headers.get_list("set-cookie") == []


async def test_error_handlers_still_clear_a_revoked_sessions_tokens(overridden: Harness) -> None:
    handle = await sign_in(overridden)
    await overridden.manager.revoke_session(handle)
    response = await overridden.client.get("/account")  # check_database: the revoked session is refused
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
    ("path", "user"), [("/claims/me", "mallory"), ("/claims/plain", "mallory"), ("/claims/admin", "alice")]
)
async def test_error_handlers_answer_an_invalid_claim(
    overridden: Harness, path: str, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    await sign_in(overridden, user)
    response = await overridden.client.get(path)
    assert (response.status_code, response.json()) == (403, {"custom": "denied", "ids": ["st-role"]})
    assert [r.message for r in caplog.records if r.name == "django.request"] == []  # no "Internal Server Error"


async def test_error_handlers_keep_a_refetched_token_with_the_override(overridden: Harness) -> None:
    await sign_in(overridden, "admin")
    assert (await overridden.client.get("/claims/fresh-admin")).status_code == 200
    overridden.clock.advance(61)
    ROLES["admin"] = ["user"]
    refused = await overridden.client.get("/claims/fresh-admin")
    assert (refused.status_code, refused.json()) == (403, {"custom": "denied", "ids": ["st-role"]})
    assert [c.split("=", 1)[0] for c in refused.headers.get_list("set-cookie")] == ["sAccessToken"]


async def test_errors_without_a_handler_keep_the_protocol_response() -> None:
    _, store, manager, _ = build()
    app = with_handlers(manager, ErrorHandlers(on_invalid_claim=denied))  # nothing for unauthorised
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        response = await client.get("/plain")
        assert (response.status_code, response.json()) == (401, UNAUTHORISED)
        assert (await client.get("/broken")).status_code == 500  # developer errors stay 500s
        await sign_in(Harness(FakeClock(), store, manager, client))
        store.fail_get = True
        outage = await client.get("/account")
        assert (outage.status_code, outage.json()) == (503, {"message": "session store unavailable"})
    await manager.close()


# -- Lifecycle hooks through Django: created, refreshed and revoked, each with the request ---------------------------


async def test_hooks_fire_through_django() -> None:
    events: list[SessionEvent] = []
    clock = FakeClock(start=time.time())
    manager = SessionManager(
        TrackingStore(),
        clock=clock,
        hooks=SessionHooks(on_created=events.append, on_refreshed=events.append, on_revoked=events.append),
    )
    transport = httpx.ASGITransport(app=create_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        harness = Harness(clock, TrackingStore(), manager, client)
        first = await sign_in(harness)
        assert (await client.post("/auth/session/refresh", headers={"rid": "session"})).status_code == 200
        assert (await client.post("/signout")).status_code == 200  # a view revoking its own session
        second = await sign_in(harness)
        assert (await client.post("/auth/signout", headers={"rid": "session"})).status_code == 200
    await manager.close()
    assert [(e.kind, e.handle, e.user_id, e.reason, e.scope["path"] if e.scope else None) for e in events] == [
        ("created", first, "alice", None, "/signin"),
        ("refreshed", first, "alice", None, "/auth/session/refresh"),
        ("revoked", first, "alice", "revoke", "/signout"),
        ("created", second, "alice", None, "/signin"),
        ("revoked", second, "alice", "sign-out", "/auth/signout"),
    ]
