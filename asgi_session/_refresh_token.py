"""Refresh tokens: ``<handle>.<body>.<tag>``, opaque, MAC-bound to their session, kept by the store only as hashes.

256 random bits (or bits derived from the parent), bound to their session handle by an HMAC tag. The store keeps
only ``sha256(sha256(token))``. A child token is derived from its parent with the MAC key, so presenting the same
parent twice yields the same child: retries, lost responses and concurrent tabs all end up on one chain.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
import secrets

__all__ = [
    "anti_csrf_token_for",
    "child_refresh_token",
    "handle_prefix",
    "mint_refresh_token",
    "new_handle",
    "refresh_token_handle",
    "sha256_hex",
    "stored_hash_of_hash1",
    "stored_refresh_hash",
]

_REFRESH_TOKEN = re.compile(r"([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{22})")
_REFRESH_TOKEN_MAX = 128
_SHA256 = hashlib.sha256


def sha256_hex(value: str) -> str:
    """Return the hex SHA-256 of a string (``refreshTokenHash1`` of a refresh token)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def stored_refresh_hash(refresh_token: str) -> str:
    """Return what the store keeps for a refresh token: ``sha256(sha256(token))``."""
    return sha256_hex(sha256_hex(refresh_token))


def stored_hash_of_hash1(hash1: str) -> str:
    """:func:`stored_refresh_hash` of the token whose ``sha256_hex`` is ``hash1`` (for callers that need both)."""
    return sha256_hex(hash1)


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> str:
    # What ``base64.urlsafe_b64encode(data).rstrip(b"=")`` returns, in two C calls instead of four Python frames.
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE, b"=").decode("ascii")


def _mac(mac_key: bytes, message: str) -> bytes:
    # ``hmac.digest`` is OpenSSL's one-shot HMAC: the same bytes as ``hmac.new(...).digest()`` without an HMAC object.
    return hmac.digest(mac_key, message.encode("ascii"), _SHA256)


def _tag(mac_key: bytes, handle: str, body: str) -> str:
    return _b64url(_mac(mac_key, f"rt1|{handle}|{body}")[:16])


def _assemble(mac_key: bytes, handle: str, body: str) -> str:
    return f"{handle}.{body}.{_tag(mac_key, handle, body)}"


def handle_prefix(mac_key: bytes, user_id: str) -> bytes:
    """The 4 bytes that lead every handle of ``user_id``'s sessions: a keyed BLAKE2b of the user id.

    One user's handles then sit side by side in every index ordered by handle (SQLite's and PostgreSQL's
    ``sessions_handle``), so revoking all of a user's sessions touches one or two index pages, not one per session
    (P6 in ``docs/performance.md``). Keyed with the refresh MAC key (domain-separated): without the key, nobody can
    compute a user's prefix from the user id.
    """
    key = mac_key if len(mac_key) <= 64 else hashlib.sha256(mac_key).digest()
    return hashlib.blake2b(user_id.encode("utf-8"), digest_size=4, key=key, person=b"asgi-handle-v1").digest()


def new_handle(prefix: bytes = b"") -> str:
    """Return a new session handle: a version 4 UUID in its 36-character form.

    Without ``prefix``, what ``str(uuid.uuid4())`` returns, from the same 16 bytes of ``os.urandom``, without
    building a ``UUID`` (a third of the cost, once per created session). With ``prefix`` (at most 4 bytes: the
    user's :func:`handle_prefix`), those bytes lead it and the rest stays random: 90 random bits with 4 bytes.
    """
    if len(prefix) > 4:
        raise ValueError("a handle prefix is at most 4 bytes")
    raw = bytearray(prefix + os.urandom(16 - len(prefix)))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def mint_refresh_token(mac_key: bytes, handle: str) -> str:
    """Return a new refresh token for a session: 256 random bits bound to ``handle``."""
    return _assemble(mac_key, handle, _b64url(secrets.token_bytes(32)))


def refresh_token_handle(mac_key: bytes, refresh_token: str) -> str | None:
    """Return the handle of an authentic refresh token, or ``None`` for anything we did not issue."""
    if not isinstance(refresh_token, str) or len(refresh_token) > _REFRESH_TOKEN_MAX:
        return None
    match = _REFRESH_TOKEN.fullmatch(refresh_token)
    if match is None:
        return None
    handle, body, tag = match.groups()
    if not hmac.compare_digest(tag, _tag(mac_key, handle, body)):
        return None
    return handle


def child_refresh_token(mac_key: bytes, parent: str) -> str:
    """Return the child of an authentic refresh token: deterministic, so a replayed parent gets the same child."""
    handle, body, _ = parent.split(".")
    return _assemble(mac_key, handle, _b64url(_mac(mac_key, f"rt1-child|{body}")))


def anti_csrf_token_for(mac_key: bytes, refresh_token: str) -> str:
    """Return the anti-CSRF token bound to a refresh token (and so to its session)."""
    body = refresh_token.split(".")[1]
    return _b64url(_mac(mac_key, f"csrf|{body}")[:24])
