"""asgi_session.frameworks.fastapi through TestClient: verify_session, SessionDep, OpenAPI, protocol errors."""

from __future__ import annotations

import importlib
import sys
import time
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request

from asgi_session import ConfigurationError, Session, SessionManager, SessionMiddleware, create_new_session
from asgi_session.frameworks.fastapi import (
    OptionalSessionDep,
    SessionDep,
    install_exception_handlers,
    verify_session,
)
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock
from tests._testclient import SwallowErrors, TestClient, https_client

from . import CLEARING, TRY_REFRESH, TWO_HOURS, UNAUTHORISED

PROTECTED = ["/me", "/account", "/plain-depends", "/twice"]
SCHEMES: list[dict[str, list[str]]] = [{"AccessTokenCookie": []}, {"AccessTokenBearer": []}]


class Harness:
    """A FastAPI app; ``placement`` says where SessionMiddleware goes and whether the handlers are installed."""

    def __init__(self, placement: str = "inside", *, handlers: bool = False) -> None:
        self.clock = FakeClock(start=time.time())  # the client's cookie jar drops cookies that expired in real time
        self.manager = SessionManager(MemoryStore(), clock=self.clock)
        app = FastAPI()
        if placement == "inside":
            app.add_middleware(SessionMiddleware, manager=self.manager)
        elif placement == "intercepted":
            app.add_middleware(SwallowErrors)
            app.add_middleware(SessionMiddleware, manager=self.manager)  # added last: outermost
        if handlers:
            install_exception_handlers(app, self.manager)

        @app.post("/signin")
        async def signin(request: Request, user: str = "alice") -> dict[str, str]:
            session = await create_new_session(request, user)
            return {"handle": session.handle}

        @app.get("/me")
        async def me(session: SessionDep) -> dict[str, str]:
            return {"user": session.user_id}

        @app.get("/account")
        async def account(session: Annotated[Session, Depends(verify_session(check_database=True))]) -> dict[str, str]:
            return {"user": session.user_id}

        @app.get("/plain-depends")
        async def plain_depends(session: Session = Depends(verify_session())) -> dict[str, str]:  # noqa: B008
            return {"user": session.user_id}

        @app.get("/twice")
        async def twice(first: SessionDep, second: SessionDep) -> dict[str, Any]:
            return {"user": first.user_id, "same": first is second}

        @app.get("/optional")
        async def optional(session: OptionalSessionDep) -> dict[str, str | None]:
            return {"user": None if session is None else session.user_id}

        @app.get("/public")
        async def public() -> dict[str, str]:
            return {"hello": "world"}

        @app.post("/signout")
        async def signout(session: SessionDep) -> dict[str, str]:
            await session.revoke()
            return {"status": "OK"}

        self.fastapi = app
        self.app: Any = SessionMiddleware(app, manager=self.manager) if placement == "outside" else app

    def client(self, **kwargs: Any) -> TestClient:
        return https_client(self.app, **kwargs)


def sign_in(client: TestClient, user: str = "alice", **headers: str) -> Any:
    response = client.post("/signin", params={"user": user}, headers=headers)
    assert response.status_code == 200
    return response


def revoke(client: TestClient, harness: Harness, handle: str) -> bool:
    """Revoke a session offline, on the client's event loop (where the store lives)."""
    assert client.portal is not None
    return client.portal.call(harness.manager.revoke_session, handle)


VARIANTS = [
    pytest.param(("inside", False), id="add_middleware"),
    pytest.param(("outside", False), id="middleware-around-the-app"),
    pytest.param(("inside", True), id="add_middleware+handlers"),
    pytest.param(("intercepted", True), id="intercepting-layer+handlers"),
]


@pytest.fixture(params=VARIANTS)
def harness(request: pytest.FixtureRequest) -> Harness:
    placement, handlers = request.param
    return Harness(placement, handlers=handlers)


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_route_without_a_session_is_401_unauthorised(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED  # the protocol's body, not FastAPI's {"detail": "Not authenticated"}
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_route_with_a_valid_session_is_200(client: TestClient, path: str) -> None:
    sign_in(client)
    response = client.get(path)
    assert response.status_code == 200
    assert response.json()["user"] == "alice"


def test_the_dependency_is_resolved_once_per_request(client: TestClient) -> None:
    sign_in(client)
    assert client.get("/twice").json() == {"user": "alice", "same": True}
    assert verify_session() is verify_session(True, False, None)
    assert verify_session(check_database=True) is not verify_session()


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_route_with_an_expired_token_asks_for_a_refresh(
    harness: Harness, client: TestClient, path: str
) -> None:
    sign_in(client)
    harness.clock.advance(TWO_HOURS)
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == TRY_REFRESH
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not.a.jwt"],
    ids=["empty-bearer", "garbage-bearer"],
)
def test_a_bad_bearer_header_is_the_protocol_401_not_fastapis_403(client: TestClient, authorization: str) -> None:
    # Not shaped like our token: ignored, so the request has no session (the SDK refreshes on any 401).
    response = client.get("/me", headers={"authorization": authorization})
    assert (response.status_code, response.json()) == (401, UNAUTHORISED)


