"""The verified-token cache: token digests mapped to their verified claims, bounded, indexed by session."""

from __future__ import annotations

from collections import OrderedDict
from hashlib import sha256
from typing import Any

__all__ = ["VerifiedTokenCache", "token_key"]


def token_key(token: str) -> bytes:
    """The cache's key for an access token: the SHA-256 of its exact text (32 bytes instead of the ~640 of the text).

    A cryptographic digest, so no other string has a given token's key (finding one is a SHA-256 second preimage):
    a hit is as exact as comparing the strings. The middleware computes it once per distinct ``Cookie`` or
    ``Authorization`` header (it rides on the header's memo in :mod:`asgi_session.transport`), so a repeated header
    pays nothing for it.
    """
    return sha256(token.encode("utf-8", "surrogatepass")).digest()  # any str, one to one


class VerifiedTokenCache:
    """A bounded map from token keys (:func:`token_key`) to their verified claims, honouring ``exp``, by session.

    Least-recently-used entries are evicted when full; an entry is dropped when found expired. ``size=0`` disables
    it. Each entry holds a 32-byte key and the claims dict, not the token (about 0.8 KiB for a token with the
    default claims: ``benchmarks/memory.py``). The claims dicts are shared with callers inside the package, which
    never mutate them; public accessors hand out copies. A second map from session handle to that session's cached
    keys makes :meth:`discard_session` cost the entries of one session, not a scan of the cache (revoking thousands
    of sessions must not stall the loop).
    """

    __slots__ = ("_by_handle", "_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        # A session's cached keys: one key as itself (most sessions have one token), several as a set.
        self._by_handle: dict[str, bytes | set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> OrderedDict[bytes, dict[str, Any]]:
        """The map itself, for a caller's inlined hit check (read, then ``move_to_end``; never written directly)."""
        return self._entries

    def get(self, key: bytes, now: float) -> dict[str, Any] | None:
        """Return the cached claims of a still-unexpired token, by its :func:`token_key`; ``None`` if absent."""
        claims = self._entries.get(key)
        if claims is None:
            return None
        if now < claims["exp"]:
            self._entries.move_to_end(key)
            return claims
        self._forget(key, self._entries.pop(key))
        return None

    def put(self, key: bytes, claims: dict[str, Any]) -> None:
        """Remember a verified token's claims, by its :func:`token_key`."""
        if self._size <= 0:
            return
        entries = self._entries
        if key in entries:
            entries.move_to_end(key)
            return
        if len(entries) >= self._size:
            self._forget(*entries.popitem(last=False))
        entries[key] = claims
        handle = claims["sessionHandle"]
        keys = self._by_handle.get(handle)
        if keys is None:
            self._by_handle[handle] = key
        elif isinstance(keys, bytes):
            self._by_handle[handle] = {keys, key}
        else:
            keys.add(key)

    def _forget(self, key: bytes, claims: dict[str, Any]) -> None:
        handle = claims["sessionHandle"]
        keys = self._by_handle.get(handle)
        if keys == key:
            del self._by_handle[handle]
        elif isinstance(keys, set):
            keys.discard(key)
            if not keys:
                del self._by_handle[handle]

    def discard_session(self, handle: str) -> None:
        """Forget every cached token of one session (after a local revoke)."""
        keys = self._by_handle.pop(handle, ())
        for key in (keys,) if isinstance(keys, bytes) else keys:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._by_handle.clear()
