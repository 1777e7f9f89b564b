"""Test helpers for stores, ours or yours: the store conformance suite and a fake clock.

Every :class:`~asgi_session.stores.SessionStore` must pass every check in :data:`CONFORMANCE_CHECKS`. A check is an
async function that takes a *store factory* (a callable returning a new, unopened, empty store on every call; the
check opens and closes what it builds with ``async with``) and raises :class:`ConformanceError` naming itself and
what differed. Checks are independent: run one, some or all, in any order.

How to test your own store with pytest and the ``anyio`` plugin::

    import itertools

    import pytest

    from asgi_session.testing import CONFORMANCE_CHECKS
    from my_package import MyStore


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.fixture
    def factory(tmp_path):
        numbers = itertools.count()
        return lambda: MyStore(tmp_path / f"sessions-{next(numbers)}.db")


    @pytest.mark.anyio
    @pytest.mark.parametrize("check", sorted(CONFORMANCE_CHECKS))
    async def test_my_store_conforms(check, factory):
        await CONFORMANCE_CHECKS[check](factory)

Pass ``persisted=`` (a coroutine function returning what the store wrote to disk, e.g. a SQLite file and its WAL)
to also check that no raw refresh token reaches the backend's bytes. Outside pytest,
``await run_conformance_suite(factory)`` runs every check and raises one :class:`ConformanceError` listing all
failures.

What the suite relies on, so a careful store passes it:

- Times are whole multiples of 1/8 s around the year 2096: exact in binary and decimal floats and in microsecond
  timestamps, and in the wall clock's future, so a store that also sets backend TTLs from ``expires_at`` (Redis)
  keeps every record for the duration of a check.
- Handles are lowercase UUID strings and hashes 64 lowercase hex digits, so typed columns work and ordering by
  handle is the same in every collation.
- Data is compared as JSON: ``True`` is not ``1`` and ``1.0`` is not ``1``. Non-JSON data (an object, NaN) must be
  refused with :class:`~asgi_session.StoreError`, as :class:`~asgi_session.stores.MemoryStore` does.
- Nothing is asserted across store instances: a store need not be persistent.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import anyio

from ._clock import Clock
from .exceptions import StoreError
from .stores.base import KeyRecord, Rotation, SessionRecord, SessionStore

__all__ = [
    "CONFORMANCE_CHECKS",
    "ConformanceCheck",
    "ConformanceError",
    "FakeClock",
    "PersistedReader",
    "StoreFactory",
    "run_conformance_suite",
]

StoreFactory = Callable[[], SessionStore]
"""Returns a new, unopened, empty store on every call."""

PersistedReader = Callable[[SessionStore], Awaitable[bytes]]
"""Returns every byte the given store has written to its backend (for example a SQLite file and its WAL)."""


class FakeClock(Clock):
    """A clock that moves only when told to, for tests that drive time without sleeping.

    Args:
        start: the initial time, in seconds since the Unix epoch.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"

    def now(self) -> float:
        """Return the current fake time in seconds since the epoch."""
        return self._now

    def advance(self, seconds: float | datetime.timedelta) -> float:
        """Move the clock forward.

        Args:
            seconds: how far, in seconds or as a ``timedelta``.

        Returns:
            The new time.

        Raises:
            ValueError: if ``seconds`` is negative (use :meth:`set` to move the clock back).
        """
        step = seconds.total_seconds() if isinstance(seconds, datetime.timedelta) else float(seconds)
        if step < 0:
            raise ValueError("advance() only moves forward; use set() to move the clock back")
        self._now += step
        return self._now

    def set(self, t: float | datetime.datetime) -> None:
        """Jump to a time, forward or back.

        Args:
            t: seconds since the epoch, or a timezone-aware ``datetime``.

        Raises:
            ValueError: if ``t`` is a naive ``datetime`` (its epoch time would depend on the local time zone).
        """
        if isinstance(t, datetime.datetime):
            if t.tzinfo is None:
                raise ValueError("set() needs a timezone-aware datetime, e.g. datetime(..., tzinfo=UTC)")
            self._now = t.timestamp()
        else:
            self._now = float(t)


class ConformanceError(AssertionError):
    """A store broke the store contract.

    Attributes:
        checks: the names of the failed checks.
        failures: for the error raised by :func:`run_conformance_suite`, one error per failed check (each chained
            to its cause); empty for the error raised by a single check.
    """

    def __init__(
        self,
        message: str,
        *,
        checks: Sequence[str] = (),
        failures: Sequence[ConformanceError] = (),
    ) -> None:
        super().__init__(message)
        self.checks = tuple(checks)
        self.failures = tuple(failures)


class ConformanceCheck(Protocol):
    """The signature of every entry of :data:`CONFORMANCE_CHECKS`."""

    def __call__(self, factory: StoreFactory, /, *, persisted: PersistedReader | None = None) -> Awaitable[None]:
        """Run the check against stores built by ``factory``; raise :class:`ConformanceError` on a failure.

        Args:
            factory: returns a new, unopened, empty store on every call.
            persisted: returns the bytes a store wrote to its backend; checks that care about what reaches the
                disk also search them. ``None`` skips that part.
        """
        ...


