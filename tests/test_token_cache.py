"""The verified-token cache: bounded, and a session's tokens forgotten together, whether it has one or several."""

from __future__ import annotations

import sys

from asgi_session._token_cache import VerifiedTokenCache
from asgi_session.tokens import _STRICT_DECODER


def _claims(handle: str, exp: float = 100.0) -> dict[str, object]:
    return {"sessionHandle": handle, "exp": exp}


def test_a_session_with_one_token_and_one_with_several_are_both_forgotten_together() -> None:
    cache = VerifiedTokenCache(10)
    cache.put("a1", _claims("a"))
    cache.put("b1", _claims("b"))
    cache.put("b2", _claims("b"))
    cache.put("b3", _claims("b"))
    cache.discard_session("b")
    assert [cache.get(token, 0) is not None for token in ("a1", "b1", "b2", "b3")] == [True, False, False, False]
    cache.discard_session("a")
    assert cache.get("a1", 0) is None
    assert len(cache) == 0
    assert cache._by_handle == {}


def test_evicted_and_expired_tokens_leave_no_index_behind() -> None:
    cache = VerifiedTokenCache(2)
    cache.put("a1", _claims("a"))
    cache.put("a2", _claims("a"))
    cache.put("b1", _claims("b"))  # evicts a1: session a keeps a2 alone
    assert cache._by_handle == {"a": {"a2"}, "b": "b1"}
    cache.put("c1", _claims("c", exp=5))  # evicts a2: session a is gone
    assert cache._by_handle == {"b": "b1", "c": "c1"}
    assert cache.get("c1", 10) is None  # expired: dropped with its index entry
    assert cache._by_handle == {"b": "b1"}
    cache.clear()
    assert (len(cache), cache._by_handle) == (0, {})


def test_claim_keys_are_shared_between_tokens() -> None:
    """Each cached token's claims used to hold its own copy of every key (about 600 bytes a token)."""
    first = _STRICT_DECODER.decode('{"sessionHandle": "a", "sub": "u"}')
    second = _STRICT_DECODER.decode('{"sessionHandle": "b", "sub": "v"}')
    assert all(one is two for one, two in zip(first, second, strict=True))
    assert next(iter(first)) is sys.intern("sessionHandle")
