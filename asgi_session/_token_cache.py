"""The verified-token cache: exact token strings mapped to their verified claims, bounded, indexed by session."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["VerifiedTokenCache"]


class VerifiedTokenCache:
    """A bounded map from exact token strings to their verified claims, honouring ``exp``, indexed by session.

    Least-recently-used entries are evicted when full; an entry is dropped when found expired. ``size=0`` disables
    it. Each entry holds the token string and its claims dict (well under 1 KiB for a typical token). The claims
    dicts are shared with callers inside the package, which never mutate them; public accessors hand out copies.
    A second map from session handle to that session's cached tokens makes :meth:`discard_session` cost the
    entries of one session, not a scan of the cache (revoking thousands of sessions must not stall the loop).
    """

    __slots__ = ("_by_handle", "_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # A session's cached tokens: one token as itself (most sessions have one), several as a set.
        self._by_handle: dict[str, str | set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> OrderedDict[str, dict[str, Any]]:
        """The map itself, for a caller's inlined hit check (read, then ``move_to_end``; never written directly)."""
        return self._entries

    def get(self, token: str, now: float) -> dict[str, Any] | None:
        """Return the cached claims of a still-unexpired token, or ``None``."""
        claims = self._entries.get(token)
        if claims is None:
            return None
        if now < claims["exp"]:
            self._entries.move_to_end(token)
            return claims
        self._forget(token, self._entries.pop(token))
        return None

    def put(self, token: str, claims: dict[str, Any]) -> None:
        """Remember a verified token's claims."""
        if self._size <= 0:
            return
        entries = self._entries
        if token in entries:
            entries.move_to_end(token)
            return
        if len(entries) >= self._size:
            self._forget(*entries.popitem(last=False))
        entries[token] = claims
        handle = claims["sessionHandle"]
        tokens = self._by_handle.get(handle)
        if tokens is None:
            self._by_handle[handle] = token
        elif isinstance(tokens, str):
            self._by_handle[handle] = {tokens, token}
        else:
            tokens.add(token)

    def _forget(self, token: str, claims: dict[str, Any]) -> None:
        handle = claims["sessionHandle"]
        tokens = self._by_handle.get(handle)
        if tokens == token:
            del self._by_handle[handle]
        elif isinstance(tokens, set):
            tokens.discard(token)
            if not tokens:
                del self._by_handle[handle]

    def discard_session(self, handle: str) -> None:
        """Forget every cached token of one session (after a local revoke)."""
        tokens = self._by_handle.pop(handle, ())
        for token in (tokens,) if isinstance(tokens, str) else tokens:
            self._entries.pop(token, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._by_handle.clear()
