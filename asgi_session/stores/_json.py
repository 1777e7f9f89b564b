"""JSON columns of the persistent stores: session data and access-token payloads as JSON object text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..exceptions import StoreError

__all__ = ["dump_object", "load_object"]


_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # built once, not per call


def dump_object(value: Mapping[str, Any], what: str) -> str:
    """Serialise a JSON object compactly; anything else (NaN, sets, lists, objects) is a ``StoreError``."""
    if type(value) is dict and not value:
        return "{}"  # most sessions: no data, no custom claims
    try:
        text = _COMPACT(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from exc
    if not text.startswith("{"):
        raise StoreError(f"{what} must be a JSON object")
    return text


def load_object(text: str, what: str) -> dict[str, Any]:
    """Parse stored JSON object text; corrupt or non-object text is a ``StoreError`` (never quoting the text)."""
    if text == "{}":
        return {}  # most sessions: no data, no custom claims
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"the stored {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise StoreError(f"the stored {what} is not a JSON object")
    return value
