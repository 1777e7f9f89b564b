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

from ._check import ConformanceCheck, ConformanceError, PersistedReader, StoreFactory
from ._clock import FakeClock
from ._suite import CONFORMANCE_CHECKS, run_conformance_suite

__all__ = [
    "CONFORMANCE_CHECKS",
    "ConformanceCheck",
    "ConformanceError",
    "FakeClock",
    "PersistedReader",
    "StoreFactory",
    "run_conformance_suite",
]
