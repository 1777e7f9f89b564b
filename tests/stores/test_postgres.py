"""PostgresStore: the conformance suite against a real server, and the faults only PostgreSQL can produce."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest

from asgi_session.exceptions import ConfigurationError, StoreError
from asgi_session.stores import store_from_url
from asgi_session.stores.base import SessionRecord, SessionStore, SlidingRotation
from asgi_session.stores.postgres import SCHEMA_VERSION, PostgresStore
from asgi_session.testing import CONFORMANCE_CHECKS, PersistedReader
from asgi_session.testing._records import (
    T0,
    handle_of,
    hash_of,
    make_record,
    make_rich_record,
    make_rotation,
    make_sliding_rotation,
    rotated,
)
from tests.stores.conftest import race_rotations

pytestmark = pytest.mark.anyio

Factory = Callable[..., PostgresStore]


def fresh_schema() -> str:
    return f"asgi_session_test_{uuid.uuid4().hex}"


def sql(schema: str, template: str, **names: str) -> str:
    """``template`` with ``{s}`` the quoted schema name and ``names`` filled in (the test's own, never input)."""
    return template.format(s=f'"{schema}"', **names)


@pytest.fixture
async def schemas(postgres_dsn: str) -> AsyncIterator[list[str]]:
    """Schemas a test created; dropped afterwards."""
    names: list[str] = []
    yield names
    admin = await asyncpg.connect(postgres_dsn)
    try:
        for name in names:
            await admin.execute(sql(name, "DROP SCHEMA IF EXISTS {s} CASCADE"))
    finally:
        await admin.close()


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain connection for the test's own queries: inspecting, locking, terminating."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def factory(postgres_dsn: str, schemas: list[str]) -> Factory:
    """Builds an unopened store in a new schema (or the ``schema=`` given), small timeouts by default."""

    def build(**options: Any) -> PostgresStore:
        options.setdefault("schema", fresh_schema())
        if options["schema"] not in schemas:
            schemas.append(options["schema"])
        return PostgresStore(postgres_dsn, **options)

    return build


@pytest.fixture
def dump_rows(postgres_dsn: str) -> PersistedReader:
    """Every row of every table of the store's schema, as text: what PostgreSQL holds for it."""

    async def read(store: SessionStore) -> bytes:
        assert isinstance(store, PostgresStore)
        schema = store.schema
        connection = await asyncpg.connect(postgres_dsn)
        try:
            tables = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
            chunks: list[str] = []
            for table in tables:
                rows = await connection.fetch(
                    sql(schema, 'SELECT t::text AS row FROM {s}."{table}" t', table=table["table_name"])
                )
                chunks.extend(row["row"] for row in rows)
        finally:
            await connection.close()
        return "\n".join(chunks).encode()

    return read


@pytest.mark.parametrize("check", sorted(CONFORMANCE_CHECKS))
async def test_conforms(check: str, factory: Factory, dump_rows: PersistedReader) -> None:
    await CONFORMANCE_CHECKS[check](factory, persisted=dump_rows)


async def test_row_dump_shows_what_is_stored(factory: Factory, dump_rows: PersistedReader) -> None:
    """The reader given to the suite's no-raw-token check really sees the stored values."""
    record = make_rich_record(1)
    async with factory() as store:
        await store.create(record)
        dumped = await dump_rows(store)
    assert record.handle.encode() in dumped
    assert record.refresh_hash.encode() in dumped
    assert b"Mozilla" in dumped


# --- helpers for fault tests ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def row_locked(dsn: str, schema: str, handle: str) -> AsyncIterator[None]:
    """Hold a row lock on one session from another connection, so the store's writes to it block."""
    locker = await asyncpg.connect(dsn)
    try:
        async with locker.transaction():
            await locker.execute(sql(schema, "SELECT 1 FROM {s}.sessions WHERE handle = $1 FOR UPDATE"), handle)
            yield
    finally:
        await locker.close()


async def blocked_backend(admin: Any, store: PostgresStore) -> int:
    """The pid of the store's backend once it waits for a lock."""
    with anyio.fail_after(5):
        while True:
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                store.application_name,
            )
            if pid is not None:
                return int(pid)
            await anyio.sleep(0.01)


async def backends(admin: Any, store: PostgresStore) -> int:
    count = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", store.application_name
    )
    return int(count)


class Outcome:
    """What a background call returned or raised."""

    def __init__(self) -> None:
        self.value: object = None
        self.error: StoreError | None = None

    async def run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = await call()
        except StoreError as exc:
            self.error = exc


# --- schema and migration ------------------------------------------------------------------------


