"""Checks on one session at a time: its lifecycle and every operation addressed by handle."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ._check import StoreFactory, store_check
from ._expect import expect, expect_equal, expect_record, expect_records, expect_store_error
from ._records import T0, handle_of, hash_of, make_record, make_rich_record


@store_check("lifecycle")
async def lifecycle(factory: StoreFactory) -> None:
    """``async with`` yields the store itself and propagates errors; open and close are idempotent."""
    store = factory()
    await store.close()  # closing a store that was never opened does nothing
    async with store as entered:
        expect(entered is store, "`async with store as s` bound s to another object than the store")
        await store.open()  # opening an open store does nothing
        await store.create(make_record(1))
        expect_record(await store.get(handle_of(1)), make_record(1), "get after a second open()")
    await store.close()  # closing a closed store does nothing
    await store.open()  # a closed store can be opened again and works
    try:
        await store.create(make_record(2))
        expect_record(await store.get(handle_of(2)), make_record(2), "get after close() and open()")
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
    expect(propagated, "`async with store:` swallowed an exception raised in its body")


@store_check("create_get_round_trip")
async def create_get_round_trip(factory: StoreFactory) -> None:
    """Every field survives create then get: None fields, nested JSON, unicode."""
    full = make_rich_record(1)
    minimal = make_record(2, user_id="'; DROP TABLE sessions; --", tenant_id="public")
    async with factory() as store:
        for record in (full, minimal):
            await store.create(record)
        for record in (full, minimal):
            expect_record(await store.get(record.handle), record, "get after create")


@store_check("create_get_large_data")
async def create_get_large_data(factory: StoreFactory) -> None:
    """About 100 KB of session data survives create, get and update intact."""
    large = {"items": [{"i": i, "text": f"{i:05d}-" + "é" * 94} for i in range(1000)]}
    record = make_record(1, session_data=large)
    async with factory() as store:
        await store.create(record)
        expect_record(await store.get(record.handle), record, "get of a session with ~100 KB of data")
        expect_equal(await store.update_session_data(record.handle, {"small": 1}), True, "update_session_data")
        expect_equal(await store.update_session_data(record.handle, large), True, "update_session_data")
        expect_record(await store.get(record.handle), record, "get after writing ~100 KB back")


@store_check("get_unknown_handle")
async def get_unknown_handle(factory: StoreFactory) -> None:
    """``get`` of a handle never created, or deleted, returns None."""
    async with factory() as store:
        expect_equal(await store.get(handle_of(404)), None, "get of an unknown handle in an empty store")
        await store.create(make_record(1))
        expect_equal(await store.get(handle_of(404)), None, "get of an unknown handle")
        await store.delete([handle_of(1)])
        expect_equal(await store.get(handle_of(1)), None, "get of a deleted handle")


@store_check("create_duplicate_handle")
async def create_duplicate_handle(factory: StoreFactory) -> None:
    """Creating an existing handle raises StoreError and leaves the first session as it was."""
    first = make_rich_record(1)
    intruder = make_record(1, user_id="intruder", refresh_hash=hash_of("intruder"))
    async with factory() as store:
        await store.create(first)
        await expect_store_error(store.create(intruder), "create of an existing handle")
        expect_record(await store.get(first.handle), first, "the session after a duplicate create")
        expect_records(await store.list_for_user("intruder"), [], "list_for_user of the duplicate's user")


@store_check("non_json_data_refused")
async def non_json_data_refused(factory: StoreFactory) -> None:
    """Data that is not JSON (an object, a set, NaN, infinity) raises StoreError and writes nothing."""
    record = make_record(1, session_data={"kept": True})
    async with factory() as store:
        await store.create(record)
        await expect_store_error(
            store.create(make_record(2, session_data={"x": object()})), "create with an object in session_data"
        )
        await expect_store_error(
            store.create(make_record(3, access_token_payload={"x": float("nan")})), "create with NaN in the payload"
        )
        expect_equal(await store.get(handle_of(2)), None, "get after a refused create")
        expect_equal(await store.get(handle_of(3)), None, "get after a refused create")
        await expect_store_error(
            store.update_session_data(record.handle, {"x": {1, 2}}), "update_session_data with a set"
        )
        await expect_store_error(
            store.update_access_token_payload(record.handle, {"x": float("inf")}),
            "update_access_token_payload with infinity",
        )
        expect_record(await store.get(record.handle), record, "the session after refused updates")


@store_check("records_not_aliased")
async def records_not_aliased(factory: StoreFactory) -> None:
    """Mutating dicts passed in or handed out never changes what the store holds."""
    data: dict[str, Any] = {"list": [1, 2], "nested": {"key": "value"}}
    payload: dict[str, Any] = {"claims": ["a"]}
    expected = make_record(1, session_data=copy.deepcopy(data), access_token_payload=copy.deepcopy(payload))
    async with factory() as store:
        await store.create(make_record(1, session_data=data, access_token_payload=payload))
        _mutate(data)
        _mutate(payload)
        expect_record(await store.get(expected.handle), expected, "get after mutating the dicts given to create")
        returned = await store.get(expected.handle)
        _mutate(getattr(returned, "session_data", None))
        _mutate(getattr(returned, "access_token_payload", None))
        expect_record(await store.get(expected.handle), expected, "get after mutating a returned record")
        for listed in await store.list_for_user(expected.user_id):
            _mutate(listed.session_data)
            _mutate(listed.access_token_payload)
        expect_record(await store.get(expected.handle), expected, "get after mutating listed records")
        new_data: dict[str, Any] = {"replaced": [1]}
        new_payload: dict[str, Any] = {"claim": {"x": 1}}
        await store.update_session_data(expected.handle, new_data)
        await store.update_access_token_payload(expected.handle, new_payload)
        _mutate(new_data)
        _mutate(new_payload)
        updated = dataclasses.replace(
            expected, session_data={"replaced": [1]}, access_token_payload={"claim": {"x": 1}}
        )
        expect_record(await store.get(expected.handle), updated, "get after mutating the dicts given to update")


@store_check("update_session_data")
async def update_session_data(factory: StoreFactory) -> None:
    """``update_session_data`` replaces only the data; an unknown handle gives False."""
    record = make_rich_record(1)
    async with factory() as store:
        await store.create(record)
        new = {"cart": ["book", {"qty": 2}], "ünï": "çødé"}
        expect_equal(await store.update_session_data(record.handle, new), True, "update_session_data")
        expect_record(await store.get(record.handle), dataclasses.replace(record, session_data=new), "after the update")
        expect_equal(await store.update_session_data(record.handle, {}), True, "update_session_data to {}")
        expect_record(await store.get(record.handle), dataclasses.replace(record, session_data={}), "after emptying")
        unknown = await store.update_session_data(handle_of(404), {"x": 1})
        expect_equal(unknown, False, "update_session_data of an unknown handle")
        expect_equal(await store.get(handle_of(404)), None, "get after updating an unknown handle")


@store_check("update_access_token_payload")
async def update_access_token_payload(factory: StoreFactory) -> None:
    """``update_access_token_payload`` replaces only the payload; an unknown handle gives False."""
    record = make_rich_record(1)
    async with factory() as store:
        await store.create(record)
        new = {"role": "viewer", "orgs": [{"id": 7, "name": "Ωmega"}], "beta": True}
        expect_equal(await store.update_access_token_payload(record.handle, new), True, "update of the payload")
        expected = dataclasses.replace(record, access_token_payload=new)
        expect_record(await store.get(record.handle), expected, "after the payload update")
        unknown = await store.update_access_token_payload(handle_of(404), {"x": 1})
        expect_equal(unknown, False, "update_access_token_payload of an unknown handle")
        expect_equal(await store.get(handle_of(404)), None, "get after updating an unknown handle")


@store_check("touch")
async def touch(factory: StoreFactory) -> None:
    """``touch`` sets only ``last_seen``; an unknown handle gives False."""
    record = make_rich_record(1)
    async with factory() as store:
        await store.create(record)
        expect_equal(await store.touch(record.handle, T0 + 123.125), True, "touch")
        expected = dataclasses.replace(record, last_seen=T0 + 123.125)
        expect_record(await store.get(record.handle), expected, "after touch")
        expect_equal(await store.touch(handle_of(404), T0), False, "touch of an unknown handle")
        expect_equal(await store.get(handle_of(404)), None, "get after touching an unknown handle")


@store_check("delete")
async def delete(factory: StoreFactory) -> None:
    """``delete`` returns the handles that existed, once each, in input order, and is idempotent."""
    a, b, c = make_record(1), make_record(2), make_record(3, user_id="user-2")
    async with factory() as store:
        for record in (a, b, c):
            await store.create(record)
        expect_equal(await store.delete([]), [], "delete of no handles")
        asked = [c.handle, handle_of(404), a.handle, a.handle, c.handle]
        expect_equal(await store.delete(asked), [c.handle, a.handle], "delete with duplicates and unknowns")
        expect_equal(await store.get(a.handle), None, "get of a deleted session")
        expect_equal(await store.get(c.handle), None, "get of a deleted session")
        expect_record(await store.get(b.handle), b, "a session not named in delete")
        expect_equal(await store.delete([a.handle, c.handle]), [], "delete of already deleted handles")
        expect_records(await store.list_for_user("user-1"), [b], "list_for_user after delete")


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
