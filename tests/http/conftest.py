"""The HTTP test app, a cookie-free client, and helpers that read the wire exactly.

Every test drives raw ASGI through ``httpx.ASGITransport``. The client's cookie jar refuses every cookie, so a
test sends cookies only through an explicit ``Cookie`` header and reads ``Set-Cookie`` headers itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_session import (
    SessionConfig,
    SessionManager,
    SessionMiddleware,
    StoreError,
    create_new_session,
    get_session,
)
from asgi_session.stores import MemoryStore
from asgi_session.stores.base import Revocation, Rotation, SessionRecord, SlidingRotation
from asgi_session.testing import FakeClock
from tests._helpers import b64u_json, cookieless_jar

BASE_URL = "http://testserver"
REFRESH = "/auth/session/refresh"
SIGNOUT = "/auth/signout"
JWKS = "/auth/jwt/jwks.json"
EXPOSED = "front-token, st-access-token, st-refresh-token, anti-csrf"
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
ACCESS_COOKIE_LIFETIME = timedelta(days=365)
STREAM_CHUNKS = 5
TRY_REFRESH = {"message": "try refresh token"}
UNAUTHORISED = {"message": "unauthorised"}


# -- a store that fails on demand ------------------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """A MemoryStore whose session methods raise ``StoreError`` while ``failing`` names them ("*" = all)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    def _check(self, name: str) -> None:
        if "*" in self.failing or name in self.failing:
            raise StoreError(f"injected failure in {name}")

    async def create(self, record: SessionRecord) -> None:
        self._check("create")
        await super().create(record)

    async def get(self, handle: str) -> SessionRecord | None:
        self._check("get")
        return await super().get(handle)

    def probe_revocations(self, after: int) -> list[Revocation] | None:
        # A store that fails its reads cannot be probed either: verification falls back to the (failing) read.
        if "*" in self.failing or "get" in self.failing:
            return None
        return super().probe_revocations(after)

    async def rotate(self, rotation: Rotation) -> bool:
        self._check("rotate")
        return await super().rotate(rotation)

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        # Both a read and a swap: failing either fails it.
        self._check("get")
        self._check("rotate")
        return await super().rotate_sliding(rotation)

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        self._check("update_session_data")
        return await super().update_session_data(handle, data)

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        self._check("update_access_token_payload")
        return await super().update_access_token_payload(handle, payload)

    async def touch(self, handle: str, last_seen: float) -> bool:
        self._check("touch")
        return await super().touch(handle, last_seen)

    async def delete(self, handles: Any) -> list[str]:
        self._check("delete")
        return await super().delete(handles)

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        self._check("list_for_user")
        return await super().list_for_user(user_id, tenant_id)

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        self._check("delete_for_user")
        return await super().delete_for_user(user_id, tenant_id)

    async def delete_expired(self, now: float) -> int:
        self._check("delete_expired")
        return await super().delete_expired(now)


# -- the app -----------------------------------------------------------------------------------------------------


def _describe(session: Any) -> dict[str, Any]:
    return {
        "user": session.user_id,
        "tenant": session.tenant_id,
        "handle": session.handle,
        "payload": session.access_token_payload,
    }


async def login(request: Request) -> Response:
    params = request.query_params
    payload = {"role": params["role"]} if "role" in params else None
    idle = timedelta(seconds=float(params["idle"])) if "idle" in params else None
    session = await create_new_session(
        request,
        params["user"],
        tenant_id=params.get("tenant", "public"),
        access_token_payload=payload,
        remember=params.get("remember") != "0",
        idle_timeout=idle,
    )
    response = JSONResponse(_describe(session))
    if "expose" in params:
        response.headers["Access-Control-Expose-Headers"] = params["expose"]
    return response


async def me(request: Request) -> Response:
    session = await get_session(request, session_required=True)
    return JSONResponse(_describe(session))


async def optional(request: Request) -> Response:
    session = await get_session(request, session_required=False)
    return JSONResponse({"user": None if session is None else session.user_id})


async def logout(request: Request) -> Response:
    session = await get_session(request, session_required=True)
    assert session is not None
    await session.revoke()
    return JSONResponse({"status": "revoked"})