async def test_schema_has_version_tables_and_indexes(factory: Factory, admin: Any) -> None:
    store = factory(schema=f"Mixed_Case_{uuid.uuid4().hex}")  # quoted identifiers keep the case
    async with store:
        await store.create(make_record(1))
    schema = store.schema
    assert await admin.fetchval(sql(schema, "SELECT version FROM {s}.schema_version")) == SCHEMA_VERSION
    tables = await admin.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
    assert {row["table_name"] for row in tables} == {
        "schema_version",
        "sessions",
        "keys",
        "revocations",
        "revocation_counter",
        "leases",
    }
    indexes = await admin.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = $1", schema)
    columns = {row["indexdef"].split(" USING btree ")[1] for row in indexes}
    assert {"(user_id, tenant_id)", "(tenant_id)", "(expires_at)", "(handle)", "(kid)"} <= columns
    types = await admin.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = 'sessions'",
        schema,
    )
    kinds = {row["column_name"]: row["data_type"] for row in types}
    assert kinds["session_data"] == kinds["access_token_payload"] == "jsonb"
    assert kinds["expires_at"] == "double precision"


async def test_migration_is_idempotent_and_keeps_data(factory: Factory, admin: Any) -> None:
    schema = fresh_schema()
    async with factory(schema=schema) as store:
        await store.create(make_rich_record(1))
    for _ in range(2):
        async with factory(schema=schema) as store:
            assert await store.get(handle_of(1)) == make_rich_record(1)
    assert await admin.fetchval(sql(schema, "SELECT array_agg(version) FROM {s}.schema_version")) == [SCHEMA_VERSION]


async def test_concurrent_opens_of_a_fresh_schema_all_succeed(factory: Factory) -> None:
    schema = fresh_schema()
    stores = [factory(schema=schema) for _ in range(5)]
    async with anyio.create_task_group() as group:
        for store in stores:
            group.start_soon(store.open)
    try:
        await stores[0].create(make_record(1))
        for store in stores:
            assert await store.get(handle_of(1)) == make_record(1)
    finally:
        for store in stores:
            await store.close()


async def test_newer_schema_version_raises_and_leaves_no_connection(factory: Factory, admin: Any) -> None:
    schema = fresh_schema()
    async with factory(schema=schema):
        pass
    await admin.execute(sql(schema, "UPDATE {s}.schema_version SET version = $1"), SCHEMA_VERSION + 1)
    store = factory(schema=schema)
    with pytest.raises(StoreError, match="newer than this asgi-session supports"):
        await store.open()
    assert await backends(admin, store) == 0
    with pytest.raises(StoreError, match="not open"):
        await store.get(handle_of(1))


# --- concurrency -----------------------------------------------------------------------------------


async def test_100_concurrent_rotations_from_two_stores_one_wins(factory: Factory) -> None:
    schema = fresh_schema()
    record = make_rich_record(1)
    rotations = [make_rotation(record, f"racer-{i}", T0 + 60 + i * 0.125) for i in range(100)]
    async with factory(schema=schema) as first, factory(schema=schema) as second:
        await first.create(record)
        results = await race_rotations(first, second, rotations)
        winners = [i for i, won in results.items() if won is True]
        assert len(winners) == 1
        assert all(won is False for i, won in results.items() if i != winners[0])
        expected = rotated(record, rotations[winners[0]])
        assert await first.get(record.handle) == expected
        assert await second.get(record.handle) == expected


# --- faults ---------------------------------------------------------------------------------------


async def test_terminated_idle_connections_are_replaced(factory: Factory, admin: Any) -> None:
    async with factory(min_size=3, max_size=3) as store:
        await store.create(make_record(1))
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            store.application_name,
        )
        assert killed == 3
        # Reads retry on another connection; they never give a wrong answer.
        assert await store.get(handle_of(1)) == make_record(1)
        # A write on a dead connection may fail (its outcome unknown), never report a wrong answer.
        for _ in range(4):
            with contextlib.suppress(StoreError):
                assert await store.touch(handle_of(1), T0 + 5) is True
                break
        else:
            pytest.fail("the store did not recover after its connections were terminated")
        assert await store.get(handle_of(1)) == dataclasses.replace(make_record(1), last_seen=T0 + 5)
        assert await store.touch(handle_of(404), T0) is False


async def test_backend_terminated_mid_rotation_raises_then_recovers(
    factory: Factory, admin: Any, postgres_dsn: str
) -> None:
    schema = fresh_schema()
    record = make_record(1)
    rotation = make_rotation(record, "child", T0 + 60)
    async with factory(schema=schema) as store:
        await store.create(record)
        outcome = Outcome()
        async with row_locked(postgres_dsn, schema, record.handle), anyio.create_task_group() as group:
            group.start_soon(outcome.run, lambda: store.rotate(rotation))
            await admin.execute("SELECT pg_terminate_backend($1)", await blocked_backend(admin, store))
        assert outcome.error is not None, f"rotate returned {outcome.value!r} although its backend was killed"
        message = str(outcome.error)
        assert "rotate" in message
        for secret in (rotation.expected_refresh_hash, rotation.new_refresh_hash):
            assert secret not in message
        assert await store.get(record.handle) == record  # rolled back, never half applied
        assert await store.rotate(rotation) is True
        assert await store.get(record.handle) == rotated(record, rotation)


