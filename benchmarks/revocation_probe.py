"""Revocation probe on SQLite (issue 10 groundwork): a synchronous read-only WAL connection on the loop's thread.

    python benchmarks/revocation_probe.py [--repeats 7] [--sessions 10000] [--calls 20000] [--slow-calls 2000]
                                          [--load-seconds 1.5] [--rate 300] [--truncate-every 300] [--json PATH]

Issue 10: each SessionManager keeps a local view of recent revocations, and on SQLite that view must be exact across
processes (a revoke that returned in one process is refused by every other process on its very next request). The
idea measured here: a plain ``sqlite3`` connection opened read-only (``mode=ro`` URI, ``busy_timeout`` 0), used
directly on the event loop's thread, asks on every request whether anything changed since its last look (``PRAGMA
data_version``, or ``SELECT max(seq)`` of a ``revocations`` log) and reads only the new log rows. Beside it: the
aiosqlite round trip (event loop -> the connection's thread -> loop) the store makes today, once per request.

The database is a temporary WAL file (``synchronous=NORMAL``, as the store sets it) with the store's ``sessions``
table (``--sessions`` rows) and a log ``revocations (seq INTEGER PRIMARY KEY AUTOINCREMENT, handle TEXT NOT NULL,
created_at REAL)`` holding 1,000 rows to start. Cases, µs per call (``--calls`` calls per repeat for the cheap ones,
``--slow-calls`` for those that pay a commit or a thread hop):

- (a) ``PRAGMA data_version`` on the read-only connection, nothing changed; (a') the whole quiet probe: the same plus
  the comparison, as a method call.
- (b) the same right after another connection committed one revocation (the commit itself is not timed); (b+c) the
  whole probe after that commit: ``data_version``, then ``SELECT seq, handle FROM revocations WHERE seq > ?`` (1 row).
- (c) that ``SELECT`` alone, nothing changed, returning 0 rows and 1 row; (c+) that ``SELECT`` alone used as the
  whole probe, after a commit (1 row): the one-statement probe, whose answer is the new rows themselves.
- (d) ``SELECT max(seq) FROM revocations``, nothing changed; (d+c) a probe built on it, after a commit.
- (e) the store's primary-key read ``SELECT <14 columns> FROM sessions WHERE handle = ?`` on the sync connection.
- (f) the same read through aiosqlite, as the store does it today; (f') ``PRAGMA data_version`` through aiosqlite.
- (g) (a), (a') and the one-statement probe of (c+), in a tight loop while a second *process* commits at ``--rate``
  commits/s (alternately creating a session, and revoking one: ``DELETE`` of the session + ``INSERT`` into the log
  in one transaction), with a ``wal_checkpoint(TRUNCATE)`` every ``--truncate-every`` commits besides SQLite's
  automatic checkpoints. Each call is timed on its own (median, p99, p99.9, max, calls over 0.1 and 1 ms), and
  SQLITE_BUSY is counted (``busy_timeout`` is 0 on the probe: a lock it meets raises instead of waiting). The
  probes' views are then compared with the log the writer committed: every revocation must be seen exactly once.
  (g0): (a) timed the same way with the writer idle, the control for the tail latencies.

Repeats interleave the cases (the order rotates each repeat; (g) runs once per repeat, after the others) so machine
noise spreads over all of them; printed: the median over the repeats of each repeat's µs per call, with min and max.

Checks printed before the timings (the semantics the probe relies on): (1) ``data_version`` changes on the probe
after a commit by another connection of the same process and by another process, on the very next look, and does not
change after the probe's own reads; (2) after ``PRAGMA wal_checkpoint(TRUNCATE)`` by the writer the probe still sees
every new commit; (3) a read-only connection opened before the WAL existed (a rollback-journal file switched to WAL
later, and a WAL file whose -wal/-shm were removed at the last close) still sees every commit; (4) a statement left
unfinished on the probe pins its snapshot (what the probe must never do); (5) the probe cannot write.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosqlite

from asgi_session.stores._sqlite_sql import GET as GET_SESSION
from asgi_session.stores._sqlite_sql import MIGRATIONS

SESSIONS_TABLE = MIGRATIONS[0][0]  # the store's sessions table; its indexes are left out
REVOCATIONS_TABLE = (
    "CREATE TABLE revocations (seq INTEGER PRIMARY KEY AUTOINCREMENT, handle TEXT NOT NULL, created_at REAL)"
)
INSERT_SESSION = (
    "INSERT INTO sessions (handle, user_id, tenant_id, refresh_hash, previous_refresh_hash, rotated_at, "
    "session_data, access_token_payload, created_at, last_seen, expires_at, absolute_expires_at, user_agent, ip) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_REVOCATION = "INSERT INTO revocations (handle, created_at) VALUES (?, ?)"
DATA_VERSION = "PRAGMA data_version"
NEW_ROWS = "SELECT seq, handle FROM revocations WHERE seq > ?"
MAX_SEQ = "SELECT max(seq) FROM revocations"
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
INITIAL_REVOCATIONS = 1000


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included (``sqlite_errorcode`` exists from Python 3.11)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


def session_row(handle: str, now: float) -> tuple[Any, ...]:
    return (
        handle,
        f"user-{secrets.randbelow(5000)}",
        "public",
        secrets.token_hex(32),
        None,
        None,
        '{"theme": "dark", "cart": [1, 2, 3]}',
        '{"role": "member", "plan": "pro"}',
        now,
        now,
        now + 86_400,
        now + 30 * 86_400,
        "Mozilla/5.0 (X11; Linux x86_64) bench/1.0",
        "203.0.113.7",
    )


def open_writer(path: Path | str, *, wal: bool = True) -> sqlite3.Connection:
    """A read-write autocommit connection, configured as the store's (busy_timeout 5 s, WAL, NORMAL)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    if wal:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not put {path} in WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous = NORMAL")
    return db