CONFORMANCE_CHECKS: dict[str, ConformanceCheck] = {}
"""Every check of the suite by name, in a sensible running order."""


async def run_conformance_suite(
    factory: StoreFactory,
    *,
    persisted: PersistedReader | None = None,
    only: Iterable[str] | None = None,
) -> None:
    """Run the conformance checks one after another and report every failure at once.

    Args:
        factory: returns a new, unopened, empty store on every call.
        persisted: returns the bytes a store wrote to its backend, or ``None`` for a store with no such bytes.
        only: the names of the checks to run (default: all of :data:`CONFORMANCE_CHECKS`).

    Raises:
        ConformanceError: one or more checks failed; ``checks`` names them and the message lists each failure.
        ValueError: ``only`` names an unknown check.
    """
    names = list(CONFORMANCE_CHECKS) if only is None else list(dict.fromkeys(only))
    unknown = [name for name in names if name not in CONFORMANCE_CHECKS]
    if unknown:
        raise ValueError(f"unknown conformance checks {unknown}; known: {sorted(CONFORMANCE_CHECKS)}")
    failures: list[ConformanceError] = []
    for name in names:
        try:
            await CONFORMANCE_CHECKS[name](factory, persisted=persisted)
        except ConformanceError as exc:
            failures.append(exc)
    if failures:
        lines = "\n".join(f"- {failure}" for failure in failures)
        raise ConformanceError(
            f"{len(failures)} of {len(names)} conformance checks failed:\n{lines}",
            checks=[name for failure in failures for name in failure.checks],
            failures=failures,
        )


# --- assertion helpers ----------------------------------------------------------------------------------------


class _Mismatch(Exception):
    """Raised inside a check; the check's wrapper turns it into a ConformanceError that names the check."""


_Body = Callable[[StoreFactory, "PersistedReader | None"], Awaitable[None]]


def _register(name: str, body: _Body, doc: str | None) -> None:
    async def check(factory: StoreFactory, /, *, persisted: PersistedReader | None = None) -> None:
        try:
            await body(factory, persisted)
        except _Mismatch as exc:
            raise ConformanceError(f"{name}: {exc}", checks=[name]) from exc
        except Exception as exc:  # a store must raise nothing unexpected: report it as a failure too
            detail = f"{name}: unexpected {type(exc).__name__}: {exc}"
            raise ConformanceError(detail, checks=[name]) from exc

    check.__name__ = check.__qualname__ = name
    check.__doc__ = doc
    CONFORMANCE_CHECKS[name] = check


_StoreBody = Callable[[StoreFactory], Awaitable[None]]


def _check(name: str) -> Callable[[_StoreBody], _StoreBody]:
    """Register a check that needs only the factory."""

    def register(body: _StoreBody) -> _StoreBody:
        async def run(factory: StoreFactory, persisted: PersistedReader | None) -> None:
            await body(factory)

        _register(name, run, body.__doc__)
        return body

    return register


def _fail(message: str) -> NoReturn:
    raise _Mismatch(message)


# The suite's handles are UUIDs of small numbers; messages show them as handle#7, which reads better.
_SUITE_HANDLE = re.compile(r"'0{8}-0{4}-0{4}-0{4}-([0-9a-f]{12})'")


def _short(value: object) -> str:
    text = _SUITE_HANDLE.sub(lambda match: f"handle#{int(match[1], 16)}", repr(value))
    return text if len(text) <= 300 else f"{text[:300]}... ({len(text)} characters)"


def _expect(condition: bool, message: str) -> None:
    if not condition:
        _fail(message)


def _expect_equal(actual: object, expected: object, what: str) -> None:
    same = actual is expected if isinstance(expected, bool) else actual == expected
    if not same:
        _fail(f"{what}: expected {_short(expected)}, got {_short(actual)}")


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


def _expect_record(actual: object, expected: SessionRecord, what: str) -> None:
    if not isinstance(actual, SessionRecord):
        _fail(f"{what}: expected a SessionRecord, got {_short(actual)}")
    differences = []
    for name in _RECORD_FIELDS:
        mine, theirs = getattr(expected, name), getattr(actual, name)
        if name in ("session_data", "access_token_payload"):
            same = isinstance(theirs, Mapping) and _as_json(theirs) == _as_json(mine)
        else:
            same = theirs == mine and (theirs is None) == (mine is None)
        if not same:
            differences.append(f"{name}: expected {_short(mine)}, got {_short(theirs)}")
    if differences:
        _fail(f"{what} ({_short(expected.handle)}): " + "; ".join(differences))


def _expect_records(actual: object, expected: Sequence[SessionRecord], what: str) -> None:
    if not isinstance(actual, list):
        _fail(f"{what}: expected a list, got {_short(actual)}")
    _expect_handles([getattr(record, "handle", record) for record in actual], [r.handle for r in expected], what)
    for got, want in zip(actual, expected, strict=True):
        _expect_record(got, want, what)


def _expect_sorted_handles(actual: object, expected: Iterable[str], what: str) -> None:
    if not isinstance(actual, list):
        _fail(f"{what}: expected a list, got {_short(actual)}")
    _expect(len(actual) == len(set(actual)), f"{what}: a handle is listed twice: {_short(actual)}")
    _expect_handles(sorted(actual), sorted(expected), what)


