"""The SQLite revocation log: the schema step from version 1, the one-statement revoke, the synchronous probe."""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from asgi_session import SessionConfig, SessionManager, UnauthorisedError
from asgi_session.stores import SQLiteStore
from asgi_session.stores._sqlite_revocations import SyncProbe
from asgi_session.stores._sqlite_sql import MIGRATIONS
from asgi_session.testing import FakeClock

pytestmark = pytest.mark.anyio


def _version_1_file(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO sessions (handle, user_id, tenant_id, refresh_hash, session_data, access_token_payload, "
            "created_at, last_seen, expires_at) VALUES ('h1', 'alice', 'public', 'x', '{}', '{}', 1, 1, 9e9)"
        )
    conn.close()


async def test_a_version_1_file_gains_the_log_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1_file(path)
    async with SQLiteStore(path) as store:
        old = await store.get("h1")
        assert old is not None
        assert (old.remember, old.idle_timeout) == (True, None)  # version 4's columns, with their defaults
        assert await store.revocations_since(0) == []
        assert await store.delete(["h1"]) == ["h1"]
        assert [handle for _, handle in await store.revocations_since(0)] == ["h1"]


async def test_the_probe_sees_a_revocation_committed_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        assert store.probe_revocations(0) == []
        script = (
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            'c.execute("INSERT INTO sessions (handle, user_id, tenant_id, refresh_hash, session_data, '
            "access_token_payload, created_at, last_seen, expires_at) VALUES ('h9', 'u', 'public', 'x', '{}', "
            "'{}', 1, 1, 9e9)\")\n"
            'c.execute("INSERT INTO revocations (handle, created_at) SELECT handle, created_at FROM sessions")\n'
        )
        await anyio.run_process([sys.executable, "-c", script, str(path)], check=True)
        entries = store.probe_revocations(0)
        assert entries is not None
        assert [handle for _, handle in entries] == ["h9"]
        assert await store.get("h9") is None  # the trigger ended the session with its log entry
        assert store.probe_revocations(entries[-1][0]) == []


async def test_a_private_database_has_no_probe(tmp_path: Path) -> None:
    async with SQLiteStore(":memory:") as store:
        assert store.probe_revocations(0) is None  # verification then reads the store
    store = SQLiteStore(tmp_path / "closed.db")
    assert store.probe_revocations(0) is None  # not open


async def test_a_revoke_in_one_manager_is_refused_by_another_without_awaiting(tmp_path: Path) -> None:
    """Two managers on one file (as two processes would be): the other's very next verification refuses it."""
    config = SessionConfig(access_token_blacklisting=True)
    path = tmp_path / "shared.db"
    clock = FakeClock()
    async with (
        SessionManager(SQLiteStore(path), config, clock=clock) as first,
        SessionManager(SQLiteStore(path), config, clock=clock) as second,
    ):
        session = await first.create_new_session_without_request_response("alice")
        assert second.verify_now(session.access_token) is not None  # no store read: the probe said "not revoked"
        assert await first.revoke_all_sessions_for_user("alice") == [session.handle]
        with pytest.raises(UnauthorisedError):
            second.verify_now(session.access_token)
        with pytest.raises(UnauthorisedError):
            await second.get_session_without_request_response(session.access_token)


async def test_a_manager_opened_later_loads_recent_revocations(tmp_path: Path) -> None:
    config = SessionConfig(access_token_blacklisting=True)
    path = tmp_path / "shared.db"
    clock = FakeClock()
    async with SessionManager(SQLiteStore(path), config, clock=clock) as first:
        session = await first.create_new_session_without_request_response("alice")
        await first.revoke_session(session.handle)
    async with SessionManager(SQLiteStore(path), config, clock=clock) as later:
        assert session.handle in later._revoked
        with pytest.raises(UnauthorisedError):
            later.verify_now(session.access_token)


async def test_cleanup_trims_log_entries_older_than_an_access_token_lifetime(tmp_path: Path) -> None:
    clock = FakeClock()
    async with SessionManager(SQLiteStore(tmp_path / "s.db"), clock=clock) as manager:
        old = await manager.create_new_session_without_request_response("alice")
        await manager.revoke_session(old.handle)
        await manager.delete_expired_sessions()  # the view notes when it first saw the entry
        clock.advance(3600 + 61)  # past the access-token lifetime and the clock-skew margin
        recent = await manager.create_new_session_without_request_response("alice")
        await manager.revoke_session(recent.handle)
        await manager.delete_expired_sessions()
        store = manager.store
        assert isinstance(store, SQLiteStore)
        assert [handle for _, handle in await store.revocations_since(0)] == [recent.handle]
        assert old.handle not in manager._revoked  # aged out of the view too
        assert recent.handle in manager._revoked


# --- the probe's shared-memory shortcut ------------------------------------------------------------------


def _log_file(path: Path, journal_mode: str) -> sqlite3.Connection:
    """A file with the store's log table, in ``journal_mode``; the connection (autocommit) writes to it."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute(f"PRAGMA journal_mode = {journal_mode}")
    writer.execute(MIGRATIONS[1][0])  # CREATE TABLE revocations (the trigger needs sessions: not used here)
    return writer


def _statements(probe: SyncProbe) -> list[str]:
    """Record every statement the probe's connection runs from now on."""
    ran: list[str] = []
    probe._connection.set_trace_callback(ran.append)
    return ran


def test_the_probe_answers_nothing_new_without_a_statement_and_reads_after_any_commit(tmp_path: Path) -> None:
    writer = _log_file(tmp_path / "s.db", "wal")
    probe = SyncProbe(str(tmp_path / "s.db"))
    try:
        assert probe.since(0) == []
        assert probe.since(0) == []  # the second read maps the header (after the first read opened -shm)
        ran = _statements(probe)
        for _ in range(100):
            assert probe.since(0) == []
        assert ran == []  # nothing committed: no statement at all
        writer.execute("INSERT INTO revocations (handle, created_at) VALUES ('h1', 1)")
        assert probe.since(0) == [(1, "h1")]  # the very next look reads it
        assert len(ran) == 1
        assert probe.since(1) == []
        assert probe.since(0) == [(1, "h1")]  # a caller further behind is answered by a read, not the shortcut
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL restarts: new salt, frame count from zero
        writer.execute("INSERT INTO revocations (handle, created_at) VALUES ('h2', 1)")
        assert probe.since(1) == [(2, "h2")]
    finally:
        probe.close()
        writer.close()


def test_the_probe_sees_every_commit_through_random_commits_and_checkpoints(tmp_path: Path) -> None:
    """A mixed run of commits, checkpoints and looks: each look returns exactly what committed since the last."""
    writer = _log_file(tmp_path / "s.db", "wal")
    probe = SyncProbe(str(tmp_path / "s.db"))
    chooser = random.Random(20261202)  # noqa: S311 - a repeatable test schedule, not a secret
    committed: list[tuple[int, str]] = []
    position = 0
    try:
        for step in range(2000):
            action = chooser.random()
            if action < 0.3:
                handle = f"h{step}"
                (seq,) = writer.execute(
                    "INSERT INTO revocations (handle, created_at) VALUES (?, 1) RETURNING seq", (handle,)
                ).fetchone()
                committed.append((seq, handle))
            elif action < 0.35:
                writer.execute(f"PRAGMA wal_checkpoint({chooser.choice(['PASSIVE', 'RESTART', 'TRUNCATE'])})")
            else:
                entries = probe.since(position)
                assert entries == [entry for entry in committed if entry[0] > position], step
                position = entries[-1][0] if entries else position
    finally:
        probe.close()
        writer.close()


def test_a_file_not_in_wal_mode_is_read_by_a_statement_every_time(tmp_path: Path) -> None:
    writer = _log_file(tmp_path / "s.db", "delete")
    probe = SyncProbe(str(tmp_path / "s.db"))
    try:
        assert probe.since(0) == []
        ran = _statements(probe)
        assert probe.since(0) == []
        assert probe.since(0) == []
        assert len(ran) == 2  # no shared memory to look at: the SELECT answers
        writer.execute("INSERT INTO revocations (handle, created_at) VALUES ('h1', 1)")
        assert probe.since(0) == [(1, "h1")]
    finally:
        probe.close()
        writer.close()
