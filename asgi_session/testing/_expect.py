"""Assertions for check bodies: each failure says what was expected and what the store returned."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import NoReturn

from ..exceptions import StoreError
from ..stores.base import KeyRecord, SessionRecord
from ._check import Mismatch


def fail(message: str) -> NoReturn:
    """Fail the running check with ``message``."""
    raise Mismatch(message)


# The suite's handles are UUIDs of small numbers; messages show them as handle#7, which reads better.
_SUITE_HANDLE = re.compile(r"'0{8}-0{4}-0{4}-0{4}-([0-9a-f]{12})'")


def short(value: object) -> str:
    """``repr(value)``, with suite handles abbreviated and long values cut at 300 characters."""
    text = _SUITE_HANDLE.sub(lambda match: f"handle#{int(match[1], 16)}", repr(value))
    return text if len(text) <= 300 else f"{text[:300]}... ({len(text)} characters)"


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        fail(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    """Fail unless ``actual == expected``; an expected bool must be that very bool, not 0 or 1."""
    same = actual is expected if isinstance(expected, bool) else actual == expected
    if not same:
        fail(f"{what}: expected {short(expected)}, got {short(actual)}")


def _as_json(value: object) -> str:
    def plain(item: object) -> object:
        if isinstance(item, Mapping):
            return dict(item)
        if isinstance(item, Sequence) and not isinstance(item, (str, bytes)):
            return list(item)
        raise TypeError(f"not JSON: {type(item).__name__}")

    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False, default=plain)
    except (TypeError, ValueError) as exc:
        return f"<{exc}>"


_RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(SessionRecord))


def expect_record(actual: object, expected: SessionRecord, what: str) -> None:
    """Fail unless ``actual`` is a SessionRecord equal to ``expected``, listing every field that differs."""
    if not isinstance(actual, SessionRecord):
        fail(f"{what}: expected a SessionRecord, got {short(actual)}")
    differences = []
    for name in _RECORD_FIELDS:
        mine, theirs = getattr(expected, name), getattr(actual, name)
        if name in ("session_data", "access_token_payload"):
            same = isinstance(theirs, Mapping) and _as_json(theirs) == _as_json(mine)
        else:
            same = theirs == mine and (theirs is None) == (mine is None)
        if not same:
            differences.append(f"{name}: expected {short(mine)}, got {short(theirs)}")
    if differences:
        fail(f"{what} ({short(expected.handle)}): " + "; ".join(differences))


def expect_records(actual: object, expected: Sequence[SessionRecord], what: str) -> None:
    """Fail unless ``actual`` is a list of exactly these records, in this order."""
    if not isinstance(actual, list):
        fail(f"{what}: expected a list, got {short(actual)}")
    _expect_handles([getattr(record, "handle", record) for record in actual], [r.handle for r in expected], what)
    for got, want in zip(actual, expected, strict=True):
        expect_record(got, want, what)


def expect_sorted_handles(actual: object, expected: Iterable[str], what: str) -> None:
    """Fail unless ``actual`` is a list of exactly these handles, once each, in any order."""
    if not isinstance(actual, list):
        fail(f"{what}: expected a list, got {short(actual)}")
    expect(len(actual) == len(set(actual)), f"{what}: a handle is listed twice: {short(actual)}")
    _expect_handles(sorted(actual), sorted(expected), what)


def _expect_handles(actual: list[object], expected: list[str], what: str) -> None:
    if actual == expected:
        return
    missing = [handle for handle in expected if handle not in actual]
    extra = [handle for handle in actual if handle not in expected]
    detail = f"missing {short(missing)}, unexpected {short(extra)}" if missing or extra else "wrong order"
    fail(f"{what}: {detail}: expected {short(expected)}, got {short(actual)}")


async def expect_store_error(call: Awaitable[object], what: str) -> None:
    """Fail unless awaiting ``call`` raises StoreError."""
    try:
        result = await call
    except StoreError:
        return
    fail(f"{what}: expected StoreError, got a return value {short(result)}")


def expect_keys(actual: object, expected: Sequence[KeyRecord], what: str) -> None:
    """Fail unless ``actual`` is a list of exactly these keys, in this order."""
    if not isinstance(actual, list):
        fail(f"{what}: expected a list, got {short(actual)}")
    expect_equal([getattr(key, "kid", key) for key in actual], [key.kid for key in expected], f"{what}: kids")
    for got, want in zip(actual, expected, strict=True):
        expect(isinstance(got, KeyRecord), f"{what}: expected a KeyRecord, got {short(got)}")
        expect_equal(got, want, f"{what}: key {want.kid}")