def _expect_handles(actual: list[object], expected: list[str], what: str) -> None:
    if actual == expected:
        return
    missing = [handle for handle in expected if handle not in actual]
    extra = [handle for handle in actual if handle not in expected]
    detail = f"missing {_short(missing)}, unexpected {_short(extra)}" if missing or extra else "wrong order"
    _fail(f"{what}: {detail}: expected {_short(expected)}, got {_short(actual)}")


async def _expect_store_error(call: Awaitable[object], what: str) -> None:
    try:
        result = await call
    except StoreError:
        return
    _fail(f"{what}: expected StoreError, got a return value {_short(result)}")


# --- test data --------------------------------------------------------------------------------------------------

# The wall clock's future (October 2096): see the module docstring.
_T0 = 4_000_000_000.0
_DAY = 86_400.0

_NESTED: dict[str, Any] = {
    "str": "plain",
    "unicode": "héllo wörld · 日本語 · 🔑",
    "escapes": "quote \" backslash \\ newline \n tab \t <tag> & 'single'",
    "sql": "'; DROP TABLE sessions; --",
    "ключ": "значение",
    "int": 42,
    "negative": -7,
    "big": 2**53,
    "float": 3.5,
    "true": True,
    "false": False,
    "null": None,
    "empty_list": [],
    "empty_dict": {},
    "list": [1, "two", 3.0, None, [4, [5, {"six": 6}]]],
    "nested": {"a": {"b": {"c": {"d": ["deep", {"e": None}]}}}},
}


