"""A clock that moves only when a test says so."""

from __future__ import annotations

import datetime

from .._clock import Clock


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