def open_probe(path: Path) -> sqlite3.Connection:
    """The probe: read-only by URI, autocommit (no implicit transaction), busy_timeout 0 (a lock raises at once)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=0)
    db.execute("PRAGMA busy_timeout = 0").fetchall()
    return db


def create_schema(db: sqlite3.Connection) -> None:
    db.execute(SESSIONS_TABLE)
    db.execute(REVOCATIONS_TABLE)


def insert_revocation(db: sqlite3.Connection, handle: str) -> int:
    """One committed revocation (autocommit): its seq."""
    seq = db.execute(INSERT_REVOCATION, (handle, time.time())).lastrowid
    assert seq is not None
    return seq


class Probe:
    """The local view of the revocation log: the last ``data_version`` seen and the highest ``seq`` read.

    Every statement is read to its end (``fetchone`` of a one-row result, ``fetchall``): a statement left unfinished
    keeps its read transaction open and pins the snapshot (check 4).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.version = 0
        self.last_seq = 0
        self.sync()

    def sync(self) -> None:
        """Take the current state as seen (no rows returned)."""
        self.version = self.data_version()
        self.last_seq = self.max_seq()

    def data_version(self) -> int:
        return int(self.db.execute(DATA_VERSION).fetchone()[0])

    def max_seq(self) -> int:
        return int(self.db.execute(MAX_SEQ).fetchone()[0] or 0)

    def new_rows(self) -> list[tuple[int, str]]:
        rows = self.db.execute(NEW_ROWS, (self.last_seq,)).fetchall()
        if rows:
            self.last_seq = max(row[0] for row in rows)
        return rows

    def look(self) -> list[tuple[int, str]]:
        """The probe on ``data_version``, read first: a commit racing the ``SELECT`` costs a spare look, not a miss."""
        current = self.data_version()
        if current == self.version:
            return []
        self.version = current
        return self.new_rows()

    def look_max(self) -> list[tuple[int, str]]:
        """The probe on ``max(seq)`` (AUTOINCREMENT: a seq is never reused, commits take seqs in order)."""
        if self.max_seq() == self.last_seq:
            return []
        return self.new_rows()


# -- the writer process ------------------------------------------------------------------------------------------------


def _create(db: sqlite3.Connection, created: deque[str]) -> None:
    handle = secrets.token_urlsafe(24)
    db.execute(INSERT_SESSION, session_row(handle, time.time()))
    created.append(handle)


def _revoke(db: sqlite3.Connection, created: deque[str]) -> int:
    """Delete a session and log its revocation, in one transaction: what a revoke will do. Returns the seq."""
    if not created:
        _create(db, created)
    handle = created.popleft()
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM sessions WHERE handle = ?", (handle,))
        seq = insert_revocation(db, handle)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return seq


