"""The clock protocol: every time-dependent part of asgi-session reads time through one."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of wall-clock time in seconds since the Unix epoch (float)."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class SystemClock(Clock):
    """The real wall clock (``time.time``)."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()