def _hash(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _handle(number: int) -> str:
    return str(uuid.UUID(int=number))


def _record(
    number: int,
    *,
    user_id: str = "user-1",
    tenant_id: str = "public",
    created_at: float = _T0,
    **changes: Any,
) -> SessionRecord:
    """A session with only the required fields set; ``changes`` override any field."""
    record = SessionRecord(
        handle=_handle(number),
        user_id=user_id,
        tenant_id=tenant_id,
        refresh_hash=_hash(f"refresh-{number}"),
        session_data={},
        access_token_payload={},
        created_at=created_at,
        last_seen=created_at,
        expires_at=created_at + _DAY,
    )
    return dataclasses.replace(record, **changes)


def _rich_record(number: int, **changes: Any) -> SessionRecord:
    """A session with every optional field set, so "changes nothing else" covers them all."""
    record = _record(
        number,
        user_id="ünïcødé@例え.jp",
        tenant_id="tenant-ä",
        previous_refresh_hash=_hash(f"refresh-{number}-parent"),
        rotated_at=_T0 + 1.5,
        session_data=copy.deepcopy(_NESTED),
        access_token_payload={"role": "admin", "perms": ["read", "write"], "ratio": 0.25, "sso": None},
        last_seen=_T0 + 1.5,
        expires_at=_T0 + _DAY,
        absolute_expires_at=_T0 + 30 * _DAY,
        user_agent="Mozilla/5.0 (X11; Linux x86_64) «test» 😀",
        ip="2001:db8::1",
    )
    return dataclasses.replace(record, **changes)


def _rotation(record: SessionRecord, new_label: str, at: float) -> Rotation:
    return Rotation(
        handle=record.handle,
        expected_refresh_hash=record.refresh_hash,
        new_refresh_hash=_hash(new_label),
        rotated_at=at,
        last_seen=at + 0.5,
        expires_at=at + _DAY,
    )


def _rotated(record: SessionRecord, rotation: Rotation) -> SessionRecord:
    """What a store must hold after applying ``rotation`` to ``record``."""
    return dataclasses.replace(
        record,
        refresh_hash=rotation.new_refresh_hash,
        previous_refresh_hash=rotation.expected_refresh_hash,
        rotated_at=rotation.rotated_at,
        last_seen=rotation.last_seen,
        expires_at=rotation.expires_at,
    )


def _mutate(value: object) -> None:
    """Change a returned mapping (and the containers in it) in place, if the store handed out mutable ones."""
    if isinstance(value, dict):
        for item in list(value.values()):
            _mutate(item)
        value["__mutated__"] = True
    elif isinstance(value, list):
        for item in value:
            _mutate(item)
        value.append("__mutated__")


# --- lifecycle and create/get -----------------------------------------------------------------------------------


@_check("lifecycle")
async def _lifecycle(factory: StoreFactory) -> None:
    """``async with`` yields the store itself and propagates errors; open and close are idempotent."""
    store = factory()
    await store.close()  # closing a store that was never opened does nothing
    async with store as entered:
        _expect(entered is store, "`async with store as s` bound s to another object than the store")
        await store.open()  # opening an open store does nothing
        await store.create(_record(1))
        _expect_record(await store.get(_handle(1)), _record(1), "get after a second open()")
    await store.close()  # closing a closed store does nothing
    await store.open()  # a closed store can be opened again and works
    try:
        await store.create(_record(2))
        _expect_record(await store.get(_handle(2)), _record(2), "get after close() and open()")
    finally:
        await store.close()

    class Sentinel(Exception):
        pass

    propagated = False
    try:
        async with factory():
            raise Sentinel
    except Sentinel:
        propagated = True
    _expect(propagated, "`async with store:` swallowed an exception raised in its body")


@_check("create_get_round_trip")
async def _create_get_round_trip(factory: StoreFactory) -> None:
    """Every field survives create then get: None fields, nested JSON, unicode."""
    full = _rich_record(1)
    minimal = _record(2, user_id="'; DROP TABLE sessions; --", tenant_id="public")
    async with factory() as store:
        for record in (full, minimal):
            await store.create(record)
        for record in (full, minimal):
            _expect_record(await store.get(record.handle), record, "get after create")


@_check("create_get_large_data")
async def _create_get_large_data(factory: StoreFactory) -> None:
    """About 100 KB of session data survives create, get and update intact."""
    large = {"items": [{"i": i, "text": f"{i:05d}-" + "é" * 94} for i in range(1000)]}
    record = _record(1, session_data=large)
    async with factory() as store:
        await store.create(record)
        _expect_record(await store.get(record.handle), record, "get of a session with ~100 KB of data")
        _expect_equal(await store.update_session_data(record.handle, {"small": 1}), True, "update_session_data")
        _expect_equal(await store.update_session_data(record.handle, large), True, "update_session_data")
        _expect_record(await store.get(record.handle), record, "get after writing ~100 KB back")


@_check("get_unknown_handle")
async def _get_unknown_handle(factory: StoreFactory) -> None:
    """``get`` of a handle never created, or deleted, returns None."""
    async with factory() as store:
        _expect_equal(await store.get(_handle(404)), None, "get of an unknown handle in an empty store")
        await store.create(_record(1))
        _expect_equal(await store.get(_handle(404)), None, "get of an unknown handle")
        await store.delete([_handle(1)])
        _expect_equal(await store.get(_handle(1)), None, "get of a deleted handle")


@_check("create_duplicate_handle")
async def _create_duplicate_handle(factory: StoreFactory) -> None:
    """Creating an existing handle raises StoreError and leaves the first session as it was."""
    first = _rich_record(1)
    intruder = _record(1, user_id="intruder", refresh_hash=_hash("intruder"))
    async with factory() as store:
        await store.create(first)
        await _expect_store_error(store.create(intruder), "create of an existing handle")
        _expect_record(await store.get(first.handle), first, "the session after a duplicate create")
        _expect_records(await store.list_for_user("intruder"), [], "list_for_user of the duplicate's user")


@_check("non_json_data_refused")
async def _non_json_data_refused(factory: StoreFactory) -> None:
    """Data that is not JSON (an object, a set, NaN, infinity) raises StoreError and writes nothing."""
    record = _record(1, session_data={"kept": True})
    async with factory() as store:
        await store.create(record)
        await _expect_store_error(
            store.create(_record(2, session_data={"x": object()})), "create with an object in session_data"
        )
        await _expect_store_error(
            store.create(_record(3, access_token_payload={"x": float("nan")})), "create with NaN in the payload"
        )
        _expect_equal(await store.get(_handle(2)), None, "get after a refused create")
        _expect_equal(await store.get(_handle(3)), None, "get after a refused create")
        await _expect_store_error(
            store.update_session_data(record.handle, {"x": {1, 2}}), "update_session_data with a set"
        )
        await _expect_store_error(
            store.update_access_token_payload(record.handle, {"x": float("inf")}),
            "update_access_token_payload with infinity",
        )
        _expect_record(await store.get(record.handle), record, "the session after refused updates")


@_check("records_not_aliased")
async def _records_not_aliased(factory: StoreFactory) -> None:
    """Mutating dicts passed in or handed out never changes what the store holds."""
    data: dict[str, Any] = {"list": [1, 2], "nested": {"key": "value"}}
    payload: dict[str, Any] = {"claims": ["a"]}
    expected = _record(1, session_data=copy.deepcopy(data), access_token_payload=copy.deepcopy(payload))
    async with factory() as store:
        await store.create(_record(1, session_data=data, access_token_payload=payload))
        _mutate(data)
        _mutate(payload)
        _expect_record(await store.get(expected.handle), expected, "get after mutating the dicts given to create")
        returned = await store.get(expected.handle)
        _mutate(getattr(returned, "session_data", None))
        _mutate(getattr(returned, "access_token_payload", None))
        _expect_record(await store.get(expected.handle), expected, "get after mutating a returned record")
        for listed in await store.list_for_user(expected.user_id):
            _mutate(listed.session_data)
            _mutate(listed.access_token_payload)
        _expect_record(await store.get(expected.handle), expected, "get after mutating listed records")
        new_data: dict[str, Any] = {"replaced": [1]}
        new_payload: dict[str, Any] = {"claim": {"x": 1}}
        await store.update_session_data(expected.handle, new_data)
        await store.update_access_token_payload(expected.handle, new_payload)
        _mutate(new_data)
        _mutate(new_payload)
        updated = dataclasses.replace(
            expected, session_data={"replaced": [1]}, access_token_payload={"claim": {"x": 1}}
        )
        _expect_record(await store.get(expected.handle), updated, "get after mutating the dicts given to update")


# --- rotation ---------------------------------------------------------------------------------------------------


@_check("rotate_success")
async def _rotate_success(factory: StoreFactory) -> None:
    """A matching rotation sets the hash, the previous hash and three times, nothing else; rotations chain."""
    record = _rich_record(1, previous_refresh_hash=None, rotated_at=None)
    bystander = _rich_record(2)
    async with factory() as store:
        await store.create(record)
        await store.create(bystander)
        first = _rotation(record, "refresh-1-child", _T0 + 60)
        _expect_equal(await store.rotate(first), True, "rotate with the current hash")
        after_first = _rotated(record, first)
        _expect_record(await store.get(record.handle), after_first, "the session after one rotation")
        second = _rotation(after_first, "refresh-1-grandchild", _T0 + 120)
        _expect_equal(await store.rotate(second), True, "rotate from the hash the last rotation set")
        _expect_record(await store.get(record.handle), _rotated(after_first, second), "after two rotations")
        _expect_record(await store.get(bystander.handle), bystander, "another session after rotations")


@_check("rotate_stale_hash")
async def _rotate_stale_hash(factory: StoreFactory) -> None:
    """A rotation whose expected hash is not the current one returns False and changes nothing."""
    record = _rich_record(1)
    other = _rich_record(2)
    async with factory() as store:
        await store.create(record)
        await store.create(other)
        wrong = dataclasses.replace(_rotation(record, "thief", _T0 + 60), expected_refresh_hash=_hash("never"))
        _expect_equal(await store.rotate(wrong), False, "rotate with a hash never stored")
        _expect_record(await store.get(record.handle), record, "the session after a refused rotation")
        crossed = dataclasses.replace(_rotation(other, "crossed", _T0 + 60), handle=record.handle)
        _expect_equal(await store.rotate(crossed), False, "rotate with another session's current hash")
        _expect_record(await store.get(record.handle), record, "the session after a refused rotation")
        _expect_record(await store.get(other.handle), other, "the other session after a refused rotation")
        good = _rotation(record, "child", _T0 + 60)
        _expect_equal(await store.rotate(good), True, "rotate with the current hash")
        current = _rotated(record, good)
        replay = _rotation(record, "replay", _T0 + 90)  # expects the superseded hash
        _expect_equal(await store.rotate(replay), False, "rotate with the superseded (previous) hash")
        _expect_record(await store.get(record.handle), current, "the session after replaying its parent")


@_check("rotate_missing_handle")
async def _rotate_missing_handle(factory: StoreFactory) -> None:
    """Rotating a handle that does not exist returns False and creates nothing."""
    ghost = _record(404)
    async with factory() as store:
        await store.create(_record(1))
        _expect_equal(await store.rotate(_rotation(ghost, "x", _T0 + 60)), False, "rotate of an unknown handle")
        _expect_equal(await store.get(ghost.handle), None, "get after rotating an unknown handle")
        await store.delete([_handle(1)])
        _expect_equal(await store.rotate(_rotation(_record(1), "y", _T0 + 60)), False, "rotate of a deleted handle")


@_check("rotate_concurrent")
async def _rotate_concurrent(factory: StoreFactory) -> None:
    """100 concurrent rotations from one hash: exactly one wins, whole, and the chain continues from it."""
    record = _rich_record(1)
    rotations = [_rotation(record, f"racer-{i}", _T0 + 60 + i * 0.125) for i in range(100)]
    results: dict[int, object] = {}
    async with factory() as store:
        await store.create(record)

        async def attempt(i: int) -> None:
            results[i] = await store.rotate(rotations[i])

        async with anyio.create_task_group() as group:
            for i in range(len(rotations)):
                group.start_soon(attempt, i)
        odd = {i: value for i, value in results.items() if not isinstance(value, bool)}
        _expect(not odd, f"rotate returned non-bool values: {_short(odd)}")
        winners = [i for i, value in results.items() if value is True]
        _expect(len(winners) == 1, f"{len(winners)} of 100 concurrent rotations succeeded, expected exactly 1")
        winner = rotations[winners[0]]
        after = _rotated(record, winner)
        _expect_record(await store.get(record.handle), after, "the session after the race (the winner's values)")
        loser = rotations[(winners[0] + 1) % len(rotations)]
        stale = Rotation(
            handle=record.handle,
            expected_refresh_hash=loser.new_refresh_hash,
            new_refresh_hash=_hash("after-loser"),
            rotated_at=_T0 + 100,
            last_seen=_T0 + 100,
            expires_at=_T0 + 100 + _DAY,
        )
        _expect_equal(await store.rotate(stale), False, "rotate from a losing racer's hash")
        chained = _rotation(after, "after-winner", _T0 + 200)
        _expect_equal(await store.rotate(chained), True, "rotate from the winner's hash")
        _expect_record(await store.get(record.handle), _rotated(after, chained), "the session after the chain")


# --- updates and deletes ----------------------------------------------------------------------------------------


@_check("update_session_data")
async def _update_session_data(factory: StoreFactory) -> None:
    """``update_session_data`` replaces only the data; an unknown handle gives False."""
    record = _rich_record(1)
    async with factory() as store:
        await store.create(record)
        new = {"cart": ["book", {"qty": 2}], "ünï": "çødé"}
        _expect_equal(await store.update_session_data(record.handle, new), True, "update_session_data")
        _expect_record(
            await store.get(record.handle), dataclasses.replace(record, session_data=new), "after the update"
        )
        _expect_equal(await store.update_session_data(record.handle, {}), True, "update_session_data to {}")
        _expect_record(await store.get(record.handle), dataclasses.replace(record, session_data={}), "after emptying")
        unknown = await store.update_session_data(_handle(404), {"x": 1})
        _expect_equal(unknown, False, "update_session_data of an unknown handle")
        _expect_equal(await store.get(_handle(404)), None, "get after updating an unknown handle")


@_check("update_access_token_payload")
async def _update_access_token_payload(factory: StoreFactory) -> None:
    """``update_access_token_payload`` replaces only the payload; an unknown handle gives False."""
    record = _rich_record(1)
    async with factory() as store:
        await store.create(record)
        new = {"role": "viewer", "orgs": [{"id": 7, "name": "Ωmega"}], "beta": True}
        _expect_equal(await store.update_access_token_payload(record.handle, new), True, "update of the payload")
        expected = dataclasses.replace(record, access_token_payload=new)
        _expect_record(await store.get(record.handle), expected, "after the payload update")
        unknown = await store.update_access_token_payload(_handle(404), {"x": 1})
        _expect_equal(unknown, False, "update_access_token_payload of an unknown handle")
        _expect_equal(await store.get(_handle(404)), None, "get after updating an unknown handle")


@_check("touch")
async def _touch(factory: StoreFactory) -> None:
    """``touch`` sets only ``last_seen``; an unknown handle gives False."""
    record = _rich_record(1)
    async with factory() as store:
        await store.create(record)
        _expect_equal(await store.touch(record.handle, _T0 + 123.125), True, "touch")
        expected = dataclasses.replace(record, last_seen=_T0 + 123.125)
        _expect_record(await store.get(record.handle), expected, "after touch")
        _expect_equal(await store.touch(_handle(404), _T0), False, "touch of an unknown handle")
        _expect_equal(await store.get(_handle(404)), None, "get after touching an unknown handle")


@_check("delete")
async def _delete(factory: StoreFactory) -> None:
    """``delete`` returns the handles that existed, once each, in input order, and is idempotent."""
    a, b, c = _record(1), _record(2), _record(3, user_id="user-2")
    async with factory() as store:
        for record in (a, b, c):
            await store.create(record)
        _expect_equal(await store.delete([]), [], "delete of no handles")
        asked = [c.handle, _handle(404), a.handle, a.handle, c.handle]
        _expect_equal(await store.delete(asked), [c.handle, a.handle], "delete with duplicates and unknowns")
        _expect_equal(await store.get(a.handle), None, "get of a deleted session")
        _expect_equal(await store.get(c.handle), None, "get of a deleted session")
        _expect_record(await store.get(b.handle), b, "a session not named in delete")
        _expect_equal(await store.delete([a.handle, c.handle]), [], "delete of already deleted handles")
        _expect_records(await store.list_for_user("user-1"), [b], "list_for_user after delete")


def _tenancy_layout() -> dict[int, SessionRecord]:
    """Sessions of user-1 in tenants A, B and public, and of lookalike users, by number in creation order."""
    records = [
        _record(4, tenant_id="tenant-a", created_at=_T0 + 5),  # ties with 2 and 3: the handle decides
        _record(1, tenant_id="tenant-a", created_at=_T0 + 10),
        _record(6, tenant_id="public", created_at=_T0 + 20, expires_at=_T0 + 30),  # expired, not deleted
        _record(3, tenant_id="tenant-b", created_at=_T0 + 5),
        _record(2, tenant_id="tenant-a", created_at=_T0 + 5),
        _record(5, user_id="user-2", tenant_id="tenant-a", created_at=_T0),
        _record(7, user_id="user-10", tenant_id="tenant-a", created_at=_T0),  # a prefix match is no match
        _record(8, user_id="USER-1", tenant_id="tenant-b", created_at=_T0),  # nor a case-insensitive one
    ]
    return {uuid.UUID(record.handle).int: record for record in records}


@_check("list_for_user")
async def _list_for_user(factory: StoreFactory) -> None:
    """Listing is per user, per tenant or across tenants, ordered by created_at then handle, expired included."""
    records = _tenancy_layout()
    async with factory() as store:
        _expect_records(await store.list_for_user("user-1"), [], "list_for_user on an empty store")
        for record in records.values():
            await store.create(record)
        expected = {
            None: [2, 3, 4, 1, 6],
            "tenant-a": [2, 4, 1],
            "tenant-b": [3],
            "public": [6],
            "tenant-c": [],
        }
        for tenant, numbers in expected.items():
            _expect_records(
                await store.list_for_user("user-1", tenant),
                [records[n] for n in numbers],
                f"list_for_user('user-1', {tenant!r})",
            )
        _expect_records(await store.list_for_user("user-2"), [records[5]], "list_for_user('user-2')")
        _expect_records(await store.list_for_user("user-2", "tenant-b"), [], "list_for_user of another tenant")
        _expect_records(await store.list_for_user("nobody"), [], "list_for_user of an unknown user")


@_check("delete_for_user")
async def _delete_for_user(factory: StoreFactory) -> None:
    """Tenant-scoped revocation spares other tenants and users; unscoped revocation takes every tenant."""
    records = _tenancy_layout()
    async with factory() as store:
        for record in records.values():
            await store.create(record)
        deleted = await store.delete_for_user("user-1", "tenant-a")
        _expect_sorted_handles(deleted, [_handle(n) for n in (1, 2, 4)], "delete_for_user('user-1', 'tenant-a')")
        _expect_records(
            await store.list_for_user("user-1"), [records[3], records[6]], "user-1 after the tenant-a delete"
        )
        for n in (5, 7, 8):
            _expect_record(await store.get(_handle(n)), records[n], "another user's session")
        _expect_equal(await store.delete_for_user("user-1", "tenant-a"), [], "repeating the tenant-a delete")
        _expect_equal(await store.delete_for_user("user-1", "tenant-c"), [], "delete_for_user of an empty tenant")
        deleted = await store.delete_for_user("user-1")
        _expect_sorted_handles(deleted, [_handle(3), _handle(6)], "delete_for_user('user-1') across tenants")
        _expect_records(await store.list_for_user("user-1"), [], "user-1 after deleting every tenant")
        for n in (5, 7, 8):
            _expect_record(await store.get(_handle(n)), records[n], "another user's session")
        _expect_equal(await store.delete_for_user("nobody"), [], "delete_for_user of an unknown user")


@_check("delete_expired")
async def _delete_expired(factory: StoreFactory) -> None:
    """``delete_expired(now)`` deletes exactly the sessions with ``expires_at <= now`` and counts them."""
    now = _T0 + 1000
    gone = [
        _record(1, expires_at=now - 60),
        _record(2, expires_at=now, tenant_id="tenant-a"),  # the boundary is expired
    ]
    kept = [
        _record(3, expires_at=now + 0.125),
        _record(4, expires_at=now + _DAY, user_id="user-2", last_seen=_T0 - _DAY),
    ]
    async with factory() as store:
        _expect_equal(await store.delete_expired(now), 0, "delete_expired on an empty store")
        for record in gone + kept:
            await store.create(record)
        _expect_equal(await store.delete_expired(now), 2, f"delete_expired({now}) count")
        for record in gone:
            _expect_equal(await store.get(record.handle), None, f"get of a session that expired at {record.expires_at}")
        for record in kept:
            _expect_record(await store.get(record.handle), record, "a session not yet expired")
        _expect_equal(await store.delete_expired(now), 0, "repeating delete_expired")
        _expect_equal(await store.delete_expired(now + 0.125), 1, "delete_expired one tick later")
        _expect_record(await store.get(kept[1].handle), kept[1], "a session not yet expired")


# --- keys -------------------------------------------------------------------------------------------------------

_FAKE_PEM = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IC0gY29uZm9ybWFuY2UgdGVzdA==\n-----END PRIVATE KEY-----\n"


def _key(kid: str, signs_from: float, **changes: Any) -> KeyRecord:
    key = KeyRecord(kid=kid, algorithm="ES256", private_key=_FAKE_PEM, created_at=_T0, signs_from=signs_from)
    return dataclasses.replace(key, **changes)


def _expect_keys(actual: object, expected: Sequence[KeyRecord], what: str) -> None:
    if not isinstance(actual, list):
        _fail(f"{what}: expected a list, got {_short(actual)}")
    _expect_equal([getattr(key, "kid", key) for key in actual], [key.kid for key in expected], f"{what}: kids")
    for got, want in zip(actual, expected, strict=True):
        _expect(isinstance(got, KeyRecord), f"{what}: expected a KeyRecord, got {_short(got)}")
        _expect_equal(got, want, f"{what}: key {want.kid}")


@_check("keys_add_get")
async def _keys_add_get(factory: StoreFactory) -> None:
    """``add_key`` inserts once (the first key wins); ``get_keys`` orders by signs_from then kid."""
    b = _key("kid-b", _T0 + 10)
    a = _key("kid-a", _T0 + 10, expires_at=_T0 + 90 * _DAY, algorithm="RS256")  # ties with b: kid decides
    c = _key("kid-c", _T0, algorithm="refresh-mac", private_key="c2VjcmV0LW1hYy1rZXk=")
    d = _key("kid-0", _T0 + 20, algorithm="EdDSA", created_at=_T0 + 5)
    async with factory() as store:
        _expect_keys(await store.get_keys(), [], "get_keys on an empty store")
        for key in (b, d, a, c):
            _expect_equal(await store.add_key(key), True, f"add_key({key.kid!r})")
        usurper = dataclasses.replace(b, private_key="other", algorithm="HS256", signs_from=_T0 - 1)
        _expect_equal(await store.add_key(usurper), False, "add_key with an existing kid")
        _expect_keys(await store.get_keys(), [c, a, b, d], "get_keys")


@_check("keys_delete")
async def _keys_delete(factory: StoreFactory) -> None:
    """``delete_keys`` counts only the keys that existed, once each."""
    keys = [_key("kid-a", _T0), _key("kid-b", _T0 + 1), _key("kid-c", _T0 + 2)]
    async with factory() as store:
        for key in keys:
            await store.add_key(key)
        _expect_equal(await store.delete_keys([]), 0, "delete_keys of no kids")
        _expect_equal(await store.delete_keys(["kid-b", "kid-x", "kid-b"]), 1, "delete_keys with extras")
        _expect_keys(await store.get_keys(), [keys[0], keys[2]], "get_keys after delete_keys")
        _expect_equal(await store.delete_keys(["kid-b"]), 0, "delete_keys of a deleted kid")
        _expect_equal(await store.delete_keys(["kid-a", "kid-c"]), 2, "delete_keys of the rest")
        _expect_keys(await store.get_keys(), [], "get_keys after deleting every key")
        _expect_equal(await store.add_key(keys[1]), True, "add_key of a deleted kid")


# --- scale ------------------------------------------------------------------------------------------------------


@_check("many_sessions")
async def _many_sessions(factory: StoreFactory) -> None:
    """1,000 sessions of 50 users in 3 tenants are listed and revoked exactly."""
    tenants = ("public", "tenant-a", "tenant-b")
    users = [f"user-{u:02d}" for u in range(50)]
    records = [
        _record(
            i + 1,
            user_id=users[i % 50],
            tenant_id=tenants[(i // 50) % 3],
            created_at=_T0 + ((i * 7) % 13) * 0.125,
        )
        for i in range(1000)
    ]
    ordered = sorted(records, key=lambda record: (record.created_at, record.handle))
    by_tenant = {tenant: {record.handle for record in records if record.tenant_id == tenant} for tenant in tenants}
    async with factory() as store:
        for record in records:
            await store.create(record)
        for u, user in enumerate(users):
            mine = [record for record in ordered if record.user_id == user]
            _expect_records(await store.list_for_user(user), mine, f"list_for_user({user!r})")
            tenant = tenants[u % 3]
            scoped = [record for record in mine if record.tenant_id == tenant]
            _expect_records(await store.list_for_user(user, tenant), scoped, f"list_for_user({user!r}, {tenant!r})")
        for u, user in enumerate(users):
            remaining = [record.handle for record in records if record.user_id == user]
            if u % 2:
                tenant = tenants[u % 3]
                in_tenant = [handle for handle in remaining if handle in by_tenant[tenant]]
                deleted = await store.delete_for_user(user, tenant)
                _expect_sorted_handles(deleted, in_tenant, f"delete_for_user({user!r}, {tenant!r})")
                remaining = [handle for handle in remaining if handle not in in_tenant]
            _expect_sorted_handles(await store.delete_for_user(user), remaining, f"delete_for_user({user!r})")
            if u + 1 < len(users):
                left = await store.list_for_user(users[u + 1])
                _expect_equal(len(left), 20, f"number of sessions of {users[u + 1]!r}, not yet revoked")
        _expect_equal(await store.delete_expired(_T0 + 1000 * _DAY), 0, "sessions left after revoking every user")


# --- no raw refresh token at rest -------------------------------------------------------------------------------


def _strings(value: object) -> Iterator[str]:
    """Every string inside a record, a key, a mapping or a list, keys included."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _strings(getattr(value, field.name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


async def _no_raw_refresh_token(factory: StoreFactory, persisted: PersistedReader | None) -> None:
    from .config import SessionConfig
    from .manager import SessionManager

    store = factory()
    async with (
        store,
        SessionManager(store=store, config=SessionConfig(), clock=FakeClock(_T0)) as manager,
    ):
        session = await manager.create_new_session_without_request_response("user-1")
        first = session.get_all_session_tokens_dangerously()["refreshToken"]
        refreshed = await manager.refresh_session_without_request_response(first)
        second = refreshed.get_all_session_tokens_dangerously()["refreshToken"]
        for token in (first, second):
            _expect(isinstance(token, str) and len(token) >= 16, "the manager returned no usable refresh token")
        _expect(first != second, "refreshing did not issue a new refresh token")
        forbidden: dict[str, str] = {}
        for name, token in (("first", first), ("refreshed", second)):
            forbidden[f"the {name} raw refresh token"] = token
            forbidden[f"the sha256 hex (hash1) of the {name} refresh token"] = hashlib.sha256(
                token.encode()
            ).hexdigest()
        record = await store.get(session.handle)
        _expect(record is not None, "store.get(handle) found no session after create and refresh")
        places = {
            "store.get(handle)": record,
            "store.list_for_user('user-1')": await store.list_for_user("user-1"),
            "store.get_keys()": await store.get_keys(),
        }
        leaks = [
            f"{label} appears in a string field of {where}"
            for where, value in places.items()
            for label, secret in forbidden.items()
            if any(secret in text for text in _strings(value))
        ]
        if persisted is not None:
            leaks += _leaks(await persisted(store), forbidden, "the persisted bytes while the store is open")
    if persisted is not None:
        leaks += _leaks(await persisted(store), forbidden, "the persisted bytes after the store closed")
    _expect(not leaks, "; ".join(leaks))


def _leaks(blob: bytes, forbidden: Mapping[str, str], where: str) -> list[str]:
    _expect(isinstance(blob, bytes), f"persisted() returned {type(blob).__name__}, not bytes")
    return [f"{label} appears in {where}" for label, secret in forbidden.items() if secret.encode() in blob]


_register(
    "no_raw_refresh_token",
    _no_raw_refresh_token,
    """Through a real SessionManager: no raw refresh token, nor its hash1, is in any stored field or byte.""",
)
