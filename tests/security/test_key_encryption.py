"""key_encryption_secret: keys sealed at rest with AES-256-GCM, on every store, and a clear failure without it."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from asgi_session import ConfigurationError, SessionConfig, SessionError, SessionManager, StoreError
from asgi_session.stores import KeyRecord, MemoryStore, SessionStore, SQLiteStore, store_from_url
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "an-operator-secret-of-at-least-32-bytes!"
OTHER_SECRET = b"another-operator-secret-32-bytes-long!!!"
SEALED = "enc1:"


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SessionStore]:
    """A factory of store objects over one shared backing store (a MemoryStore keeps its data when closed)."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    return lambda: SQLiteStore(tmp_path / "sessions.db")


def config(secret: str | bytes | None = SECRET, **overrides: object) -> SessionConfig:
    return SessionConfig(key_encryption_secret=secret, **overrides)  # type: ignore[arg-type]


def pem(private_key: object) -> str:
    assert hasattr(private_key, "private_bytes")
    text: bytes = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return text.decode("ascii")


def pem_body(text: str) -> str:
    """The base64 of a PEM without its armour and line breaks: what a leak of the key would show."""
    return "".join(line for line in text.splitlines() if not line.startswith("-----"))


async def kids(store: SessionStore) -> list[str]:
    async with store:
        return [record.kid for record in await store.get_keys()]


async def open_fails(store: SessionStore, settings: SessionConfig) -> SessionError:
    """Open a manager that must fail; close its store either way (the manager leaves it to us then)."""
    manager = SessionManager(store, settings, clock=FakeClock())
    try:
        with pytest.raises(SessionError) as caught:
            await manager.open()
        assert not manager.opened
    finally:
        await manager.close()
        await store.close()
    return caught.value


@pytest.fixture
async def opened(make_store: Callable[[], SessionStore]) -> AsyncIterator[SessionManager]:
    async with SessionManager(make_store(), config(), clock=FakeClock()) as manager:
        yield manager


# -- the setting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["x" * 31, b"x" * 31, "", "é" * 15])
def test_a_short_secret_is_refused_with_a_fix(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match=r"key_encryption_secret is \d+ bytes.*secrets\.token_urlsafe\(32\)"):
        config(secret)


@pytest.mark.parametrize("secret", [12345, ["a" * 40], bytearray(40)])
def test_a_secret_of_another_type_is_refused(secret: object) -> None:
    with pytest.raises(ConfigurationError, match=r"key_encryption_secret must be None, a str or bytes"):
        config(secret)  # type: ignore[arg-type]


def test_a_secret_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not encodable as UTF-8"):
        config("\ud800" * 40)


def test_the_secret_is_accepted_at_32_bytes_and_never_shown() -> None:
    for secret in ("s" * 32, b"\x00" * 32, "é" * 16):
        settings = config(secret)
        assert settings.key_encryption_secret == secret
    assert SECRET not in repr(config())
    assert SECRET not in str(config())
    assert config(None).key_encryption_secret is None
    assert SessionConfig().key_encryption_secret is None


# -- sealing ----------------------------------------------------------------------------------------------------