def lose_update_responses(monkeypatch: pytest.MonkeyPatch, state: dict[str, bool]) -> None:
    """Every ``UPDATE`` loses its connection, after committing while ``state["commit_first"]``, before it if not."""
    real_fetch = asyncpg.connection.Connection.fetch

    async def lose_the_response(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if query.startswith("UPDATE"):
            if state["commit_first"]:
                await real_fetch(self, query, *args, **kwargs)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return await real_fetch(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", lose_the_response)


async def test_response_lost_after_commit_is_reread(factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    record = make_record(1)
    state = {"commit_first": True}
    async with factory() as store:
        await store.create(record)
        lose_update_responses(monkeypatch, state)
        first = make_rotation(record, "child", T0 + 60)
        assert await store.rotate(first) is True  # applied: the re-read finds the new hash
        state["commit_first"] = False
        second = make_rotation(rotated(record, first), "grandchild", T0 + 120)
        with pytest.raises(StoreError, match="whether it was applied is unknown"):
            await store.rotate(second)  # not applied (yet): never reported as False
        monkeypatch.undo()
        assert await store.get(record.handle) == rotated(record, first)
        assert await store.rotate(second) is True


async def test_sliding_rotation_response_lost_after_commit_is_reread(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = make_record(1)
    state = {"commit_first": True}

    def sliding(current: SessionRecord, label: str, now: float) -> SlidingRotation:
        return make_sliding_rotation(current, label, now, default_idle=3600.0)

    async with factory() as store:
        await store.create(record)
        lose_update_responses(monkeypatch, state)
        applied = await store.rotate_sliding(sliding(record, "child", T0 + 60))
        assert applied is not None  # applied: the re-read finds the new hash and returns the session
        assert applied.refresh_hash == hash_of("child")
        assert applied.expires_at == T0 + 60 + 3600.0
        state["commit_first"] = False
        with pytest.raises(StoreError, match="whether it was applied is unknown"):
            await store.rotate_sliding(sliding(applied, "grandchild", T0 + 120))  # never reported as None
        monkeypatch.undo()
        assert await store.get(record.handle) == applied
        assert await store.rotate_sliding(sliding(applied, "grandchild", T0 + 120)) is not None


async def test_pool_exhausted_raises_quickly_then_recovers(factory: Factory, admin: Any, postgres_dsn: str) -> None:
    schema = fresh_schema()
    async with factory(schema=schema, min_size=1, max_size=1, acquire_timeout=0.5) as store:
        await store.create(make_record(1))
        blocked = Outcome()
        async with anyio.create_task_group() as group, row_locked(postgres_dsn, schema, handle_of(1)):
            group.start_soon(blocked.run, lambda: store.touch(handle_of(1), T0 + 9))
            await blocked_backend(admin, store)  # the only connection is busy
            started = time.monotonic()
            with pytest.raises(StoreError, match="pool exhausted"):
                await store.get(handle_of(1))
            assert time.monotonic() - started < 2
        assert blocked.error is None
        assert blocked.value is True
        assert await store.get(handle_of(1)) == dataclasses.replace(make_record(1), last_seen=T0 + 9)


async def test_statement_timeout_raises_and_the_connection_stays_usable(
    factory: Factory, admin: Any, postgres_dsn: str
) -> None:
    schema = fresh_schema()
    async with factory(schema=schema, min_size=1, max_size=1, command_timeout=0.5) as store:
        await store.create(make_record(1))
        async with row_locked(postgres_dsn, schema, handle_of(1)):
            started = time.monotonic()
            with pytest.raises(StoreError, match="touch timed out"):
                await store.touch(handle_of(1), T0 + 9)
            assert time.monotonic() - started < 2
        assert await store.get(handle_of(1)) == make_record(1)  # cancelled on the server
        assert await store.touch(handle_of(1), T0 + 9) is True


async def test_cancelled_call_leaves_the_pool_usable(factory: Factory, admin: Any, postgres_dsn: str) -> None:
    schema = fresh_schema()
    async with factory(schema=schema, min_size=1, max_size=1) as store:
        await store.create(make_record(1))
        async with row_locked(postgres_dsn, schema, handle_of(1)), anyio.create_task_group() as group:
            group.start_soon(store.touch, handle_of(1), T0 + 9)
            await blocked_backend(admin, store)
            group.cancel_scope.cancel()
        # asyncpg asks the server to cancel the statement, which may complete first: whole or not at all.
        assert await store.get(handle_of(1)) in (make_record(1), make_record(1, last_seen=T0 + 9))
        assert await store.touch(handle_of(1), T0 + 10) is True
        assert await store.get(handle_of(1)) == make_record(1, last_seen=T0 + 10)


async def test_unreachable_server_raises_without_the_password() -> None:
    store = PostgresStore("postgresql://postgres:hunter2@127.0.0.1:1/test", connect_timeout=2)
    with pytest.raises(StoreError, match="connecting failed") as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(store)
    with pytest.raises(StoreError, match="not open"):
        await store.get(handle_of(1))


@pytest.mark.parametrize(("sqlstate", "name"), [("40001", "SerializationError"), ("40P01", "DeadlockDetectedError")])
async def test_rollbacks_are_retried_a_bounded_number_of_times(
    factory: Factory, admin: Any, sqlstate: str, name: str
) -> None:
    schema = fresh_schema()
    async with factory(schema=schema, serialization_retries=3) as store:
        await store.create(make_record(1))
        # A trigger fails the first ``limit`` updates with a real server-side rollback error.
        # The sequence counts attempts even in rolled-back transactions.
        for statement in (
            "CREATE TABLE {s}.fail_limit (n integer)",
            "INSERT INTO {s}.fail_limit VALUES (3)",
            "CREATE SEQUENCE {s}.attempts",
            "CREATE FUNCTION {s}.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF nextval('{s}.attempts') <= (SELECT n FROM {s}.fail_limit) THEN "
            "RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER fail BEFORE UPDATE ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.fail()",
        ):
            await admin.execute(sql(schema, statement, code=sqlstate))
        assert await store.touch(handle_of(1), T0 + 1) is True  # three failures, then success
        await admin.execute(sql(schema, "UPDATE {s}.fail_limit SET n = 1000"))
        with pytest.raises(StoreError, match=f"touch failed after 4 attempts .*{name}"):
            await store.touch(handle_of(1), T0 + 2)
        assert await admin.fetchval(sql(schema, "SELECT last_value FROM {s}.attempts")) == 8
        assert await store.get(handle_of(1)) == dataclasses.replace(make_record(1), last_seen=T0 + 1)


async def test_nul_characters_are_refused_without_writing(factory: Factory) -> None:
    async with factory() as store:
        with pytest.raises(StoreError, match="create failed"):
            await store.create(make_record(1, session_data={"x": "a\x00b"}))
        with pytest.raises(StoreError, match="create failed"):
            await store.create(make_record(2, user_id="a\x00b"))
        assert await store.list_for_user("user-1") == []


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["", "1abc", "a-b", 'a"b', "a;drop", "x" * 64, "sch ema"])
def test_invalid_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresStore("postgresql://localhost/test", schema=schema)


@pytest.mark.parametrize(
    "options",
    [
        {"min_size": -1},
        {"max_size": 0},
        {"min_size": 5, "max_size": 2},
        {"acquire_timeout": 0},
        {"command_timeout": float("nan")},
        {"connect_timeout": float("inf")},
        {"serialization_retries": True},
    ],
)
def test_invalid_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://localhost/test", **options)


async def test_store_from_url_builds_a_postgres_store(postgres_dsn: str, schemas: list[str]) -> None:
    store = store_from_url("postgresql://postgres@127.0.0.1:5432/test?schema=x")
    assert isinstance(store, PostgresStore)
    assert repr(store) == "PostgresStore(schema='x')"
    schema = fresh_schema()
    schemas.append(schema)
    separator = "&" if "?" in postgres_dsn else "?"
    url = f"{postgres_dsn}{separator}schema={schema}&max_size=2&acquire_timeout=1&application_name=from-url"
    store = store_from_url(url.replace("postgresql://", "postgres://", 1))
    assert isinstance(store, PostgresStore)
    assert store.application_name == "from-url"
    async with store:  # the store's own parameters never reach the server as settings
        assert await store.get(handle_of(1)) is None


@pytest.mark.parametrize("query", ["max_size=lots", "schema=a&schema=b", "schema=bad-name", "acquire_timeout=-1"])
def test_bad_url_parameters_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError):
        store_from_url(f"postgresql://postgres:hunter2@127.0.0.1/test?{query}")


def test_missing_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes `import asyncpg` raise ImportError
    monkeypatch.delitem(sys.modules, "asgi_session.stores.postgres")
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[postgres\]'"):
        importlib.import_module("asgi_session.stores.postgres")
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[postgres\]'"):
        store_from_url("postgresql://postgres@127.0.0.1/test")
