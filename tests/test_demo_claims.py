"""The demo's roles, "Admin only" button endpoint and per-session "Revoke" button endpoint, through httpx and a real
uvicorn server on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_session import SessionConfig, SessionManager
from asgi_session.demo import ROLE_CLAIM, create_app, demo_manager
from asgi_session.stores import MemoryStore, SQLiteStore
from asgi_session.testing import FakeClock
from tests._servers import serve_in_thread

pytestmark = pytest.mark.anyio

INVALID_CLAIM = {
    "message": "invalid claim",
    "claimValidationErrors": [
        {"id": "st-role", "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}}
    ],
}


def demo(claims: bool = True) -> tuple[Any, SessionManager]:
    clock = FakeClock(start=float(int(time.time())))  # the cookie jar checks expiry against the real time
    manager = SessionManager(
        MemoryStore(), SessionConfig(cookie_secure=False), clock=clock, claims=[ROLE_CLAIM] if claims else ()
    )
    return create_app(manager), manager


def client_for(app: Any, agent: str = "browser") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers={"user-agent": agent}
    )


def test_the_demo_manager_carries_the_role_claim(tmp_path: Path) -> None:
    assert demo_manager(f"sqlite:///{tmp_path / 'd.db'}").claims == (ROLE_CLAIM,)


async def test_admin_gets_the_role_and_passes() -> None:
    app, _ = demo()
    async with client_for(app) as client:
        signed_in = (await client.post("/api/signin", json={"user": "admin"})).json()
        assert signed_in["roles"] == ["admin"]
        response = await client.get("/api/admin")
    assert response.status_code == 200
    assert response.json()["user"] == "admin"


@pytest.mark.parametrize("claims", [True, False], ids=["claim-at-sign-in", "fetched-by-the-validator"])
async def test_anyone_else_gets_the_403_body(claims: bool) -> None:
    app, _ = demo(claims)
    async with client_for(app) as client:
        await client.post("/api/signin", json={"user": "alice"})
        response = await client.get("/api/admin")
        assert response.status_code == 403
        assert response.json() == INVALID_CLAIM
        assert (await client.get("/api/session")).json()["roles"] == ["user"]


async def test_the_page_has_the_admin_and_revoke_buttons() -> None:
    app, _ = demo()
    async with client_for(app) as client:
        page = (await client.get("/")).text
    assert '<button id="admin" type="button">Admin only</button>' in page
    assert 'revoke.textContent = "Revoke"' in page
    assert '"/api/sessions/revoke"' in page


async def test_revoke_one_device_of_mine() -> None:
    app, manager = demo()
    async with client_for(app, "laptop") as laptop, client_for(app, "phone") as phone:
        await laptop.post("/api/signin", json={"user": "alice"})
        phone_handle = (await phone.post("/api/signin", json={"user": "alice"})).json()["handle"]
        sessions = (await laptop.get("/api/session")).json()["sessions"]
        assert len(sessions) == 2
        response = await laptop.post("/api/sessions/revoke", json={"handle": phone_handle})
        assert response.json() == {"status": "OK", "current": False}
        assert await manager.get_session_information(phone_handle) is None
        assert (await phone.get("/api/session")).status_code == 401  # the demo checks the store on every call
        assert (await laptop.get("/api/session")).status_code == 200
        # Revoking this browser's own session clears its cookies.
        mine = (await laptop.get("/api/session")).json()["handle"]
        response = await laptop.post("/api/sessions/revoke", json={"handle": mine})
        assert response.json() == {"status": "OK", "current": True}
        assert not [c for c in laptop.cookies.jar if c.name == "sAccessToken"]


async def test_nobody_revokes_someone_elses_session() -> None:
    app, manager = demo()
    async with client_for(app) as alice, client_for(app) as mallory:
        handle = (await alice.post("/api/signin", json={"user": "alice"})).json()["handle"]
        await mallory.post("/api/signin", json={"user": "mallory"})
        for body in ({"handle": handle}, {"handle": "not-a-handle"}):
            response = await mallory.post("/api/sessions/revoke", json=body)
            assert (response.status_code, response.json()) == (404, {"message": "no such session of yours"})
        for bad in ({"handle": 1}, ["x"]):
            assert (await mallory.post("/api/sessions/revoke", json=bad)).status_code == 400
        assert (
            await mallory.post("/api/sessions/revoke", content=b"{", headers={"content-type": "application/json"})
        ).status_code == 400
        assert await manager.get_session_information(handle) is not None


def test_claims_against_a_real_server(tmp_path: Path) -> None:
    manager = SessionManager(
        SQLiteStore(tmp_path / "sessions.db"), SessionConfig(cookie_secure=False), claims=[ROLE_CLAIM]
    )
    with (
        serve_in_thread(create_app(manager)) as base_url,
        httpx.Client(base_url=base_url, timeout=10) as alice,
        httpx.Client(base_url=base_url, timeout=10) as admin,
    ):
        alice.post("/api/signin", json={"user": "alice"})
        refused = alice.get("/api/admin")
        assert refused.status_code == 403
        assert refused.content == (
            b'{"message":"invalid claim","claimValidationErrors":[{"id":"st-role","reason":'
            b'{"message":"wrong value","expectedToInclude":"admin","actualValue":["user"]}}]}'
        )
        admin.post("/api/signin", json={"user": "admin"})
        assert admin.get("/api/admin").status_code == 200
        second = admin.post("/api/signin", json={"user": "admin"}).json()["handle"]
        # Signing in again ended the first session; revoke the current one: the cookies go.
        assert admin.post("/api/sessions/revoke", json={"handle": second}).json() == {
            "status": "OK",
            "current": True,
        }
        assert admin.get("/api/admin").status_code == 401
