"""The manager's global claim validators at run time, through every route helper, and an override that removes them.

``SessionManager(..., global_claim_validators=[...])`` must make a route behind Starlette's ``requires_session``,
FastAPI's ``verify_session()`` / ``SessionDep``, Quart's ``session_required`` and plain ASGI's ``require_session``
answer 403 with SuperTokens' invalid-claim body; the route's ``override_global_claim_validators`` can remove them
(200) or add to them. Each app is driven as a server calls it, through ``httpx.ASGITransport``, and the routes
whose body reads the session again also through the framework's own test client. (Django and Litestar have the
same tests in their own modules; Starlette's ``SessionAuthBackend`` in ``test_starlette_auth``.)

The route's override is its claim policy: ``/open-inner`` and ``/admin-inner`` call ``get_session`` in their body
(without an override), which must not run the global validators again (the override removed them) nor drop the
added one.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import anyio.from_thread
import httpx
import pytest
from fastapi import Depends, FastAPI
from quart import Quart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_session import (
    Session,
    SessionManager,
    SessionMiddleware,
    create_new_session,
    get_session,
    require_session,
)
from asgi_session._asgi import ASGIApp, Receive, Scope, Send
from asgi_session.claims import PrimitiveArrayClaim, SessionClaimValidator
from asgi_session.frameworks import quart as quart_session
from asgi_session.frameworks.fastapi import SessionDep, verify_session
from asgi_session.frameworks.fastapi import install_exception_handlers as install_fastapi
from asgi_session.frameworks.starlette import get_session as starlette_get_session
from asgi_session.frameworks.starlette import requires_session
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock
from tests._testclient import https_client

pytestmark = pytest.mark.anyio

ROLES = {"mallory": ["banned"], "admin": ["admin"]}
ROLE = PrimitiveArrayClaim("st-role", lambda user_id, *_: ROLES.get(user_id, ["user"]))
IS_ADMIN = ROLE.validators.includes("admin")

BANNED_BODY = {
    "message": "invalid claim",
    "claimValidationErrors": [
        {
            "id": "st-role",
            "reason": {"message": "wrong value", "expectedToNotInclude": "banned", "actualValue": ["banned"]},
        }
    ],
}
NOT_ADMIN_BODY = {
    "message": "invalid claim",
    "claimValidationErrors": [
        {"id": "st-role", "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}}
    ],
}


def without_globals(validators: list[SessionClaimValidator], session: Session) -> list[SessionClaimValidator]:
    """A sync override removing the global validators."""
    assert [v.id for v in validators] == ["st-role"]  # it receives the manager's global validators
    return []


async def also_admin(validators: list[SessionClaimValidator], session: Session) -> list[SessionClaimValidator]:
    """An async override adding a validator to the global ones."""
    return [*validators, IS_ADMIN]


def manager_with_globals() -> SessionManager:
    return SessionManager(
        MemoryStore(),
        clock=FakeClock(start=time.time()),
        claims=[ROLE],
        global_claim_validators=[ROLE.validators.excludes("banned")],
    )


# -- one app per integration: /signin, /me (the global validators), /open (removed), /admin (added) ---------------


def starlette_app(manager: SessionManager) -> ASGIApp:
    async def signin(request: Request) -> JSONResponse:
        await create_new_session(request, request.query_params["user"])
        return JSONResponse({})

    @requires_session
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.session.user_id})

    @requires_session(override_global_claim_validators=without_globals)
    async def open_(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.session.user_id})

    @requires_session(override_global_claim_validators=also_admin)
    def admin(request: Request) -> JSONResponse:  # a sync endpoint: verified on the event loop first
        return JSONResponse({"user": request.state.session.user_id})

    @requires_session(override_global_claim_validators=without_globals)
    async def open_inner(request: Request) -> JSONResponse:
        session = await starlette_get_session(request, session_required=True)
        return JSONResponse({"user": session.user_id})

    @requires_session(override_global_claim_validators=also_admin)
    def admin_inner(request: Request) -> JSONResponse:  # sync: the body reads the session on the event loop
        session = anyio.from_thread.run(get_session, request, True)  # asgi_session.get_session: the same check
        assert session is not None
        return JSONResponse({"user": session.user_id})

    @requires_session(override_global_claim_validators=without_globals)
    async def open_then_admin(request: Request) -> JSONResponse:  # an override of its own still runs
        session = await starlette_get_session(request, True, override_global_claim_validators=also_admin)
        return JSONResponse({"user": session.user_id})

    routes = [Route("/signin", signin, methods=["POST"]), Route("/me", me), Route("/open", open_)]
    inner = [
        Route("/open-inner", open_inner),
        Route("/admin-inner", admin_inner),
        Route("/open-admin", open_then_admin),
    ]
    return SessionMiddleware(Starlette(routes=[*routes, Route("/admin", admin), *inner]), manager=manager)


def fastapi_app(manager: SessionManager) -> ASGIApp:
    api = FastAPI()

    @api.post("/signin")
    async def signin(request: Request, user: str) -> dict[str, str]:
        await create_new_session(request, user)
        return {}

    @api.get("/me")
    async def me(session: SessionDep) -> dict[str, str]:
        return {"user": session.user_id}

    @api.get("/me-depends")
    async def me_depends(session: Session = Depends(verify_session())) -> dict[str, str]:  # noqa: B008
        return {"user": session.user_id}

    @api.get("/open")
    async def open_(
        session: Session = Depends(verify_session(override_global_claim_validators=without_globals)),  # noqa: B008
    ) -> dict[str, str]:
        return {"user": session.user_id}

    @api.get("/admin")
    async def admin(
        session: Session = Depends(verify_session(override_global_claim_validators=also_admin)),  # noqa: B008
    ) -> dict[str, str]:
        return {"user": session.user_id}

    @api.get("/open-inner", dependencies=[Depends(verify_session(override_global_claim_validators=without_globals))])
    async def open_inner(request: Request) -> dict[str, str]:
        session = await get_session(request, True)
        assert session is not None
        return {"user": session.user_id}

    @api.get("/admin-inner", dependencies=[Depends(verify_session(override_global_claim_validators=also_admin))])
    async def admin_inner(request: Request) -> dict[str, str]:
        return {"user": (await starlette_get_session(request, True)).user_id}

    install_fastapi(api, manager)
    return SessionMiddleware(api, manager=manager)


def quart_app(manager: SessionManager) -> ASGIApp:
    app = Quart(__name__)
    quart_session.install(app, manager)

    @app.post("/signin")
    async def signin() -> dict[str, str]:
        from quart import request

        await quart_session.create_new_session(request.args["user"])
        return {}

    @app.get("/me")
    @quart_session.session_required
    async def me() -> dict[str, str]:
        return {"user": (await quart_session.get_session(True)).user_id}

    @app.get("/open")
    @quart_session.session_required(override_global_claim_validators=without_globals)
    async def open_() -> dict[str, str]:
        return {"user": "open"}

    @app.get("/admin")
    @quart_session.session_required(override_global_claim_validators=also_admin)
    async def admin() -> dict[str, str]:
        return {"user": "admin"}

    @app.get("/open-inner")
    @quart_session.session_required(override_global_claim_validators=without_globals)
    async def open_inner() -> dict[str, str]:
        return {"user": (await quart_session.get_session(True)).user_id}

    @app.get("/admin-inner")
    @quart_session.session_required(override_global_claim_validators=also_admin)
    async def admin_inner() -> dict[str, str]:
        return {"user": (await quart_session.get_session(True)).user_id}

    return app  # type: ignore[return-value]  # Quart's ASGI types are narrower


def plain_asgi_app(manager: SessionManager) -> ASGIApp:
    async def user(scope: Scope, receive: Receive, send: Send) -> None:
        session = scope["asgi_session"]  # the session require_session checked
        await _send_json(send, {"user": session.user_id})

    async def inner_user(scope: Scope, receive: Receive, send: Send) -> None:
        session = await get_session(scope, session_required=True)  # the route's override stands: no validator again
        assert session is not None
        await _send_json(send, {"user": session.user_id})

    async def signin(scope: Scope, receive: Receive, send: Send) -> None:
        query = dict(pair.split("=", 1) for pair in scope["query_string"].decode().split("&"))
        await create_new_session(scope, query["user"])
        await _send_json(send, {})

    routes: dict[str, ASGIApp] = {
        "/signin": signin,
        "/me": require_session(user),
        "/open": require_session(user, override_global_claim_validators=without_globals),
        "/admin": require_session(user, override_global_claim_validators=also_admin),
        "/open-inner": require_session(inner_user, override_global_claim_validators=without_globals),
        "/admin-inner": require_session(inner_user, override_global_claim_validators=also_admin),
    }

    async def router(scope: Scope, receive: Receive, send: Send) -> None:
        await routes[scope["path"]](scope, receive, send)

    return SessionMiddleware(router, manager=manager)


async def _send_json(send: Send, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


APPS: dict[str, Callable[[SessionManager], ASGIApp]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "quart": quart_app,
    "asgi": plain_asgi_app,
}


@pytest.fixture(params=list(APPS))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    manager = manager_with_globals()
    transport = httpx.ASGITransport(app=APPS[request.param](manager))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        client.headers["x-framework"] = request.param
        yield client
    await manager.close()


async def sign_in(client: httpx.AsyncClient, user: str) -> None:
    client.cookies.clear()
    response = await client.post("/signin", params={"user": user})
    assert response.status_code == 200, response.text


async def test_a_failing_global_validator_is_403_with_supertokens_body(client: httpx.AsyncClient) -> None:
    await sign_in(client, "mallory")
    paths = ["/me", "/me-depends"] if client.headers["x-framework"] == "fastapi" else ["/me"]
    for path in paths:
        response = await client.get(path)
        assert (response.status_code, response.json()) == (403, BANNED_BODY), path
        assert response.headers["content-type"] == "application/json"
        assert response.headers.get_list("set-cookie") == []  # nothing re-fetched: nothing re-issued or cleared
    await sign_in(client, "alice")
    for path in paths:
        assert (await client.get(path)).status_code == 200


async def test_an_override_removing_the_global_validator_is_200(client: httpx.AsyncClient) -> None:
    await sign_in(client, "mallory")
    assert (await client.get("/open")).status_code == 200


async def test_an_override_adding_a_validator_keeps_the_global_ones(client: httpx.AsyncClient) -> None:
    await sign_in(client, "alice")
    refused = await client.get("/admin")
    assert (refused.status_code, refused.json()) == (403, NOT_ADMIN_BODY)
    await sign_in(client, "admin")
    assert (await client.get("/admin")).status_code == 200
    await sign_in(client, "mallory")  # both the global validator and the added one fail
    refused = await client.get("/admin")
    assert [error["reason"]["message"] for error in refused.json()["claimValidationErrors"]] == ["wrong value"] * 2


# -- the route's override stands for the get_session calls in its body ---------------------------------------------


async def test_an_override_removing_the_globals_holds_for_get_session_in_the_route(client: httpx.AsyncClient) -> None:
    await sign_in(client, "mallory")
    response = await client.get("/open-inner")
    assert (response.status_code, response.json()) == (200, {"user": "mallory"})


async def test_an_override_adding_a_validator_holds_for_get_session_in_the_route(client: httpx.AsyncClient) -> None:
    await sign_in(client, "alice")
    refused = await client.get("/admin-inner")
    assert (refused.status_code, refused.json()) == (403, NOT_ADMIN_BODY)
    await sign_in(client, "admin")
    response = await client.get("/admin-inner")
    assert (response.status_code, response.json()) == (200, {"user": "admin"})


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_the_route_override_holds_for_get_session_through_starlettes_testclient(framework: str) -> None:
    manager = manager_with_globals()
    with https_client(APPS[framework](manager)) as client:
        assert client.post("/signin", params={"user": "mallory"}).status_code == 200
        assert (client.get("/open-inner").status_code, client.get("/me").status_code) == (200, 403)
        client.cookies.clear()
        assert client.post("/signin", params={"user": "alice"}).status_code == 200
        refused = client.get("/admin-inner")
        assert (refused.status_code, refused.json()) == (403, NOT_ADMIN_BODY)


async def test_the_route_override_holds_for_get_session_through_quarts_test_client() -> None:
    manager = manager_with_globals()
    app = cast(Quart, quart_app(manager))
    async with app.test_app():
        client = app.test_client()
        assert (await client.post("/signin", query_string={"user": "mallory"})).status_code == 200
        assert ((await client.get("/open-inner")).status_code, (await client.get("/me")).status_code) == (200, 403)
        client.cookie_jar.clear()  # type: ignore[union-attr]
        assert (await client.post("/signin", query_string={"user": "alice"})).status_code == 200
        refused = await client.get("/admin-inner")
        assert (refused.status_code, await refused.get_json()) == (403, NOT_ADMIN_BODY)


def test_get_session_with_an_override_of_its_own_still_runs_it_in_a_checked_route() -> None:
    manager = manager_with_globals()
    with https_client(starlette_app(manager)) as client:
        assert client.post("/signin", params={"user": "alice"}).status_code == 200
        refused = client.get("/open-admin")
        assert (refused.status_code, refused.json()) == (403, NOT_ADMIN_BODY)
        client.cookies.clear()
        assert client.post("/signin", params={"user": "admin"}).status_code == 200
        assert client.get("/open-admin").json() == {"user": "admin"}
