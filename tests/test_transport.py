"""Token transport helpers: the fast cookie finder agrees with the full cookie parser, and parsed headers are kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_session import transport
from asgi_session._asgi import parse_cookies
from asgi_session._token_cache import token_key
from asgi_session.transport import TokenSource, _cookie_values
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


def test_a_cookie_header_seen_before_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[bytes] = []
    parse = transport._parse_cookie_token

    def counted(headers: list[bytes], name: str) -> TokenSource:
        parses.extend(headers)
        return parse(headers, name)

    monkeypatch.setattr(transport, "_parse_cookie_token", counted)
    monkeypatch.setattr(transport, "_parsed", {"sAccessToken": {}, "sRefreshToken": {}})
    header = b"theme=dark; sAccessToken=abc; sRefreshToken=def"
    for _ in range(3):
        assert transport._cookie_token([header], "sAccessToken") == TokenSource(
            "abc", "cookie", False, token_key("abc")
        )
        assert transport._cookie_token([header], "sRefreshToken") == TokenSource("def", "cookie")  # no cache key
    assert parses == [header, header]  # once per cookie name
    twice = b"sAccessToken=a; sAccessToken=b"
    assert transport._cookie_token([twice], "sAccessToken").malformed
    assert transport._cookie_token([twice], "sAccessToken").malformed  # a remembered answer is the same answer
    assert transport._cookie_token([header, header], "sAccessToken").malformed  # two headers: parsed, not kept
    assert len(parses) == 5


def test_remembered_cookie_headers_are_bounded_in_number_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_parsed", {"sAccessToken": {}, "sRefreshToken": {}})
    for number in range(transport._PARSED_LIMIT * 3):
        header = f"sAccessToken=token-{number}".encode()
        assert transport._cookie_token([header], "sAccessToken").token == f"token-{number}"
        assert len(transport._parsed["sAccessToken"]) <= transport._PARSED_LIMIT
    big = b"sAccessToken=x; pad=" + b"p" * transport._PARSED_MAX_HEADER
    assert transport._cookie_token([big], "sAccessToken").token == "x"
    assert big not in transport._parsed["sAccessToken"]


class _CountingPattern:
    """Stands for the Bearer pattern and counts its matches."""

    def __init__(self) -> None:
        self.matches = 0
        self._pattern = transport._BEARER

    def fullmatch(self, value: str) -> object:
        self.matches += 1
        return self._pattern.fullmatch(value)


def test_a_bearer_header_seen_before_is_not_matched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    pattern = _CountingPattern()
    monkeypatch.setattr(transport, "_BEARER", pattern)
    memo: transport.BearerMemo = {}
    header = [b"Bearer abc.def.ghi"]
    asked: list[str] = []

    def ours(token: str) -> bool:
        asked.append(token)
        return token == "abc.def.ghi"

    for _ in range(3):
        assert transport._bearer(header, ours, memo) == TokenSource(
            "abc.def.ghi", "header", False, token_key("abc.def.ghi")
        )
    assert pattern.matches == 1
    assert asked == ["abc.def.ghi"]  # one reader's verdict is fixed: asked once
    # Without a memo (refresh-token reads) the full rules answer every time.
    assert transport._bearer(header, lambda token: False, None) is None
    assert pattern.matches == 2
    # Only a single, well-formed header is remembered; anything else takes the full rules.
    assert transport._bearer([b"Bearer abc.def.ghi", b"Basic x"], ours, memo) == transport._MALFORMED_HEADER
    assert transport._bearer([b"Bearer undefined"], ours, memo) is None
    assert set(memo) == {b"Bearer abc.def.ghi"}


def test_remembered_bearer_headers_are_bounded() -> None:
    memo: transport.BearerMemo = {}
    for number in range(transport._PARSED_LIMIT * 3):
        header = f"Bearer token-{number}".encode()
        found = transport._bearer([header], lambda token: True, memo)
        assert found is not None
        assert found.token == f"token-{number}"
        assert len(memo) <= transport._PARSED_LIMIT
