"""The SQLite schema: step 5 (sessions clustered by user), its upgrade of a version-4 file, and the query plans."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asgi_session.exceptions import StoreError
from asgi_session.stores import KeyRecord, Rotation, SessionRecord, SQLiteStore
from asgi_session.stores import _sqlite_revocations as revocation_log
from asgi_session.stores import _sqlite_sql as sql
from asgi_session.stores import sqlite as sqlite_module

pytestmark = pytest.mark.anyio

BIG = 64 * 1024 - 100  # session data near the 64 KiB limit: the row overflows the page by far


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


def record(handle: str, user: str, **overrides: Any) -> SessionRecord:
    """A live session of ``user`` (tenant ``public`` unless overridden)."""
    fields: dict[str, Any] = {
        "handle": handle,
        "user_id": user,
        "tenant_id": "public",
        "refresh_hash": f"hash-{handle}",
        "session_data": {"n": handle},
        "access_token_payload": {"plan": "pro"},
        "created_at": 1000.0 + len(handle),
        "last_seen": 1000.0,
        "expires_at": 9000.0,
    }
    fields.update(overrides)
    return SessionRecord(**fields)


@contextlib.contextmanager
def connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain autocommit connection to the file (another process, in effect)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


SESSIONS = [
    record("a1", "alice"),
    record("a2", "alice", tenant_id="acme", remember=False, idle_timeout=600.0),
    record("a3", "alice", session_data={"blob": "x" * BIG}, user_agent="ua", ip="10.0.0.1"),
    record("b1", "bob", previous_refresh_hash="old-b1", rotated_at=1500.0, absolute_expires_at=99000.0),
    record("c1", "carol", expires_at=100.0),  # expired
    record("c2", "carol", expires_at=200.0),  # expired
]
KEY = KeyRecord(kid="k1", algorithm="ES256", private_key="pem", created_at=1.0, signs_from=2.0, expires_at=None)


def version_4_file(path: Path) -> None:
    """A file made by the previous release's steps, holding sessions, a key, log entries and a lease."""
    with connection(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for step in sql.MIGRATIONS[:4]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        for session in [*SESSIONS, record("gone", "dave")]:
            conn.execute(sql.INSERT, sql.to_row(session))
        conn.execute(sql.ADD_KEY, [getattr(KEY, name) for name in sql.KEY_FIELDS])
        conn.execute(revocation_log.revoke_handles_sql(1), ["gone"])  # one log entry; its trigger deleted "gone"
        conn.execute(sql.ACQUIRE_LEASE, ("cleanup", "other-process", 5e9, 0.0)).fetchall()
        conn.execute("COMMIT")
    path.chmod(0o600)  # as the store makes it (a wider mode is warned about)


def schema(path: Path) -> dict[str, str]:
    """Name -> SQL of every table, index and trigger the file holds (autoindexes have no SQL)."""
    with connection(path) as conn:
        return {name: text or "" for name, text in conn.execute("SELECT name, sql FROM sqlite_master")}


async def test_a_new_file_has_the_sessions_clustered_by_user(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path):
        pass
    found = schema(path)
    assert "WITHOUT ROWID" in found["sessions"]
    assert "PRIMARY KEY (user_id, handle)" in found["sessions"]
    assert "UNIQUE INDEX sessions_handle" in found["sessions_handle"]
    assert "sessions_expires_at" in found
    assert not {"sessions_user_tenant", "sessions_tenant", "sessions_by_user"} & found.keys()
    assert "revocations_end_session" in found
    with connection(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (5,)


async def test_a_version_4_file_is_upgraded_with_every_row(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    version_4_file(path)
    async with SQLiteStore(path) as store:
        for session in SESSIONS:
            assert await store.get(session.handle) == session
        assert await store.get("gone") is None
        assert await store.get_keys() == [KEY]
        assert [handle for _, handle in await store.revocations_since(0)] == ["gone"]
        assert not await store.acquire_lease("cleanup", "me", now=10.0, duration=60.0)  # the other holder's grant
        assert await store.acquire_lease("cleanup", "other-process", now=10.0, duration=60.0)
    assert "WITHOUT ROWID" in schema(path)["sessions"]
    with connection(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (5,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_an_upgraded_file_serves_every_operation(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    version_4_file(path)
    async with SQLiteStore(path) as store:
        turn = Rotation(
            handle="b1",
            expected_refresh_hash="hash-b1",
            new_refresh_hash="new-b1",
            rotated_at=2000.0,
            last_seen=2000.0,
            expires_at=9500.0,
        )
        assert await store.rotate(turn)
        assert not await store.rotate(turn)  # the compare-and-swap still compares
        assert await store.touch("a1", 2100.0)
        assert await store.update_session_data("a3", {"small": 1})
        assert [s.handle for s in await store.list_for_user("alice")] == ["a1", "a2", "a3"]
        assert [s.handle for s in await store.list_for_user("alice", "acme")] == ["a2"]
        assert await store.delete_expired(now=1000.0) == 2  # carol's two
        assert await store.delete(["b1", "missing"]) == ["b1"]
        assert await store.delete_for_user("alice", "public") == ["a1", "a3"]
        assert await store.delete_for_user("alice") == ["a2"]
        assert [handle for _, handle in await store.revocations_since(0)] == ["gone", "b1", "a1", "a3", "a2"]
        await store.create(record("a1", "alice"))  # a handle revoked before can be stored again
        assert await store.get("a1") == record("a1", "alice")
        with pytest.raises(StoreError, match="already exists"):
            await store.create(record("a1", "eve"))  # one handle, whoever the user
        await store.add_key(KeyRecord(kid="k2", algorithm="ES256", private_key="pem2", created_at=3.0, signs_from=4.0))
        assert [key.kid for key in await store.get_keys()] == ["k1", "k2"]


async def test_a_process_of_the_previous_version_still_open_keeps_working(tmp_path: Path) -> None:
    """Its statements, prepared against version 4, are prepared again by SQLite after the upgrade."""
    path = tmp_path / "v4.db"
    version_4_file(path)
    with connection(path) as old:
        assert old.execute(sql.GET, ["a1"]).fetchone() is not None  # prepared and cached before the upgrade
        async with SQLiteStore(path) as store:
            old.execute(sql.INSERT, sql.to_row(record("o1", "olga")))
            assert old.execute(sql.GET, ["o1"]).fetchone() is not None
            rows = old.execute(revocation_log.revoke_user_sql(False), ["alice"]).fetchall()
            assert sorted(row[0] for row in rows) == ["a1", "a2", "a3"]
            assert await store.list_for_user("alice") == []  # the trigger, made again, still deletes
            assert await store.get("o1") == record("o1", "olga")


async def test_a_process_of_the_previous_version_started_later_refuses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path):
        pass
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", sql.MIGRATIONS[:4])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", 4)
    with pytest.raises(StoreError, match="schema version 5, newer than this asgi-session supports"):
        await SQLiteStore(path).open()


async def test_a_failed_upgrade_leaves_the_version_4_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    version_4_file(path)
    before = schema(path)
    with connection(path) as conn:
        conn.execute("CREATE TABLE sessions_by_user (x)")  # in the way of the step's first statement
    with pytest.raises(StoreError, match="schema"):
        await SQLiteStore(path).open()
    assert schema(path) == before | {"sessions_by_user": "CREATE TABLE sessions_by_user (x)"}
    with connection(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (len(SESSIONS),)


@pytest.mark.parametrize("size", [900, 3000, 20_000, BIG])
async def test_large_session_data_overflows_and_every_operation_works(tmp_path: Path, size: int) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        sessions = [record(f"h{n}", "u", session_data={"blob": str(n) * size}) for n in range(3)]
        for session in sessions:
            await store.create(session)
        await store.create(record("small", "u"))
        assert await store.list_for_user("u") == sorted([*sessions, record("small", "u")], key=lambda s: s.created_at)
        turn = Rotation(
            handle="h1",
            expected_refresh_hash="hash-h1",
            new_refresh_hash="new",
            rotated_at=2000.0,
            last_seen=2000.0,
            expires_at=1.0,
        )
        assert await store.rotate(turn)
        assert await store.delete_expired(now=2.0) == 1
        assert await store.delete(["h0"]) == ["h0"]
        assert await store.get("h2") == sessions[2]
        assert await store.delete_for_user("u") == ["h2", "small"]


# --- query plans ------------------------------------------------------------------------------------------------


def _statements() -> list[tuple[str, str, Any]]:
    row = sql.to_row(record("h", "u"))
    return [
        ("insert", sql.INSERT, row),
        ("get", sql.GET, ["h"]),
        ("rotate", sql.ROTATE, ["n", "p", 1.0, 1.0, 2.0, "h", "p"]),
        ("rotate sliding", sql.ROTATE_SLIDING, {"new": "n", "old": "p", "now": 1.0, "idle": 9.0, "handle": "h"}),
        ("touch", "UPDATE sessions SET last_seen = ? WHERE handle = ?", [1.0, "h"]),
        ("update data", "UPDATE sessions SET session_data = ? WHERE handle = ?", ["{}", "h"]),
        ("update payload", "UPDATE sessions SET access_token_payload = ? WHERE handle = ?", ["{}", "h"]),
        ("revoke", revocation_log.revoke_handles_sql(1), ["h"]),
        ("revoke many", revocation_log.revoke_handles_sql(3), ["h", "i", "j"]),
        ("revoke all", revocation_log.revoke_user_sql(False), ["u"]),
        ("revoke all in a tenant", revocation_log.revoke_user_sql(True), ["u", "t"]),
        # EXPLAIN QUERY PLAN of an INSERT into the log does not show its trigger's statement: planned on its own.
        ("the trigger's delete", "DELETE FROM sessions WHERE handle = ?", ["h"]),
        ("list", sql.LIST_USER, ["u"]),
        ("list in a tenant", sql.LIST_USER_TENANT, ["u", "t"]),
        ("delete expired", "DELETE FROM sessions WHERE expires_at <= ?", [1.0]),
        ("log since", revocation_log.SINCE, [0, 10]),
        ("log trim", revocation_log.TRIM, [0]),
    ]


def _plan(conn: sqlite3.Connection, statement: str, params: Any) -> list[str]:
    return [str(line[3]) for line in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]


async def test_no_statement_scans_sessions_or_sorts_where_it_did_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        for n in range(50):  # some rows and ANALYZE-free defaults: the plans a fresh file gets
            await store.create(record(f"h{n}", f"u{n % 5}"))
    plans: dict[str, list[str]] = {}
    with connection(path) as conn:
        for name, statement, params in _statements():
            plans[name] = _plan(conn, statement, params)
    for name, lines in plans.items():
        for line in lines:
            assert not line.startswith("SCAN"), f"{name}: {line}"
        sorts = [line for line in lines if "TEMP B-TREE" in line]
        assert sorts == (["USE TEMP B-TREE FOR ORDER BY"] if name.startswith("list") else []), f"{name}: {lines}"
    by_handle = ("get", "rotate", "rotate sliding", "touch", "update data", "update payload", "revoke", "revoke many")
    for name in (*by_handle, "the trigger's delete"):
        assert "sessions_handle (handle=?)" in plans[name][0], f"{name}: {plans[name]}"
    for name in ("revoke all", "revoke all in a tenant", "list", "list in a tenant"):
        assert plans[name][0] == "SEARCH sessions USING PRIMARY KEY (user_id=?)", f"{name}: {plans[name]}"
    assert "sessions_expires_at (expires_at<?)" in plans["delete expired"][0]
    assert plans["insert"] == []
    for name in ("log since", "log trim"):
        assert plans[name][0].startswith("SEARCH revocations USING INTEGER PRIMARY KEY"), plans[name]
