"""A Starlette app with claims, for the claims, error-handler and hook tests: one manager, a fake clock, a role store.

Driven as raw ASGI through ``httpx.ASGITransport``. The fake clock starts in 2023, so a cookie jar would drop the
cookies as expired: the helpers read ``Set-Cookie`` and ``front-token`` directly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_session import (
    ErrorHandlers,
    SessionConfig,
    SessionHooks,
    SessionManager,
    SessionMiddleware,
    create_new_session,
    get_session,
)
from asgi_session.claims import PrimitiveArrayClaim, SessionClaimValidator
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

REFRESH = "/auth/session/refresh"


class Roles:
    """The application's role database, counting how often the claim fetched from it."""

    def __init__(self) -> None:
        self.of: dict[str, list[str]] = {"admin": ["admin"]}
        self.fetches = 0

    async def fetch(self, user_id: str, tenant_id: str, payload: dict[str, Any]) -> list[str] | None:
        self.fetches += 1
        return self.of.get(user_id, ["user"])


class ClaimsApp:
    """The app: ``/signin?user=``, ``/me`` (global validators), ``/admin`` (adds ``includes("admin")``)."""

    def __init__(
        self,
        *,
        global_max_age: float | None = None,
        global_validators: bool = False,
        error_handlers: ErrorHandlers | None = None,
        hooks: SessionHooks | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.roles = Roles()
        self.role = PrimitiveArrayClaim("st-role", self.roles.fetch)
        validators = [self.role.validators.excludes("banned", max_age_in_seconds=global_max_age)]
        self.manager = SessionManager(
            MemoryStore(),
            config,
            clock=self.clock,
            claims=[self.role],
            global_claim_validators=validators if global_validators else (),
            hooks=hooks,
        )
        self.app = SessionMiddleware(
            Starlette(
                routes=[
                    Route("/signin", self.signin, methods=["POST"]),
                    Route("/me", self.me),
                    Route("/admin", self.admin),
                    Route("/open", self.open),
                    Route("/claim/{action}", self.claim_action, methods=["POST"]),
                    Route("/revoke", self.revoke, methods=["POST"]),
                ]
            ),
            manager=self.manager,
            error_handlers=error_handlers,
        )

    def admin_only(self, validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
        return [*validators, self.role.validators.includes("admin")]

    async def signin(self, request: Request) -> JSONResponse:
        session = await create_new_session(request, request.query_params.get("user", "alice"))
        return JSONResponse({"handle": session.handle})

    async def me(self, request: Request) -> JSONResponse:
        session = await get_session(request, session_required=True)
        assert session is not None
        return JSONResponse({"user": session.user_id, "roles": await session.get_claim_value(self.role)})

    async def admin(self, request: Request) -> JSONResponse:
        session = await get_session(request, session_required=True, override_global_claim_validators=self.admin_only)
        assert session is not None
        return JSONResponse({"admin": session.user_id})

    async def open(self, request: Request) -> JSONResponse:
        session = await get_session(request, session_required=True, override_global_claim_validators=lambda g, s: [])
        assert session is not None
        return JSONResponse({"user": session.user_id})

    async def claim_action(self, request: Request) -> JSONResponse:
        session = await get_session(request, session_required=True)
        assert session is not None
        action = request.path_params["action"]
        if action == "set":
            await session.set_claim_value(self.role, ["editor"])
        elif action == "remove":
            await session.remove_claim(self.role)
        elif action == "fetch":
            await session.fetch_and_set_claim(self.role)
        return JSONResponse({"roles": await session.get_claim_value(self.role)})

    async def revoke(self, request: Request) -> JSONResponse:
        session = await get_session(request, session_required=True)
        assert session is not None
        await session.revoke()
        return JSONResponse({"status": "OK"})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://testserver")


def set_cookie(response: httpx.Response, name: str) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(f"{name}="):
            return value.split(";", 1)[0].removeprefix(f"{name}=")
    return None


def front_payload(response: httpx.Response) -> dict[str, Any]:
    """The access-token payload the ``front-token`` header describes (what the frontend SDK validates)."""
    decoded: dict[str, Any] = json.loads(base64.b64decode(response.headers["front-token"]))
    return decoded["up"]  # type: ignore[no-any-return]


class Browser:
    """Holds one client's tokens across requests (as a cookie jar would, without the jar's expiry check)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.access = ""
        self.refresh = ""

    def take(self, response: httpx.Response) -> None:
        access = set_cookie(response, "sAccessToken")
        refresh = set_cookie(response, "sRefreshToken")
        if access is not None:
            self.access = access
        if refresh is not None:
            self.refresh = refresh

    async def request(self, method: str, path: str, **headers: str) -> httpx.Response:
        cookie = f"sRefreshToken={self.refresh}" if path == REFRESH else f"sAccessToken={self.access}"
        response = await self.client.request(method, path, headers={"cookie": cookie, **headers})
        self.take(response)
        return response

    async def sign_in(self, user: str = "alice") -> str:
        response = await self.client.post(f"/signin?user={user}")
        assert response.status_code == 200, response.text
        self.take(response)
        return str(response.json()["handle"])
