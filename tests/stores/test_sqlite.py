"""SQLiteStore backend quirks (the shared conformance suite runs elsewhere) and store_from_url."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asgi_session.exceptions import ConfigurationError, StoreError
from asgi_session.stores import (
    KeyRecord,
    MemoryStore,
    Rotation,
    SessionRecord,
    SessionStore,
    SQLiteStore,
    store_from_url,
)
from tests.stores.conftest import race_rotations

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


def digest(label: str) -> str:
    """A value shaped like a stored refresh hash."""
    return hashlib.sha256(label.encode()).hexdigest()


def make_record(handle: str = "h1", **overrides: Any) -> SessionRecord:
    fields: dict[str, Any] = {
        "handle": handle,
        "user_id": "u1",
        "tenant_id": "public",
        "refresh_hash": digest(f"refresh-{handle}"),
        "session_data": {"role": "admin", "n": [1, 2.5, None]},
        "access_token_payload": {"plan": "pro"},
        "created_at": 1000.0,
        "last_seen": 1000.0,
        "expires_at": 2000.0,
        "absolute_expires_at": 5000.0,
        "user_agent": "pytest",
        "ip": "127.0.0.1",
    }
    fields.update(overrides)
    return SessionRecord(**fields)


def rotation(record: SessionRecord, new: str, expected: str | None = None) -> Rotation:
    return Rotation(
        handle=record.handle,
        expected_refresh_hash=record.refresh_hash if expected is None else expected,
        new_refresh_hash=new,
        rotated_at=1500.0,
        last_seen=1500.0,
        expires_at=2500.0,
    )


@contextlib.contextmanager
def other_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A second, plain sqlite3 connection to the store's file (another process, in effect)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


async def pragma(store: SQLiteStore, name: str) -> Any:
    """Read a per-connection PRAGMA on the store's own connection."""
    assert store._db is not None
    rows = list(await store._db.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


# --- construction and lifecycle ---------------------------------------------------------------


def test_repr_shows_the_path(tmp_path: Path) -> None:
    assert repr(SQLiteStore("sessions.db")) == "SQLiteStore('sessions.db')"
    assert repr(SQLiteStore(tmp_path / "s.db")) == f"SQLiteStore({str(tmp_path / 's.db')!r})"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"busy_timeout": -1},
        {"busy_timeout": float("nan")},
        {"busy_timeout": float("inf")},
        {"busy_timeout": True},
        {"synchronous": "OFF"},
    ],
)
def test_invalid_settings_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteStore("s.db", **kwargs)


def test_sqlite_older_than_3_35_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    with pytest.raises(ConfigurationError, match=r"3\.35"):
        SQLiteStore("s.db")


async def test_pragmas_are_set_on_open(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db", busy_timeout=0.2, synchronous="FULL") as store:
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "busy_timeout") == 200
        assert await pragma(store, "synchronous") == 2  # FULL
        assert await pragma(store, "foreign_keys") == 1
    async with SQLiteStore(tmp_path / "s.db") as store:
        assert await pragma(store, "busy_timeout") == 5000
        assert await pragma(store, "synchronous") == 1  # NORMAL


async def test_memory_database_works_without_wal() -> None:
    async with SQLiteStore(":memory:") as store:
        assert await pragma(store, "journal_mode") == "memory"
        await store.create(make_record())
        assert await store.get("h1") == make_record()


async def test_schema_is_version_5_with_tables_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path):
        pass
    with other_connection(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (5,)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"sessions", "keys", "sessions_handle", "sessions_expires_at"} <= names
    assert not {"sessions_user_tenant", "sessions_tenant"} & names  # version 5: the key is (user_id, handle)
    assert {"revocations", "revocations_end_session"} <= names  # version 2: the revocation log
    assert "leases" in names  # version 3: named leases
    assert {"remember", "idle_timeout"} <= columns  # version 4: "remember me"


async def test_newer_schema_version_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with other_connection(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="99") as info:
        await store.open()
    assert "upgrade asgi-session" in str(info.value)
    with pytest.raises(StoreError, match="not open"):
        await store.get("h1")
    with other_connection(path) as conn:  # the failed open changed nothing
        assert conn.execute("PRAGMA user_version").fetchone() == (99,)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


async def test_failed_schema_creation_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with other_connection(path) as conn:
        conn.execute("CREATE TABLE keys (x)")  # a foreign table in the way of step 1
    with pytest.raises(StoreError, match="schema"):
        await SQLiteStore(path).open()
    with other_connection(path) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
        assert names == ["keys"]  # "sessions" and its indexes were rolled back
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)


