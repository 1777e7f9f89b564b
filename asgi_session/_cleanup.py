"""The scheduled cleanup: ``delete_expired_sessions()`` in the background, once per interval across every process.

The middleware starts it on ``lifespan.startup`` when ``SessionConfig.cleanup_interval`` is set and stops it on
shutdown. Each run first takes the store's ``"cleanup"`` lease for one interval
(:class:`~asgi_session.stores.base.LeaseStore`): among the processes sharing a store, the first to ask in an interval
runs the cleanup and the others skip it. A store without leases gets a cleanup from every process (harmless: it is
idempotent). The first run comes ``min(interval, 60 s)`` after startup, so a server restarted more often than the
interval still cleans up, and a whole fleet starting at once still cleans up only once (the lease).

Time is the manager's clock, read every second of real time (``_TICK``): a test with a fake clock advances it and
the task notices; a host that slept past a run catches up at once. A failure is logged and retried a minute later
(or one interval, if shorter); it never stops the schedule and never reaches a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

import anyio

from .exceptions import StoreError
from .stores.base import LeaseStore

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["CLEANUP_LEASE", "ScheduledCleanup"]

logger = logging.getLogger("asgi_session")

CLEANUP_LEASE = "cleanup"
_FIRST_RUN_AFTER = 60.0  # seconds after startup; also the retry delay after a failure
_TICK = 1.0  # seconds of real time between looks at the manager's clock


class ScheduledCleanup:
    """Runs the manager's ``delete_expired_sessions()`` every ``interval`` seconds, taking turns through the store.

    Args:
        manager: the manager whose store is cleaned.
        interval: seconds between runs (and how long one run's lease lasts).
    """

    def __init__(self, manager: SessionManager, interval: float) -> None:
        self.manager, self.interval = manager, float(interval)
        self.holder = uuid.uuid4().hex  # this schedule's name in the lease
        self.runs = 0  # cleanups this schedule ran (not counting intervals another process had)
        self.deleted = 0  # sessions those runs deleted
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None  # made in start(): anyio needs a running loop for it

    async def run_once(self) -> int | None:
        """Clean up now if this schedule gets the lease for the interval starting now.

        Returns:
            How many expired sessions were deleted, or ``None`` when another process holds the lease.

        Raises:
            StoreError: the store failed (the schedule logs it and retries).
        """
        manager = self.manager
        await manager.open()
        store = manager.store
        if isinstance(store, LeaseStore) and not await store.acquire_lease(
            CLEANUP_LEASE, self.holder, manager.clock.now(), self.interval
        ):
            return None
        deleted = await manager.delete_expired_sessions()
        self.runs += 1
        self.deleted += deleted
        return deleted

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the schedule on the running asyncio loop (on another loop, such as trio's: a warning, no schedule)."""
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.warning("asgi_session: the scheduled cleanup needs asyncio; run delete_expired_sessions() yourself")
            return
        self._scope = anyio.CancelScope()
        self._task = loop.create_task(self._run(self._scope), name="asgi-session scheduled cleanup")

    async def stop(self) -> None:
        """Stop the schedule; a run in progress is cancelled (what it deleted stays deleted)."""
        task, self._task = self._task, None
        if task is not None and self._scope is not None:
            self._scope.cancel()
            with anyio.CancelScope(shield=True), contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            clock = self.manager.clock
            due = clock.now() + min(self.interval, _FIRST_RUN_AFTER)
            while True:
                remaining = due - clock.now()
                if remaining > 0:
                    await anyio.sleep(min(remaining, _TICK))
                    continue
                due = clock.now() + (self.interval if await self._attempt() else min(self.interval, _FIRST_RUN_AFTER))

    async def _attempt(self) -> bool:
        """One run, its outcome logged; whether it succeeded (or another process had the interval)."""
        try:
            deleted = await self.run_once()
        except StoreError as exc:
            logger.warning("asgi_session: scheduled cleanup failed (%s); retrying", exc)
            return False
        except Exception:  # a bug must not end the schedule silently, nor reach the server
            logger.exception("asgi_session: scheduled cleanup failed; retrying")
            return False
        if deleted is None:
            logger.debug("asgi_session: scheduled cleanup skipped: another process has this interval")
        return True
