"""The SQLite store's revocation log: its schema, its statements, and the synchronous probe read per request.

Revoking is one statement: ``INSERT INTO revocations ... SELECT ... FROM sessions ... RETURNING``. A trigger on
the log deletes each session as its entry is inserted, so the entry and the deletion commit together (SQLite runs
a trigger inside its statement). ``AUTOINCREMENT`` numbers are never reused, even after a trim, and one writer at a
time means they commit in order: a reader that has seen number N has seen every entry below it.

The probe is a second, read-only ``sqlite3`` connection used directly on the caller's thread. In WAL mode a
reader never waits for the writer, so one ``SELECT ... WHERE seq > ?`` costs a few microseconds and sees every
commit made before it by any process (``benchmarks/RESULTS.md``, "Revocation probe on SQLite"). It never waits
(``busy_timeout`` 0): when SQLite answers busy, the probe says "unknown" and the manager reads the store.
"""

from __future__ import annotations

import sqlite3
import threading
from urllib.parse import quote

from .base import Revocation

__all__ = ["MIGRATION", "SINCE", "SyncProbe", "revoke_handles_sql", "revoke_user_sql"]

MIGRATION: tuple[str, ...] = (
    """CREATE TABLE revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        handle TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TRIGGER revocations_end_session AFTER INSERT ON revocations
    BEGIN
        DELETE FROM sessions WHERE handle = new.handle;
    END""",
)

SINCE = "SELECT seq, handle FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?"
TRIM = "DELETE FROM revocations WHERE seq <= ?"
_PROBE = "SELECT seq, handle FROM revocations WHERE seq > ? ORDER BY seq"


def revoke_handles_sql(count: int) -> str:
    """Log and delete the sessions among ``count`` handles; returns the handles that existed."""
    marks = ", ".join("?" * count)
    return (
        "INSERT INTO revocations (handle, created_at) "  # noqa: S608 - only placeholders are formatted in
        f"SELECT handle, created_at FROM sessions WHERE handle IN ({marks}) RETURNING handle"
    )


def revoke_user_sql(with_tenant: bool) -> str:
    """Log and delete a user's sessions (in one tenant); returns ``handle, created_at``."""
    where = "user_id = ? AND tenant_id = ?" if with_tenant else "user_id = ?"
    return (
        "INSERT INTO revocations (handle, created_at) "  # noqa: S608 - a constant condition is formatted in
        f"SELECT handle, created_at FROM sessions WHERE {where} RETURNING handle, created_at"
    )


class SyncProbe:
    """A read-only connection that reads new log entries without awaiting (``None`` when it cannot tell)."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA busy_timeout = 0")
        # Event loops on several threads may share the store; a connection serves one statement at a time.
        self._lock = threading.Lock()

    def since(self, after: int) -> list[Revocation] | None:
        """Every entry numbered above ``after`` committed so far, or ``None`` (busy, locked, closed)."""
        try:
            with self._lock:
                # fetchall reads the statement to its end: a half-read statement would pin an old snapshot.
                return [(int(seq), str(handle)) for seq, handle in self._connection.execute(_PROBE, (after,))]
        except sqlite3.Error:
            return None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()
