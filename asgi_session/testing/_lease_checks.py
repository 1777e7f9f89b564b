"""Checks of the optional named lease: one holder at a time, until its grant ends.

A store without :class:`~asgi_session.stores.base.LeaseStore` passes this check (every process then runs the
scheduled cleanup); a store that has one must grant it exactly.
"""

from __future__ import annotations

from ..stores.base import LeaseStore
from ._check import StoreFactory, store_check
from ._expect import expect_equal
from ._records import T0


@store_check("lease")
async def lease(factory: StoreFactory) -> None:
    """acquire_lease grants a free or ended lease, renews its holder's, and refuses others while it lasts."""
    async with factory() as store:
        if not isinstance(store, LeaseStore):
            return
        expect_equal(await store.acquire_lease("cleanup", "a", T0, 60), True, "a free lease")
        expect_equal(await store.acquire_lease("cleanup", "b", T0 + 1, 60), False, "another holder's lasting lease")
        expect_equal(await store.acquire_lease("other", "b", T0 + 1, 60), True, "another name: another lease")
        expect_equal(await store.acquire_lease("cleanup", "b", T0 + 59.875, 60), False, "just before the end")
        expect_equal(await store.acquire_lease("cleanup", "a", T0 + 30, 60), True, "its holder renews it")
        expect_equal(await store.acquire_lease("cleanup", "b", T0 + 60, 60), False, "the renewal moved the end")
        expect_equal(await store.acquire_lease("cleanup", "b", T0 + 90, 60), True, "at its end, anyone may take it")
        expect_equal(await store.acquire_lease("cleanup", "a", T0 + 91, 60), False, "the old holder, refused")
        expect_equal(await store.acquire_lease("cleanup", "a", T0 + 1000, 60), True, "long after the end")
