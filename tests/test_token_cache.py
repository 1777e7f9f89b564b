"""The verified-token cache: bounded, and a session's tokens forgotten together, whether it has one or several."""

from __future__ import annotations

import sys

from asgi_session._token_cache import VerifiedTokenCache, token_key
from asgi_session.tokens import _STRICT_DECODER


def _claims(handle: str, exp: float = 100.0) -> dict[str, object]:
    return {"sessionHandle": handle, "exp": exp}


def test_a_session_with_one_token_and_one_with_several_are_both_forgotten_together() -> None:
    cache = VerifiedTokenCache(10)
    cache.put(b"a1", _claims("a"))
    cache.put(b"b1", _claims("b"))
    cache.put(b"b2", _claims("b"))
    cache.put(b"b3", _claims("b"))
    cache.discard_session("b")
    assert [cache.get(token, 0) is not None for token in (b"a1", b"b1", b"b2", b"b3")] == [True, False, False, False]
    cache.discard_session("a")
    assert cache.get(b"a1", 0) is None
    assert len(cache) == 0
    assert cache._by_handle == {}


def test_evicted_and_expired_tokens_leave_no_index_behind() -> None:
    cache = VerifiedTokenCache(2)
    cache.put(b"a1", _claims("a"))
    cache.put(b"a2", _claims("a"))
    cache.put(b"b1", _claims("b"))  # evicts a1: session a keeps a2 alone
    assert cache._by_handle == {"a": {b"a2"}, "b": b"b1"}
    cache.put(b"c1", _claims("c", exp=5))  # evicts a2: session a is gone
    assert cache._by_handle == {"b": b"b1", "c": b"c1"}
    assert cache.get(b"c1", 10) is None  # expired: dropped with its index entry
    assert cache._by_handle == {"b": b"b1"}
    cache.clear()
    assert (len(cache), cache._by_handle) == (0, {})


def test_claim_keys_are_shared_between_tokens() -> None:
    """Each cached token's claims used to hold its own copy of every key (about 600 bytes a token)."""
    first = _STRICT_DECODER.decode('{"sessionHandle": "a", "sub": "u"}')
    second = _STRICT_DECODER.decode('{"sessionHandle": "b", "sub": "v"}')
    assert all(one is two for one, two in zip(first, second, strict=True))
    assert next(iter(first)) is sys.intern("sessionHandle")


def test_the_key_is_a_digest_of_the_exact_token_text() -> None:
    """The cache holds 32-byte digests, not ~640-byte tokens (P7); different texts never share a key."""
    token = "eyJ" + "x" * 600
    assert token_key(token) == token_key("".join(["eyJ", "x" * 600]))
    assert len(token_key(token)) == 32
    others = [token + "y", token[:-1], token.upper(), token + "\u00e9", token + "\ud800", token + "\u00e9"[:0]]
    assert len({token_key(text) for text in others}) == len(set(others))
    assert token_key(token) not in {token_key(text) for text in others if text != token}