def _load(db: sqlite3.Connection, created: deque[str], pipe: Connection, rate: float, truncate_every: int) -> Any:
    """Commit at `rate` per second (create, revoke, create, ...) until the parent says stop."""
    pipe.send(("ok", "started"))
    interval = 1.0 / rate
    commits = busy = checkpoints = checkpoint_busy = 0
    revoked: list[int] = []
    start = deadline = time.perf_counter()
    while not pipe.poll():
        now = time.perf_counter()
        if now < deadline:
            time.sleep(min(deadline - now, 0.005))
            continue
        deadline = max(deadline + interval, now - 0.05)  # catch up on short stalls only
        try:
            if commits % 2 == 0:
                _create(db, created)
            else:
                revoked.append(_revoke(db, created))
            commits += 1
            if truncate_every and commits % truncate_every == 0:
                checkpoint_busy += int(db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
                checkpoints += 1
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            busy += 1
    seconds = time.perf_counter() - start
    pipe.recv()  # the "stop"
    return {
        "commits": commits,
        "seconds": seconds,
        "busy": busy,
        "checkpoints": checkpoints,
        "checkpoint_busy": checkpoint_busy,
        "revoked": revoked,
    }


def writer_main(pipe: Connection) -> None:
    """The second process: runs the commands it is sent, one at a time, and answers ("ok", result) or ("error", why)."""
    db: sqlite3.Connection | None = None
    created: deque[str] = deque()
    while True:
        command, *args = pipe.recv()
        if command == "exit":
            break
        try:
            result: Any = None
            if command == "open":
                if db is not None:
                    db.close()
                db, created = open_writer(args[0]), deque()
            elif db is None:
                raise RuntimeError("no database open")
            elif command == "sql":
                result = db.execute(args[0]).fetchall()
            elif command == "revoke":
                result = _revoke(db, created)
            elif command == "load":
                result = _load(db, created, pipe, *args)
            else:
                raise RuntimeError(f"unknown command {command!r}")
            pipe.send(("ok", result))
        except Exception as exc:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    if db is not None:
        db.close()


class Writer:
    """The parent's handle on the writer process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=writer_main, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def call(self, *command: Any) -> Any:
        self.pipe.send(command)
        return self._answer()

    def _answer(self) -> Any:
        status, result = self.pipe.recv()
        if status != "ok":
            raise RuntimeError(f"writer process: {result}")
        return result

    def start_load(self, rate: float, truncate_every: int) -> None:
        assert self.call("load", rate, truncate_every) == "started"

    def stop_load(self) -> dict[str, Any]:
        self.pipe.send(("stop",))
        return self._answer()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.pipe.send(("exit",))
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()  # by its own handle
            self.process.join(5)


# -- the semantic checks --------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def _sees_each(probe: Probe, commit: Callable[[], int], times: int) -> tuple[int, int]:
    """Commit `times` revocations one by one; count those the very next ``look()`` returned exactly (and no other)."""
    probe.sync()
    exact = 0
    for _ in range(times):
        before = probe.version
        seq = commit()
        rows = probe.look()
        exact += int(probe.version != before and [row[0] for row in rows] == [seq])
    return exact, times


def check_data_version(path: Path, local: sqlite3.Connection, writer: Writer, handles: list[str]) -> list[Check]:
    checks = []
    probe = Probe(open_probe(path))
    try:
        seen, times = _sees_each(probe, lambda: insert_revocation(local, "h-local"), 200)
        checks.append(
            Check(
                "(1a) a commit by another connection of this process is seen by the very next look",
                seen == times,
                f"{seen}/{times} commits: data_version changed and SELECT seq > last returned exactly the new row",
            )
        )
        seen, times = _sees_each(probe, lambda: writer.call("revoke"), 200)
        checks.append(
            Check(
                "(1b) a commit by another PROCESS is seen by the very next look",
                seen == times,
                f"{seen}/{times} revocations committed by the writer process (answered after COMMIT) seen exactly",
            )
        )
        first = probe.data_version()
        versions = set()
        for index in range(2000):
            probe.db.execute(GET_SESSION, (handles[index % len(handles)],)).fetchall()
            probe.db.execute(NEW_ROWS, (probe.last_seq - 5,)).fetchall()
            probe.db.execute(MAX_SEQ).fetchall()
            versions.add(probe.data_version())
        checks.append(
            Check(
                "(1c) data_version does not change after the probe's own reads",
                versions == {first},
                f"2000 x (session read, log read, max(seq), data_version): values seen {sorted(versions)}",
            )
        )
        checks.append(check_checkpoint(path, probe, writer))
        checks.append(check_pinned_snapshot(probe, writer))
        try:
            probe.db.execute(INSERT_REVOCATION, ("h-probe", 0.0))
            checks.append(Check("(5) the probe connection cannot write", False, "an INSERT succeeded"))
        except sqlite3.OperationalError as exc:
            timeout = probe.db.execute("PRAGMA busy_timeout").fetchone()[0]
            checks.append(
                Check("(5) the probe connection cannot write", True, f"INSERT refused: {exc}; busy_timeout = {timeout}")
            )
    finally:
        probe.db.close()
    return checks


def check_checkpoint(path: Path, probe: Probe, writer: Writer) -> Check:
    """Commit, checkpoint(TRUNCATE), commit, and commit + checkpoint + commit between two looks, 30 times."""
    wal = Path(f"{path}-wal")
    good = truncated = changed_by_checkpoint_alone = 0
    cycles = 30
    probe.sync()
    for _ in range(cycles):
        seq = writer.call("revoke")
        ok = [row[0] for row in probe.look()] == [seq]
        busy, _, _ = writer.call("sql", "PRAGMA wal_checkpoint(TRUNCATE)")[0]
        truncated += int(busy == 0 and wal.stat().st_size == 0)
        before = probe.version
        extra = probe.look()  # a checkpoint alone changes no row: any change of data_version here is harmless
        changed_by_checkpoint_alone += int(probe.version != before)
        ok = ok and not extra
        seq = writer.call("revoke")
        ok = ok and [row[0] for row in probe.look()] == [seq]
        first = writer.call("revoke")
        writer.call("sql", "PRAGMA wal_checkpoint(TRUNCATE)")
        second = writer.call("revoke")
        ok = ok and [row[0] for row in probe.look()] == [first, second]
        good += int(ok)
    return Check(
        "(2) after wal_checkpoint(TRUNCATE) by the writer process the probe still sees every new commit",
        good == cycles and truncated == cycles,
        f"{good}/{cycles} cycles of (revoke, look, TRUNCATE, look, revoke, look, revoke + TRUNCATE + revoke, look) "
        f"exact; the WAL was truncated to 0 bytes (busy=0) in {truncated}/{cycles}; data_version changed after a "
        f"checkpoint alone in {changed_by_checkpoint_alone}/{cycles} (a spare look, harmless)",
    )


def check_pinned_snapshot(probe: Probe, writer: Writer) -> Check:
    probe.sync()
    cursor = probe.db.execute("SELECT seq FROM revocations")
    cursor.fetchone()  # left unfinished: its read transaction stays open
    before = probe.data_version()
    seq = writer.call("revoke")
    pinned = probe.data_version() == before and probe.db.execute(NEW_ROWS, (probe.last_seq,)).fetchall() == []
    cursor.close()
    released = [row[0] for row in probe.look()] == [seq]
    return Check(
        "(4) pitfall: a statement left unfinished on the probe pins its snapshot until it is closed",
        pinned and released,
        f"with one row of a multi-row SELECT read: data_version unchanged and the new row invisible = {pinned}; "
        f"after cursor.close() the next look saw it = {released}. The probe must read every statement to its end.",
    )


def check_opened_before_wal(folder: Path, writer: Writer) -> list[Check]:
    checks = []
    # (3a) a rollback-journal file; the probe opens it and reads; another process then switches it to WAL and commits.
    path = folder / "rollback-first.db"
    setup = open_writer(path, wal=False)
    create_schema(setup)
    setup.close()
    probe = Probe(open_probe(path))
    mode_before = probe.db.execute("PRAGMA journal_mode").fetchone()[0]
    writer.call("open", str(path))  # sets journal_mode = WAL
    seen, times = _sees_each(probe, lambda: writer.call("revoke"), 50)
    mode_after = probe.db.execute("PRAGMA journal_mode").fetchone()[0]
    probe.db.close()
    checks.append(
        Check(
            "(3a) probe opened on a rollback-journal file, then another process switched it to WAL and committed",
            seen == times and mode_after == "wal",
            f"journal_mode {mode_before} -> {mode_after} as the probe sees it; {seen}/{times} revocations seen exactly",
        )
    )
    # (3b) a WAL file whose last connection closed (-wal and -shm removed); the probe opens it before any writer.
    path = folder / "wal-closed.db"
    setup = open_writer(path)
    create_schema(setup)
    setup.close()
    leftovers = sorted(p.name for p in folder.iterdir() if p.name.startswith("wal-closed.db-"))
    probe = Probe(open_probe(path))
    after_probe = sorted(p.name for p in folder.iterdir() if p.name.startswith("wal-closed.db-"))
    writer.call("open", str(path))
    seen, times = _sees_each(probe, lambda: writer.call("revoke"), 50)
    probe.db.close()
    checks.append(
        Check(
            "(3b) probe opened on a WAL file with no -wal/-shm (last connection closed), before any writer",
            seen == times and not leftovers,
            f"side files before the probe opened: {leftovers or 'none'}, after its first read: {after_probe or 'none'}"
            f" (a read-only connection creates them when the folder is writable); {seen}/{times} revocations seen",
        )
    )
    return checks


# -- the timed cases ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    label: str
    run: Callable[[], Awaitable[float]]  # one repeat: µs per call
    samples: list[float] = field(default_factory=list)


@dataclass
class Loaded:
    """(g): per-call latencies while the writer process commits, summarized per repeat."""

    key: str
    label: str
    medians: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p999: list[float] = field(default_factory=list)
    maxima: list[float] = field(default_factory=list)
    calls: int = 0
    over_100us: int = 0
    over_1ms: int = 0
    busy: int = 0
    changed: int = 0


def _percentile(ordered: list[int], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000


def timed_loop(call: Callable[[], Any], seconds: float, result: Loaded) -> None:
    """Call in a tight loop for `seconds`, timing each call; fold the repeat's numbers into `result`."""
    times: list[int] = []
    busy = changed = 0
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while True:
        start = clock()
        try:
            if call():
                changed += 1
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            busy += 1
        stop = clock()
        times.append(stop - start)
        if stop >= end:
            break
    times.sort()
    result.medians.append(_percentile(times, 0.5))
    result.p99.append(_percentile(times, 0.99))
    result.p999.append(_percentile(times, 0.999))
    result.maxima.append(times[-1] / 1000)
    result.calls += len(times)
    result.over_100us += sum(1 for value in times if value > 100_000)
    result.over_1ms += sum(1 for value in times if value > 1_000_000)
    result.busy += busy
    result.changed += changed


def build_cases(
    probe: Probe, local: sqlite3.Connection, adb: aiosqlite.Connection, handles: list[str], calls: int, slow: int
) -> list[Case]:
    db = probe.db
    position = 0

    def next_handles(count: int) -> list[str]:
        nonlocal position
        start = position % len(handles)
        position += count
        return [handles[(start + index) % len(handles)] for index in range(count)]

    async def data_version_quiet() -> float:
        execute = db.execute
        start = time.perf_counter_ns()
        for _ in range(calls):
            execute(DATA_VERSION).fetchone()
        return (time.perf_counter_ns() - start) / 1000 / calls

    async def look_quiet() -> float:
        probe.sync()
        look = probe.look
        start = time.perf_counter_ns()
        for _ in range(calls):
            look()
        return (time.perf_counter_ns() - start) / 1000 / calls

    def after_commit(step: Callable[[], Any], saw: Callable[[Any, int], bool]) -> Callable[[], Awaitable[float]]:
        """Another connection commits one revocation (not timed), then `step` is timed; `saw` checks it noticed."""

        async def run() -> float:
            probe.sync()
            clock = time.perf_counter_ns
            total = misses = 0
            for _ in range(slow):
                before = probe.version
                insert_revocation(local, "h-bench")
                start = clock()
                value = step()
                total += clock() - start
                misses += int(not saw(value, before))
            if misses:
                raise SystemExit(f"a probe missed a commit {misses} times out of {slow}")
            return total / 1000 / slow

        return run

    def select_new(behind: int) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            last = probe.max_seq() - behind
            execute = db.execute
            start = time.perf_counter_ns()
            for _ in range(calls):
                rows = execute(NEW_ROWS, (last,)).fetchall()
            elapsed = time.perf_counter_ns() - start
            assert len(rows) == behind
            return elapsed / 1000 / calls

        return run

    async def max_quiet() -> float:
        execute = db.execute
        start = time.perf_counter_ns()
        for _ in range(calls):
            execute(MAX_SEQ).fetchone()
        return (time.perf_counter_ns() - start) / 1000 / calls

    async def look_max_quiet() -> float:
        probe.sync()
        look = probe.look_max
        start = time.perf_counter_ns()
        for _ in range(calls):
            look()
        return (time.perf_counter_ns() - start) / 1000 / calls

    async def get_sync() -> float:
        keys = next_handles(calls)
        execute = db.execute
        start = time.perf_counter_ns()
        for handle in keys:
            execute(GET_SESSION, (handle,)).fetchall()
        return (time.perf_counter_ns() - start) / 1000 / calls

    async def get_aiosqlite() -> float:
        keys = next_handles(slow)
        fetch = adb.execute_fetchall
        start = time.perf_counter_ns()
        for handle in keys:
            await fetch(GET_SESSION, (handle,))
        return (time.perf_counter_ns() - start) / 1000 / slow

    async def data_version_aiosqlite() -> float:
        fetch = adb.execute_fetchall
        start = time.perf_counter_ns()
        for _ in range(slow):
            await fetch(DATA_VERSION)
        return (time.perf_counter_ns() - start) / 1000 / slow

    def version_changed(value: int, before: int) -> bool:
        probe.version = value
        return value != before

    def one_row(rows: Any, before: int) -> bool:
        return len(rows) == 1

    return [
        Case("a", "(a) PRAGMA data_version, sync ro, nothing changed", data_version_quiet),
        Case("a'", "(a') probe.look(): data_version + compare, nothing changed", look_quiet),
        Case(
            "b",
            "(b) PRAGMA data_version after another conn's commit",
            after_commit(probe.data_version, version_changed),
        ),
        Case(
            "b+c", "(b+c) probe.look() after a commit: data_version + SELECT (1 row)", after_commit(probe.look, one_row)
        ),
        Case("c0", "(c) SELECT seq, handle ... WHERE seq > ?: 0 rows", select_new(0)),
        Case("c1", "(c) SELECT seq, handle ... WHERE seq > ?: 1 row", select_new(1)),
        Case(
            "c+",
            "(c+) probe.new_rows() after a commit: that SELECT alone (1 row)",
            after_commit(probe.new_rows, one_row),
        ),
        Case("d", "(d) SELECT max(seq) FROM revocations, nothing changed", max_quiet),
        Case("d'", "(d') probe.look_max(): max(seq) + compare, nothing changed", look_max_quiet),
        Case(
            "d+c", "(d+c) probe.look_max() after a commit: max + SELECT (1 row)", after_commit(probe.look_max, one_row)
        ),
        Case("e", "(e) PK SELECT of sessions, sync ro connection", get_sync),
        Case("f", "(f) PK SELECT of sessions through aiosqlite", get_aiosqlite),
        Case("f'", "(f') PRAGMA data_version through aiosqlite", data_version_aiosqlite),
    ]


def measure_loaded(probe: Probe, writer: Writer, args: argparse.Namespace, loaded: list[Loaded], repeat: int) -> Any:
    """(g) once: the idle control, then the writer process commits while the loaded cases run in turn.

    Returns the writer's stats and, per probe that reads the log, every seq it returned (each probe keeps its own
    view; they share the read-only connection).
    """
    versions = {probe.data_version()}
    by_version, by_rows = Probe(probe.db), Probe(probe.db)
    seen: dict[str, list[int]] = {"g'": [], "g''": []}

    def data_version() -> bool:
        value = probe.data_version()
        if value in versions:
            return False
        versions.add(value)
        return True

    def look() -> bool:
        rows = by_version.look()
        seen["g'"].extend(row[0] for row in rows)
        return bool(rows)

    def new_rows() -> bool:
        rows = by_rows.new_rows()
        seen["g''"].extend(row[0] for row in rows)
        return bool(rows)

    control, *under_load = loaded
    timed_loop(data_version, args.load_seconds, control)  # the writer is idle
    steps = list(zip(under_load, [data_version, look, new_rows], strict=True))
    shift = repeat % len(steps)
    writer.start_load(args.rate, args.truncate_every)
    try:
        for result, call in steps[shift:] + steps[:shift]:
            timed_loop(call, args.load_seconds, result)
    finally:
        stats = writer.stop_load()
    look()  # the last commits, after the writer stopped
    new_rows()
    return stats, seen


async def measure(
    cases: list[Case], probe: Probe, writer: Writer, args: argparse.Namespace
) -> tuple[list[Loaded], list[dict[str, Any]], dict[str, dict[str, int]]]:
    loaded = [
        Loaded("g0", "(g0) PRAGMA data_version, writer process idle (control)"),
        Loaded("g", "(g) PRAGMA data_version, writer process committing"),
        Loaded("g'", "(g') probe.look() [data_version], writer committing"),
        Loaded("g''", "(g'') probe.new_rows() [SELECT alone], writer committing"),
    ]
    writer_stats: list[dict[str, Any]] = []
    exactness = {key: {"revoked": 0, "seen": 0, "missed": 0, "extra": 0, "duplicates": 0} for key in ("g'", "g''")}
    for case in cases:  # an untimed pass: statement caches, page cache
        await case.run()
    for repeat in range(args.repeats):
        shift = repeat % len(cases)
        for case in cases[shift:] + cases[:shift]:
            gc.collect()
            case.samples.append(await case.run())
        gc.collect()
        stats, seen = measure_loaded(probe, writer, args, loaded, repeat)
        revoked = set(stats.pop("revoked"))
        for key, seqs in seen.items():
            unique, counts = set(seqs), exactness[key]
            counts["revoked"] += len(revoked)
            counts["seen"] += len(revoked & unique)
            counts["missed"] += len(revoked - unique)
            counts["extra"] += len(unique - revoked)
            counts["duplicates"] += len(seqs) - len(unique)
        writer_stats.append(stats)
    return loaded, writer_stats, exactness


# -- report ---------------------------------------------------------------------------------------------------------


def report(
    checks: list[Check],
    cases: list[Case],
    loaded: list[Loaded],
    writer_stats: list[dict[str, Any]],
    exactness: dict[str, dict[str, int]],
    settings: dict[str, Any],
    elapsed: float,
) -> dict[str, Any]:
    print(
        f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, aiosqlite {version('aiosqlite')}; "
        f"{os.cpu_count()} cpus, {platform.machine()}, {platform.system()} {platform.release()}"
    )
    print(f"{elapsed:.0f} s in all; settings: {settings}\n")
    print("semantic checks")
    for check in checks:
        print(f"  [{'ok' if check.passed else 'FAIL'}] {check.name}\n         {check.detail}")

    med = statistics.median
    print(f"\nµs per call: median of {settings['repeats']} interleaved repeats, min, max")
    print(f"{'case':<76}{'median':>9}{'min':>9}{'max':>9}")
    for case in cases:
        print(f"{case.label:<76}{med(case.samples):>9.2f}{min(case.samples):>9.2f}{max(case.samples):>9.2f}")
    for result in loaded:
        values = result.medians
        print(f"{result.label + ' (median call)':<76}{med(values):>9.2f}{min(values):>9.2f}{max(values):>9.2f}")

    commits = sum(stats["commits"] for stats in writer_stats)
    seconds = sum(stats["seconds"] for stats in writer_stats)
    print(
        f"\n(g) under load: the writer process made {commits} commits in {seconds:.1f} s ({commits / seconds:.0f}/s), "
        f"{sum(s['checkpoints'] for s in writer_stats)} TRUNCATE checkpoints "
        f"({sum(s['checkpoint_busy'] for s in writer_stats)} not completed), "
        f"{sum(s['busy'] for s in writer_stats)} SQLITE_BUSY on its side"
    )
    print(
        f"{'case':<60}{'calls':>10}{'median':>8}{'p99':>8}{'p99.9':>8}{'max':>9}{'>0.1ms':>8}{'>1ms':>6}{'BUSY':>6}{'changed':>9}"
    )
    for result in loaded:
        print(
            f"{result.label:<60}{result.calls:>10}{med(result.medians):>8.2f}{med(result.p99):>8.2f}"
            f"{med(result.p999):>8.2f}{max(result.maxima):>9.1f}{result.over_100us:>8}{result.over_1ms:>6}{result.busy:>6}{result.changed:>9}"
        )
    print("  (median, p99, p99.9: medians over the repeats of each repeat's value; max and the counts: over all calls)")
    for result in loaded:
        print(f"  {result.key} p99 per repeat: {', '.join(f'{value:.2f}' for value in result.p99)}")
    for key, counts in exactness.items():
        print(
            f"  exactness under load, ({key}): {counts['seen']}/{counts['revoked']} revocations the writer committed "
            f"seen, {counts['missed']} missed, {counts['extra']} unknown, {counts['duplicates']} seen twice"
        )

    ratios = {
        "f / a": med(by_key(cases, "f").samples) / med(by_key(cases, "a").samples),
        "f / a'": med(by_key(cases, "f").samples) / med(by_key(cases, "a'").samples),
        "f / (b+c)": med(by_key(cases, "f").samples) / med(by_key(cases, "b+c").samples),
        "f / e": med(by_key(cases, "f").samples) / med(by_key(cases, "e").samples),
        "d' / a'": med(by_key(cases, "d'").samples) / med(by_key(cases, "a'").samples),
        "(d+c) / (b+c)": med(by_key(cases, "d+c").samples) / med(by_key(cases, "b+c").samples),
        "c0 / a'": med(by_key(cases, "c0").samples) / med(by_key(cases, "a'").samples),
        "f / c0": med(by_key(cases, "f").samples) / med(by_key(cases, "c0").samples),
        "f / (c+)": med(by_key(cases, "f").samples) / med(by_key(cases, "c+").samples),
    }
    print("\nratios of medians: " + "; ".join(f"{name} = {value:.1f}" for name, value in ratios.items()))
    return {
        "settings": settings,
        "checks": [check.__dict__ for check in checks],
        "us_per_call": {case.key: case.samples for case in cases},
        "under_load": {result.key: result.__dict__ for result in loaded},
        "writer": writer_stats,
        "exactness": exactness,
        "ratios": ratios,
    }


def by_key(cases: list[Case], key: str) -> Case:
    return next(case for case in cases if case.key == key)


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    writer = Writer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path = folder / "sessions.db"
            local = open_writer(path)
            create_schema(local)
            now = time.time()
            handles = [secrets.token_urlsafe(24) for _ in range(args.sessions)]
            local.execute("BEGIN")
            local.executemany(INSERT_SESSION, (session_row(handle, now) for handle in handles))
            local.executemany(INSERT_REVOCATION, ((f"old-{i}", now) for i in range(INITIAL_REVOCATIONS)))
            local.execute("COMMIT")
            local.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            writer.call("open", str(path))

            checks = check_data_version(path, local, writer, handles)
            checks[4:4] = check_opened_before_wal(folder, writer)
            writer.call("open", str(path))

            probe = Probe(open_probe(path))
            adb = await aiosqlite.connect(path, isolation_level=None, timeout=5.0)
            try:
                cases = build_cases(probe, local, adb, handles, args.calls, args.slow_calls)
                loaded, writer_stats, exactness = await measure(cases, probe, writer, args)
            finally:
                await adb.close()
                probe.db.close()
                local.close()
    finally:
        writer.close()
    settings = {
        "repeats": args.repeats,
        "sessions": args.sessions,
        "calls": args.calls,
        "slow_calls": args.slow_calls,
        "load_seconds": args.load_seconds,
        "rate": args.rate,
        "truncate_every": args.truncate_every,
    }
    document = report(checks, cases, loaded, writer_stats, exactness, settings, time.perf_counter() - started)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
        print(f"\nwrote {args.json}")
    inexact = any(counts["missed"] or counts["duplicates"] for counts in exactness.values())
    if inexact or not all(check.passed for check in checks):
        raise SystemExit("a semantic check failed (see above)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (7)")
    parser.add_argument("--sessions", type=int, default=10_000, help="rows in the sessions table (10000)")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per repeat, cheap cases (20000)")
    parser.add_argument("--slow-calls", type=int, default=2000, help="calls per repeat, commit/aiosqlite cases (2000)")
    parser.add_argument("--load-seconds", type=float, default=1.5, help="(g): seconds per case per repeat (1.5)")
    parser.add_argument("--rate", type=float, default=300.0, help="(g): the writer's commits per second (300)")
    parser.add_argument("--truncate-every", type=int, default=300, help="(g): TRUNCATE checkpoint every N commits")
    parser.add_argument("--json", metavar="PATH", help="also write every sample to this JSON file")
    arguments = parser.parse_args()
    if min(arguments.repeats, arguments.sessions, arguments.calls, arguments.slow_calls) < 1 or arguments.rate <= 0:
        parser.error("counts and the rate must be >= 1")
    asyncio.run(main(arguments))
