"""ASGI plumbing: type aliases, reading headers and cookies from a scope, and building Set-Cookie values."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "cookie_header",
    "header_values",
    "parse_cookies",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Cookie values we write are base64url/JWT/our refresh tokens; refuse anything that could break the header.
_COOKIE_VALUE_FORBIDDEN = frozenset(' ",;\\\t\r\n')
MAX_COOKIE_BYTES = 4096
OWS = " \t"  # RFC 6265 trims only spaces and tabs around cookie names and values


def header_values(scope: Scope, name: bytes) -> list[bytes]:
    """Return every value of a request header (``name`` in lower case), in order."""
    return [value for key, value in scope.get("headers", ()) if key.lower() == name]


def header_value(scope: Scope, name: bytes) -> str | None:
    """Return the only value of a request header as latin-1 text, or ``None`` when absent or repeated."""
    values = header_values(scope, name)
    if len(values) != 1:
        return None
    return values[0].decode("latin-1")


def parse_cookies(scope: Scope) -> dict[str, list[str]]:
    """Parse every ``Cookie`` header of a request (HTTP/2 may split them) into name -> all values, in order.

    Tolerant of what real clients send (``;;``, nameless chunks, base64 ``=`` in values); it never unquotes or
    percent-decodes, so a token must arrive exactly as it was set.
    """
    cookies: dict[str, list[str]] = {}
    for raw in header_values(scope, b"cookie"):
        text = raw.decode("latin-1")
        for chunk in text.split(";"):
            name, sep, value = chunk.partition("=")
            name = name.strip(OWS)
            if not sep or not name:
                continue
            cookies.setdefault(name, []).append(value.strip(OWS))
    return cookies


def cookie_header(
    name: str,
    value: str,
    *,
    path: str,
    expires: float | None,
    secure: bool,
    same_site: str,
    domain: str | None = None,
    max_age: int | None = None,
    http_only: bool = True,
) -> bytes:
    """Build a ``Set-Cookie`` value; ``expires=None`` gives a browser-session cookie (no ``Expires``).

    Raises:
        ValueError: the value holds a character that would break the header, or name + value exceed 4096 bytes
            (browsers would silently drop such a cookie).
    """
    if any(char in _COOKIE_VALUE_FORBIDDEN for char in value):
        raise ValueError(f"cookie {name} has a value that cannot be sent unquoted")
    if len(name) + len(value) > MAX_COOKIE_BYTES:
        raise ValueError(
            f"cookie {name} would be {len(name) + len(value)} bytes, over the 4096 browsers keep; "
            "make the access-token payload smaller or use header transfer"
        )
    parts = [f"{name}={value}", f"Path={path}"]
    if expires is not None:
        parts.append(f"Expires={formatdate(expires, usegmt=True)}")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if domain is not None:
        parts.append(f"Domain={domain}")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    parts.append(f"SameSite={same_site.capitalize()}")
    return "; ".join(parts).encode("latin-1")
