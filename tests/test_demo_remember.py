"""The demo's "Keep me signed in" box: ticked (the default) persists cookies, unticked ends them with the browser."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from asgi_session import SessionConfig, SessionManager
from asgi_session.demo import create_app
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    clock = FakeClock(start=float(int(time.time())))
    async with SessionManager(store=MemoryStore(), config=SessionConfig(cookie_secure=False), clock=clock) as manager:
        yield create_app(manager)


def refresh_cookie(response: httpx.Response) -> str:
    return next(value for value in response.headers.get_list("set-cookie") if value.startswith("sRefreshToken="))


async def post(app: Starlette, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/api/signin", **kwargs)  # type: ignore[arg-type]


async def test_the_page_has_a_keep_me_signed_in_box_ticked(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = (await client.get("/")).text
    assert '<input id="remember" name="remember" type="checkbox" value="on" checked> Keep me signed in' in page
    assert 'remember: $("remember").checked' in page


@pytest.mark.parametrize(
    ("kwargs", "persistent"),
    [
        ({"json": {"user": "alice"}}, True),
        ({"json": {"user": "alice", "remember": True}}, True),
        ({"json": {"user": "alice", "remember": False}}, False),
        ({"data": {"user": "alice", "remember": "on"}}, True),
        ({"data": {"user": "alice"}}, False),  # an unticked box is not sent
    ],
)
async def test_sign_in_passes_the_box_through(app: Starlette, kwargs: dict[str, object], persistent: bool) -> None:
    response = await post(app, **kwargs)
    assert response.status_code in (200, 303)
    cookie = refresh_cookie(response)
    assert ("Expires=" in cookie) is persistent
    assert "Max-Age" not in cookie
