"""Encoding for RedisStore: ids escaped for key names, session records as hash fields, log entries as stream entries."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping
from typing import Any

from ..exceptions import StoreError
from ._json import dump_object, load_object
from .base import Revocation, SessionRecord

__all__ = ["BUCKETS", "as_text", "bucket", "escape", "seconds", "to_fields", "to_record", "to_revocation"]

_FIELDS = tuple(field.name for field in dataclasses.fields(SessionRecord))
_REQUIRED = tuple(f.name for f in dataclasses.fields(SessionRecord) if f.default is dataclasses.MISSING)
_TIMES = ("rotated_at", "created_at", "last_seen", "expires_at", "absolute_expires_at", "idle_timeout")
_JSON_FIELDS = {"session_data": "session data", "access_token_payload": "access-token payload"}
_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ":": "%3A"})


# How many buckets users are spread over: each bucket is one hash tag (one Redis Cluster slot) holding its users'
# indexes and one shard of the expiry index. Changing it changes the key layout.
BUCKETS = 1024


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def bucket(user_tag: str) -> int:
    """The bucket of a user, from their escaped id: the same in every process and on every version of Python."""
    return zlib.crc32(user_tag.encode("utf-8", "surrogatepass")) % BUCKETS


def as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def seconds(value: float, name: str) -> str:
    number = float(value) if isinstance(value, (int, float)) else math.nan
    if not math.isfinite(number):
        raise StoreError(f"{name} must be a finite number of seconds")
    return repr(number)  # the shortest text that reads back as exactly this float


def to_fields(record: SessionRecord) -> list[str]:
    fields: list[str] = []
    for name, value in ((name, getattr(record, name)) for name in _FIELDS if getattr(record, name) is not None):
        if name in _JSON_FIELDS:
            fields += [name, dump_object(value, _JSON_FIELDS[name])]
        else:
            text = str(int(value)) if isinstance(value, bool) else str(value)
            fields += [name, seconds(value, name) if name in _TIMES else text]
    return fields


def to_record(raw: Mapping[Any, Any]) -> SessionRecord:
    fields = {as_text(name): as_text(value) for name, value in raw.items()}
    if any(name not in fields for name in _REQUIRED):
        raise StoreError("a stored session lacks required fields")
    values: dict[str, Any] = {name: fields.get(name) for name in _FIELDS}
    for name, what in _JSON_FIELDS.items():
        values[name] = load_object(fields[name], what)
    for name in _TIMES:
        values[name] = None if values[name] is None else float(values[name])
    values["remember"] = values["remember"] != "0"  # absent (written before it existed) or "1": remembered
    return SessionRecord(**values)


def to_revocation(entry_id: object, fields: object) -> Revocation:
    """A revocation-log entry: its stream id ``<seq>-0`` and its fields (a mapping, or RESP's flat list of pairs)."""
    if isinstance(fields, (list, tuple)) and len(fields) % 2 == 0:
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    handle = fields.get("handle", fields.get(b"handle")) if isinstance(fields, Mapping) else None
    seq, _, rest = as_text(entry_id).partition("-")
    if handle is None or not seq.isdigit() or rest != "0":
        raise StoreError("a revocation-log entry is malformed")
    return int(seq), as_text(handle)
