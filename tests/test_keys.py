"""The key ring: keys shared through the store, rotation that publishes before signing, JWKS, HS256."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from asgi_session import SessionConfig, SessionManager, StoreError, TryRefreshTokenError
from asgi_session.keys import KeyRing
from asgi_session.stores.base import KeyRecord
from asgi_session.stores.memory import MemoryStore
from asgi_session.stores.sqlite import SQLiteStore
from asgi_session.testing import FakeClock
from tests._helpers import b64u_json

pytestmark = pytest.mark.anyio

DAY = 24 * 3600.0


def header(token: str) -> dict[str, str]:
    decoded: dict[str, str] = b64u_json(token.split(".")[0])
    return decoded


@pytest.mark.parametrize(
    ("algorithm", "key_type", "kty"),
    [
        ("ES256", ec.EllipticCurvePrivateKey, "EC"),
        ("RS256", rsa.RSAPrivateKey, "RSA"),
        ("EdDSA", ed25519.Ed25519PrivateKey, "OKP"),
    ],
)
async def test_asymmetric_algorithms(algorithm: str, key_type: type, kty: str) -> None:
    config = SessionConfig(signing_algorithm=algorithm)  # type: ignore[arg-type]
    async with SessionManager(store=MemoryStore(), config=config, clock=FakeClock()) as manager:
        signing = await manager.keys.signing_key()
        assert isinstance(signing.private_key, key_type)
        session = await manager.create_new_session_without_request_response("alice")
        h = header(session.access_token)
        assert h == {"alg": algorithm, "typ": "JWT", "kid": signing.kid, "version": "5"}
        assert await manager.get_session_without_request_response(session.access_token)
        jwks = await manager.get_jwks()
        assert [k["kid"] for k in jwks["keys"]] == [signing.kid]
        assert jwks["keys"][0]["kty"] == kty
        assert jwks["keys"][0]["alg"] == algorithm
        assert "d" not in jwks["keys"][0]  # never the private part


async def test_jwks_verifies_with_pyjwt() -> None:
    import jwt

    async with SessionManager(store=MemoryStore(), clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        jwk = (await manager.get_jwks())["keys"][0]
        key = jwt.PyJWK(jwk).key
        claims = jwt.decode(
            session.access_token, key, algorithms=["ES256"], issuer="asgi-session", options={"verify_exp": False}
        )
        assert claims["sub"] == "alice"


async def test_hs256_uses_the_secret_and_publishes_nothing() -> None:
    config = SessionConfig(signing_algorithm="HS256", signing_secret="s" * 32)
    async with SessionManager(store=MemoryStore(), config=config, clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        assert header(session.access_token)["alg"] == "HS256"
        assert await manager.get_session_without_request_response(session.access_token)
        assert await manager.get_jwks() == {"keys": []}
        other = SessionConfig(signing_algorithm="HS256", signing_secret="t" * 32)
    async with SessionManager(store=MemoryStore(), config=other, clock=FakeClock()) as stranger:
        with pytest.raises(TryRefreshTokenError):
            await stranger.get_session_without_request_response(session.access_token)


async def test_keys_are_shared_through_the_store(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "shared.db"
    async with (
        SessionManager(store=SQLiteStore(path), clock=clock) as one,
        SessionManager(store=SQLiteStore(path), clock=clock) as two,
    ):
        assert (await one.keys.signing_key()).kid == (await two.keys.signing_key()).kid
        assert one.keys.refresh_mac_key == two.keys.refresh_mac_key
        session = await one.create_new_session_without_request_response("alice")
        assert await two.get_session_without_request_response(session.access_token, check_database=True)
        refreshed = await two.refresh_session_without_request_response(
            session.get_all_session_tokens_dangerously()["refreshToken"]
        )
        assert await one.get_session_without_request_response(refreshed.access_token)


async def test_rotation_publishes_before_signing_and_retires_old_keys() -> None:
    clock = FakeClock()
    store = MemoryStore()
    config = SessionConfig(key_rotation_interval=timedelta(days=7))
    async with SessionManager(store=store, config=config, clock=clock) as manager:
        first = await manager.keys.signing_key()
        # A minute before the interval ends, the next key is published but does not sign yet.
        clock.advance(7 * DAY - 60)
        assert (await manager.keys.signing_key()).kid == first.kid
        kids = [k["kid"] for k in (await manager.get_jwks())["keys"]]
        assert len(kids) == 2
        assert kids[0] == first.kid
        second_kid = kids[1]
        clock.advance(59)
        last_old = await manager.create_new_session_without_request_response("alice")  # signed by the old key
        assert header(last_old.access_token)["kid"] == first.kid
        clock.advance(1)
        assert (await manager.keys.signing_key()).kid == second_kid
        new_token = (await manager.create_new_session_without_request_response("bob")).access_token
        assert header(new_token)["kid"] == second_kid
        # The old key verifies the last token it signed for that token's whole life ...
        clock.advance(3600 - 2)
        assert await manager.get_session_without_request_response(last_old.access_token)
        assert first.kid in [k.kid for k in await store.get_keys()]
        # ... and is deleted from the store once every token it signed has expired.
        clock.advance(180)
        await manager.keys.signing_key()  # signing re-reads the ring, which deletes retired keys
        assert first.kid not in [k.kid for k in await store.get_keys()]
        assert [k["kid"] for k in (await manager.get_jwks())["keys"]] == [second_kid]


async def test_worker_learns_new_key_on_unknown_kid() -> None:
    clock = FakeClock()
    store = MemoryStore()
    async with (
        SessionManager(store=store, clock=clock) as one,
        SessionManager(store=store, clock=clock) as two,
    ):
        # one rotates long after two last looked at the ring
        clock.advance(30 * DAY)
        session = await one.create_new_session_without_request_response("alice")
        assert two.keys.verification_key(header(session.access_token)["kid"]) is None
        assert await two.get_session_without_request_response(session.access_token)


async def test_unknown_kid_reload_is_rate_limited() -> None:
    class Counting(MemoryStore):
        reads = 0

        async def get_keys(self) -> list[KeyRecord]:
            self.reads += 1
            return await super().get_keys()

    store = Counting()
    async with SessionManager(store=store, clock=FakeClock()) as manager:
        before = store.reads
        for i in range(50):
            assert await manager.keys.reload_for_unknown_kid(f"d-{i}") is False
        assert store.reads - before == 1
        assert await manager.keys.reload_for_unknown_kid("../../etc/passwd") is False
        assert store.reads - before == 1


async def test_corrupt_key_in_store_is_a_store_error() -> None:
    store = MemoryStore()
    await store.add_key(
        KeyRecord(kid="d-bad", algorithm="ES256", private_key="not a pem", created_at=0, signs_from=0, expires_at=None)
    )
    ring = KeyRing(store, SessionConfig(), FakeClock())
    with pytest.raises(StoreError):
        await ring.load()
