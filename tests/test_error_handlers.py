"""ErrorHandlers: the app's own answers to session errors, with the protocol's token changes kept, in every framework.

Raw ASGI (the middleware's own path and the protocol endpoints), Starlette with its exception handlers, FastAPI
(plus the OpenAPI 403) and Quart, each through its own client.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from quart import Quart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from asgi_session import (
    ConfigurationError,
    ErrorHandlers,
    InvalidClaimsError,
    Session,
    SessionConfig,
    SessionHooks,
    SessionManager,
    SessionMiddleware,
    TokenTheftDetectedError,
    UnauthorisedError,
    create_new_session,
    require_session,
)
from asgi_session._asgi import Receive, Scope, Send
from asgi_session.claims import PrimitiveArrayClaim
from asgi_session.frameworks import quart as quart_session
from asgi_session.frameworks.fastapi import INVALID_CLAIM_RESPONSE, SessionDep, verify_session
from asgi_session.frameworks.fastapi import install_exception_handlers as install_fastapi
from asgi_session.frameworks.starlette import install_exception_handlers, requires_session
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock
from tests._claims_app import REFRESH, Browser, ClaimsApp, front_payload
from tests._servers import serve_in_thread
from tests._testclient import https_client
from tests.frameworks import CLEARING

pytestmark = pytest.mark.anyio

seen: list[tuple[str, Any]] = []


async def to_sign_in(scope: Scope, error: UnauthorisedError) -> Response:
    seen.append(("unauthorised", error.reason))
    return RedirectResponse("/sign-in-page", status_code=303)


async def please_refresh(scope: Scope, error: Exception) -> Response:
    return JSONResponse({"custom": "refresh"}, status_code=401)


async def audit_theft(scope: Scope, error: TokenTheftDetectedError) -> Response:
    seen.append(("theft", error.user_id))
    return JSONResponse({"custom": "theft", "user": error.user_id}, status_code=401)


async def denied(scope: Scope, error: InvalidClaimsError) -> Response:
    return JSONResponse({"custom": "denied", "ids": [e["id"] for e in error.errors]}, status_code=403)


HANDLERS = ErrorHandlers(
    on_unauthorised=to_sign_in,
    on_try_refresh_token=please_refresh,
    on_token_theft_detected=audit_theft,
    on_invalid_claim=denied,
)


def cookies(response: httpx.Response | Any) -> list[str]:
    return sorted(response.headers.get_list("set-cookie") if hasattr(response.headers, "get_list") else [])


# -- raw ASGI: the middleware's own path and the endpoints -------------------------------------------------------


async def test_on_unauthorised_replaces_the_401_and_clears_nothing_without_a_token() -> None:
    app = ClaimsApp(error_handlers=HANDLERS)
    async with app.client() as client:
        response = await client.get("/me")
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
    assert response.headers.get_list("set-cookie") == []


async def test_on_unauthorised_still_clears_a_revoked_sessions_tokens() -> None:
    app = ClaimsApp(error_handlers=HANDLERS, config=SessionConfig(access_token_blacklisting=True))
    async with app.client() as client:
        browser = Browser(client)
        handle = await browser.sign_in()
        await app.manager.revoke_session(handle)
        response = await browser.request("GET", "/me")
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"


async def test_on_try_refresh_token() -> None:
    app = ClaimsApp(error_handlers=HANDLERS)
    async with app.client() as client:
        browser = Browser(client)
        await browser.sign_in()
        app.clock.advance(timedelta(hours=2))
        response = await browser.request("GET", "/me")
    assert (response.status_code, response.json()) == (401, {"custom": "refresh"})
    assert response.headers.get_list("set-cookie") == []


async def test_on_token_theft_detected_at_the_refresh_endpoint_still_clears() -> None:
    seen.clear()
    app = ClaimsApp(error_handlers=HANDLERS)
    async with app.client() as client:
        browser = Browser(client)
        await browser.sign_in()
        stolen = browser.refresh
        assert (await browser.request("POST", REFRESH, rid="session")).status_code == 200
        app.clock.advance(60)
        browser.refresh = stolen
        response = await browser.request("POST", REFRESH, rid="session")
    assert (response.status_code, response.json()) == (401, {"custom": "theft", "user": "alice"})
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"
    assert seen == [("theft", "alice")]


async def test_on_invalid_claim_keeps_a_reissued_token() -> None:
    app = ClaimsApp(error_handlers=HANDLERS, global_validators=True, global_max_age=10)
    async with app.client() as client:
        browser = Browser(client)
        await browser.sign_in()
        app.clock.advance(11)
        app.roles.of["alice"] = ["banned"]
        old = browser.access
        response = await browser.request("GET", "/admin")
    assert (response.status_code, response.json()) == (403, {"custom": "denied", "ids": ["st-role", "st-role"]})
    assert browser.access != old
    assert front_payload(response)["st-role"]["v"] == ["banned"]


async def test_a_handler_that_raises_falls_back_to_the_protocol_response(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope: Scope, error: Exception) -> Response:
        raise RuntimeError("boom")

    app = ClaimsApp(error_handlers=ErrorHandlers(on_unauthorised=broken))
    with caplog.at_level(logging.ERROR, logger="asgi_session"):
        async with app.client() as client:
            response = await client.get("/me")
    assert (response.status_code, response.json()) == (401, {"message": "unauthorised"})
    assert "error handler" in caplog.text


async def test_handlers_left_unset_keep_the_protocol_response() -> None:
    app = ClaimsApp(error_handlers=ErrorHandlers(on_invalid_claim=denied))
    async with app.client() as client:
        assert (await client.get("/me")).json() == {"message": "unauthorised"}


def test_bad_handlers_are_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        ErrorHandlers(on_unauthorised="redirect")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ErrorHandlers"):
        SessionMiddleware(Starlette(), manager=SessionManager(MemoryStore()), error_handlers={})  # type: ignore[arg-type]


async def test_plain_asgi_require_session_honours_the_handlers() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover - never reached
        raise AssertionError("the app must not run without a session")

    app = SessionMiddleware(require_session(inner), manager=SessionManager(MemoryStore()), error_handlers=HANDLERS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        response = await client.get("/anything")
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")


# -- frameworks, through their own clients (a real-time clock: their cookie jars check expiry) -------------------


def role_claim() -> PrimitiveArrayClaim[str]:
    return PrimitiveArrayClaim("st-role", lambda user_id, *_: ["admin"] if user_id == "admin" else ["user"])


def test_starlette_exception_handlers_defer_to_the_override() -> None:
    manager = SessionManager(MemoryStore(), clock=FakeClock(start=time.time()))
    role = role_claim()

    async def signin(request: Request) -> JSONResponse:
        await create_new_session(request, "alice")
        return JSONResponse({})

    @requires_session
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.session.user_id})

    @requires_session(override_global_claim_validators=lambda g, s: [role.validators.includes("admin")])
    async def admin(request: Request) -> JSONResponse:  # pragma: no cover - alice is no admin
        return JSONResponse({})

    app = Starlette(routes=[Route("/signin", signin, methods=["POST"]), Route("/me", me), Route("/admin", admin)])
    install_exception_handlers(app, manager)
    wrapped = SessionMiddleware(app, manager=manager, error_handlers=HANDLERS)
    with https_client(wrapped, follow_redirects=False) as client:
        response = client.get("/me")
        assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
        client.post("/signin")
        assert client.get("/me").json() == {"user": "alice"}
        refused = client.get("/admin")
        assert (refused.status_code, refused.json()) == (403, {"custom": "denied", "ids": ["st-role"]})


def test_fastapi_handlers_and_the_openapi_403() -> None:
    role = role_claim()
    manager = SessionManager(MemoryStore(), clock=FakeClock(start=time.time()), claims=[role])
    api = FastAPI()

    @api.post("/signin")
    async def signin(request: Request, user: str) -> dict[str, str]:
        session = await create_new_session(request, user)
        return {"handle": session.handle}

    @api.get("/me")
    async def me(session: SessionDep) -> dict[str, str]:
        return {"user": session.user_id}

    admins = verify_session(override_global_claim_validators=lambda g, s: [*g, role.validators.includes("admin")])

    @api.get("/admin")
    async def admin(session: Session = Depends(admins)) -> dict[str, str]:  # noqa: B008 - a local dependency
        return {"admin": session.user_id}

    install_fastapi(api, manager)
    app = SessionMiddleware(api, manager=manager, error_handlers=HANDLERS)
    with https_client(app, follow_redirects=False) as client:
        assert client.get("/me").status_code == 303
        client.post("/signin", params={"user": "alice"})
        assert client.get("/me").json() == {"user": "alice"}
        refused = client.get("/admin")
        assert (refused.status_code, refused.json()) == (403, {"custom": "denied", "ids": ["st-role"]})
        client.post("/signin", params={"user": "admin"})
        assert client.get("/admin").json() == {"admin": "admin"}
        paths = client.get("/openapi.json").json()["paths"]
    assert paths["/admin"]["get"]["responses"]["403"] == INVALID_CLAIM_RESPONSE
    assert "403" not in paths["/me"]["get"]["responses"]  # no global validators: /me validates no claim


def test_fastapi_openapi_marks_every_session_route_when_global_validators_exist() -> None:
    role = role_claim()
    manager = SessionManager(
        MemoryStore(),
        config=SessionConfig(invalid_claim_status_code=499),
        global_claim_validators=[role.validators.excludes("x")],
    )
    api = FastAPI()

    @api.get("/me")
    async def me(session: SessionDep) -> dict[str, str]:  # pragma: no cover - schema only
        return {}

    @api.get("/public")
    async def public() -> dict[str, str]:  # pragma: no cover - schema only
        return {}

    install_fastapi(api, manager)
    paths = api.openapi()["paths"]
    assert paths["/me"]["get"]["responses"]["499"]["description"].startswith("A session claim validator")
    assert "499" not in paths["/public"]["get"]["responses"]


@pytest.mark.parametrize("testing", [False, True], ids=["production", "testing"])
async def test_quart_install_honours_the_handlers(testing: bool) -> None:
    role = role_claim()
    manager = SessionManager(MemoryStore(), clock=FakeClock(start=time.time()))
    app = Quart(__name__)
    app.testing = testing
    quart_session.install(app, manager, error_handlers=HANDLERS)

    @app.post("/signin")
    async def signin() -> dict[str, str]:
        await quart_session.create_new_session("alice")
        return {}

    @app.get("/me")
    @quart_session.session_required
    async def me() -> dict[str, str]:
        return {"user": (await quart_session.get_session(True)).user_id}

    @app.get("/admin")
    @quart_session.session_required(override_global_claim_validators=lambda g, s: [role.validators.includes("admin")])
    async def admin() -> dict[str, str]:  # pragma: no cover - alice is no admin
        return {}

    async with app.test_app():
        client = app.test_client()
        response = await client.get("/me")
        assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
        await client.post("/signin")
        assert await (await client.get("/me")).get_json() == {"user": "alice"}
        refused = await client.get("/admin")
        assert (refused.status_code, await refused.get_json()) == (403, {"custom": "denied", "ids": ["st-role"]})


def test_handlers_and_hooks_against_a_real_server() -> None:
    events: list[tuple[str, str | None, str | None]] = []

    async def record(event: Any) -> None:
        client = event.scope.get("client") if event.scope is not None else None
        events.append((event.kind, event.reason, client[0] if client else None))

    hooks = SessionHooks(on_created=record, on_refreshed=record, on_revoked=record)
    manager = SessionManager(MemoryStore(), SessionConfig(cookie_secure=False), hooks=hooks)

    async def signin(request: Request) -> JSONResponse:
        await create_new_session(request, "alice")
        return JSONResponse({})

    @requires_session
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.session.user_id})

    app = Starlette(routes=[Route("/signin", signin, methods=["POST"]), Route("/me", me)])
    install_exception_handlers(app, manager)
    served = SessionMiddleware(app, manager=manager, error_handlers=HANDLERS)
    with serve_in_thread(served) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.get("/me")
        assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
        client.post("/signin")
        assert client.get("/me").json() == {"user": "alice"}
        assert client.post(REFRESH, headers={"rid": "session"}).status_code == 200
        signed_out = client.post("/auth/signout", headers={"rid": "session"})
        assert signed_out.json() == {"status": "OK"}
        assert [c for c in client.cookies.jar if c.name == "sAccessToken"] == []  # cleared by the real jar
        response = client.get("/me")
        assert (response.status_code, response.headers["location"]) == (303, "/sign-in-page")
    assert events == [
        ("created", None, "127.0.0.1"),
        ("refreshed", None, "127.0.0.1"),
        ("revoked", "sign-out", "127.0.0.1"),
    ]
