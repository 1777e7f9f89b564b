"""The signing-key ring: keys shared through the store, rotated on schedule, published as a JWKS.

Every process that shares a store signs and verifies with the same keys, because the keys live in the store:
the first process to need a key creates it (``add_key`` is insert-if-absent) and every process re-reads the ring.

Rotation publishes before it signs: a new key is written ``key_publish_ahead`` before it starts signing, so every
worker has seen it (they re-read the ring at least that often while signing, and on an unknown ``kid``) before a
token signed with it arrives. A key is kept until every token it could have signed has expired, then deleted.

The refresh-token MAC key (used to authenticate refresh tokens and derive their children) lives in the same ring.

With ``SessionConfig.key_encryption_secret`` set, the ring seals every key it creates before writing it, and opens
sealed keys as it reads them (:mod:`asgi_session._key_seal`); the store only ever holds the sealed text.

Key material never shows in a ``repr``: the key dataclasses leave it out, and the MAC key and the HS256 secret are
:class:`bytes` whose ``repr`` is redacted, so a traceback rendered with its locals (an error tracker) does not
carry them either. A freshly generated PEM is only ever held by helpers that return before the store is called.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

import anyio

from ._clock import Clock
from ._key_material import (
    AsymmetricPrivateKey,
    KeyBytes,
    SigningKey,
    VerificationKey,
    key_text,
    load_private,
    new_signing_record,
    public_jwk,
    seal,
)
from ._key_seal import KeySealer, UnsealError, is_sealed
from .config import SessionConfig
from .exceptions import ConfigurationError, StoreError
from .stores.base import KeyRecord, SessionStore

__all__ = ["KeyRing", "SigningKey", "VerificationKey", "public_jwk"]

logger = logging.getLogger("asgi_session")

REFRESH_MAC_KID = "refresh-mac"
_REFRESH_MAC_ALGORITHM = "refresh-mac"
_KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Safety margin added to a key's lifetime for clock differences between workers.
_KEY_SLACK_SECONDS = 60.0
# An unknown kid makes us re-read the ring at most this often, so hostile kids cannot hammer the store.
_UNKNOWN_KID_RELOAD_SECONDS = 1.0


class KeyRing:
    """The signing keys and the refresh-token MAC key, loaded from and persisted in the store.

    With ``config.key_encryption_secret`` set, keys this ring creates are stored sealed (AES-256-GCM); keys it reads
    are opened, and keys stored in clear still load (a warning names them once) but are never re-encrypted.

    Args:
        store: the session store that holds the keys.
        config: the session configuration (algorithm, rotation interval, validity).
        clock: the time source.
    """

    def __init__(self, store: SessionStore, config: SessionConfig, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._records: list[KeyRecord] = []
        self._verification: dict[str, VerificationKey] = {}
        self._private: dict[str, AsymmetricPrivateKey] = {}
        self._refresh_mac: bytes | None = None
        self._refresh_mac_stored: str | None = None  # the stored text it was read from, to skip re-opening it
        self._loaded_at = float("-inf")
        self._unknown_kid_reload_at = float("-inf")
        self._lock = anyio.Lock()
        encryption = config.key_encryption_secret
        self._sealer = None if encryption is None else KeySealer(encryption)
        self._warned_clear: set[str] = set()
        raw_secret = config.signing_secret_bytes
        secret = None if raw_secret is None else KeyBytes(raw_secret)
        self._hs256_secret = secret
        self._hs256: SigningKey | None = None
        if secret is not None:
            kid = "s-" + hmac.new(secret, b"asgi-session kid", hashlib.sha256).hexdigest()[:16]
            self._hs256 = SigningKey(kid, "HS256", secret)
            self._verification[kid] = VerificationKey(kid, "HS256", secret)

    @property
    def refresh_mac_key(self) -> bytes:
        """The 256-bit key that authenticates refresh tokens (loaded by :meth:`load`)."""
        if self._refresh_mac is None:
            raise RuntimeError("the key ring is not loaded; open the SessionManager first")
        return self._refresh_mac

    def verification_key(self, kid: str) -> VerificationKey | None:
        """Return the verification key for ``kid`` from memory (never from the network), or ``None``."""
        return self._verification.get(kid)

    async def load(self) -> None:
        """Read the ring from the store, creating the MAC key and a signing key when missing.

        Raises:
            ConfigurationError: a stored key is encrypted and ``key_encryption_secret`` is missing or another
                secret. Nothing is created then: new keys would sign every user out.
            StoreError: the store failed, or holds a damaged key.
        """
        try:
            async with self._lock:
                await self._reload()
                if self._refresh_mac is None:
                    record = KeyRecord(
                        kid=REFRESH_MAC_KID,
                        algorithm=_REFRESH_MAC_ALGORITHM,
                        private_key=seal(
                            self._sealer,
                            REFRESH_MAC_KID,
                            _REFRESH_MAC_ALGORITHM,
                            base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
                        ),
                        created_at=self._clock.now(),
                        signs_from=self._clock.now(),
                    )
                    await self._store.add_key(record)  # first writer wins; everyone then reads the winner
                    await self._reload()
                if self._refresh_mac is None:
                    raise StoreError("the store did not keep the refresh-token MAC key")
                await self._rotate_if_due()
        except UnsealError as exc:
            raise ConfigurationError(str(exc)) from exc

    async def reload_for_unknown_kid(self, kid: str) -> bool:
        """Re-read the ring because a token named an unknown ``kid``; rate-limited. Return whether it is known now."""
        if not _KID_PATTERN.fullmatch(kid):
            return False
        now = self._clock.now()
        if now - self._unknown_kid_reload_at < _UNKNOWN_KID_RELOAD_SECONDS:
            return kid in self._verification
        self._unknown_kid_reload_at = now
        try:
            async with self._lock:
                await self._reload()
        except UnsealError as exc:  # another process sealed a key this one cannot open: fail closed
            raise StoreError(str(exc)) from exc
        return kid in self._verification

    async def signing_key(self) -> SigningKey:
        """Return the key that signs now, rotating (and re-reading the ring) when due."""
        if self._hs256 is not None:
            return self._hs256
        now = self._clock.now()
        reload_every = max(1.0, self._config.key_publish_ahead.total_seconds() / 2)
        signer = self._current_signer(now)
        if signer is None or now - self._loaded_at >= reload_every or self._rotation_due(signer, now):
            try:
                async with self._lock:
                    await self._reload()
                    await self._rotate_if_due()
            except UnsealError as exc:  # another process sealed a key this one cannot open: fail closed
                raise StoreError(str(exc)) from exc
            signer = self._current_signer(self._clock.now())
        if signer is None:  # pragma: no cover - _rotate_if_due always leaves a signer
            raise StoreError("no signing key is available")
        return SigningKey(signer.kid, signer.algorithm, self._private[signer.kid])

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the JWKS document: every published asymmetric key that may still verify a live token."""
        keys = [
            public_jwk(self._verification[record.kid]) for record in self._records if record.kid in self._verification
        ]
        return {"keys": keys}

    def jwks_max_age(self) -> int:
        """Seconds a client may cache the JWKS: until the next key is due to be published (at least 1)."""
        now = self._clock.now()
        signer = self._current_signer(now)
        if signer is None or self._hs256 is not None:
            return 60
        due = signer.signs_from + self._config.key_rotation_interval.total_seconds()
        due -= self._config.key_publish_ahead.total_seconds()
        return max(1, int(due - now))

    # -- internals -------------------------------------------------------------------------------------------

    def _signing_records(self) -> list[KeyRecord]:
        return [r for r in self._records if r.algorithm == self._config.signing_algorithm]

    def _can_sign(self, record: KeyRecord, now: float) -> bool:
        if record.signs_from > now:
            return False
        if record.expires_at is None:
            return True
        return now + self._config.access_token_validity.total_seconds() <= record.expires_at

    def _current_signer(self, now: float) -> KeyRecord | None:
        usable = [r for r in self._signing_records() if self._can_sign(r, now) and r.kid in self._private]
        return usable[-1] if usable else None  # records are ordered by (signs_from, kid)

    def _rotation_due(self, signer: KeyRecord, now: float) -> bool:
        interval = self._config.key_rotation_interval.total_seconds()
        ahead = self._config.key_publish_ahead.total_seconds()
        pending = any(r.signs_from > now for r in self._signing_records())
        return not pending and now >= signer.signs_from + interval - ahead

    async def _rotate_if_due(self) -> None:
        if self._hs256 is not None:
            return
        now = self._clock.now()
        signer = self._current_signer(now)
        interval = self._config.key_rotation_interval.total_seconds()
        if signer is None:
            signs_from = now
        elif self._rotation_due(signer, now):
            signs_from = max(now + self._config.key_publish_ahead.total_seconds(), signer.signs_from + interval)
        else:
            return
        await self._publish(now, signs_from)

    async def rotate_now(self) -> KeyRecord:
        """Publish a new signing key now, ahead of the schedule; older keys stay for verification until they expire.

        The key signs from ``key_publish_ahead`` after now, so every process has read it before a token it signed
        arrives (as a scheduled rotation does); the schedule then counts from it.

        Returns:
            The new key's record (its ``private_key`` is left out of the ``repr``; never print it).

        Raises:
            ConfigurationError: the algorithm is HS256 (its one key is the configured secret), or the stored keys
                are encrypted and ``key_encryption_secret`` is missing or another secret.
            StoreError: the store failed.
        """
        if self._hs256 is not None:
            raise ConfigurationError("HS256 signs with the configured signing_secret: there is no key to rotate")
        try:
            async with self._lock:
                await self._reload()
                now = self._clock.now()
                return await self._publish(now, now + self._config.key_publish_ahead.total_seconds())
        except UnsealError as exc:
            raise ConfigurationError(str(exc)) from exc

    async def _publish(self, now: float, signs_from: float) -> KeyRecord:
        interval = self._config.key_rotation_interval.total_seconds()
        expires_at = (
            signs_from
            + interval
            + self._config.key_publish_ahead.total_seconds()
            + self._config.access_token_validity.total_seconds()
            + _KEY_SLACK_SECONDS
        )
        algorithm = self._config.signing_algorithm
        kid = f"d-{int(now * 1000)}-{secrets.token_hex(4)}"
        build = functools.partial(new_signing_record, self._sealer, algorithm, kid, now, signs_from, expires_at)
        record = await anyio.to_thread.run_sync(build)
        await self._store.add_key(record)
        logger.info(
            "asgi_session: published signing key %s (%s), signing from %.0f",
            record.kid,
            algorithm,
            signs_from,
        )
        await self._reload()
        return record

    async def _reload(self) -> None:
        now = self._clock.now()
        records = await self._store.get_keys()
        expired = [r.kid for r in records if r.expires_at is not None and r.expires_at <= now]
        if expired:
            await self._store.delete_keys(expired)
        live = [r for r in records if r.kid not in expired]
        verification: dict[str, VerificationKey] = {}
        private: dict[str, AsymmetricPrivateKey] = {}
        for record in live:
            if record.algorithm == _REFRESH_MAC_ALGORITHM:
                if record.kid == REFRESH_MAC_KID:
                    self._load_refresh_mac(record)
                continue
            if record.algorithm not in ("ES256", "RS256", "EdDSA"):
                continue
            cached = self._private.get(record.kid)
            key = cached if cached is not None else load_private(record, self._sealer)
            private[record.kid] = key
            verification[record.kid] = VerificationKey(record.kid, record.algorithm, key.public_key())
        if self._hs256 is not None and self._hs256_secret is not None:
            verification[self._hs256.kid] = VerificationKey(self._hs256.kid, "HS256", self._hs256_secret)
        self._records = [r for r in live if r.kid in verification]
        self._verification = verification
        self._private = private
        self._loaded_at = now
        self._warn_about_clear_keys(live)

    def _load_refresh_mac(self, record: KeyRecord) -> None:
        if record.private_key == self._refresh_mac_stored:
            return
        try:
            self._refresh_mac = KeyBytes(base64.b64decode(key_text(self._sealer, record), validate=True))
        except (binascii.Error, ValueError) as exc:
            raise StoreError("the refresh-token MAC key in the store is corrupt") from exc
        self._refresh_mac_stored = record.private_key

    def _warn_about_clear_keys(self, records: list[KeyRecord]) -> None:
        """With encryption on, name (once each) the keys the store still holds in clear; kids are not secret."""
        if self._sealer is None:
            return
        clear = [
            r.kid
            for r in records
            if r.kid not in self._warned_clear
            and (r.algorithm == _REFRESH_MAC_ALGORITHM or r.kid in self._verification)
            and not is_sealed(r.private_key)
        ]
        if not clear:
            return
        self._warned_clear.update(clear)
        logger.warning(
            "asgi_session: key_encryption_secret is set, but the store holds %d key(s) in clear (%s); they still "
            "load and are not re-encrypted. Rotation replaces the signing keys with encrypted ones; the "
            "refresh-token MAC key stays in clear until you replace it (see the Security docs)",
            len(clear),
            ", ".join(clear),
        )

    def describe(self) -> Mapping[str, Any]:
        """Return a summary of the ring (kids, algorithms, times) for the CLI and logs; no key material."""
        return {
            "signing_algorithm": self._config.signing_algorithm,
            "keys": [
                {
                    "kid": r.kid,
                    "algorithm": r.algorithm,
                    "created_at": r.created_at,
                    "signs_from": r.signs_from,
                    "expires_at": r.expires_at,
                    "encrypted": is_sealed(r.private_key),
                }
                for r in self._records
            ],
        }