def test_another_authorization_scheme_is_no_session(client: TestClient) -> None:
    response = client.get("/me", headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert (response.status_code, response.json()) == (401, UNAUTHORISED)


def test_header_mode_tokens_work_through_the_bearer_scheme(client: TestClient) -> None:
    access = sign_in(client, **{"st-auth-mode": "header"}).headers["st-access-token"]
    client.cookies.clear()
    response = client.get("/me", headers={"authorization": f"Bearer {access}"})
    assert response.json() == {"user": "alice"}


def test_sign_out_clears_the_cookies(client: TestClient) -> None:
    sign_in(client)
    response = client.post("/signout")
    assert response.status_code == 200
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"
    assert client.get("/me").json() == UNAUTHORISED


def test_check_database_refuses_a_revoked_sessions_token(harness: Harness, client: TestClient) -> None:
    handle = sign_in(client).json()["handle"]
    assert revoke(client, harness, handle) is True
    assert client.get("/me").status_code == 200  # without the check, the token lives until its exp
    response = client.get("/account")
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED
    assert sorted(response.headers.get_list("set-cookie")) == CLEARING
    assert response.headers["front-token"] == "remove"


def test_optional_session_is_none_without_a_session(client: TestClient) -> None:
    assert client.get("/optional").json() == {"user": None}
    sign_in(client)
    assert client.get("/optional").json() == {"user": "alice"}


def test_an_intercepting_layer_without_the_handlers_hides_the_error() -> None:
    """Why install_exception_handlers exists: the layer answers 500 before SessionMiddleware sees the error."""
    with Harness("intercepted", handlers=False).client() as client:
        response = client.get("/me")
    assert (response.status_code, response.json()) == (500, {"error": "internal"})


def test_without_the_middleware_the_developer_error_stays_a_500() -> None:
    harness = Harness("none", handlers=True)
    with harness.client(raise_server_exceptions=False) as client:
        assert client.get("/me").status_code == 500
    with harness.client() as client, pytest.raises(ConfigurationError, match="SessionMiddleware"):
        client.get("/me")


# -- OpenAPI -----------------------------------------------------------------------------------------------------


def test_openapi_lists_the_security_schemes() -> None:
    document = Harness().fastapi.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["AccessTokenCookie"]["type"] == "apiKey"
    assert schemes["AccessTokenCookie"]["in"] == "cookie"
    assert schemes["AccessTokenCookie"]["name"] == "sAccessToken"
    assert schemes["AccessTokenBearer"]["type"] == "http"
    assert schemes["AccessTokenBearer"]["scheme"] == "bearer"
    assert schemes["AccessTokenBearer"]["bearerFormat"] == "JWT"
    assert set(schemes) == {"AccessTokenCookie", "AccessTokenBearer"}


def test_openapi_marks_protected_routes_only() -> None:
    paths = Harness().fastapi.openapi()["paths"]
    for path in PROTECTED:
        assert paths[path]["get"]["security"] == SCHEMES, path
    assert paths["/signout"]["post"]["security"] == SCHEMES
    for path, method in [("/optional", "get"), ("/public", "get"), ("/signin", "post")]:
        assert "security" not in paths[path][method], path


def test_openapi_marks_the_routes_of_a_protected_router() -> None:
    app = FastAPI()
    admin = APIRouter(prefix="/admin", dependencies=[Depends(verify_session(check_database=True))])

    @admin.get("/stats")
    async def stats() -> dict[str, int]:  # pragma: no cover
        return {}

    app.include_router(admin)
    assert app.openapi()["paths"]["/admin/stats"]["get"]["security"] == SCHEMES


def test_openapi_adds_no_parameters_for_the_schemes() -> None:
    paths = Harness().fastapi.openapi()["paths"]
    assert "parameters" not in paths["/me"]["get"]
    assert "parameters" not in paths["/optional"]["get"]


def test_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert "AccessTokenCookie" in client.get("/openapi.json").text


# -- a missing framework -----------------------------------------------------------------------------------------


def test_missing_fastapi_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` raise ImportError
    monkeypatch.delitem(sys.modules, "asgi_session.frameworks.fastapi")
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[fastapi\]'"):
        importlib.import_module("asgi_session.frameworks.fastapi")
