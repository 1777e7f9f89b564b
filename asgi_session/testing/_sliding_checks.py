"""Checks of the optional ``rotate_sliding``: a refresh's read and compare-and-swap in one step.

A store without :class:`~asgi_session.stores.base.SlidingRotationStore` (or with ``rotate_sliding = None``) passes
these checks: the manager then reads and swaps in two steps. A store that has it must apply exactly what the
manager's two steps would, and answer ``None`` (changing nothing) whenever they would not swap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio

from ..stores.base import SessionRecord, SlidingRotation
from ._check import StoreFactory, store_check
from ._expect import expect, expect_equal, expect_record
from ._records import DAY, T0, hash_of, make_record, make_rich_record, make_sliding_rotation


def _sliding(store: Any) -> Any:
    method = getattr(store, "rotate_sliding", None)
    return method if callable(method) else None


def _slid(record: SessionRecord, rotation: SlidingRotation) -> SessionRecord:
    """What the manager's two steps would store: ``min(now + idle, absolute_expires_at)``."""
    idle = rotation.default_idle_timeout if record.idle_timeout is None else record.idle_timeout
    expires_at = rotation.now + idle
    if record.absolute_expires_at is not None:
        expires_at = min(expires_at, record.absolute_expires_at)
    return dataclasses.replace(
        record,
        refresh_hash=rotation.new_refresh_hash,
        previous_refresh_hash=rotation.expected_refresh_hash,
        rotated_at=rotation.now,
        last_seen=rotation.now,
        expires_at=expires_at,
    )


@store_check("rotate_sliding_success")
async def rotate_sliding_success(factory: StoreFactory) -> None:
    """A live session with the expected hash is swapped and comes back as now stored; nothing else changes.

    The expiry slides by the session's own idle timeout or the default one, capped by its absolute expiry.
    """
    own_idle = make_rich_record(1, previous_refresh_hash=None, rotated_at=None)  # idle 2 h, absolute T0 + 30 days
    default_idle = make_record(2, idle_timeout=None, absolute_expires_at=None)
    capped = make_record(3, absolute_expires_at=T0 + 3600.0)  # the slide would pass the absolute expiry
    bystander = make_rich_record(4)
    async with factory() as store:
        sliding = _sliding(store)
        if sliding is None:
            return
        for record in (own_idle, default_idle, capped, bystander):
            await store.create(record)
        for record, label in ((own_idle, "own"), (default_idle, "default"), (capped, "capped")):
            rotation = make_sliding_rotation(record, f"{label}-child", T0 + 60, default_idle=5 * DAY)
            expected = _slid(record, rotation)
            expect_record(await sliding(rotation), expected, f"rotate_sliding's answer ({label} idle timeout)")
            expect_record(await store.get(record.handle), expected, f"the session after rotate_sliding ({label})")
            again = make_sliding_rotation(expected, f"{label}-grandchild", T0 + 120, default_idle=5 * DAY)
            expect_record(await sliding(again), _slid(expected, again), f"a second rotate_sliding chains ({label})")
        expect_equal(own_idle.idle_timeout, 2 * 3600.0, "the rich record's own idle timeout")
        expect_record(await store.get(bystander.handle), bystander, "another session after rotate_sliding")


@store_check("rotate_sliding_refusals")
async def rotate_sliding_refusals(factory: StoreFactory) -> None:
    """A missing, expired, superseded or foreign hash gives ``None`` and changes nothing."""
    record = make_rich_record(1)
    other = make_rich_record(2)
    async with factory() as store:
        sliding = _sliding(store)
        if sliding is None:
            return
        await store.create(record)
        await store.create(other)
        ghost = make_record(99)
        unknown = make_sliding_rotation(ghost, "x", T0 + 60)
        expect_equal(await sliding(unknown), None, "rotate_sliding of an unknown handle")
        to_y = make_sliding_rotation(record, "y", T0 + 60)
        wrong = dataclasses.replace(to_y, expected_refresh_hash=hash_of("never"))
        expect_equal(await sliding(wrong), None, "rotate_sliding with a hash never stored")
        crossed = dataclasses.replace(to_y, expected_refresh_hash=other.refresh_hash)
        expect_equal(await sliding(crossed), None, "rotate_sliding with another session's hash")
        at_expiry = make_sliding_rotation(record, "y", record.expires_at)
        expect_equal(await sliding(at_expiry), None, "rotate_sliding at the session's expiry (expired)")
        expect_record(await store.get(record.handle), record, "the session after refused rotate_sliding calls")
        good = make_sliding_rotation(record, "child", T0 + 60)
        expect(await sliding(good) is not None, "rotate_sliding with the current hash")
        expect_equal(await sliding(good), None, "rotate_sliding from the superseded hash")
        expect_record(await store.get(other.handle), other, "another session after rotate_sliding calls")


@store_check("rotate_sliding_concurrent")
async def rotate_sliding_concurrent(factory: StoreFactory) -> None:
    """Of many concurrent rotate_sliding calls from one hash, exactly one swaps."""
    record = make_record(1)
    async with factory() as store:
        sliding = _sliding(store)
        if sliding is None:
            return
        await store.create(record)
        answers: list[SessionRecord | None] = [None] * 20

        async def race(index: int) -> None:
            answers[index] = await sliding(make_sliding_rotation(record, f"racer-{index}", T0 + 60 + index))

        async with anyio.create_task_group() as tg:
            for index in range(len(answers)):
                tg.start_soon(race, index)
        winners = [answer for answer in answers if answer is not None]
        expect_equal(len(winners), 1, "rotate_sliding calls that swapped")
        expect_record(await store.get(record.handle), winners[0], "the session holds the winner's swap")