async def test_new_keys_are_stored_sealed(make_store: Callable[[], SessionStore]) -> None:
    async with SessionManager(make_store(), config(), clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        signing = await manager.keys.signing_key()
        secrets_in_clear = [pem(signing.private_key), base64.b64encode(manager.keys.refresh_mac_key).decode()]
        records = await manager.store.get_keys()
    assert {r.kid for r in records} == {"refresh-mac", signing.kid}
    for record in records:
        assert record.private_key.startswith(SEALED)
        assert "PRIVATE KEY" not in record.private_key
        for text in secrets_in_clear:
            assert pem_body(text)[:40] not in record.private_key
    # A fresh manager opens the sealed ring and accepts the tokens the first one issued.
    async with SessionManager(make_store(), config(), clock=FakeClock()) as again:
        assert await again.get_session_without_request_response(session.access_token)
        assert session.refresh_token is not None
        assert await again.refresh_session_without_request_response(session.refresh_token)


async def test_the_sqlite_file_never_holds_a_key_in_clear(tmp_path: Path) -> None:
    def file_bytes() -> bytes:
        return b"".join(path.read_bytes() for path in sorted(tmp_path.glob("sessions.db*")))

    async with SessionManager(SQLiteStore(tmp_path / "sessions.db"), config(), clock=FakeClock()) as manager:
        await manager.create_new_session_without_request_response("alice")
        signing = await manager.keys.signing_key()
        body = pem_body(pem(signing.private_key)).encode()
        mac = manager.keys.refresh_mac_key
        while_open = file_bytes()
    after_close = file_bytes()
    for data in (while_open, after_close):
        assert b"PRIVATE KEY" not in data
        assert body[:32] not in data
        assert mac not in data
        assert base64.b64encode(mac) not in data
        assert SEALED.encode() in data


async def test_hs256_seals_the_refresh_mac_key(make_store: Callable[[], SessionStore]) -> None:
    settings = config(signing_algorithm="HS256", signing_secret="h" * 32)
    async with SessionManager(make_store(), settings, clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        records = await manager.store.get_keys()
    assert [(r.kid, r.private_key[: len(SEALED)]) for r in records] == [("refresh-mac", SEALED)]
    async with SessionManager(make_store(), settings, clock=FakeClock()) as again:
        assert session.refresh_token is not None
        assert await again.refresh_session_without_request_response(session.refresh_token)


async def test_the_documented_recipe_opens_a_sealed_record(opened: SessionManager) -> None:
    # The format is a promise to operators (docs/security.md): HKDF-SHA256, info "asgi-session key-encryption v1",
    # no salt; base64url(nonce || ciphertext || tag); associated data ["enc1:", kid, algorithm] as compact JSON.
    key = HKDF(hashes.SHA256(), 32, None, b"asgi-session key-encryption v1").derive(SECRET.encode())
    for record in await opened.store.get_keys():
        body = record.private_key.removeprefix(SEALED)
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        aad = json.dumps([SEALED, record.kid, record.algorithm], separators=(",", ":")).encode()
        text = AESGCM(key).decrypt(blob[:12], blob[12:], aad).decode()
        if record.kid == "refresh-mac":
            assert base64.b64decode(text) == opened.keys.refresh_mac_key
        else:
            assert text.startswith("-----BEGIN PRIVATE KEY-----")


async def test_every_record_gets_its_own_nonce(make_store: Callable[[], SessionStore]) -> None:
    clock = FakeClock()
    async with SessionManager(make_store(), config(), clock=clock) as manager:
        for _ in range(3):
            clock.advance(timedelta(days=7))
            await manager.keys.signing_key()
        nonces = [r.private_key[len(SEALED) : len(SEALED) + 16] for r in await manager.store.get_keys()]
    assert len(nonces) >= 3
    assert len(set(nonces)) == len(nonces)


# -- turning it on for an existing deployment -------------------------------------------------------------------


async def test_keys_stored_in_clear_still_load_and_are_not_re_encrypted(
    make_store: Callable[[], SessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    async with SessionManager(make_store(), config(None), clock=clock) as before:
        session = await before.create_new_session_without_request_response("alice")
        clear = {r.kid: r.private_key for r in await before.store.get_keys()}
    assert not any(text.startswith(SEALED) for text in clear.values())

    with caplog.at_level(logging.WARNING, logger="asgi_session"):
        async with SessionManager(make_store(), config(), clock=clock) as after:
            assert await after.get_session_without_request_response(session.access_token)
            assert session.refresh_token is not None
            assert await after.refresh_session_without_request_response(session.refresh_token)
            assert {r.kid: r.private_key for r in await after.store.get_keys()} == clear  # left as they were
            # Rotation replaces the signing key with a sealed one.
            clock.advance(timedelta(days=7))
            await after.keys.signing_key()  # publishes the next key ahead of its use
            clock.advance(timedelta(minutes=2))
            new_signer = await after.keys.signing_key()
            stored = {r.kid: r.private_key for r in await after.store.get_keys()}
            assert new_signer.kid not in clear
            assert stored[new_signer.kid].startswith(SEALED)
            fresh = await after.create_new_session_without_request_response("bob")
            assert await after.get_session_without_request_response(fresh.access_token)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per key, not once per reload
    assert "in clear" in warnings[0]
    assert all(kid in warnings[0] for kid in clear)


# -- a missing or wrong secret ----------------------------------------------------------------------------------


async def test_a_sealed_ring_without_the_secret_fails_at_open_and_creates_nothing(
    make_store: Callable[[], SessionStore], opened: SessionManager
) -> None:
    await opened.close()
    stored = await kids(make_store())
    error = await open_fails(make_store(), config(None))
    assert isinstance(error, ConfigurationError)
    assert "key_encryption_secret is not set" in str(error)
    assert "set it to the secret the keys were encrypted with" in str(error)
    assert await kids(make_store()) == stored  # no new key: that would sign every user out


async def test_a_wrong_secret_fails_at_open_and_creates_nothing(
    make_store: Callable[[], SessionStore], opened: SessionManager
) -> None:
    await opened.close()
    stored = await kids(make_store())
    error = await open_fails(make_store(), config(OTHER_SECRET))
    assert isinstance(error, ConfigurationError)
    assert "cannot be decrypted with the configured key_encryption_secret" in str(error)
    assert await kids(make_store()) == stored


@pytest.mark.parametrize("alteration", ["moved", "algorithm", "flipped", "truncated", "garbage", "future"])
async def test_an_altered_record_is_refused(
    make_store: Callable[[], SessionStore], opened: SessionManager, alteration: str
) -> None:
    signer = await opened.keys.signing_key()
    records = {r.kid: r for r in await opened.store.get_keys()}
    await opened.close()
    original = records[signer.kid]
    text = original.private_key
    if alteration == "moved":  # a sealed key copied under another kid
        forged = dataclasses.replace(original, kid="d-1-deadbeef")
    elif alteration == "algorithm":
        forged = dataclasses.replace(original, kid="d-2-deadbeef", algorithm="EdDSA")
    else:
        body = {
            "flipped": text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:],
            "truncated": text[:20],
            "garbage": SEALED + "!!!not base64!!!",
            "future": "enc2:" + text[len(SEALED) :],
        }[alteration]
        forged = KeyRecord(
            kid="d-3-deadbeef",
            algorithm=original.algorithm,
            private_key=body,
            created_at=original.created_at,
            signs_from=original.signs_from,
            expires_at=original.expires_at,
        )
    store = make_store()
    async with store:
        assert await store.add_key(forged)
    error = await open_fails(make_store(), config())
    message = str(error)
    assert forged.kid in message
    assert text not in message
    if alteration in ("moved", "algorithm", "flipped"):  # AES-GCM cannot tell these from another secret
        assert isinstance(error, ConfigurationError)
        assert "altered or copied from another key" in message
    elif alteration == "future":
        assert isinstance(error, StoreError)
        assert "upgrade asgi-session" in message
    else:
        assert isinstance(error, StoreError)
        assert "damaged" in message


async def test_a_key_sealed_later_by_another_process_fails_closed(make_store: Callable[[], SessionStore]) -> None:
    # This process has no secret; a process that has one adds a key: requests fail with StoreError (a 503).
    clock = FakeClock()
    async with SessionManager(make_store(), config(None), clock=clock) as plain:
        async with SessionManager(make_store(), config(), clock=clock) as sealing:
            clock.advance(timedelta(days=7))
            new = await sealing.keys.signing_key()
        with pytest.raises(StoreError, match="key_encryption_secret is not set"):
            await plain.keys.reload_for_unknown_kid(new.kid)


# -- every store ------------------------------------------------------------------------------------------------


async def test_every_store_keeps_only_sealed_keys(any_store_url: str) -> None:
    shared = store_from_url(any_store_url)
    new_store: Callable[[], SessionStore] = (
        (lambda: shared) if any_store_url == "memory://" else (lambda: store_from_url(any_store_url))
    )
    async with SessionManager(new_store(), config(), clock=FakeClock()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        mac = base64.b64encode(manager.keys.refresh_mac_key).decode()
        records = await manager.store.get_keys()
    assert len(records) == 2
    for record in records:
        assert record.private_key.startswith(SEALED)
        assert "PRIVATE KEY" not in record.private_key
        assert mac not in record.private_key
    async with SessionManager(new_store(), config(), clock=FakeClock()) as again:
        assert session.refresh_token is not None
        assert await again.refresh_session_without_request_response(session.refresh_token)
    error = await open_fails(new_store(), config(None))
    assert isinstance(error, ConfigurationError)
    assert sorted(await kids(new_store())) == sorted(r.kid for r in records)