async def merge(request: Request) -> Response:
    session = await get_session(request, session_required=True)
    assert session is not None
    await session.merge_into_access_token_payload(await request.json())
    return JSONResponse(_describe(session))


async def checkdb(request: Request) -> Response:
    session = await get_session(request, session_required=True, check_database=True)
    return JSONResponse(_describe(session))


async def stream(request: Request) -> Response:
    session = await get_session(request, session_required=True)
    assert session is not None
    if "merge" in request.query_params:
        await session.merge_into_access_token_payload({"streamed": True})
    user = session.user_id

    async def chunks() -> AsyncIterator[bytes]:
        for number in range(STREAM_CHUNKS):
            yield f"{user}:{number}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def boom(request: Request) -> Response:
    raise RuntimeError("an application bug")


ROUTES = [
    Route("/login", login, methods=["POST"]),
    Route("/me", me, methods=["GET", "POST"]),
    Route("/optional", optional, methods=["GET"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/merge", merge, methods=["POST"]),
    Route("/checkdb", checkdb, methods=["GET"]),
    Route("/stream", stream, methods=["GET"]),
    Route("/boom", boom, methods=["GET"]),
]


def build_app(manager: SessionManager, *, outer: bool = False) -> Any:
    """The test app: Starlette with SessionMiddleware inside it, or (``outer``) wrapping the whole Starlette app.

    ``outer=True`` puts Starlette's ``ServerErrorMiddleware`` inside SessionMiddleware: the DESIGN.md trap.
    """
    if outer:
        return SessionMiddleware(Starlette(routes=ROUTES), manager=manager)
    return Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=manager)])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> Callable[..., tuple[Any, SessionManager]]:
    """Factory: ``make_app(config=..., clock=..., store=..., outer=...) -> (asgi_app, manager)``."""

    def factory(
        config: SessionConfig | None = None,
        clock: FakeClock = clock,
        store: MemoryStore | None = None,
        outer: bool = False,
    ) -> tuple[Any, SessionManager]:
        manager = SessionManager(store=store or FlakyStore(), config=config or SessionConfig(), clock=clock)
        return build_app(manager, outer=outer), manager

    return factory


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Factory: an ``httpx.AsyncClient`` over ``ASGITransport(app)`` whose cookie jar keeps nothing."""
    clients: list[httpx.AsyncClient] = []

    def factory(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        client = httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, cookies=cookieless_jar(), follow_redirects=False
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@dataclass
class Site:
    """One app under test, its manager, clock and store, and a client."""

    app: Any
    manager: SessionManager
    clock: FakeClock
    store: FlakyStore
    client: httpx.AsyncClient

    async def login(self, user: str = "alice", *, headers: Mapping[str, str] | None = None, **params: str) -> LoggedIn:
        """POST /login and collect the tokens it issued (from cookies or headers)."""
        response = await self.client.post("/login", params={"user": user, **params}, headers=dict(headers or {}))
        assert response.status_code == 200, response.text
        cookies = set_cookies(response)
        if "sAccessToken" in cookies:
            access, refresh = cookies["sAccessToken"].value, cookies["sRefreshToken"].value
        else:
            access, refresh = response.headers["st-access-token"], response.headers["st-refresh-token"]
        return LoggedIn(
            response=response,
            handle=response.json()["handle"],
            access=access,
            refresh=refresh,
            anti_csrf=response.headers.get("anti-csrf"),
        )

    async def refresh(self, refresh_token: str, **headers: str) -> httpx.Response:
        """POST the refresh endpoint with the refresh token in its cookie."""
        return await self.client.post(REFRESH, headers={"cookie": f"sRefreshToken={refresh_token}", **headers})


@dataclass
class LoggedIn:
    response: httpx.Response
    handle: str
    access: str
    refresh: str
    anti_csrf: str | None = None

    @property
    def cookie(self) -> str:
        """The ``Cookie`` header a browser would send to an app route."""
        return f"sAccessToken={self.access}"


@pytest.fixture
def make_site(
    make_app: Callable[..., tuple[Any, SessionManager]],
    make_client: Callable[..., httpx.AsyncClient],
    clock: FakeClock,
) -> Callable[..., Site]:
    """Factory: ``make_site(config=None, outer=False, raise_app_exceptions=True) -> Site``."""

    def factory(config: SessionConfig | None = None, *, outer: bool = False, raise_app_exceptions: bool = True) -> Site:
        store = FlakyStore()
        app, manager = make_app(config=config, clock=clock, store=store, outer=outer)
        client = make_client(app, raise_app_exceptions=raise_app_exceptions)
        return Site(app=app, manager=manager, clock=clock, store=store, client=client)

    return factory


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


# -- reading the wire --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetCookie:
    """One parsed ``Set-Cookie`` header; ``attrs`` maps attribute names to values (``True`` for flags)."""

    raw: str
    name: str
    value: str
    attrs: dict[str, str | bool]

    @property
    def is_clearing(self) -> bool:
        return self.value == "" and self.attrs.get("Max-Age") == "0" and self.attrs.get("Expires") == EPOCH


def parse_set_cookie(raw: str) -> SetCookie:
    first, *rest = raw.split("; ")
    name, sep, value = first.partition("=")
    assert sep == "=", raw
    attrs: dict[str, str | bool] = {}
    for part in rest:
        key, eq, attr = part.partition("=")
        assert key not in attrs, f"attribute {key} repeated in {raw}"
        attrs[key] = attr if eq else True
    return SetCookie(raw=raw, name=name, value=value, attrs=attrs)


def set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    """The response's ``Set-Cookie`` headers by name; fails if a name appears twice (the one-per-name promise)."""
    parsed = [parse_set_cookie(raw) for raw in response.headers.get_list("set-cookie")]
    names = [cookie.name for cookie in parsed]
    assert len(names) == len(set(names)), f"duplicate Set-Cookie names: {names}"
    return {cookie.name: cookie for cookie in parsed}


