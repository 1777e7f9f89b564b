"""GET /.well-known/openid-configuration: the issuer and the JWKS a create_jwt token verifies against."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from asgi_session import SessionConfig, SessionManager, SessionMiddleware
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio


async def _app(scope: dict[str, object], receive: object, send: object) -> None:  # pragma: no cover - never reached
    raise AssertionError("the discovery document is served by the middleware")


def _client(manager: SessionManager, base_url: str = "https://api.example.com") -> httpx.AsyncClient:
    app = SessionMiddleware(_app, manager=manager)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/auth/.well-known/openid-configuration"])
async def test_the_document_names_the_issuer_and_an_absolute_jwks_uri(path: str) -> None:
    manager = SessionManager(MemoryStore(), clock=FakeClock())
    async with manager, _client(manager) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "issuer": "asgi-session",
        "jwks_uri": "https://api.example.com/auth/jwt/jwks.json",
        "id_token_signing_alg_values_supported": ["ES256"],
    }


async def test_a_url_issuer_gives_the_jwks_uri_its_origin_whatever_the_host_header() -> None:
    config = SessionConfig(issuer="https://auth.example.com/auth", api_base_path="/auth")
    manager = SessionManager(MemoryStore(), config, clock=FakeClock())
    async with manager, _client(manager, "http://10.0.0.5:8000") as client:
        document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == "https://auth.example.com/auth"
    assert document["jwks_uri"] == "https://auth.example.com/auth/jwt/jwks.json"


async def test_a_forged_host_header_is_not_echoed() -> None:
    manager = SessionManager(MemoryStore(), clock=FakeClock())
    async with manager, _client(manager) as client:
        response = await client.get("/.well-known/openid-configuration", headers={"host": "evil.test/x?"})
    assert "evil" not in response.json()["jwks_uri"]


async def test_only_get_is_served() -> None:
    manager = SessionManager(MemoryStore(), clock=FakeClock())
    async with manager, _client(manager) as client:
        response = await client.post("/.well-known/openid-configuration")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "EdDSA"])
async def test_a_create_jwt_token_verifies_through_the_discovered_keys(algorithm: str) -> None:
    """What another service does: discovery document, then jwks_uri, then verify with its own JOSE library."""
    config = SessionConfig(signing_algorithm=algorithm, issuer="https://api.example.com")  # type: ignore[arg-type]
    manager = SessionManager(MemoryStore(), config)
    async with manager, _client(manager) as client:
        token = await manager.create_jwt({"sub": "billing", "scope": "invoices:read"}, validity_seconds=120)
        document = (await client.get("/.well-known/openid-configuration")).json()
        jwks_response = await client.get(urlsplit(document["jwks_uri"]).path)
    assert jwks_response.headers["access-control-allow-origin"] == "*"
    keys = jwt.PyJWKSet.from_dict(jwks_response.json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        key=key,
        algorithms=document["id_token_signing_alg_values_supported"],
        issuer=document["issuer"],
        options={"require": ["exp", "iat", "iss", "sub"]},
    )
    assert claims["sub"] == "billing"
    assert claims["scope"] == "invoices:read"
