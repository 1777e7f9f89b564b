"""Checks of the optional revocation log: what deletions append, in what order, and what a trim removes.

A store without :class:`~asgi_session.stores.base.RevocationLog` passes these checks (managers then read the store
on every revocation check); a store that has one must keep it exactly.
"""

from __future__ import annotations

from ..stores.base import RevocationLog, RevocationProbe
from ._check import StoreFactory, store_check
from ._expect import expect, expect_equal
from ._records import T0, handle_of, make_record


@store_check("revocation_log")
async def revocation_log(factory: StoreFactory) -> None:
    """Delete and delete_for_user append what they deleted, numbered upwards; delete_expired appends nothing."""
    async with factory() as store:
        if not isinstance(store, RevocationLog):
            return
        expect_equal(await store.revocations_since(0), [], "revocations_since(0) on an empty store")
        for number in range(1, 7):
            await store.create(make_record(number, user_id="user-2" if number > 3 else "user-1"))
        await store.create(make_record(9, expires_at=T0 + 1))
        await store.delete([handle_of(1), handle_of(404)])  # an unknown handle logs nothing
        await store.delete_for_user("user-2")
        await store.delete_expired(T0 + 2)  # the expired session 9: not a revocation
        await store.delete([handle_of(1)])  # already gone: nothing new
        log = await store.revocations_since(0)
        numbers = [seq for seq, _ in log]
        expect(numbers == sorted(set(numbers)) and all(n > 0 for n in numbers), f"log numbers rise: {numbers}")
        expect_equal(
            sorted(handle for _, handle in log),
            sorted(handle_of(n) for n in (1, 4, 5, 6)),
            "the handles in the log after delete, delete_for_user and delete_expired",
        )
        expect_equal(log[0][1], handle_of(1), "the first entry is the first deletion")
        expect_equal(await store.revocations_since(numbers[1]), log[2:], "revocations_since(a middle number)")
        expect_equal(await store.revocations_since(0, 2), log[:2], "revocations_since with a limit")
        expect_equal(await store.revocations_since(numbers[-1]), [], "revocations_since(the last number)")
        if isinstance(store, RevocationProbe):
            expect_equal(store.probe_revocations(numbers[0]), log[1:], "probe_revocations(the first number)")
        expect_equal(await store.trim_revocations(numbers[1]), 2, "trim_revocations(the second number)")
        expect_equal(await store.revocations_since(0), log[2:], "the log after the trim")
        await store.delete([handle_of(2)])
        after_trim = await store.revocations_since(numbers[-1])
        expect_equal([handle for _, handle in after_trim], [handle_of(2)], "a deletion after a trim")
        expect(after_trim[0][0] > numbers[-1], "numbers are never reused after a trim")
