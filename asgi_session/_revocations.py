"""The manager's local view of recently revoked sessions, kept current from the store's revocation log.

With access-token blacklisting, every verification must refuse a revoked session. Reading the session from the
store on every request costs a round trip; a store that logs revocations (:class:`~asgi_session.stores.base.
RevocationLog`) and offers an exact synchronous probe (:class:`~asgi_session.stores.base.RevocationProbe`:
SQLite, memory) lets the check be a set lookup after a probe of a few microseconds, exact across processes.

Bounded memory: a handle stays in the view for ``retention`` seconds after the view learnt of it (the longest
access-token lifetime plus clock skew); after that every access token of the session has expired, so the entry
can answer nothing. Each entry costs about 200 bytes (the handle string, a dict slot and a deque slot).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .stores.base import Revocation

__all__ = ["RevocationView"]


class RevocationView:
    """Revoked handles seen recently, and the log position they cover.

    Args:
        retention: seconds an entry is kept after it was learnt.
    """

    __slots__ = ("_by_age", "_handles", "_marks", "position", "retention")

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self.position = 0
        """The highest log sequence number applied: every entry up to it is in the view (or aged out)."""
        self._handles: dict[str, float] = {}
        self._by_age: deque[tuple[float, str]] = deque()
        self._marks: deque[tuple[float, int]] = deque()  # (when, position reached then), oldest first

    def __len__(self) -> int:
        return len(self._handles)

    def __contains__(self, handle: object) -> bool:
        return handle in self._handles

    def add(self, handle: str, now: float) -> None:
        """Record one revoked handle (the process's own revocations, before the revoking call returns)."""
        # Kept from the first time only: the age queue holds one entry per handle, and a second time (this
        # process's own revocation coming back through the log) would never match it, so the handle would stay.
        if handle not in self._handles:
            self._by_age.append((now, handle))
            self._handles[handle] = now
        self._expire(now)  # also where nothing is applied (a store read per request): the view still ages

    def apply(self, entries: Iterable[Revocation], now: float) -> None:
        """Record log entries (in ascending order) and move the position past them; drop aged-out handles."""
        position = self.position
        for seq, handle in entries:
            self.add(handle, now)
            position = max(position, seq)
        if position != self.position:
            self.position = position
            self._marks.append((now, position))
        self._expire(now)

    def position_before(self, when: float) -> int:
        """The position the view had reached by ``when`` (0 if unknown): log entries up to it are that old."""
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= when:
            marks.popleft()
        return marks[0][1] if marks and marks[0][0] <= when else 0

    def _expire(self, now: float) -> None:
        horizon = now - self.retention
        by_age, handles = self._by_age, self._handles
        while by_age and by_age[0][0] < horizon:
            learnt, handle = by_age.popleft()
            if handles.get(handle) == learnt:
                del handles[handle]
        marks = self._marks
        while len(marks) > 1 and marks[1][0] < horizon:
            marks.popleft()

    def rewind(self) -> None:
        """Start the position over, keeping the handles: the log went back and reuses numbers already passed.

        The position marks go too: they name numbers of the old log, and trimming by them would delete entries
        of the new one.
        """
        self._marks.clear()
        self.position = 0

    def clear(self) -> None:
        """Forget everything (the manager reloads the log when it opens again)."""
        self._handles.clear()
        self._by_age.clear()
        self._marks.clear()
        self.position = 0