def http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the tests check what was issued, not its signature)."""
    header, payload, signature = token.split(".")
    assert header
    assert signature
    claims = b64u_json(payload)
    assert isinstance(claims, dict)
    return claims


def jwt_header(token: str) -> dict[str, Any]:
    header = b64u_json(token.split(".")[0])
    assert isinstance(header, dict)
    return header


def decode_front_token(value: str) -> dict[str, Any]:
    """Decode a ``front-token`` strictly: standard base64 with padding, UTF-8 JSON."""
    assert len(value) % 4 == 0, "front-token must be padded base64"
    # validate=True refuses characters outside the standard alphabet (so base64url's '-' and '_' fail here).
    decoded = json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    assert isinstance(decoded, dict)
    return decoded


def expected_cleared(*, secure: bool = True, same_site: str = "Lax", refresh_path: str = REFRESH) -> set[str]:
    """The exact clearing ``Set-Cookie`` values for both token cookies."""
    tail = "; HttpOnly" + ("; Secure" if secure else "") + f"; SameSite={same_site}"
    return {
        f"sAccessToken=; Path=/; Expires={EPOCH}; Max-Age=0{tail}",
        f"sRefreshToken=; Path={refresh_path}; Expires={EPOCH}; Max-Age=0{tail}",
    }


def assert_cleared(response: httpx.Response, **kwargs: Any) -> None:
    """Both cookies cleared exactly, ``front-token: remove``, ``Cache-Control: no-store``."""
    assert set(response.headers.get_list("set-cookie")) == expected_cleared(**kwargs)
    assert len(response.headers.get_list("set-cookie")) == 2
    assert response.headers.get_list("front-token") == ["remove"]
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert "anti-csrf" not in response.headers


def assert_untouched(response: httpx.Response) -> None:
    """The response neither sets nor clears any token."""
    assert response.headers.get_list("set-cookie") == []
    for name in ("front-token", "st-access-token", "st-refresh-token", "anti-csrf"):
        assert name not in response.headers, name


# -- raw ASGI ----------------------------------------------------------------------------------------------------


async def asgi_call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> list[dict[str, Any]]:
    """Run one HTTP request through ``app`` with exactly these header pairs; return every message it sent."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(requests, {"type": "http.disconnect"})

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


def start_headers(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    start = messages[0]
    assert start["type"] == "http.response.start"
    return [(key.decode("latin-1").lower(), value.decode("latin-1")) for key, value in start["headers"]]


def body_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def by_name(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in pairs if key == name]
