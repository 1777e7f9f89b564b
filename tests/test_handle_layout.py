"""Session handles lead with a keyed hash of the user id, so one user's sessions sit together in handle indexes.

Revoking all of a user's sessions at 10^6 stored sessions cost 1.5x what it did at 10^3 on SQLite (P6), because each
session's entry in the ``sessions_handle`` index lay on its own page. With the prefix, they share one or two.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from pathlib import Path

import pytest

from asgi_session import SessionManager
from asgi_session._refresh_token import handle_prefix, new_handle
from asgi_session.stores import MemoryStore, SQLiteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


def _check_uuid4(handle: str) -> None:
    parsed = uuid.UUID(handle)
    assert str(parsed) == handle
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122


async def test_one_users_handles_share_their_first_32_bits_and_differ_after() -> None:
    async with SessionManager(store=MemoryStore()) as manager:
        alice = [await manager.create_new_session_without_request_response("alice") for _ in range(50)]
        bob = [await manager.create_new_session_without_request_response("bob", "tenant-b") for _ in range(5)]
        expected = handle_prefix(manager.keys.refresh_mac_key, "alice").hex()
    assert {session.handle[:8] for session in alice} == {expected}
    assert {session.handle[:8] for session in bob} != {expected}
    assert len({session.handle for session in alice}) == 50
    for session in alice + bob:
        _check_uuid4(session.handle)
    # The part after the prefix is random: 50 handles of one user differ in every later group.
    for group in range(1, 5):
        assert len({session.handle.split("-")[group] for session in alice}) > 40


def test_the_prefix_is_keyed_and_depends_on_the_whole_user_id() -> None:
    key = bytes(range(32))
    other_key = bytes(range(1, 33))
    assert handle_prefix(key, "alice") == handle_prefix(key, "alice")
    assert handle_prefix(key, "alice") != handle_prefix(other_key, "alice")
    assert len({handle_prefix(key, f"user-{i}") for i in range(1000)}) == 1000
    assert handle_prefix(key, "alice") != handle_prefix(key, "alice ")
    assert len(handle_prefix(b"k" * 100, "alice")) == 4  # a longer key is hashed first, not refused


def test_new_handle_with_a_prefix() -> None:
    handle = new_handle(b"\xab\xcd\xef\x01")
    assert handle.startswith("abcdef01-")
    _check_uuid4(handle)
    assert new_handle(b"\xab\xcd\xef\x01") != handle
    with pytest.raises(ValueError, match="at most 4 bytes"):
        new_handle(b"12345")


async def test_sqlite_handle_index_keeps_each_users_sessions_together(tmp_path: Path) -> None:
    """Interleaved logins of 20 users: in handle order (the handle index), each user's sessions form one run."""
    path = tmp_path / "sessions.db"
    async with SessionManager(store=SQLiteStore(path)) as manager:
        for _ in range(5):
            for user in range(20):
                await manager.create_new_session_without_request_response(f"user-{user}")
    connection = sqlite3.connect(path)
    try:
        users = [row[0] for row in connection.execute("SELECT user_id FROM sessions INDEXED BY sessions_handle")]
    finally:
        connection.close()
    assert len(users) == 100
    runs = 1 + sum(1 for before, after in itertools.pairwise(users) if before != after)
    assert runs == 20  # random handles give about 95 runs here
