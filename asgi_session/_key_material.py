"""Key objects and their material: generate, seal, load, and publish keys as JWKs.

:class:`SigningKey` and :class:`VerificationKey` are what the ring hands to token signing and verification;
the helpers here turn them into stored :class:`~asgi_session.stores.base.KeyRecord` text and back (sealed under
``key_encryption_secret`` when it is set). Key material never shows in a ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._key_seal import KeySealer, UnsealError, is_sealed
from .exceptions import StoreError
from .stores.base import KeyRecord

__all__ = [
    "AsymmetricPrivateKey",
    "KeyBytes",
    "SigningKey",
    "VerificationKey",
    "key_text",
    "load_private",
    "new_signing_record",
    "public_jwk",
    "seal",
]

AsymmetricPrivateKey: TypeAlias = "ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey"
PrivateKey: TypeAlias = "AsymmetricPrivateKey | bytes"
PublicKey: TypeAlias = "ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | bytes"

_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)


class KeyBytes(bytes):
    """Key bytes whose ``repr`` (and ``str``) never shows them: safe in logs, debuggers and tracebacks."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} secret bytes>"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key that verifies tokens: its ``kid``, its one pinned algorithm, and the prepared public key."""

    kid: str
    algorithm: str
    public_key: PublicKey = field(repr=False)  # the HS256 secret, for HS256

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check a JWS signature (raw ``r || s`` for ES256) over ``message`` with this key's one algorithm."""
        # Dispatch on the pinned algorithm string (the ring only pairs a key with its own algorithm): cheaper than
        # isinstance checks against cryptography's abstract key classes.
        public: Any = self.public_key
        algorithm = self.algorithm
        try:
            if algorithm == "ES256":
                if len(signature) != 64:
                    return False
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                public.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
            elif algorithm == "HS256":
                return hmac.compare_digest(hmac.new(public, message, hashlib.sha256).digest(), signature)
            elif algorithm == "RS256":
                public.verify(signature, message, padding.PKCS1v15(), _SHA256)
            elif algorithm == "EdDSA":
                public.verify(signature, message)
            else:
                return False
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key that signs new tokens now: ``kid``, algorithm and the prepared private key."""

    kid: str
    algorithm: str
    private_key: PrivateKey = field(repr=False)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _generate_pem(algorithm: str) -> str:
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:  # pragma: no cover - config validation makes this unreachable
        raise ValueError(f"cannot generate a key for {algorithm!r}")
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def seal(sealer: KeySealer | None, kid: str, algorithm: str, text: str) -> str:
    return text if sealer is None else sealer.seal(kid, algorithm, text)


def key_text(sealer: KeySealer | None, record: KeyRecord) -> str:
    """The record's key text (PEM or base64), opened if sealed.

    Raises:
        UnsealError: the record is sealed and there is no secret, or it cannot be opened with this one.
    """
    if not is_sealed(record.private_key):
        return record.private_key
    if sealer is None:
        raise UnsealError(
            f"key {record.kid!r} in the store is encrypted, but SessionConfig.key_encryption_secret is not set; "
            "set it to the secret the keys were encrypted with (every process sharing the store needs it)"
        )
    return sealer.open(record.kid, record.algorithm, record.private_key)


def new_signing_record(
    sealer: KeySealer | None, algorithm: str, kid: str, now: float, signs_from: float, expires_at: float
) -> KeyRecord:
    # The PEM is generated and sealed inside this call and never bound to a name in the caller's frame.
    return KeyRecord(
        kid=kid,
        algorithm=algorithm,
        private_key=seal(sealer, kid, algorithm, _generate_pem(algorithm)),
        created_at=now,
        signs_from=signs_from,
        expires_at=expires_at,
    )


def load_private(
    record: KeyRecord,
    sealer: KeySealer | None,
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(key_text(sealer, record).encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise StoreError(f"signing key {record.kid!r} in the store is corrupt") from exc
    expected: dict[str, type[Any]] = {
        "ES256": ec.EllipticCurvePrivateKey,
        "RS256": rsa.RSAPrivateKey,
        "EdDSA": ed25519.Ed25519PrivateKey,
    }
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)) or (
        not isinstance(key, expected[record.algorithm])
    ):
        raise StoreError(f"signing key {record.kid!r} in the store does not match its algorithm")
    return key


def public_jwk(key: VerificationKey) -> dict[str, str]:
    """Return the public JWK (RFC 7517) of an asymmetric verification key."""
    public = key.public_key
    jwk: dict[str, str]
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
    elif isinstance(public, rsa.RSAPublicKey):
        rsa_numbers = public.public_numbers()
        jwk = {"kty": "RSA", "n": _int_b64url(rsa_numbers.n), "e": _int_b64url(rsa_numbers.e)}
    elif isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    else:
        raise ValueError("symmetric keys are never published")
    return {**jwk, "kid": key.kid, "alg": key.algorithm, "use": "sig"}
