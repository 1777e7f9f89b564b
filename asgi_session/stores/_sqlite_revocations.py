"""The SQLite store's revocation log: its schema, its statements, and the synchronous probe read per request.

Revoking is one statement: ``INSERT INTO revocations ... SELECT ... FROM sessions ... RETURNING``. A trigger on
the log deletes each session as its entry is inserted, so the entry and the deletion commit together (SQLite runs
a trigger inside its statement). ``AUTOINCREMENT`` numbers are never reused, even after a trim, and one writer at a
time means they commit in order: a reader that has seen number N has seen every entry below it.

The probe is a second, read-only ``sqlite3`` connection used directly on the caller's thread. In WAL mode a
reader never waits for the writer, so one ``SELECT ... WHERE seq > ?`` costs a few microseconds and sees every
commit made before it by any process (``benchmarks/RESULTS.md``, "Revocation probe on SQLite"). It never waits
(``busy_timeout`` 0): when SQLite answers busy, the probe says "unknown" and the manager reads the store.

Most requests find nothing new, and the probe answers those without a statement: it maps the first 96 bytes of the
``-shm`` file, the two copies of the WAL-index header, which every commit by any connection rewrites (its frame
count, change counter and checksums, and the salt after the WAL restarts) before the commit returns. When those
bytes equal the ones read before the last ``SELECT``, nothing committed since, and the answer is "no new entries"
(0.07 µs against 3 µs for the ``SELECT``). Any difference (a commit, a checkpoint, a header read mid-write) runs the
``SELECT``. The mapping is made only after the probe's own connection has read in WAL mode, so that connection holds
the file open and SQLite cannot truncate it (it truncates ``-shm`` only when no connection has it open); a file that
is not in WAL mode, or a header SQLite has not initialised, runs the ``SELECT`` every time.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import threading
from urllib.parse import quote

from .base import Revocation

__all__ = ["END_SESSION_TRIGGER", "MIGRATION", "SINCE", "SyncProbe", "revoke_handles_sql", "revoke_user_sql"]

# Each entry inserted deletes its session. Schema step 5 drops and makes it again (it rebuilds ``sessions``).
END_SESSION_TRIGGER = """CREATE TRIGGER revocations_end_session AFTER INSERT ON revocations
    BEGIN
        DELETE FROM sessions WHERE handle = new.handle;
    END"""

MIGRATION: tuple[str, ...] = (
    """CREATE TABLE revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        handle TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    END_SESSION_TRIGGER,
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


_HEADER = 96  # bytes: the two copies of the WAL-index header at the start of the -shm file
_WAL_INDEX_VERSION = 3007000  # the header's first field, as SQLite writes it (native byte order)


def _map_header(path: str) -> mmap.mmap | None:
    """A read-only mapping of the WAL-index header of ``path``'s ``-shm`` file, or ``None`` when there is none."""
    if os.name != "posix":  # SQLite's shared-memory layout is mapped the same way only where it uses mmap itself
        return None
    try:
        descriptor = os.open(f"{path}-shm", os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(descriptor).st_size < _HEADER:
            return None
        header = mmap.mmap(descriptor, _HEADER, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    finally:
        os.close(descriptor)  # the mapping keeps its own reference to the file
    version, initialised = struct.unpack_from("=I", header, 0)[0], header[12]
    if version != _WAL_INDEX_VERSION or initialised != 1:
        header.close()
        return None
    return header


class SyncProbe:
    """A read-only connection that reads new log entries without awaiting (``None`` when it cannot tell)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA busy_timeout = 0")
        # Event loops on several threads may share the store; a connection serves one statement at a time.
        self._lock = threading.Lock()
        self._header: mmap.mmap | None = None
        self._mapped = False  # whether mapping the header was tried (once, after the first read)
        self._seen: bytes | None = None  # the header as it was just before the last SELECT
        self._high = -1  # the highest number that SELECT knew of

    def since(self, after: int) -> list[Revocation] | None:
        """Every entry numbered above ``after`` committed so far, or ``None`` (busy, locked, closed)."""
        try:
            with self._lock:
                header = self._header[:] if self._header is not None else None
                if header is not None and header == self._seen and after >= self._high:
                    return []  # nothing committed since a SELECT that saw everything up to ``after``
                # fetchall reads the statement to its end: a half-read statement would pin an old snapshot.
                rows = [(int(seq), str(handle)) for seq, handle in self._connection.execute(_PROBE, (after,))]
                self._seen, self._high = header, rows[-1][0] if rows else after
                if not self._mapped:
                    self._map()
                return rows
        except sqlite3.Error:
            return None

    def _map(self) -> None:
        self._mapped = True
        (mode,) = self._connection.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            self._header = _map_header(self._path)

    def close(self) -> None:
        """Close the mapping, then the connection (which lets SQLite remove or truncate ``-shm``)."""
        with self._lock:
            if self._header is not None:
                self._header.close()
                self._header = None
            self._connection.close()
