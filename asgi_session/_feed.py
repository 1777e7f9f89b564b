"""Following a store's revocation feed in the background, and knowing how current the local view is.

On Redis and PostgreSQL, with ``revocation_max_lag > 0``, a manager applies pushed revocations to its view and
checks revocations from memory while the feed has confirmed, no longer than ``revocation_max_lag`` ago, that the
view held everything committed by then. When the feed is lost, late or not yet started, the view is not trusted:
verification reads the store (and a store that is down gives a 503), so a revoked session is never accepted more
than ``revocation_max_lag`` after the revoke returned, whatever fails. Loss and recovery are logged once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio

from ._clock import Clock
from ._revocations import RevocationView
from .exceptions import StoreError
from .stores.base import Revocation, RevocationFeed, RevocationLogRewound

__all__ = ["FeedFollower"]

logger = logging.getLogger("asgi_session")

_RETRY_FIRST, _RETRY_MOST = 0.05, 5.0  # seconds between attempts to restart a lost feed (doubling)


class FeedFollower:
    """Runs ``feed.follow_revocations`` in a task, restarting it after a loss, and says whether the view is fresh.

    Args:
        feed: the store's feed.
        view: the manager's revocation view (positions continue from it).
        clock: the manager's clock (freshness is judged on it).
        max_lag: how old the last confirmation may be for the view to be trusted.
    """

    def __init__(self, feed: RevocationFeed, view: RevocationView, clock: Clock, max_lag: float) -> None:
        self._feed, self._view, self._clock, self.max_lag = feed, view, clock, max_lag
        self.heartbeat = min(max(max_lag / 3, 0.01), 5.0)  # three confirmations per allowed lag
        self.current_as_of: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._scope = anyio.CancelScope()
        self._lost = False
        self._delivered = False  # whether the current attempt delivered anything (then a loss retries quickly)

    def fresh(self) -> bool:
        """Whether the view held every revocation committed up to ``max_lag`` seconds ago."""
        as_of = self.current_as_of
        return as_of is not None and self._clock.now() - as_of <= self.max_lag

    def start(self) -> None:
        """Start following (on the running asyncio loop; the drivers that push revocations are asyncio-only)."""
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): no feed, verification reads the store
            logger.warning("asgi_session: the revocation feed needs asyncio; reading the store instead")
            return
        self._scope = anyio.CancelScope()
        self._task = loop.create_task(self._run(), name="asgi-session revocation feed")

    async def stop(self) -> None:
        """Stop following; the view is no longer trusted."""
        task, self._task = self._task, None
        self.current_as_of = None
        if task is not None:
            # Not task.cancel(): one cancellation can be lost (on Python < 3.12 asyncio.wait_for, which redis-py
            # sends commands through, swallows a cancel that arrives as the send completes). A cancelled scope
            # cancels the task again each time it waits, until it has left the scope.
            self._scope.cancel()
            with anyio.CancelScope(shield=True), contextlib.suppress(asyncio.CancelledError):
                await task
            # A reply already on its way when the cancel came is delivered before the feed sees the cancel: what
            # that delivery confirmed is not trusted after stop() (``_deliver`` ignores it; this clears it).
            self.current_as_of = None

    async def _run(self) -> None:
        with self._scope:
            await self._follow()

    async def _follow(self) -> None:
        pause = _RETRY_FIRST
        while True:
            self._delivered = False
            error: Exception
            try:
                await self._feed.follow_revocations(
                    self._view.position, self._deliver, now=self._clock.now, heartbeat=self.heartbeat
                )
                error = StoreError("the revocation feed ended")  # it runs until cancelled: an end is a loss
            except RevocationLogRewound as exc:
                error = exc
                self._view.rewind()  # the next feed reads the whole log again
            except StoreError as exc:
                error = exc
            except Exception as exc:  # a bug in a feed: a loss too (logged below), never the end of following
                error = exc
            self.current_as_of = None
            if not self._lost:
                self._lost = True
                logger.warning("asgi_session: revocation feed lost (%s); reading the store until it recovers", error)
            pause = _RETRY_FIRST if self._delivered else min(pause * 2, _RETRY_MOST)
            await anyio.sleep(pause)

    def _deliver(self, entries: list[Revocation], current_as_of: float) -> None:
        self._view.apply(entries, self._clock.now())
        if self._task is None:
            return  # stopping: the entries are kept, the view is not trusted
        self.current_as_of = current_as_of
        self._delivered = True
        if self._lost:
            self._lost = False
            logger.warning("asgi_session: revocation feed recovered")
