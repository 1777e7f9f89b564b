"""Helpers shared by the tests (not a test module)."""

from __future__ import annotations

from datetime import timedelta


class Clock:
    """A settable clock for tests (the public one lives in asgi_session.testing)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, by: float | timedelta) -> None:
        self.t += by.total_seconds() if isinstance(by, timedelta) else by
