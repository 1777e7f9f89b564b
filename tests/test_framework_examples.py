"""Every framework example runs: the same sign-in / protected / sign-out / revoke-all story through each one.

Starlette and FastAPI are driven through ``httpx.ASGITransport``, Quart through its own test client; each app is
built by the example's ``create_app`` with a MemoryStore manager. The ``__main__`` block is run too, with
``uvicorn.run`` replaced, to check that ``python examples/<name>.py`` serves the app on 127.0.0.1:8000.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from asgi_session import SessionManager
from asgi_session.stores import MemoryStore

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FRAMEWORKS = ["starlette", "fastapi", "quart", "litestar", "django"]
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
CLEARING = sorted(
    [
        f"sAccessToken=; Path=/; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
        f"sRefreshToken=; Path=/auth/session/refresh; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    ]
)
UNAUTHORISED = {"message": "unauthorised"}


@dataclass
class Reply:
    status: int
    body: Any
    set_cookies: list[str]

    @property
    def access_token(self) -> str:
        (token,) = [
            value.split(";", 1)[0].removeprefix("sAccessToken=")
            for value in self.set_cookies
            if value.startswith("sAccessToken=") and not value.startswith("sAccessToken=;")
        ]
        return token


Call = Callable[..., Awaitable[Reply]]


def load(framework: str) -> ModuleType:
    if framework == "django":  # a project (a package), with the settings module Django needs
        from tests.frameworks._django_project import asgi

        return asgi
    path = EXAMPLES / f"{framework}_app.py"
    spec = importlib.util.spec_from_file_location(f"example_{framework}_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Litestar resolves the handlers' annotations through the module
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def caller(framework: str, app: Any) -> AsyncIterator[Call]:
    """A ``call(method, path, token=None, json=None)`` that sends the access token (if any) as the only cookie."""
    if framework == "quart":
        quart_client = app.test_client()

        async def quart_call(method: str, path: str, token: str | None = None, json: Any = None) -> Reply:
            headers = {"cookie": f"sAccessToken={token}"} if token else {}
            response = await quart_client.open(path, method=method, headers=headers, json=json)
            quart_client.cookie_jar.clear()
            return Reply(response.status_code, await response.get_json(), response.headers.getlist("set-cookie"))

        yield quart_call
        return

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:

        async def httpx_call(method: str, path: str, token: str | None = None, json: Any = None) -> Reply:
            headers = {"cookie": f"sAccessToken={token}"} if token else {}
            response = await client.request(method, path, headers=headers, json=json)
            client.cookies.clear()
            return Reply(response.status_code, response.json(), response.headers.get_list("set-cookie"))

        yield httpx_call


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_example_story(framework: str) -> None:
    manager = SessionManager(MemoryStore())
    app = load(framework).create_app(manager)
    async with caller(framework, app) as call:
        # no session: the optional route says so, the protected ones refuse
        assert (await call("GET", "/hello")).body == {"user": None}
        for path in ("/me", "/account"):
            reply = await call("GET", path)
            assert (reply.status, reply.body) == (401, UNAUTHORISED)

        # sign in on two devices
        signed_in = await call("POST", "/signin", json={"user": "alice"})
        assert signed_in.status == 200
        assert signed_in.body["user"] == "alice"
        laptop = signed_in.access_token
        phone = (await call("POST", "/signin", json={"user": "alice"})).access_token
        assert (await call("GET", "/me", laptop)).body == {"user": "alice", "tenant": "public"}
        assert (await call("GET", "/account", phone)).body == {"user": "alice", "data": {}}
        assert (await call("GET", "/hello", phone)).body == {"user": "alice"}

        # revoke every session of the user from the laptop
        everywhere = await call("POST", "/signout-everywhere", laptop)
        assert (everywhere.status, everywhere.body) == (200, {"revoked": 2})
        assert sorted(everywhere.set_cookies) == CLEARING
        assert await manager.get_all_session_handles_for_user("alice") == []
        # the phone's token is refused where the store is checked; elsewhere it lives until its exp
        reply = await call("GET", "/account", phone)
        assert (reply.status, reply.body) == (401, UNAUTHORISED)
        assert sorted(reply.set_cookies) == CLEARING
        assert (await call("GET", "/me", phone)).status == 200

        # sign in again, sign out
        tablet = (await call("POST", "/signin", json={"user": "alice"})).access_token
        signed_out = await call("POST", "/signout", tablet)
        assert (signed_out.status, signed_out.body) == (200, {"status": "OK"})
        assert sorted(signed_out.set_cookies) == CLEARING
        reply = await call("GET", "/account", tablet)
        assert (reply.status, reply.body) == (401, UNAUTHORISED)

        # the protocol endpoints are there too
        reply = await call("POST", "/auth/session/refresh")
        assert (reply.status, reply.body) == (401, UNAUTHORISED)


@pytest.mark.parametrize("framework", ["starlette", "quart", "litestar", "django"])
async def test_example_refuses_a_sign_in_without_a_user(framework: str) -> None:
    app = load(framework).create_app(SessionManager(MemoryStore()))
    async with caller(framework, app) as call:
        reply = await call("POST", "/signin", json={"name": "alice"})
    assert reply.status == 400
    assert reply.set_cookies == []


async def test_fastapi_example_documents_its_protected_routes() -> None:
    app = load("fastapi").create_app(SessionManager(MemoryStore()))
    paths = app.openapi()["paths"]
    secured = sorted(
        path for path, methods in paths.items() for operation in methods.values() if "security" in operation
    )
    assert secured == ["/account", "/me", "/signout", "/signout-everywhere"]


@pytest.mark.parametrize("framework", [name for name in FRAMEWORKS if name != "django"])
async def test_example_main_serves_on_localhost_8000(framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append((app, kwargs)))
    monkeypatch.setenv("ASGI_SESSION_STORE_URL", "memory://")  # the default manager, without a file
    runpy.run_path(str(EXAMPLES / f"{framework}_app.py"), run_name="__main__")
    ((app, options),) = served
    assert options == {"host": "127.0.0.1", "port": 8000}
    async with caller(framework, app) as call:
        assert (await call("GET", "/hello")).body == {"user": None}
        token = (await call("POST", "/signin", json={"user": "carol"})).access_token
        assert (await call("GET", "/me", token)).body == {"user": "carol", "tenant": "public"}
