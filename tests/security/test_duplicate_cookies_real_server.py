"""Duplicate session cookies in a real cookie jar against a real uvicorn server (finding 6, issue 16 item 2).

The client is ``httpx`` with its ``http.cookiejar`` jar; its requests go to 127.0.0.1 but keep their URL, so the jar
sees the hosts ``app.example.test`` (the API) and ``evil.example.test`` (a sibling subdomain), and applies Domain,
Path and deletion rules as a browser would. Ports do not scope cookies, so every server shares one jar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, create_new_session, get_session
from asgi_session.stores import SQLiteStore
from tests._servers import serve_in_thread

REFRESH = "/auth/session/refresh"
SESSION_COOKIES = ("sAccessToken", "sRefreshToken")


class ResolveToLoopback(httpx.BaseTransport):
    """Connect every request to 127.0.0.1, keeping its URL: its Host header and the jar's view of its domain."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        forwarded = httpx.Request(
            request.method, request.url.copy_with(host="127.0.0.1"), headers=request.headers, stream=request.stream
        )
        return self._inner.handle_request(forwarded)

    def close(self) -> None:
        self._inner.close()


def api_app(db: Path, **settings: Any) -> Starlette:
    # cookie_secure=False: http.cookiejar does not send Secure cookies over plain http.
    manager = SessionManager(SQLiteStore(db), SessionConfig(cookie_secure=False, **settings))

    async def login(request: Request) -> Response:
        session = await create_new_session(request, request.query_params["user"])
        return JSONResponse({"user": session.user_id})

    async def me(request: Request) -> Response:
        session = await get_session(request, session_required=True)
        assert session is not None
        return JSONResponse({"user": session.user_id})

    return Starlette(
        routes=[Route("/login", login, methods=["POST"]), Route("/me", me)],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
    )


def sibling_app() -> Starlette:
    """A page on a sibling subdomain that plants cookies for the parent domain (cookie tossing)."""

    async def plant(request: Request) -> Response:
        response = JSONResponse({})
        for name in SESSION_COOKIES:
            if name in request.query_params:
                response.set_cookie(
                    name,
                    request.query_params[name],
                    domain="example.test",
                    path=request.query_params.get("path", "/" if name == "sAccessToken" else REFRESH),
                    httponly=True,
                )
        return response

    return Starlette(routes=[Route("/plant", plant)])


@contextmanager
def hosts(**apps: Starlette) -> Iterator[dict[str, str]]:
    """Serve each app on uvicorn; yield base URLs named ``http://<name>.example.test:<port>``."""
    with ExitStack() as stack:
        urls = {}
        for name, app in apps.items():
            port = httpx.URL(stack.enter_context(serve_in_thread(app))).port
            urls[name] = f"http://{name}.example.test:{port}"
        yield urls


def jar(client: httpx.Client, name: str) -> list[Any]:
    return [cookie for cookie in client.cookies.jar if cookie.name == name]


def counts(client: httpx.Client) -> dict[str, int]:
    return {name: len(jar(client, name)) for name in SESSION_COOKIES}


def test_older_cookie_domain_recovers_from_a_planted_refresh_cookie(tmp_path: Path) -> None:
    with (
        hosts(app=api_app(tmp_path / "s.db", older_cookie_domain="example.test"), evil=sibling_app()) as url,
        httpx.Client(transport=ResolveToLoopback(), timeout=10) as victim,
        httpx.Client(transport=ResolveToLoopback(), timeout=10) as attacker,
    ):
        assert victim.post(url["app"] + "/login", params={"user": "alice"}).status_code == 200
        assert attacker.post(url["app"] + "/login", params={"user": "mallory"}).status_code == 200
        (mallory_refresh,) = jar(attacker, "sRefreshToken")
        (alice_refresh,) = jar(victim, "sRefreshToken")
        assert alice_refresh.domain == "app.example.test"  # host-only

        # The victim visits the sibling subdomain, which plants the attacker's refresh token for the parent domain.
        assert victim.get(url["evil"] + "/plant", params={"sRefreshToken": mallory_refresh.value}).status_code == 200
        assert sorted(c.domain for c in jar(victim, "sRefreshToken")) == [".example.test", "app.example.test"]

        # Refresh: the planted cookie is cleared on the older domain; the victim's own cookie is untouched.
        first = victim.post(url["app"] + REFRESH, headers={"rid": "session"})
        assert first.status_code == 200
        assert set(first.json()) == {"message"}
        assert "front-token" not in first.headers
        assert counts(victim) == {"sAccessToken": 1, "sRefreshToken": 1}
        assert jar(victim, "sRefreshToken")[0].value == alice_refresh.value

        # The client's retry refreshes the victim's own session.
        retry = victim.post(url["app"] + REFRESH, headers={"rid": "session"})
        assert retry.status_code == 200
        assert retry.json() == {}
        assert retry.headers["front-token"] not in ("", "remove")
        assert counts(victim) == {"sAccessToken": 1, "sRefreshToken": 1}
        assert jar(victim, "sRefreshToken")[0].value != alice_refresh.value
        assert all(c.domain == "app.example.test" for c in victim.cookies.jar if c.name in SESSION_COOKIES)
        assert victim.get(url["app"] + "/me").json() == {"user": "alice"}


