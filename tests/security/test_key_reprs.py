"""Key objects never print key material: repr, str, and tracebacks rendered with their locals (error trackers)."""

from __future__ import annotations

import base64
import traceback
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from asgi_session import SessionConfig, SessionManager, StoreError
from asgi_session.keys import SigningKey, VerificationKey
from asgi_session.stores import KeyRecord, MemoryStore, Rotation, SQLiteStore
from asgi_session.stores.base import SessionRecord, SlidingRotation
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio

HS256_SECRET = b"an-hs256-secret-that-is-32-bytes-long!!!"


def new_pem() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode("ascii")
    )


def pem_body(text: str) -> str:
    return "".join(line for line in text.splitlines() if not line.startswith("-----"))


def spellings(material: bytes | str) -> list[str]:
    """The ways key material shows up in text: as is, its repr, base64, hex, and a PEM's bare body."""
    if isinstance(material, str):
        return [material, material[:48], pem_body(material)[:40]]
    return [repr(material), base64.b64encode(material).decode(), material.hex()]


def assert_hidden(text: str, material: bytes | str) -> None:
    for spelling in spellings(material):
        assert spelling not in text


def with_locals(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def test_a_key_record_never_shows_its_key() -> None:
    pem = new_pem()
    mac = base64.b64encode(b"\x01" * 32).decode()
    for material, algorithm in ((pem, "ES256"), (mac, "refresh-mac"), ("enc1:c2VhbGVk", "ES256")):
        record = KeyRecord(kid="d-1-abc", algorithm=algorithm, private_key=material, created_at=1.0, signs_from=1.0)
        for text in (repr(record), str(record), f"{record}", f"{record!r}", repr([record])):
            assert_hidden(text, material)
            assert "d-1-abc" in text
            assert algorithm in text


async def test_hs256_keys_never_show_the_secret() -> None:
    config = SessionConfig(signing_algorithm="HS256", signing_secret=HS256_SECRET)
    async with SessionManager(MemoryStore(), config, clock=FakeClock()) as manager:
        signing = await manager.keys.signing_key()
        verification = manager.keys.verification_key(signing.kid)
        assert verification is not None
        for key in (signing, verification):
            for text in (repr(key), str(key)):
                assert_hidden(text, HS256_SECRET)
                assert signing.kid in text
                assert "HS256" in text
        # The secret itself, wherever the ring holds it (a traceback's locals show these reprs).
        await manager.keys.reload_for_unknown_kid("d-1-unknown")
        verification = manager.keys.verification_key(signing.kid)
        assert verification is not None
        for held in (signing.private_key, verification.public_key):
            assert held == HS256_SECRET
            assert_hidden(repr(held), HS256_SECRET)


async def test_asymmetric_keys_never_show_the_private_key() -> None:
    async with SessionManager(MemoryStore(), clock=FakeClock()) as manager:
        signing = await manager.keys.signing_key()
        pem = signing.private_key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        verification = manager.keys.verification_key(signing.kid)
        assert verification is not None
        for key in (signing, verification):
            assert_hidden(repr(key), pem)
            assert signing.kid in repr(key)


def test_hand_built_key_objects_never_show_the_secret() -> None:
    assert_hidden(repr(SigningKey("s-1", "HS256", HS256_SECRET)), HS256_SECRET)
    assert_hidden(repr(VerificationKey("s-1", "HS256", HS256_SECRET)), HS256_SECRET)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_ring_and_store_reprs_hold_no_key(kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "s.db")
    async with SessionManager(store, clock=FakeClock()) as manager:
        await manager.create_new_session_without_request_response("alice")
        mac = manager.keys.refresh_mac_key
        records = await store.get_keys()
        texts = [repr(manager.keys), repr(store), repr(manager), repr(records), str(records)]
        texts.append(repr(manager.keys.describe()))
    for text in texts:
        assert_hidden(text, mac)
        for record in records:
            assert_hidden(text, record.private_key)


async def test_the_mac_key_is_redacted_wherever_it_is_held() -> None:
    async with SessionManager(MemoryStore(), clock=FakeClock()) as manager:
        mac = manager.keys.refresh_mac_key
        assert_hidden(repr(mac), bytes(mac))
        assert_hidden(str(mac), bytes(mac))
        assert bytes(mac) == mac  # still the key for every other purpose
        assert len(mac) == 32


class FailingSigningKeyStore(MemoryStore):
    """Refuses to store a signing key, so opening fails right after the key ring generated one."""

    async def add_key(self, key: KeyRecord) -> bool:
        if key.algorithm != "refresh-mac":
            raise StoreError("disk full")
        return await super().add_key(key)


class FailingRotationStore(MemoryStore):
    async def rotate(self, rotation: Rotation) -> bool:
        raise StoreError("connection lost")

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        raise StoreError("connection lost")


async def test_a_traceback_with_locals_from_key_generation_holds_no_private_key() -> None:
    store = FailingSigningKeyStore()
    manager = SessionManager(store, clock=FakeClock())
    with pytest.raises(StoreError) as caught:
        await manager.open()
    await store.close()
    text = with_locals(caught.value)
    assert "_rotate_if_due" in text  # the frame that held the fresh key is in the traceback
    assert "PRIVATE KEY" not in text


async def test_a_traceback_with_locals_from_a_refresh_holds_no_mac_key() -> None:
    async with SessionManager(FailingRotationStore(), clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        assert session.refresh_token is not None
        with pytest.raises(StoreError) as caught:
            await manager.refresh_session_without_request_response(session.refresh_token)
        text = with_locals(caught.value)  # before this frame holds the key itself
        mac = bytes(manager.keys.refresh_mac_key)
    assert "refresh_session_without_request_response" in text
    assert_hidden(text, mac)
