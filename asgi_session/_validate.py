"""Checks at the API boundary for what callers pass in: user, tenant and session ids, and session data.

Every store sees the same inputs, so a value no store can keep (a NUL for PostgreSQL, a lone surrogate for UTF-8
drivers, a megabyte-long id for a Redis key) is refused here with :class:`~asgi_session.InvalidPayloadError`
naming the rule, instead of surfacing as a backend's :class:`~asgi_session.StoreError` (a 503).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .exceptions import InvalidPayloadError
from .tokens import check_json_object

__all__ = ["MAX_ID_LENGTH", "check_id", "check_session_data", "is_possible_id"]

MAX_ID_LENGTH = 256
"""The most characters a user id, tenant id or session handle may have."""

# C0 controls (NUL, CR, LF, ...), DEL, and UTF-16 surrogates (which no UTF-8 text can hold).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

# Built once: ``json.dumps`` with any non-default argument builds a new encoder on every call.
_COMPACT_TEXT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def is_possible_id(value: object) -> bool:
    """Whether ``value`` is a valid id: a non-empty string, at most 256 characters, no control or surrogate."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and _FORBIDDEN.search(value) is None


def check_id(name: str, value: object) -> str:
    """Return ``value`` if it is a valid id, else raise naming the rule it breaks.

    Raises:
        InvalidPayloadError: ``value`` is not a string, is empty, is longer than 256 characters, or holds a
            control character or a lone surrogate; ``key`` is ``name``.
    """
    if not isinstance(value, str) or not value:
        raise InvalidPayloadError(f"{name} must be a non-empty string", key=name)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidPayloadError(f"{name} must be at most {MAX_ID_LENGTH} characters", key=name)
    if _FORBIDDEN.search(value) is not None:
        raise InvalidPayloadError(
            f"{name} must not contain control characters (NUL, CR, LF, ...) or lone surrogates", key=name
        )
    return value


def check_session_data(
    data: Mapping[str, Any] | None, limit: int, what: str = "session_data_in_database"
) -> dict[str, Any]:
    """Validate and copy session data: a JSON object with string keys of at most ``limit`` bytes as compact JSON.

    Raises:
        InvalidPayloadError: it is not a JSON object with string keys, or it is larger than ``limit`` bytes.
    """
    checked = check_json_object(data, what)
    size = len(_COMPACT_TEXT(checked).encode("utf-8", "surrogatepass")) if checked else 2
    if size > limit:
        raise InvalidPayloadError(
            f"{what} is {size} bytes of JSON, over the limit of {limit} (SessionConfig.max_session_data_bytes): "
            "keep large data in your own tables and store a reference"
        )
    return checked
