"""SessionManager.create_jwt: service-to-service JWTs signed by the key ring, verifiable through the JWKS."""

from __future__ import annotations

import json
from datetime import timedelta

import jwt
import pytest

from asgi_session import ConfigurationError, InvalidPayloadError, SessionConfig, SessionManager, TryRefreshTokenError
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio

ASYMMETRIC = ["ES256", "RS256", "EdDSA"]


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
async def test_a_jwt_verifies_through_the_jwks_with_another_library(algorithm: str) -> None:
    config = SessionConfig(signing_algorithm=algorithm, issuer="https://auth.example.com")  # type: ignore[arg-type]
    clock = FakeClock()
    async with SessionManager(MemoryStore(), config, clock=clock) as manager:
        token = await manager.create_jwt({"sub": "service-a", "scope": ["read"]}, validity_seconds=60)
        jwks = await manager.get_jwks()
        header = jwt.get_unverified_header(token)
        assert header == {"alg": algorithm, "typ": "JWT", "kid": header["kid"]}
        claims = jwt.decode(
            token,
            key=jwt.PyJWKSet.from_dict(json.loads(json.dumps(jwks)))[header["kid"]],
            algorithms=[algorithm],
            issuer="https://auth.example.com",
            options={"require": ["exp", "iat", "iss"], "verify_exp": False, "verify_iat": False},
        )
        now = int(clock.now())
        assert claims == {
            "iss": "https://auth.example.com",
            "sub": "service-a",
            "scope": ["read"],
            "iat": now,
            "exp": now + 60,
        }


async def test_the_payload_may_set_its_own_issuer_and_the_lifetime_defaults_to_the_access_token_s() -> None:
    clock = FakeClock()
    async with SessionManager(MemoryStore(), clock=clock) as manager:
        token = await manager.create_jwt({"iss": "billing"})
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == "billing"
        assert claims["exp"] - claims["iat"] == 3600


async def test_a_jwt_never_passes_as_an_access_token() -> None:
    async with SessionManager(MemoryStore(), clock=FakeClock()) as manager:
        token = await manager.create_jwt({"sub": "alice"})
        with pytest.raises(TryRefreshTokenError):
            await manager.get_session_without_request_response(token)


@pytest.mark.parametrize("claim", ["sessionHandle", "refreshTokenHash1", "tId", "rsub", "antiCsrfToken", "iat", "exp"])
async def test_session_and_time_claims_are_refused_in_the_payload(claim: str) -> None:
    async with SessionManager(MemoryStore(), clock=FakeClock()) as manager:
        with pytest.raises(InvalidPayloadError) as caught:
            await manager.create_jwt({claim: "x"})
        assert caught.value.key == claim


@pytest.mark.parametrize("validity", [0, -1, 3601, 1.5, True, "60"])
async def test_the_lifetime_must_fit_the_key_retention(validity: object) -> None:
    async with SessionManager(MemoryStore(), clock=FakeClock()) as manager:
        with pytest.raises(ValueError, match="validity_seconds"):
            await manager.create_jwt({}, validity_seconds=validity)  # type: ignore[arg-type]


async def test_a_longer_access_token_validity_allows_longer_jwts() -> None:
    config = SessionConfig(access_token_validity=timedelta(hours=2))
    async with SessionManager(MemoryStore(), config, clock=FakeClock()) as manager:
        token = await manager.create_jwt({}, validity_seconds=7200)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 7200


async def test_hs256_cannot_publish_its_key_so_create_jwt_refuses() -> None:
    config = SessionConfig(signing_algorithm="HS256", signing_secret="s" * 32)
    async with SessionManager(MemoryStore(), config, clock=FakeClock()) as manager:
        with pytest.raises(ConfigurationError, match="asymmetric"):
            await manager.create_jwt({})
