"""Checks of ``rotate``: the compare-and-swap of the refresh hash that refresh-token theft detection relies on."""

from __future__ import annotations

import dataclasses

import anyio

from ..stores.base import Rotation
from ._check import StoreFactory, store_check
from ._expect import expect, expect_equal, expect_record, short
from ._records import DAY, T0, handle_of, hash_of, make_record, make_rich_record, make_rotation, rotated


@store_check("rotate_success")
async def rotate_success(factory: StoreFactory) -> None:
    """A matching rotation sets the hash, the previous hash and three times, nothing else; rotations chain."""
    record = make_rich_record(1, previous_refresh_hash=None, rotated_at=None)
    bystander = make_rich_record(2)
    async with factory() as store:
        await store.create(record)
        await store.create(bystander)
        first = make_rotation(record, "refresh-1-child", T0 + 60)
        expect_equal(await store.rotate(first), True, "rotate with the current hash")
        after_first = rotated(record, first)
        expect_record(await store.get(record.handle), after_first, "the session after one rotation")
        second = make_rotation(after_first, "refresh-1-grandchild", T0 + 120)
        expect_equal(await store.rotate(second), True, "rotate from the hash the last rotation set")
        expect_record(await store.get(record.handle), rotated(after_first, second), "after two rotations")
        expect_record(await store.get(bystander.handle), bystander, "another session after rotations")


@store_check("rotate_stale_hash")
async def rotate_stale_hash(factory: StoreFactory) -> None:
    """A rotation whose expected hash is not the current one returns False and changes nothing."""
    record = make_rich_record(1)
    other = make_rich_record(2)
    async with factory() as store:
        await store.create(record)
        await store.create(other)
        wrong = dataclasses.replace(make_rotation(record, "thief", T0 + 60), expected_refresh_hash=hash_of("never"))
        expect_equal(await store.rotate(wrong), False, "rotate with a hash never stored")
        expect_record(await store.get(record.handle), record, "the session after a refused rotation")
        crossed = dataclasses.replace(make_rotation(other, "crossed", T0 + 60), handle=record.handle)
        expect_equal(await store.rotate(crossed), False, "rotate with another session's current hash")
        expect_record(await store.get(record.handle), record, "the session after a refused rotation")
        expect_record(await store.get(other.handle), other, "the other session after a refused rotation")
        good = make_rotation(record, "child", T0 + 60)
        expect_equal(await store.rotate(good), True, "rotate with the current hash")
        current = rotated(record, good)
        replay = make_rotation(record, "replay", T0 + 90)  # expects the superseded hash
        expect_equal(await store.rotate(replay), False, "rotate with the superseded (previous) hash")
        expect_record(await store.get(record.handle), current, "the session after replaying its parent")


@store_check("rotate_missing_handle")
async def rotate_missing_handle(factory: StoreFactory) -> None:
    """Rotating a handle that does not exist returns False and creates nothing."""
    ghost = make_record(404)
    async with factory() as store:
        await store.create(make_record(1))
        expect_equal(await store.rotate(make_rotation(ghost, "x", T0 + 60)), False, "rotate of an unknown handle")
        expect_equal(await store.get(ghost.handle), None, "get after rotating an unknown handle")
        await store.delete([handle_of(1)])
        expect_equal(
            await store.rotate(make_rotation(make_record(1), "y", T0 + 60)), False, "rotate of a deleted handle"
        )


@store_check("rotate_concurrent")
async def rotate_concurrent(factory: StoreFactory) -> None:
    """100 concurrent rotations from one hash: exactly one wins, whole, and the chain continues from it."""
    record = make_rich_record(1)
    rotations = [make_rotation(record, f"racer-{i}", T0 + 60 + i * 0.125) for i in range(100)]
    results: dict[int, object] = {}
    async with factory() as store:
        await store.create(record)

        async def attempt(i: int) -> None:
            results[i] = await store.rotate(rotations[i])

        async with anyio.create_task_group() as group:
            for i in range(len(rotations)):
                group.start_soon(attempt, i)
        odd = {i: value for i, value in results.items() if not isinstance(value, bool)}
        expect(not odd, f"rotate returned non-bool values: {short(odd)}")
        winners = [i for i, value in results.items() if value is True]
        expect(len(winners) == 1, f"{len(winners)} of 100 concurrent rotations succeeded, expected exactly 1")
        winner = rotations[winners[0]]
        after = rotated(record, winner)
        expect_record(await store.get(record.handle), after, "the session after the race (the winner's values)")
        loser = rotations[(winners[0] + 1) % len(rotations)]
        stale = Rotation(
            handle=record.handle,
            expected_refresh_hash=loser.new_refresh_hash,
            new_refresh_hash=hash_of("after-loser"),
            rotated_at=T0 + 100,
            last_seen=T0 + 100,
            expires_at=T0 + 100 + DAY,
        )
        expect_equal(await store.rotate(stale), False, "rotate from a losing racer's hash")
        chained = make_rotation(after, "after-winner", T0 + 200)
        expect_equal(await store.rotate(chained), True, "rotate from the winner's hash")
        expect_record(await store.get(record.handle), rotated(after, chained), "the session after the chain")
