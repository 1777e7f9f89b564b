"""Key sealing: AES-GCM encryption of the key ring's private material under the operator's secret.

The stores never see this module: :mod:`asgi_session.keys` seals a key's text before ``add_key`` and unseals it
after ``get_keys``, so every store (ours or a third party's) keeps ciphertext without knowing it.

Format of a sealed ``KeyRecord.private_key``: ``"enc1:" + base64url(nonce || ciphertext || tag)``, no padding.

- The AES-256 key is HKDF-SHA256 of the secret, no salt, info :data:`HKDF_INFO`. The secret must already be
  random (at least 32 bytes): HKDF is not a password hash, so a guessable secret is not made safe by it.
- The nonce is 96 random bits per record. A record is written once and never re-sealed, so even a large ring
  stays far below the bound where random GCM nonces risk repeating.
- The associated data is the version, the ``kid`` and the algorithm, JSON-encoded (unambiguous for any
  strings), so a ciphertext copied to another record, or a record whose algorithm was changed, fails to open.

Plaintext records (PEM text or base64) never start with ``enc<digits>:``, so the prefix tells them apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .exceptions import StoreError

__all__ = ["HKDF_INFO", "PREFIX", "KeySealer", "UnsealError", "is_sealed"]

PREFIX = "enc1:"
HKDF_INFO = b"asgi-session key-encryption v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_ANY_VERSION = re.compile(r"enc[0-9]+:")


class UnsealError(Exception):
    """A sealed record does not open with the configured secret (or there is none).

    A configuration problem, told apart from a damaged record (:class:`~asgi_session.StoreError`) because the
    key ring reports it as :class:`~asgi_session.ConfigurationError` when the manager opens. The message names the
    key and the fix, never key material.
    """


def is_sealed(text: str) -> bool:
    """Whether a stored ``private_key`` is sealed (by this or any later format version)."""
    return _ANY_VERSION.match(text) is not None


def _associated_data(kid: str, algorithm: str) -> bytes:
    return json.dumps([PREFIX, kid, algorithm], separators=(",", ":")).encode("utf-8")


class KeySealer:
    """Seals and opens key text with one AES-256-GCM key derived from the operator's secret.

    Args:
        secret: ``SessionConfig.key_encryption_secret`` (validated there: at least 32 bytes).
    """

    __slots__ = ("_aead",)

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO)
        self._aead = AESGCM(hkdf.derive(raw))

    def __repr__(self) -> str:
        return "KeySealer(<redacted>)"

    def seal(self, kid: str, algorithm: str, text: str) -> str:
        """Return ``text`` (a PEM or base64 key) sealed for the record ``(kid, algorithm)``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), _associated_data(kid, algorithm))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, kid: str, algorithm: str, stored: str) -> str:
        """Return the key text of a sealed record.

        Raises:
            UnsealError: the record does not open with this secret: another secret sealed it, or it was altered
                or moved to another kid or algorithm (AES-GCM cannot tell these apart).
            StoreError: the record is damaged, or sealed in a format version this code does not know.
        """
        if not stored.startswith(PREFIX):
            version = stored.split(":", 1)[0]
            raise StoreError(
                f"key {kid!r} in the store is sealed with format {version!r}, which this asgi-session does not "
                "know; upgrade asgi-session"
            )
        body = stored[len(PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:
            raise StoreError(f"key {kid!r} in the store is damaged (its sealed text is not base64url)") from exc
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise StoreError(f"key {kid!r} in the store is damaged (its sealed text is too short)")
        try:
            # Returned without a local name, so a traceback that shows locals never holds the opened key.
            return self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _associated_data(kid, algorithm)
            ).decode("utf-8")
        except InvalidTag as exc:
            raise UnsealError(
                f"key {kid!r} in the store cannot be decrypted with the configured key_encryption_secret: it was "
                "encrypted with another secret, or the record was altered or copied from another key. Set "
                "key_encryption_secret to the secret the keys were encrypted with"
            ) from exc
