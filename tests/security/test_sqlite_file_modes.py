"""The SQLite files hold the signing keys: created owner-only (0600), and a shared existing file is warned about."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_session import SessionManager
from asgi_session.stores import SQLiteStore
from asgi_session.testing import FakeClock

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.name != "posix", reason="POSIX file modes"),
]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file created with default permissions is 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def entries(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir()]


def modes(directory: Path, name: str) -> dict[str, int]:
    """The modes of the database and of the companions SQLite made beside it."""
    found = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = directory / (name + suffix)
        if path.exists():
            found[name + suffix] = mode(path)
    return found


async def test_a_new_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path, umask_022: None) -> None:
    async with SessionManager(SQLiteStore(tmp_path / "sessions.db"), clock=FakeClock()) as manager:
        await manager.create_new_session_without_request_response("alice")
        seen = modes(tmp_path, "sessions.db")
    assert seen == {"sessions.db": 0o600, "sessions.db-wal": 0o600, "sessions.db-shm": 0o600}


async def test_the_default_database_is_owner_only(
    tmp_path: Path, umask_022: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASGI_SESSION_STORE_URL", raising=False)
    async with SessionManager(clock=FakeClock()) as manager:
        await manager.create_new_session_without_request_response("alice")
        seen = modes(tmp_path, "asgi_session.db")
    assert seen == {"asgi_session.db": 0o600, "asgi_session.db-wal": 0o600, "asgi_session.db-shm": 0o600}


async def test_a_second_store_on_the_file_keeps_every_file_owner_only(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "sessions.db"
    async with SQLiteStore(path) as first, SessionManager(SQLiteStore(path), clock=FakeClock()) as manager:
        await manager.create_new_session_without_request_response("alice")
        assert await first.get_keys()
        seen = modes(tmp_path, "sessions.db")
    assert set(seen.values()) == {0o600}


async def test_sqlite_gives_a_rollback_journal_the_database_files_mode(tmp_path: Path, umask_022: None) -> None:
    # What the store relies on for the files SQLite creates later: they copy the database file's mode.
    path = tmp_path / "sessions.db"
    async with SQLiteStore(path):
        pass
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM sessions")
        journal = mode(tmp_path / "sessions.db-journal")
        db.execute("ROLLBACK")
    finally:
        db.close()
    assert journal == 0o600


@pytest.mark.parametrize("shared", [0o644, 0o660, 0o606], ids=oct)
async def test_an_existing_shared_file_is_warned_about_once_and_left_alone(
    tmp_path: Path, shared: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sessions.db"
    sqlite3.connect(path).close()
    path.chmod(shared)
    with caplog.at_level(logging.WARNING, logger="asgi_session"):
        async with SQLiteStore(path):
            pass
        async with SQLiteStore(path):  # a second open in this process: no second warning
            pass
    warnings = [r for r in caplog.records if r.name == "asgi_session" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(path) in message
    assert f"chmod 600 {path}" in message
    assert mode(path) == shared  # never changed behind the operator's back


async def test_an_owner_only_file_is_not_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sessions.db"
    async with SQLiteStore(path):
        pass
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="asgi_session"):
        async with SessionManager(SQLiteStore(path), clock=FakeClock()) as manager:
            await manager.create_new_session_without_request_response("alice")
    assert not [r for r in caplog.records if r.name == "asgi_session" and r.levelno >= logging.WARNING]


async def test_a_file_reached_through_a_symlink_is_created_owner_only(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "data" / "sessions.db"
    target.parent.mkdir()
    link = tmp_path / "link.db"
    link.symlink_to(target)
    async with SessionManager(SQLiteStore(link), clock=FakeClock()) as manager:
        await manager.create_new_session_without_request_response("alice")
        seen = modes(target.parent, "sessions.db")
    assert seen == {"sessions.db": 0o600, "sessions.db-wal": 0o600, "sessions.db-shm": 0o600}


async def test_a_memory_database_touches_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with SQLiteStore(":memory:"):
        pass
    assert not entries(tmp_path)