async def test_reopening_a_file_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    key = KeyRecord(kid="k1", algorithm="ES256", private_key="pem", created_at=1.0, signs_from=2.0)
    async with SQLiteStore(path) as store:
        await store.create(make_record())
        assert await store.add_key(key)
    async with SQLiteStore(path) as store:
        assert await store.get("h1") == make_record()
        assert await store.get_keys() == [key]


async def test_calls_before_open_and_after_close_raise(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    message = "store is not open; use `async with store:` or `await store.open()`"
    with pytest.raises(StoreError) as info:
        await store.get("h1")
    assert str(info.value) == message
    async with store:
        assert await store.get("h1") is None
    with pytest.raises(StoreError) as info:
        await store.create(make_record())
    assert str(info.value) == message


async def test_open_and_close_are_idempotent_and_stop_the_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    store = SQLiteStore(tmp_path / "s.db")
    await store.close()
    await store.open()
    await store.open()
    assert len(set(threading.enumerate()) - before) == 1  # one worker thread, not two
    await store.create(make_record())
    await store.close()
    await store.close()
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=2)
        assert not thread.is_alive()
    async with store:  # reopen after close
        assert await store.get("h1") == make_record()


async def test_concurrent_open_makes_one_connection(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    store = SQLiteStore(tmp_path / "s.db")
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(store.open)
    assert len(set(threading.enumerate()) - before) == 1
    await store.close()


# --- semantics: the same answers as the reference MemoryStore ---------------------------------


async def exercise(store: SessionStore) -> list[Any]:
    """Drive every method through edge cases; return everything observable."""
    out: list[Any] = []
    records = [
        make_record(
            f"h{i}",
            user_id="u1" if i % 2 else "u2",
            tenant_id="t1" if i % 3 else "public",
            created_at=1000.0 + i % 3,
            expires_at=2000.0 + i,
        )
        for i in range(9)
    ]
    for record in records:
        await store.create(record)
    out += [await store.get("h3"), await store.get("missing")]
    for bad in (records[0], make_record("hx", session_data={"s": {1}})):
        with pytest.raises(StoreError):
            await store.create(bad)
    out.append(await store.get("hx"))
    first = rotation(records[1], digest("second"))
    out += [await store.rotate(first), await store.rotate(first), await store.get("h1")]
    out.append(await store.rotate(rotation(make_record("missing"), digest("x"))))
    out += [
        await store.update_session_data("h2", {"a": [1, {"b": None}], "é": "ü"}),
        await store.update_session_data("missing", {}),
        await store.update_access_token_payload("h2", {"claims": ["x"]}),
        await store.update_access_token_payload("missing", {}),
        await store.touch("h2", 1234.5),
        await store.touch("missing", 1.0),
        await store.get("h2"),
    ]
    for data in ({"nan": float("nan")}, {"set": {1}}):
        with pytest.raises(StoreError):
            await store.update_session_data("h2", data)
    out += [
        await store.list_for_user("u1"),
        await store.list_for_user("u1", "t1"),
        await store.list_for_user("nobody"),
        await store.delete(["h5", "missing", "h5", "h0"]),
        await store.delete([]),
        await store.delete_for_user("u1", "public"),
        await store.delete_expired(2006.0),
        await store.delete_for_user("u1"),
        await store.list_for_user("u2"),
    ]
    keys = [
        KeyRecord(kid=kid, algorithm="ES256", private_key=f"pem-{kid}", created_at=1.0, signs_from=s)
        for kid, s in (("kb", 5.0), ("ka", 5.0), ("kc", 1.0))
    ]
    for key in keys:
        out.append(await store.add_key(key))
    out.append(await store.add_key(keys[0]))
    out.append(await store.get_keys())
    out += [await store.delete_keys(["ka", "ka", "nope"]), await store.get_keys()]
    return out


async def test_answers_match_the_memory_store(tmp_path: Path) -> None:
    async with MemoryStore() as memory, SQLiteStore(tmp_path / "s.db") as store:
        expected = await exercise(memory)
        actual = await exercise(store)
    assert actual == expected
    assert actual[3:5] == [True, False]  # a rotation applies once
    assert actual[5].previous_refresh_hash == digest("refresh-h1")


async def test_delete_handles_more_than_one_chunk(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        for i in range(0, 1200, 2):
            await store.create(make_record(f"h{i:04}"))
        asked = [f"h{i:04}" for i in reversed(range(1200))]
        deleted = await store.delete(asked)
        assert deleted == [handle for handle in asked if int(handle[1:]) % 2 == 0]
        assert await store.list_for_user("u1") == []


async def test_corrupt_json_in_the_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        await store.create(make_record())
        with other_connection(path) as conn:
            conn.execute("UPDATE sessions SET session_data = '[1, 2'")
        with pytest.raises(StoreError, match="session data"):
            await store.get("h1")


async def test_unencodable_string_raises_store_error_without_echoing_it(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        with pytest.raises(StoreError, match="get") as info:
            await store.get("bad\ud800handle")
    assert "\ud800" not in str(info.value)
    assert "bad" not in str(info.value)


# --- locks, faults, cancellation --------------------------------------------------------------


async def test_write_lock_shorter_than_busy_timeout_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path, busy_timeout=2.0) as store:
        done = anyio.Event()

        async def create() -> None:
            await store.create(make_record())
            done.set()

        with other_connection(path) as other:
            other.execute("BEGIN IMMEDIATE")
            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                await anyio.sleep(0.15)  # a real lock, held for real time
                assert not done.is_set()  # the write is waiting for the lock
                other.execute("ROLLBACK")
        assert done.is_set()
        assert await store.get("h1") == make_record()


async def test_write_lock_longer_than_busy_timeout_raises_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    record = make_record()
    new_hash = digest("child")
    async with SQLiteStore(path, busy_timeout=0.2) as store:
        await store.create(record)
        with other_connection(path) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError) as info:
                await store.rotate(rotation(record, new_hash))
            # Reads still work beside a writer (WAL); the old refresh hash is still current.
            current = await store.get("h1")
            assert current is not None
            assert current.refresh_hash == record.refresh_hash
            other.execute("ROLLBACK")
        message = str(info.value)
        assert "rotate" in message
        assert "locked" in message
        assert record.refresh_hash not in message
        assert new_hash not in message
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert await store.rotate(rotation(record, new_hash)) is True


async def test_open_blocked_by_a_lock_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path):
        pass
    before = set(threading.enumerate())
    store = SQLiteStore(path, busy_timeout=0.2)
    with other_connection(path) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            await store.open()
        other.execute("ROLLBACK")
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=2)
        assert not thread.is_alive()
    async with store:
        assert await store.get("h1") is None


