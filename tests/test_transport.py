"""Token transport helpers: the fast cookie finder agrees with the full cookie parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_session._asgi import parse_cookies
from asgi_session.transport import _cookie_values
from tests._helpers import examples

PIECES = st.sampled_from(
    [*'sAccessToken=; \t"abc%=x', "sAccessToken", "sAccessToken=", "xsAccessToken=", "; ", "\x00", "\xe9", " = "]
)


@settings(max_examples=examples(2000), deadline=None)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_fast_cookie_finder_matches_the_full_parser(text: str) -> None:
    raw = text.encode("latin-1")
    full = parse_cookies({"headers": [(b"cookie", raw)]}).get("sAccessToken", [])
    fast = [value.decode("latin-1") for value in _cookie_values(raw, b"sAccessToken")]
    assert fast == full


def test_fast_cookie_finder_examples() -> None:
    assert _cookie_values(b"a=1; sAccessToken=tok; b=2", b"sAccessToken") == [b"tok"]
    assert _cookie_values(b"sAccessToken = tok ;x=1", b"sAccessToken") == [b"tok"]
    assert _cookie_values(b"xsAccessToken=tok", b"sAccessToken") == []
    assert _cookie_values(b"a=sAccessToken=tok", b"sAccessToken") == []
    assert _cookie_values(b"sAccessToken=1; sAccessToken=2", b"sAccessToken") == [b"1", b"2"]
    assert _cookie_values(b"sAccessToken", b"sAccessToken") == []
