"""Token transport: read tokens from a request, and queue writing or clearing them on its response.

Cookie mode uses ``sAccessToken`` (Path ``/``) and ``sRefreshToken`` (Path ``<api_base_path>/session/refresh``);
header mode reads ``Authorization: Bearer`` and writes ``st-access-token`` / ``st-refresh-token``. Both send the
``front-token`` header. A Bearer value that is not shaped like our token does not hide the cookie. See
``docs/protocol.md`` for the exact rules this module implements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, NamedTuple

from ._asgi import Message, Scope, cookie_header, header_value, header_values, parse_cookies
from ._token_cache import token_key
from .config import SessionConfig
from .session import Session
from .tokens import looks_like_access_token

__all__ = [
    "ACCESS_COOKIE",
    "REFRESH_COOKIE",
    "ResponseChanges",
    "TokenSource",
    "access_token_reader",
    "duplicated_session_cookies",
    "new_session_method",
    "read_access_token",
    "read_refresh_token",
]

Method = Literal["cookie", "header"]

ACCESS_COOKIE = "sAccessToken"
REFRESH_COOKIE = "sRefreshToken"
FRONT_TOKEN = "front-token"
ACCESS_HEADER = "st-access-token"
REFRESH_HEADER = "st-refresh-token"
ANTI_CSRF_HEADER = "anti-csrf"
EXPOSED = ("front-token", "st-access-token", "st-refresh-token", "anti-csrf")
_ACCESS_COOKIE_LIFETIME = 365 * 24 * 3600.0  # the JWT's own exp is what is enforced
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr](?:[ \t]+(\S*))?[ \t]*")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.-]+")  # every character our access and refresh tokens use


class TokenSource(NamedTuple):
    """A token found on a request.

    Attributes:
        token: the token, or ``None`` when none was sent (or it was unusable).
        method: how it came: ``"header"``, ``"cookie"``, or ``None`` when nothing was sent.
        malformed: something token-like was sent but cannot be used (two access cookies, a broken Bearer
            header): the caller answers "try refresh token".
        key: the verified-token cache's key for an access token (:func:`~asgi_session._token_cache.token_key`),
            computed once with the token and remembered with it for a repeated header; ``None`` for refresh tokens.
    """

    token: str | None
    method: Method | None
    malformed: bool = False
    key: bytes | None = None


_NOTHING = TokenSource(None, None)
_OWS_BYTES = b" \t"
_SEMICOLON = ord(";")
_EQUALS = ord("=")
_MALFORMED_HEADER = TokenSource(None, "header", True)
_MALFORMED_COOKIE = TokenSource(None, "cookie", True)


# A well-formed ``Bearer <token>`` header whose token is ours, remembered as the source it yields (the header's
# bytes are the key, as for cookies below): the pattern match and the "is it ours" check are most of what a cached
# Bearer token costs. Each access-token reader keeps its own memo, because "ours" is a fixed verdict for one
# reader (the shape check under its config; a verified token always has that shape). Refresh reads keep none.
BearerMemo = dict[bytes, "TokenSource"]


def _bearer(authorization: list[bytes], ours: Callable[[str], bool], memo: BearerMemo | None) -> TokenSource | None:
    """The Bearer token of the Authorization header(s) when it is ours; ``None`` when nothing there is ours.

    ``None`` sends the caller on to the cookie: a value that is not ours (``Bearer undefined``, another service's
    token, another scheme) must not hide the session cookie. A token of ours in a broken value (trailing garbage,
    quotes, no separator) or next to another Authorization header is malformed: never a guess, and no fall-through.
    """
    if memo is not None and len(authorization) == 1:
        known = memo.get(authorization[0])
        if known is not None:
            return known
    found: list[str] = []
    for raw in authorization:
        value = raw.decode("latin-1")
        if value[:6].lower() != "bearer":
            continue
        match = _BEARER.fullmatch(value)
        token = match.group(1) if match is not None else None
        if token and ours(token):
            found.append(token)
        elif any(ours(piece) for piece in _TOKEN_CHARS.findall(value, 6)):
            return _MALFORMED_HEADER
    if not found:
        return None
    if len(found) == 1 and len(authorization) == 1:
        # Only an access-token reader keeps a memo; a refresh token needs no cache key.
        source = TokenSource(found[0], "header", False, token_key(found[0]) if memo is not None else None)
        if memo is not None and len(authorization[0]) <= _PARSED_MAX_HEADER:
            if len(memo) >= _PARSED_LIMIT:
                memo.clear()
            memo[authorization[0]] = source
        return source
    return _MALFORMED_HEADER  # two Authorization headers, one of them ours: never guess


def _cookie_values(raw: bytes, name: bytes) -> list[bytes]:
    """Every value of cookie ``name`` in one Cookie header, found without splitting the whole header.

    Same rules as :func:`~asgi_session._asgi.parse_cookies`: the name must be a whole cookie name (only spaces or
    tabs between it and the ``;`` or start before it, and between it and ``=`` after it); values are trimmed of
    spaces and tabs.
    """
    values: list[bytes] = []
    size = len(raw)
    start = raw.find(name)
    while start >= 0:
        before = start - 1
        while before >= 0 and raw[before] in _OWS_BYTES:
            before -= 1
        after = start + len(name)
        while after < size and raw[after] in _OWS_BYTES:
            after += 1
        if (before < 0 or raw[before] == _SEMICOLON) and after < size and raw[after] == _EQUALS:
            end = raw.find(b";", after)
            if end < 0:
                end = size
            values.append(raw[after + 1 : end].strip(b" \t"))
            start = raw.find(name, end)
        else:
            start = raw.find(name, start + 1)
    return values


# What one Cookie header yields for a cookie name, remembered: a browser sends the same header on every request
# until a cookie changes, and parsing it is a third of the middleware's cost on a verified-token cache hit. Keyed by
# the header's bytes (parsing is a pure function of them); bounded in entries and in the size of a header kept, and
# emptied when full (a client that sends ever new headers only makes it miss).
_PARSED_LIMIT = 512
_PARSED_MAX_HEADER = 4096
_parsed: dict[str, dict[bytes, TokenSource]] = {ACCESS_COOKIE: {}, REFRESH_COOKIE: {}}


def _cookie_token(cookie_headers: list[bytes], name: str) -> TokenSource:
    if len(cookie_headers) == 1:
        raw = cookie_headers[0]
        parsed = _parsed[name]
        found = parsed.get(raw)
        if found is None:
            found = _parse_cookie_token(cookie_headers, name)
            if len(raw) <= _PARSED_MAX_HEADER:
                if len(parsed) >= _PARSED_LIMIT:
                    parsed.clear()
                parsed[raw] = found
        return found
    return _parse_cookie_token(cookie_headers, name)


def _parse_cookie_token(cookie_headers: list[bytes], name: str) -> TokenSource:
    needle = name.encode("latin-1")
    values: list[bytes] = []
    for raw in cookie_headers:
        values.extend(_cookie_values(raw, needle))
    if not values:
        return _NOTHING
    if len(values) > 1 or not values[0]:
        return _MALFORMED_COOKIE
    token = values[0].decode("latin-1")
    return TokenSource(token, "cookie", False, token_key(token) if name == ACCESS_COOKIE else None)


def _read(
    config: SessionConfig, cookie: str, ours: Callable[[str], bool], memo: BearerMemo | None, scope: Scope
) -> TokenSource:
    # One pass over the headers; ASGI servers send lower-case names, but be tolerant of others. The usual request
    # has at most one of each header, kept without a list; a second one starts the lists. The name's length picks
    # the one name it can be in any case ("cookie" is 6 bytes, "authorization" 13): one len() skips most headers.
    first_cookie: bytes | None = None
    first_authorization: bytes | None = None
    cookies: list[bytes] | None = None
    authorization: list[bytes] | None = None
    for key, value in scope.get("headers", ()):
        length = len(key)
        if length == 6:
            if key != b"cookie" and (key.islower() or key.lower() != b"cookie"):
                continue
            if first_cookie is None:
                first_cookie = value
            elif cookies is None:
                cookies = [first_cookie, value]
            else:
                cookies.append(value)
        elif length == 13:
            if key != b"authorization" and (key.islower() or key.lower() != b"authorization"):
                continue
            if first_authorization is None:
                first_authorization = value
            elif authorization is None:
                authorization = [first_authorization, value]
            else:
                authorization.append(value)
    method = config.token_transfer_method
    if method != "cookie" and first_authorization is not None:
        found = memo.get(first_authorization) if memo is not None and authorization is None else None
        if found is None:  # not a header seen before: the full rules
            found = _bearer(authorization or [first_authorization], ours, memo)
        if found is not None:
            return found
    if method == "header" or first_cookie is None:
        return _NOTHING
    if cookies is None:  # the usual case, a header seen before: one dict lookup
        found = _parsed[cookie].get(first_cookie)
        if found is not None:
            return found
        return _cookie_token([first_cookie], cookie)
    return _cookie_token(cookies, cookie)


def read_access_token(scope: Scope, config: SessionConfig, known: Callable[[str], bool] | None = None) -> TokenSource:
    """Find the access token: the Bearer header when it holds ours (and headers are allowed), else the cookie.

    Args:
        scope: the request.
        config: the settings (transfer method, token length cap).
        known: an optional fast check for tokens already verified (the verified-token cache): a token it accepts
            skips the shape check of :func:`looks_like_access_token`.
    """
    return access_token_reader(config, known)(scope)


def access_token_reader(
    config: SessionConfig, known: Callable[[str], bool] | None = None
) -> Callable[[Scope], TokenSource]:
    """:func:`read_access_token` with its settings bound once: what the middleware calls on every request."""
    max_length = config.max_token_length

    def ours(token: str) -> bool:
        return (known is not None and known(token)) or looks_like_access_token(token, max_length)

    memo: BearerMemo = {}
    return partial(_read, config, ACCESS_COOKIE, ours, memo)  # a C-level call: no extra Python frame per request


def read_refresh_token(scope: Scope, config: SessionConfig, ours: Callable[[str], bool]) -> TokenSource:
    """Find the refresh token: the Bearer header when ``ours`` accepts it (and headers are allowed), else the cookie.

    ``ours`` tells a refresh token we issued (its MAC checks) from an unrelated ``Authorization`` value, which must
    not hide the refresh cookie.
    """
    return _read(config, REFRESH_COOKIE, ours, None, scope)


def duplicated_session_cookies(scope: Scope) -> list[str]:
    """The session cookie names (``sAccessToken``, ``sRefreshToken``) the request carries more than once.

    Two cookies of one name arrive when a browser holds them for two domains or paths: after ``cookie_domain``
    changed, or when a sibling subdomain planted one (cookie tossing). A request cannot tell which one is current.
    """
    cookies = header_values(scope, b"cookie")
    duplicated: list[str] = []
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        needle = name.encode("latin-1")
        if sum(len(_cookie_values(raw, needle)) for raw in cookies) > 1:
            duplicated.append(name)
    return duplicated


def new_session_method(scope: Scope, config: SessionConfig) -> Method:
    """The transfer method for a new session: the config's, or with ``"any"`` the ``st-auth-mode`` header's."""
    if config.token_transfer_method != "any":
        return config.token_transfer_method
    mode = (header_value(scope, b"st-auth-mode") or "").strip().lower()
    return "header" if mode == "header" else "cookie"


def request_has_token_cookies(scope: Scope) -> bool:
    """Whether the request carried a session cookie (so switching to header mode should clear it)."""
    cookies = parse_cookies(scope)
    return ACCESS_COOKIE in cookies or REFRESH_COOKIE in cookies


@dataclass
class ResponseChanges:
    """Headers to add to one response: at most one ``Set-Cookie`` per cookie (a later write replaces).

    Attributes:
        cookies: ``Set-Cookie`` values by (name, path, domain).
        headers: other headers by lower-case name (a later write replaces).
    """

    config: SessionConfig
    cookies: dict[tuple[str, str, str | None], bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.cookies or self.headers)

    @property
    def refresh_path(self) -> str:
        """The Path of the refresh cookie."""
        return f"{self.config.api_base_path}/session/refresh"

    def _cookie(self, name: str, value: str, path: str, expires: float | None, domain: str | None, clear: bool) -> None:
        header = cookie_header(
            name,
            value,
            path=path,
            expires=expires,
            secure=self.config.cookie_secure,
            same_site=self.config.cookie_same_site,
            domain=domain,
            max_age=0 if clear else None,
        )
        self.cookies[(name, path, domain)] = header

    def set_session_tokens(self, session: Session, method: Method, *, now: float, scope: Scope) -> None:
        """Queue ``session``'s new tokens in ``method``; in header mode also clear token cookies the request sent."""
        self.set_tokens(
            method,
            now=now,
            access_token=session.access_token,
            front_token=session.get_front_token(),
            refresh_token=session.refresh_token,
            refresh_expiry=session.refresh_token_expiry,
            anti_csrf_token=session.anti_csrf_token,
            clear_cookies_first=method == "header" and request_has_token_cookies(scope),
            persistent=session.remember,
        )

    def set_tokens(
        self,
        method: Method,
        *,
        now: float,
        access_token: str,
        front_token: str,
        refresh_token: str | None,
        refresh_expiry: float | None,
        anti_csrf_token: str | None,
        clear_cookies_first: bool = False,
        persistent: bool = True,
    ) -> None:
        """Queue new tokens in ``method``; with ``clear_cookies_first`` also clear cookies (header mode).

        ``persistent=False`` writes browser-session cookies (no ``Expires``): a session not "remembered".
        """
        if method == "cookie":
            access_expires = now + _ACCESS_COOKIE_LIFETIME if persistent else None
            self._cookie(ACCESS_COOKIE, access_token, "/", access_expires, self.config.cookie_domain, False)
            if refresh_token is not None:
                expires: float | None = None
                if persistent:
                    expires = refresh_expiry if refresh_expiry is not None else now + _ACCESS_COOKIE_LIFETIME
                self._cookie(
                    REFRESH_COOKIE, refresh_token, self.refresh_path, expires, self.config.cookie_domain, False
                )
            if self.config.expose_access_token_to_frontend_in_cookie_based_auth:
                self.headers[ACCESS_HEADER] = access_token
        else:
            if clear_cookies_first:
                self._clear_cookies()
            self.headers[ACCESS_HEADER] = access_token
            if refresh_token is not None:
                self.headers[REFRESH_HEADER] = refresh_token
        self.headers[FRONT_TOKEN] = front_token
        if anti_csrf_token is not None:
            self.headers[ANTI_CSRF_HEADER] = anti_csrf_token

    def _clear_cookies(self) -> None:
        domains = [self.config.cookie_domain]
        if self.config.older_cookie_domain is not None:
            domains.append(self.config.older_cookie_domain)
        for domain in domains:
            self._cookie(ACCESS_COOKIE, "", "/", 0, domain, True)
            self._cookie(REFRESH_COOKIE, "", self.refresh_path, 0, domain, True)

    def clear_tokens(self, method: Method | None) -> None:
        """Queue clearing the client's tokens in ``method`` (both methods when ``None``)."""
        if method in ("cookie", None):
            self._clear_cookies()
            if self.config.expose_access_token_to_frontend_in_cookie_based_auth:
                self.headers[ACCESS_HEADER] = ""
        if method in ("header", None):
            self.headers[ACCESS_HEADER] = ""
            self.headers[REFRESH_HEADER] = ""
        self.headers.pop(ANTI_CSRF_HEADER, None)
        self.headers[FRONT_TOKEN] = "remove"

    def remove_front_token(self) -> None:
        """Queue ``front-token: remove`` alone: the client drops its local state; no token is cleared."""
        self.headers[FRONT_TOKEN] = "remove"

    def clear_cookies_on_domain(self, names: list[str], domain: str) -> None:
        """Queue clearing the named token cookies on ``domain`` only (same name and Path as when set)."""
        for name in names:
            self._cookie(name, "", "/" if name == ACCESS_COOKIE else self.refresh_path, 0, domain, True)

    def apply(self, message: Message) -> None:
        """Add the queued headers to an ``http.response.start`` message (with ``Cache-Control: no-store``)."""
        if not self:
            return
        headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
        replaced = {b"cache-control", *(name.encode("latin-1") for name in self.headers)}
        expose: list[str] = []
        kept: list[tuple[bytes, bytes]] = []
        ours = {name.encode("latin-1") + b"=" for name, _, _ in self.cookies}
        for key, value in headers:
            lower = key.lower()
            if lower == b"set-cookie" and value.lstrip().startswith(tuple(ours)):
                continue  # a later write of the same cookie replaces the earlier one: one Set-Cookie per name
            if lower == b"access-control-expose-headers":
                expose.extend(v.strip() for v in value.decode("latin-1").split(",") if v.strip())
            elif lower not in replaced:
                kept.append((key, value))
        present = {e.lower() for e in expose}
        expose.extend(name for name in EXPOSED if name not in present)
        kept.append((b"access-control-expose-headers", ", ".join(expose).encode("latin-1")))
        kept.append((b"cache-control", b"no-store"))
        for header, text in self.headers.items():
            kept.append((header.encode("latin-1"), text.encode("latin-1")))
        for cookie in self.cookies.values():
            kept.append((b"set-cookie", cookie))
        message["headers"] = kept