async def test_disk_full_raises_store_error_then_recovers(tmp_path: Path) -> None:
    record = make_record(session_data={"blob": "x" * 50_000})
    async with SQLiteStore(tmp_path / "s.db") as store:
        assert store._db is not None
        pages = await pragma(store, "page_count")
        await store._db.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is now full
        with pytest.raises(StoreError, match="create") as info:
            await store.create(record)
        assert "full" in str(info.value)
        assert record.refresh_hash not in str(info.value)
        assert await store.get("h1") is None
        await store._db.execute("PRAGMA max_page_count = 1000000")
        await store.create(record)
        assert await store.get("h1") == record


async def test_cancelled_write_still_completes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path, busy_timeout=2.0) as store:
        with other_connection(path) as other:
            other.execute("BEGIN IMMEDIATE")
            with anyio.move_on_after(0.1) as scope:
                await store.create(make_record())
            assert scope.cancelled_caught
            other.execute("ROLLBACK")
        # The statement was already in aiosqlite's queue: it ran once the lock was free.
        assert await store.get("h1") == make_record()


async def test_200_concurrent_tasks_on_one_store(tmp_path: Path) -> None:
    outcomes: list[bool] = []

    async def worker(store: SQLiteStore, i: int) -> None:
        record = make_record(f"h{i}", refresh_hash=digest(f"{i}-0"))
        await store.create(record)
        for step in (1, 2):
            change = rotation(record, digest(f"{i}-{step}"), expected=digest(f"{i}-{step - 1}"))
            outcomes.append(await store.rotate(change))

    async with SQLiteStore(tmp_path / "s.db") as store:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(worker, store, i)
        assert outcomes == [True] * 400
        sessions = await store.list_for_user("u1")
        assert len(sessions) == 200
        assert all(s.refresh_hash == digest(f"{s.handle[1:]}-2") for s in sessions)


