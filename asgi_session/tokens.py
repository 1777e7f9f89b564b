"""Access tokens: signing and strict verification of our JWTs; the only module importing ``jwt``.

Verification is strict and cheap. It caps the length before any decoding, accepts only base64url segments, reads
a header that may hold nothing but ``alg``, ``typ``, ``kid`` and ``version`` (so ``jku``, ``jwk``, ``x5u``, ``x5c``
and ``crit`` are refused, and no header ever causes a network call), looks the ``kid`` up in the in-memory ring,
pins the algorithm to that key's, checks the signature with the prepared key (PyJWT's algorithm objects, without
PyJWT's per-call key preparation), and only then parses the claims, requiring each with its type. Every failure,
whatever raised it, becomes :class:`~asgi_session.TryRefreshTokenError`.

Refresh tokens live in :mod:`asgi_session._refresh_token`, the verified-token cache in
:mod:`asgi_session._token_cache`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from jwt.algorithms import Algorithm, get_default_algorithms

from .exceptions import InvalidPayloadError, TryRefreshTokenError
from .keys import SigningKey, VerificationKey

__all__ = [
    "PROTECTED_CLAIMS",
    "REMEMBER_CLAIM",
    "RESERVED_CLAIMS",
    "SESSION_ONLY_CLAIMS",
    "UnknownKeyError",
    "access_token_length_bound",
    "check_custom_payload",
    "check_json_object",
    "claims_json",
    "decode_access_token",
    "front_token",
    "json_copy",
    "looks_like_access_token",
    "sign_access_token",
    "sign_claims_json",
    "sign_jwt",
]

PROTECTED_CLAIMS = frozenset(
    {
        "sub",
        "exp",
        "iat",
        "iss",
        "tId",
        "rsub",
        "sessionHandle",
        "refreshTokenHash1",
        "parentRefreshTokenHash1",
        "antiCsrfToken",
    }
)
REMEMBER_CLAIM = "rememberMe"
"""Present, and ``false``, only in the tokens of a session created with ``remember=False`` (browser-session cookies)."""
RESERVED_CLAIMS = PROTECTED_CLAIMS | {REMEMBER_CLAIM}
"""Every claim the library sets: none may come from a custom payload, and none is a custom claim."""
_HEADER_KEYS = frozenset({"alg", "typ", "kid", "version"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_ALGORITHMS: dict[str, Algorithm] = {  # used to sign; verification uses the prepared VerificationKey
    name: algorithm
    for name, algorithm in get_default_algorithms().items()
    if name in ("ES256", "RS256", "EdDSA", "HS256")
}


class UnknownKeyError(TryRefreshTokenError):
    """The token names a ``kid`` the ring does not hold (the caller may re-read the ring once and retry)."""

    def __init__(self, kid: str) -> None:
        super().__init__("unknown signing key")
        self.kid = kid


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> str:
    # What ``base64.urlsafe_b64encode(data).rstrip(b"=")`` returns, in two C calls instead of four Python frames.
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE, b"=").decode("ascii")


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def _b64url_decode(segment: str) -> bytes:
    # The caller has checked the alphabet (or a signature covers the exact segment): the decoder would otherwise
    # silently skip characters outside it. Surplus "=" padding is ignored by a2b_base64.
    return binascii.a2b_base64(segment.encode("ascii").translate(_URLSAFE_TO_STANDARD) + b"==")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Interned keys: every cached token's claims share one "sub", "sessionHandle", ... (about 600 bytes a token).
    result = {sys.intern(key): value for key, value in pairs}
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


# Built once (json.loads(**kw) builds a decoder per call). The duplicate-key hook costs nothing measurable here.
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)


def _json_object(data: bytes) -> dict[str, Any]:
    value = _STRICT_DECODER.decode(data.decode("utf-8"))
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    return value


def json_copy(value: Any) -> Any:
    """Return a deep copy of a JSON value (dicts, lists and scalars), for handing out claims nobody may alias."""
    if type(value) is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [json_copy(item) for item in value]
    return value


# Built once: ``json.dumps(value, separators=...)`` builds a new encoder on every call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_COMPACT_ALLOWING_NAN = json.JSONEncoder(separators=(",", ":")).encode


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return _COMPACT(value).encode("utf-8")


def check_json_object(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """Validate and copy a JSON object with string keys (session data, or a payload before the claim check).

    Raises:
        InvalidPayloadError: it is not a mapping, has a non-string key, or is not JSON-serialisable.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPayloadError(f"{what} must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise InvalidPayloadError(f"{what} keys must be strings, got {key!r}", key=str(key))
    try:
        return json.loads(_compact_json(value))  # type: ignore[no-any-return]
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayloadError(f"{what} is not JSON-serialisable: {exc}") from exc


def check_custom_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate custom access-token claims: a JSON object with string keys and no protected claim.

    Raises:
        InvalidPayloadError: naming the first protected or invalid key.
    """
    checked = check_json_object(payload, "access_token_payload")
    for key in checked:
        if key in RESERVED_CLAIMS:
            raise InvalidPayloadError(
                f"access_token_payload may not set the protected claim {key!r}; choose another name", key=key
            )
    return checked


# Signature lengths in base64url characters, to size a token without signing it.
_SIGNATURE_CHARS = {"ES256": 86, "EdDSA": 86, "HS256": 43, "RS256": 342}
_HEADER_CHARS = 160  # base64url of {"alg","typ","kid","version"} with our longest kid, rounded up


def access_token_length_bound(claims: Mapping[str, Any] | int, algorithm: str) -> int:
    """An upper bound on the length of the access token that would carry ``claims`` (or claims of that JSON length)."""
    payload = claims if isinstance(claims, int) else len(_compact_json(claims))
    return _HEADER_CHARS + 1 + (payload * 4 + 2) // 3 + 1 + _SIGNATURE_CHARS[algorithm]


# The order of P-256's base point: of the two ECDSA signatures (r, s) and (r, n - s) that verify alike, only the
# one with s <= n / 2 is canonical ("low S"). We sign low-S and refuse high-S, so one token has one spelling.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_ORDER = _P256_ORDER // 2


# A base64url character's value, for the canonical check below.
_B64URL_VALUE = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
# By the segment length modulo 4: the bits of the last character that carry no data (1 is never a valid length).
_UNUSED_BITS = {0: 0, 2: 0b1111, 3: 0b11}


def _canonical_b64url(segment: str) -> bool:
    """Whether an unpadded base64url segment (alphabet already checked) is the one spelling of its bytes.

    Decoding ignores the last character's unused bits, so up to 16 spellings decode alike; only the one with those
    bits zero is what encoding produces. (The same answer as re-encoding and comparing, without re-encoding.)
    """
    unused = _UNUSED_BITS.get(len(segment) % 4)
    return unused is not None and (unused == 0 or _B64URL_VALUE[segment[-1]] & unused == 0)


def _check_canonical_signature(segment: str, signature: bytes, alg: str) -> None:
    """Refuse the spellings of a signature other than the one we write.

    Base64url's last character may carry unused bits that decoding ignores, and an ES256 signature verifies with
    either ``s`` or ``n - s``; a token re-spelled either way would verify as a different string (and so be a
    different key for anything that caches or logs tokens by their text).
    """
    if not _canonical_b64url(segment):
        raise ValueError("signature is not canonical base64url")
    if alg == "ES256" and (len(signature) != 64 or int.from_bytes(signature[32:], "big") > _P256_HALF_ORDER):
        raise ValueError("ES256 signature is not in low-S form")


def sign_access_token(claims: Mapping[str, Any], key: SigningKey) -> str:
    """Sign the claims as a compact JWT with ``key`` (header: alg, typ, kid, version 5; ES256 in low-S form)."""
    return sign_claims_json(_compact_json(claims), key)


def claims_json(claims: Mapping[str, Any]) -> bytes:
    """The claims as the access token carries them: compact JSON (what :func:`sign_claims_json` takes)."""
    return _compact_json(claims)


# The encoded access-token header of each signing key, by (algorithm, kid). Bounded like _HEADERS.
_ACCESS_HEADERS: dict[tuple[str, str], str] = {}


def sign_claims_json(payload: bytes, key: SigningKey) -> str:
    """:func:`sign_access_token` for claims already encoded by :func:`claims_json` (a create sizes them first)."""
    name = (key.algorithm, key.kid)
    header = _ACCESS_HEADERS.get(name)
    if header is None:
        header = _b64url(_compact_json({"alg": key.algorithm, "typ": "JWT", "kid": key.kid, "version": "5"}))
        if len(_ACCESS_HEADERS) >= _HEADERS_MAX:
            _ACCESS_HEADERS.clear()
        _ACCESS_HEADERS[name] = header
    return _sign_input(header + "." + _b64url(payload), key)


# Session claims a service-to-service JWT may not carry: without them it can never pass as an access token,
# although the same keys sign both.
SESSION_ONLY_CLAIMS = frozenset(
    {"sessionHandle", "refreshTokenHash1", "parentRefreshTokenHash1", "antiCsrfToken", "tId", "rsub"}
)


def sign_jwt(claims: Mapping[str, Any], key: SigningKey) -> str:
    """Sign a general-purpose JWT (header: alg, typ, kid; no ``version``), e.g. for ``create_jwt``.

    Raises:
        InvalidPayloadError: the claims name a session-only claim, so the token could pass as an access token.
    """
    for name in SESSION_ONLY_CLAIMS:
        if name in claims:
            raise InvalidPayloadError(
                f"a JWT from create_jwt may not carry the session claim {name!r}; choose another name", key=name
            )
    return _sign({"alg": key.algorithm, "typ": "JWT", "kid": key.kid}, claims, key)


# Encoded JWT headers by their content: every token of one key has the same header. Bounded like _HEADERS.
_ENCODED_HEADERS: dict[tuple[tuple[str, Any], ...], str] = {}


def _encoded_header(header: Mapping[str, Any]) -> str:
    key = tuple(header.items())
    encoded = _ENCODED_HEADERS.get(key)
    if encoded is None:
        encoded = _b64url(_compact_json(header))
        if len(_ENCODED_HEADERS) >= _HEADERS_MAX:
            _ENCODED_HEADERS.clear()
        _ENCODED_HEADERS[key] = encoded
    return encoded


def _sign(header: Mapping[str, Any], claims: Mapping[str, Any], key: SigningKey) -> str:
    return _sign_input(_encoded_header(header) + "." + _b64url(_compact_json(claims)), key)


_ECDSA_SHA256 = ec.ECDSA(SHA256())  # stateless: one for every ES256 signature


def _sign_input(signing_input: str, key: SigningKey) -> str:
    private_key = key.private_key
    if key.algorithm == "ES256" and isinstance(private_key, ec.EllipticCurvePrivateKey):
        # PyJWT's ES256 signing, without its per-call ECDSA object and its DER -> raw round trip through bytes:
        # the same raw r || s, in low-S form.
        r, s = decode_dss_signature(private_key.sign(signing_input.encode("ascii"), _ECDSA_SHA256))
        if s > _P256_HALF_ORDER:
            s = _P256_ORDER - s
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = _ALGORITHMS[key.algorithm].sign(signing_input.encode("ascii"), key.private_key)
    return signing_input + "." + _b64url(signature)


# Headers of tokens that verified, by their exact base64 segment: every token of one key shares its header, so
# a new token skips the header parse. Bounded; only signature-checked headers get in.
_HEADERS: dict[str, tuple[str, str]] = {}
_HEADERS_MAX = 64


def _parse_header(segment: str) -> tuple[str, str]:
    if not _SEGMENT.fullmatch(segment):
        raise ValueError("not base64url")
    header = _json_object(_b64url_decode(segment))
    if not header.keys() <= _HEADER_KEYS:
        raise ValueError("unsupported header parameter")
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or not isinstance(alg, str):
        raise ValueError("kid and alg must be strings")
    if header.get("typ", "JWT") != "JWT" or not isinstance(header.get("version", "5"), str):
        raise ValueError("bad typ or version")
    return kid, alg


def _remember_header(segment: str, kid: str, alg: str) -> None:
    if len(_HEADERS) >= _HEADERS_MAX:
        _HEADERS.clear()
    _HEADERS[segment] = (kid, alg)


_STRING_CLAIMS = ("sub", "tId", "rsub", "sessionHandle", "refreshTokenHash1", "iss")
_MISSING = object()


def _check_claims(claims: dict[str, Any], issuer: str) -> None:
    # ``type(...) is``: the claims come from json.loads, which makes exactly str, int (never bool for a number)...
    get = claims.get
    for name in _STRING_CLAIMS:
        value = get(name)
        if type(value) is not str or not value:
            raise ValueError(f"claim {name} missing or not a non-empty string")
    if type(get("exp")) is not int or type(get("iat")) is not int:
        raise ValueError("claim exp or iat missing or not an integer")
    for name in ("parentRefreshTokenHash1", "antiCsrfToken"):
        value = get(name, _MISSING)
        if value is not None and type(value) is not str:
            raise ValueError(f"claim {name} missing or not a string or null")
    if not hmac.compare_digest(claims["iss"].encode("utf-8"), issuer.encode("utf-8")):
        raise ValueError("wrong issuer")
    if claims["rsub"] != claims["sub"]:
        raise ValueError("rsub differs from sub")


_SIGNATURE_OR_EMPTY = re.compile(r"[A-Za-z0-9_-]*")


def looks_like_access_token(token: str, max_length: int) -> bool:
    """Whether ``token`` is shaped like an access token we issue; it says nothing of whether the token is valid.

    Shaped means: at most ``max_length`` characters, three base64url segments, a JSON header holding a string
    ``kid`` and ``version`` (as every token we sign does), and a JSON payload holding every required claim. This
    tells our token apart from other ``Authorization: Bearer`` values (``undefined``, another service's API key or
    JWT), which are ignored rather than answered "try refresh token". A header segment that already verified
    (every token of one key shares it) skips the header parse.
    """
    if len(token) > max_length or token.count(".") != 2:
        return False
    header, payload, signature = token.split(".")
    if not _SIGNATURE_OR_EMPTY.fullmatch(signature) or not _SEGMENT.fullmatch(payload):
        return False
    try:
        if header not in _HEADERS:
            if not _SEGMENT.fullmatch(header):
                return False
            fields = _json_object(_b64url_decode(header))
            if not isinstance(fields.get("kid"), str) or not isinstance(fields.get("version"), str):
                return False
        claims = _json_object(_b64url_decode(payload))
    except (ValueError, RecursionError):  # bad base64, UTF-8 or JSON, a duplicate key, absurd nesting
        return False
    return claims.keys() >= PROTECTED_CLAIMS


def decode_access_token(
    token: str,
    *,
    lookup: Callable[[str], VerificationKey | None],
    issuer: str,
    now: float,
    max_length: int,
    allow_expired: bool = False,
) -> dict[str, Any]:
    """Verify an access token and return its claims.

    Args:
        token: the compact JWT.
        lookup: returns the verification key for a ``kid`` (in memory; never a network call).
        issuer: the exact ``iss`` required.
        now: the current time (seconds since the epoch); the token is valid while ``now < exp``.
        max_length: tokens longer than this are refused before any decoding.
        allow_expired: accept an expired but otherwise valid token (for re-issuing with the same expiry).

    Raises:
        UnknownKeyError: the ``kid`` is not in the ring (a subclass of ``TryRefreshTokenError``).
        TryRefreshTokenError: for every other failure.
    """
    try:
        if not isinstance(token, str) or len(token) > max_length:
            raise ValueError("token too long or not a string")
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("not three segments")
        header_segment, payload_segment, signature_segment = parts
        header = _HEADERS.get(header_segment)
        if header is None:
            kid, alg = _parse_header(header_segment)
        else:
            kid, alg = header
        key = lookup(kid)
        if key is None:
            raise UnknownKeyError(kid)
        if alg != key.algorithm:
            raise ValueError("algorithm does not match the key")
        if not _SEGMENT.fullmatch(signature_segment):
            raise ValueError("signature is not base64url")
        signature = _b64url_decode(signature_segment)
        _check_canonical_signature(signature_segment, signature, alg)
        if not key.verify((header_segment + "." + payload_segment).encode("ascii"), signature):
            raise ValueError("bad signature")
        if header is None:
            _remember_header(header_segment, kid, alg)
        # Even under a valid signature: duplicate keys, NaN and Infinity (which we never write) are refused.
        claims = _json_object(_b64url_decode(payload_segment))
        _check_claims(claims, issuer)
        # Equal values as one object each (the cache keeps these claims: about 170 bytes a token saved).
        claims["rsub"] = claims["sub"]
        claims["iss"] = issuer
        claims["tId"] = sys.intern(claims["tId"])
        if not allow_expired and not now < claims["exp"]:
            raise ValueError("expired")
    except TryRefreshTokenError:
        raise
    except Exception as exc:
        raise TryRefreshTokenError("invalid access token") from exc
    return claims


def front_token(user_id: str, access_token_expiry_ms: int, payload: Mapping[str, Any]) -> str:
    """Return the ``front-token`` header value: base64 of ``{"uid", "ate", "up"}`` (standard, padded)."""
    data = {"uid": user_id, "ate": access_token_expiry_ms, "up": dict(payload)}
    return base64.b64encode(_COMPACT_ALLOWING_NAN(data).encode("utf-8")).decode("ascii")
