"""The apps the browser tests serve: a page that loads the SuperTokens SDK, and a small API behind SessionMiddleware.

The SDK's browser bundles come from ``tests/browser/node_modules`` (``npm ci`` there installs the version that
``package-lock.json`` pins); nothing is fetched at test time. The server's clock is the real one plus an offset that a
test moves forward, so "the access token has expired" or "the grace window has passed" happens at once, without
sleeping, while the browser keeps real time (its cookies' ``Expires`` stay valid).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from asgi_session import Clock, SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session.claims import PrimitiveArrayClaim, SessionClaimValidator
from asgi_session.stores import SQLiteStore

T = TypeVar("T")

HERE = Path(__file__).parent
BUNDLE_DIR = HERE / "node_modules" / "supertokens-web-js" / "bundle"
BUNDLES = ("website", "supertokens", "session", "userroles")
"""The SDK bundles the page loads, in order: ``website`` is the webpack runtime the others depend on; ``userroles``
defines ``supertokensUserRoles.UserRoleClaim`` (the ``st-role`` claim's frontend validators)."""

CORS_ALLOW_HEADERS = ["content-type", "rid", "fdi-version", "st-auth-mode", "anti-csrf", "authorization"]
"""What the SuperTokens SDK sends (besides ``content-type``); the recipe in docs/frontend.md lists the same."""
CORS_EXPOSE_HEADERS = ["front-token", "st-access-token", "st-refresh-token", "anti-csrf"]


def find_bundles(folder: Path = BUNDLE_DIR) -> dict[str, Path]:
    """The SDK's bundle files by name (``session`` -> ``bundle/session.<hash>.js``).

    Raises:
        FileNotFoundError: a bundle is missing (``npm ci`` in tests/browser has not run).
    """
    found: dict[str, Path] = {}
    for name in BUNDLES:
        matches = sorted(folder.glob(f"{name}.*.js"))
        if len(matches) != 1:
            raise FileNotFoundError(f"expected one {folder}/{name}.<hash>.js, found {len(matches)}")
        found[name] = matches[0]
    return found


class ShiftedClock(Clock):
    """The real time plus an offset that only grows: the server's view of time, moved forward by a test."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()  # read by the server's thread, moved by the test's

    def now(self) -> float:
        """Return the real time plus the offset."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the server's time forward by ``seconds``."""
        with self._lock:
            self._offset += seconds


PAYLOAD = {"role": "reader", "plan": {"name": "free", "seats": 3}}
"""The custom claims every sign-in puts into the access-token payload."""


def _roles(user_id: str, tenant_id: str, payload: dict[str, Any]) -> list[str]:
    return ["admin"] if user_id == "admin" else ["user"]


ROLE_CLAIM = PrimitiveArrayClaim("st-role", _roles)
"""The user's roles under the key of SuperTokens' ``UserRoleClaim``: ``admin`` for the user "admin", else ``user``.

A backend started with ``serve(claims=(ROLE_CLAIM,))`` puts it into every new session's payload.
"""


def _admins_only(validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
    return [*validators, ROLE_CLAIM.validators.includes("admin")]


def _page_routes(bundles: dict[str, Path]) -> list[Route]:
    page = (HERE / "sdk_page.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def plain(request: Request) -> Response:  # a page without the SDK: its fetch is the browser's own
        return HTMLResponse('<!doctype html><html lang="en"><title>plain</title><p id="state">plain</p></html>')

    async def bundle(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in bundles:
            return JSONResponse({"message": "no such bundle"}, status_code=404)
        return FileResponse(bundles[name], media_type="text/javascript")

    return [
        Route("/", index, methods=["GET"]),
        Route("/plain", plain, methods=["GET"]),
        Route("/sdk/{name}.js", bundle, methods=["GET"]),
    ]


def page_app(bundles: dict[str, Path]) -> Starlette:
    """Only the pages (``/`` with the SDK, ``/plain`` without) and the SDK: the front end of a cross-origin set-up."""
    return Starlette(routes=_page_routes(bundles))


def api_app(
    manager: SessionManager,
    bundles: dict[str, Path] | None = None,
    *,
    cors_origins: Sequence[str] = (),
) -> Starlette:
    """The API: sign-in, a protected route, an admin route, the protocol endpoints; plus the page with ``bundles``.

    ``GET /api/admin`` needs the ``st-role`` claim (:data:`ROLE_CLAIM`) to include ``admin``.

    With ``cors_origins``, Starlette's CORSMiddleware wraps everything (SessionMiddleware's own answers too), with
    credentials and the SDK's headers: the recipe that docs/frontend.md shows.
    """

    async def signin(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        session = await create_new_session(request, str(body["user"]), access_token_payload=PAYLOAD)
        return JSONResponse({"user": session.user_id, "handle": session.handle})

    async def protected(request: Request) -> Response:
        session = await get_session(request, session_required=True)
        assert session is not None
        return JSONResponse(
            {"user": session.user_id, "handle": session.handle, "payload": session.access_token_payload}
        )

    async def admin(request: Request) -> Response:  # guarded by a claim: 403 "invalid claim" for a non-admin
        session = await get_session(request, session_required=True, override_global_claim_validators=_admins_only)
        assert session is not None
        return JSONResponse({"user": session.user_id, "admin": True})

    routes = [
        Route("/api/signin", signin, methods=["POST"]),
        Route("/api/protected", protected, methods=["GET"]),
        Route("/api/admin", admin, methods=["GET"]),
    ]
    if bundles is not None:
        routes += _page_routes(bundles)
    middleware = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=CORS_ALLOW_HEADERS,
                expose_headers=CORS_EXPOSE_HEADERS,
            )
        )
    middleware.append(Middleware(SessionMiddleware, manager=manager))
    return Starlette(routes=routes, middleware=middleware)


@dataclass
class Backend:
    """A test API on a real uvicorn server: its URL, its manager, its clock and its SQLite file."""

    url: str
    manager: SessionManager
    clock: ShiftedClock
    db: Path

    def offline(self, work: Callable[[SessionManager], Awaitable[T]]) -> T:
        """Run ``work`` with a manager of its own on the same store, as a backend job would: no browser, no request.

        It runs in a thread of its own (the browser's driver owns this one), on the server's config and clock.
        """

        async def main() -> T:
            async with SessionManager(SQLiteStore(self.db), self.manager.config, clock=self.clock) as manager:
                return await work(manager)

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(anyio.run, main).result(timeout=30)