def test_without_older_cookie_domain_a_planted_cookie_is_a_500_and_the_victim_keeps_their_cookies(
    tmp_path: Path,
) -> None:
    with (
        hosts(app=api_app(tmp_path / "s.db"), evil=sibling_app()) as url,
        httpx.Client(transport=ResolveToLoopback(), timeout=10) as victim,
    ):
        assert victim.post(url["app"] + "/login", params={"user": "alice"}).status_code == 200
        before = {(c.name, c.domain, c.path, c.value) for c in victim.cookies.jar}
        # Another Path as well as another Domain: the browser sends both to the refresh endpoint.
        planted = victim.get(url["evil"] + "/plant", params={"sRefreshToken": "planted", "path": "/auth"})
        assert planted.status_code == 200
        assert counts(victim) == {"sAccessToken": 1, "sRefreshToken": 2}

        response = victim.post(url["app"] + REFRESH, headers={"rid": "session"})
        assert response.status_code == 500
        assert "older_cookie_domain" in response.json()["message"]
        assert response.headers.get_list("set-cookie") == []
        assert "front-token" not in response.headers
        # The victim's cookies are all still there, unchanged, and still sign them in.
        assert before <= {(c.name, c.domain, c.path, c.value) for c in victim.cookies.jar}
        assert victim.get(url["app"] + "/me").json() == {"user": "alice"}


def test_a_changed_cookie_domain_is_recovered_with_older_cookie_domain(tmp_path: Path) -> None:
    """The legitimate case: the deployment moved from ``cookie_domain="example.test"`` to host-only cookies."""
    db = tmp_path / "s.db"  # one store, as for one deployment before and after the change
    with (
        hosts(
            old=api_app(db, cookie_domain="example.test"),
            app=api_app(db, older_cookie_domain="example.test"),
        ) as url,
        httpx.Client(transport=ResolveToLoopback(), timeout=10) as client,
    ):
        assert client.post(url["old"] + "/login", params={"user": "alice"}).status_code == 200
        assert {c.domain for c in client.cookies.jar if c.name in SESSION_COOKIES} == {".example.test"}
        # After the change, a refresh issues host-only cookies next to the old domain's.
        assert client.post(url["app"] + REFRESH, headers={"rid": "session"}).status_code == 200
        assert counts(client) == {"sAccessToken": 2, "sRefreshToken": 2}
        stuck = client.get(url["app"] + "/me")
        assert stuck.status_code == 401
        assert stuck.json() == {"message": "try refresh token"}

        cleared = client.post(url["app"] + REFRESH, headers={"rid": "session"})
        assert cleared.status_code == 200
        assert "front-token" not in cleared.headers
        assert counts(client) == {"sAccessToken": 1, "sRefreshToken": 1}
        retry = client.post(url["app"] + REFRESH, headers={"rid": "session"})
        assert retry.status_code == 200
        assert counts(client) == {"sAccessToken": 1, "sRefreshToken": 1}
        assert {c.domain for c in client.cookies.jar if c.name in SESSION_COOKIES} == {"app.example.test"}
        assert client.get(url["app"] + "/me").json() == {"user": "alice"}