async def test_two_stores_racing_one_rotation_let_exactly_one_win(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    record = make_record()
    rotations = [rotation(record, digest(f"new-{i}")) for i in range(100)]
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.create(record)
        outcomes = await race_rotations(first, second, rotations)
        winners = [i for i, won in outcomes.items() if won]
        assert len(outcomes) == 100
        assert len(winners) == 1
        stored = await second.get("h1")
        assert stored is not None
        assert stored.refresh_hash == digest(f"new-{winners[0]}")
        assert stored.previous_refresh_hash == record.refresh_hash
    with other_connection(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# --- store_from_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative/path.db", "relative/path.db"),
        ("sqlite:////absolute/path.db", "/absolute/path.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///with%20space.db", "with space.db"),
    ],
)
def test_store_from_url_sqlite_paths(url: str, path: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore)
    assert repr(store) == f"SQLiteStore({path!r})"


async def test_store_from_url_sqlite_parameters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db?busy_timeout=0.25&synchronous=full"
    assert url.startswith("sqlite:////")
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore)
    async with store:
        assert await pragma(store, "busy_timeout") == 250
        assert await pragma(store, "synchronous") == 2
    assert (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/x.db",
        "sqlite:///x.db?busy_timeout=abc",
        "sqlite:///x.db?busy_timeout=-1",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:///x.db?timeout=5",
        "sqlite:///x.db?busy_timeout=1&busy_timeout=2",
        "sqlite:///x.db?busy_timeout",
        "memory://somewhere",
        "mysql://localhost/db",
        "sessions.db",
        "",
    ],
)
def test_store_from_url_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        store_from_url(url)


def test_store_from_url_memory() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)


def test_store_from_url_unsupported_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        store_from_url("mysql://localhost/db")
    for scheme in ("sqlite://", "memory://", "redis://", "rediss://", "postgresql://"):
        assert scheme in str(info.value)


REDIS_DRIVERS = ("redis",)
POSTGRES_DRIVERS = ("asyncpg", "psycopg", "psycopg_pool")
OPTIONAL = [
    ("redis://:s3cret-pw@localhost:6379/0", "asgi_session.stores.redis", REDIS_DRIVERS, "redis"),
    ("rediss://user:s3cret-pw@cache/0", "asgi_session.stores.redis", REDIS_DRIVERS, "redis"),
    ("postgresql://app:s3cret-pw@db/app", "asgi_session.stores.postgres", POSTGRES_DRIVERS, "postgres"),
    ("postgres://app:s3cret-pw@db/app", "asgi_session.stores.postgres", POSTGRES_DRIVERS, "postgres"),
]


@pytest.mark.parametrize(("url", "module", "drivers", "extra"), OPTIONAL)
def test_store_from_url_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, drivers: tuple[str, ...], extra: str
) -> None:
    # Whether or not the store module exists yet, its import (or its driver's) now fails.
    monkeypatch.delitem(sys.modules, module, raising=False)
    for driver in drivers:
        monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(ConfigurationError) as info:
        store_from_url(url)
    assert f"pip install 'asgi-session[{extra}]'" in str(info.value)
    assert "s3cret-pw" not in str(info.value)


@pytest.mark.parametrize(("url", "module", "drivers", "extra"), OPTIONAL)
def test_store_from_url_delegates_to_the_optional_store(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, drivers: tuple[str, ...], extra: str
) -> None:
    seen: list[str] = []

    class FakeStore(MemoryStore):
        @classmethod
        def from_url(cls, url: str) -> FakeStore:
            seen.append(url)
            return cls()

    fake = types.ModuleType(module)
    setattr(fake, "RedisStore" if extra == "redis" else "PostgresStore", FakeStore)
    monkeypatch.setitem(sys.modules, module, fake)
    assert isinstance(store_from_url(url), FakeStore)
    assert seen == [url]


def test_store_from_url_hides_the_password_when_the_driver_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class RefusingStore(MemoryStore):
        @classmethod
        def from_url(cls, url: str) -> RefusingStore:
            raise ValueError(f"bad url {url}")

    fake = types.ModuleType("asgi_session.stores.redis")
    fake.RedisStore = RefusingStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgi_session.stores.redis", fake)
    with pytest.raises(ConfigurationError) as info:
        store_from_url("redis://user:s3cret-pw@localhost/0")
    assert "s3cret-pw" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://admin:s3cret-pw@db/app",
        "sqlite://admin:s3cret-pw@host/x.db",
        "admin:s3cret-pw@host",
        "memory://admin:s3cret-pw@host",
        "sqlite:///x.db?busy_timeout=s3cret-pw",
    ],
)
def test_store_from_url_never_echoes_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        store_from_url(url)
    assert "s3cret-pw" not in str(info.value)
