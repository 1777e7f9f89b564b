"""RedisStore: the conformance suite on a real server, the key layout and TTLs, and the faults Redis can produce."""

from __future__ import annotations

import dataclasses
import gc
import importlib
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ResponseError

from asgi_session.exceptions import ConfigurationError, StoreError
from asgi_session.stores import store_from_url
from asgi_session.stores._redis_keys import BUCKETS, bucket
from asgi_session.stores.base import SessionStore
from asgi_session.stores.redis import RedisStore
from asgi_session.testing import CONFORMANCE_CHECKS, PersistedReader, run_conformance_suite
from asgi_session.testing._records import DAY, T0, handle_of, make_key, make_record, make_rotation, rotated
from tests.stores.conftest import race_rotations

pytestmark = pytest.mark.anyio

Factory = Callable[..., RedisStore]


def fresh_prefix() -> str:
    return f"asgi_session_test:{uuid.uuid4().hex}"


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def index_key(prefix: str, user_tag: str) -> str:
    """The key of a user's index (``user_tag``: the escaped user id)."""
    return f"{prefix}:{{b:{bucket(user_tag)}}}:u:{user_tag}"


def shard_key(prefix: str, user_tag: str) -> str:
    """The key of the expiry shard a user's sessions are in."""
    return f"{prefix}:{{b:{bucket(user_tag)}}}:expiry"


@pytest.fixture
async def prefixes(admin: aioredis.Redis) -> AsyncIterator[list[str]]:
    """The prefixes a test used; every key under them is deleted afterwards (SCAN is fine in a test)."""
    used: list[str] = []
    yield used
    with anyio.CancelScope(shield=True):
        for prefix in used:
            async for key in admin.scan_iter(match=f"{prefix}:*", count=1000):
                await admin.delete(key)


@pytest.fixture
def factory(redis_url: str, prefixes: list[str]) -> Factory:
    """Builds an unopened store under a new prefix (or the ``prefix=`` given); other options pass through."""

    def build(url: str = redis_url, **options: Any) -> RedisStore:
        options.setdefault("prefix", fresh_prefix())
        prefixes.append(options["prefix"])
        return RedisStore(url, **options)

    return build


async def keys_of(admin: aioredis.Redis, prefix: str) -> list[str]:
    return sorted([key async for key in admin.scan_iter(match=f"{prefix}:*", count=1000)])


@pytest.fixture
def dump_keys(admin: aioredis.Redis) -> PersistedReader:
    """Every key name and value under the store's prefix, as text: what Redis holds for it."""

    async def read(store: SessionStore) -> bytes:
        assert isinstance(store, RedisStore)
        chunks: list[str] = []
        for key in await keys_of(admin, store.prefix):
            kind = await admin.type(key)
            if kind == "string":
                chunks += [key, str(await admin.get(key))]
            elif kind == "hash":
                chunks += [key, *(f"{text(k)}={text(v)}" for k, v in (await admin.hgetall(key)).items())]
            elif kind == "zset":
                chunks += [key, *(text(member) for member in await admin.zrange(key, 0, -1))]
            else:
                chunks += [key, f"<unexpected type {text(kind)}>"]
        return "\n".join(chunks).encode()

    return read


@pytest.mark.parametrize("check", sorted(CONFORMANCE_CHECKS))
async def test_conforms(check: str, factory: Factory, dump_keys: PersistedReader) -> None:
    await CONFORMANCE_CHECKS[check](factory, persisted=dump_keys)


async def test_key_dump_shows_what_is_stored(factory: Factory, dump_keys: PersistedReader) -> None:
    """The reader given to the suite's no-raw-token check really sees the stored values."""
    record = make_record(1, user_agent="agent-marker")
    async with factory() as store:
        await store.create(record)
        dumped = (await dump_keys(store)).decode()
    assert record.refresh_hash in dumped
    assert "agent-marker" in dumped


@pytest.mark.parametrize("options", [{}, {"protocol": 3}, {"protocol": 3, "decode_responses": True}])
async def test_conforms_with_a_client_passed_in(redis_url: str, prefixes: list[str], options: dict[str, Any]) -> None:
    """A ``redis.asyncio.Redis`` passed in works as configured (bytes replies, RESP3), and close() leaves it open."""
    client = aioredis.Redis.from_url(redis_url, **options)
    try:

        def build() -> RedisStore:
            prefixes.append(fresh_prefix())
            return RedisStore(client, prefix=prefixes[-1])

        await run_conformance_suite(build)
        assert await client.ping() is True
    finally:
        await client.aclose()


# --- rotation --------------------------------------------------------------------------------


async def test_rotation_is_atomic_across_two_store_instances(factory: Factory, admin: aioredis.Redis) -> None:
    prefix = fresh_prefix()
    record = make_record(1)
    rotations = [make_rotation(record, f"racer-{i}", T0 + 60 + i) for i in range(100)]
    async with factory(prefix=prefix) as first, factory(prefix=prefix) as second:
        await first.create(record)
        results = await race_rotations(first, second, rotations)
        winners = [i for i, won in results.items() if won is True]
        assert len(results) == 100
        assert len(winners) == 1
        expected = rotated(record, rotations[winners[0]])
        assert await first.get(record.handle) == expected
        assert await second.get(record.handle) == expected
        # The expiry entry keeps the created session's expires_at; delete_expired's re-check raises it.
        shard, entry = shard_key(prefix, "user-1"), f"user-1:public:{record.handle}"
        assert await admin.zrange(shard, 0, -1, withscores=True) == [(entry, record.expires_at)]
        assert await first.delete_expired(record.expires_at) == 0
        assert await admin.zrange(shard, 0, -1, withscores=True) == [(entry, expected.expires_at)]
        assert await first.get(record.handle) == expected


async def test_rotations_racing_revoke_all_leave_nothing_behind(factory: Factory, admin: aioredis.Redis) -> None:
    record = make_record(1)
    results: list[bool] = []
    async with factory() as store:
        await store.create(record)

        async def rotate(i: int) -> None:
            results.append(await store.rotate(make_rotation(record, f"racer-{i}", T0 + 60)))

        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(rotate, i)
            group.start_soon(store.delete_for_user, "user-1")
        assert results.count(True) <= 1
        assert await store.get(record.handle) is None
        assert await store.rotate(make_rotation(record, "late", T0 + 90)) is False
        # Nothing of the session is left; the revocation log (kept until trimmed) is all that remains.
        assert [key for key in await keys_of(admin, store.prefix) if "{revocations}" not in key] == []


# --- indexes: no keyspace scans, cost bound to the user ------------------------------------------


@pytest.fixture
def sent_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every command any redis.asyncio connection of this process sends, pipelines included."""
    sent: list[str] = []
    original = AbstractConnection.pack_command

    def spy(self: AbstractConnection, *args: Any) -> list[bytes]:
        sent.append(text(args[0]).split()[0].upper())
        return original(self, *args)

    monkeypatch.setattr(AbstractConnection, "pack_command", spy)
    return sent


async def test_listing_and_revoking_read_only_the_users_index(factory: Factory, sent_commands: list[str]) -> None:
    mine = [make_record(n, tenant_id="tenant-a" if n == 2 else "public", created_at=T0 + n) for n in (1, 2, 3)]

    async def commands_to_list() -> tuple[list[str], list[str]]:
        sent_commands.clear()
        assert await store.list_for_user("user-1") == mine
        every_tenant = sent_commands[:]
        sent_commands.clear()
        assert await store.list_for_user("user-1", "tenant-a") == [mine[1]]
        return every_tenant, sent_commands[:]

    async with factory() as store:
        for record in mine:
            await store.create(record)
        for n in range(5):
            await store.create(make_record(100 + n, user_id=f"other-{n % 3}"))
        few_others = await commands_to_list()
        for n in range(5, 200):
            await store.create(make_record(100 + n, user_id=f"other-{n % 3}"))
        many_others = await commands_to_list()
        assert few_others == many_others  # 40 times more sessions of other users: the very same commands
        assert few_others[0] == ["ZRANGE", "HGETALL", "HGETALL", "HGETALL"]
        sent_commands.clear()
        assert await store.delete_for_user("user-1", "public") == [mine[0].handle, mine[2].handle]
        # The index, whose the sessions are, the log script, the deletes, the unindex script (EVAL once, if the
        # server lacks a script).
        assert [c for c in sent_commands if c != "EVAL"] == [
            "ZRANGE",
            "HMGET",
            "HMGET",
            "EVALSHA",
            "DEL",
            "DEL",
            "EVALSHA",
        ]
        sent_commands.clear()
        assert await store.delete_for_user("user-1") == [mine[1].handle]
        assert set(sent_commands) <= {"ZRANGE", "HMGET", "EVALSHA", "EVAL", "DEL"}
        assert len(await store.list_for_user("other-1")) == 67


# --- key layout ------------------------------------------------------------------------------------


def hash_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


ODD_IDS = ["user-1", "a{b}c", "}{", "x:y", "%7B", "", "ü{}:%"]


async def test_every_script_and_command_touches_one_cluster_slot(factory: Factory, admin: aioredis.Redis) -> None:
    """A session is one key; a user's index shares its bucket's slot with the bucket's expiry shard."""
    async with factory() as store:
        for u, user in enumerate(ODD_IDS):
            for t, tenant in enumerate(("public", "t:{1}")):
                await store.create(make_record(10 * u + t + 1, user_id=user, tenant_id=tenant))
        tags: dict[str, list[str]] = {}
        for key in await keys_of(admin, store.prefix):
            tags.setdefault(hash_tag(key), []).append(key)
        sessions = {tag: keys for tag, keys in tags.items() if tag.startswith("s:")}
        assert len(sessions) == 2 * len(ODD_IDS)  # one key per session: no id ended its tag early
        assert all(len(keys) == 1 for keys in sessions.values())
        buckets = {tag: keys for tag, keys in tags.items() if tag.startswith("b:")}
        assert set(tags) == set(sessions) | set(buckets)
        indexes = [key for keys in buckets.values() for key in keys if ":u:" in key]
        assert len(indexes) == len(ODD_IDS)  # one index per user, in the bucket whose shard holds their sessions
        for tag, keys in buckets.items():
            assert f"{store.prefix}:{{{tag}}}:expiry" in keys
            assert {key_slot(key.encode()) for key in keys} == {key_slot(f"{{{tag}}}".encode())}
            assert 0 <= int(tag[2:]) < BUCKETS
        for u, user in enumerate(ODD_IDS):
            listed = await store.list_for_user(user)
            assert [record.handle for record in listed] == [handle_of(10 * u + 1), handle_of(10 * u + 2)]
            assert [record.user_id for record in listed] == [user, user]


async def test_the_bucket_of_a_user_is_stable() -> None:
    """Bucket numbers are part of the key layout: every process, every Python, every version computes the same."""
    assert [bucket(tag) for tag in ("user-1", "", "%7B", "ü")] == [bucket("user-1"), 0, bucket("%7B"), bucket("ü")]
    assert bucket("user-1") == 532  # zlib.crc32(b"user-1") % 1024


async def test_ids_with_separators_never_collide(factory: Factory) -> None:
    pairs = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c"), ("a", "b%3Ac")]
    async with factory() as store:
        for n, (user, tenant) in enumerate(pairs, start=1):
            await store.create(make_record(n, user_id=user, tenant_id=tenant))
        for n, (user, tenant) in enumerate(pairs, start=1):
            assert [r.handle for r in await store.list_for_user(user, tenant)] == [handle_of(n)]
        assert [r.handle for r in await store.list_for_user("a")] == [handle_of(2), handle_of(4)]
        assert await store.delete_for_user("a", "b:c") == [handle_of(2)]
        assert [r.handle for r in await store.list_for_user("a")] == [handle_of(4)]


# --- TTLs ------------------------------------------------------------------------------------------


async def server_now(admin: aioredis.Redis) -> float:
    seconds, micros = await admin.time()
    return seconds + micros / 1e6


async def ttls(admin: aioredis.Redis, prefix: str) -> dict[str, int]:
    return {key: await admin.pttl(key) for key in await keys_of(admin, prefix)}


async def test_ttls_cover_expiry_plus_leeway_on_the_servers_clock(factory: Factory, admin: aioredis.Redis) -> None:
    async with factory(ttl_leeway=60) as store:
        now = await server_now(admin)
        soon = make_record(1, created_at=now, last_seen=now, expires_at=now + 3600)
        later = make_record(2, created_at=now, last_seen=now, expires_at=now + 7200)
        await store.create(soon)
        await store.create(later)
        await store.add_key(make_key("kid-1", now))
        found = await ttls(admin, store.prefix)
        read_at = await server_now(admin)
        for key, ttl in found.items():
            if "{s:" not in key:
                assert ttl == -1, key  # indexes and keys: cleaned by delete_expired / the manager, never expire
                continue
            expires_at = later.expires_at if handle_of(2) in key else soon.expires_at
            assert (expires_at + 60 - read_at) * 1000 - 5 <= ttl <= (expires_at + 60 - now) * 1000 + 5, key
        rotation = dataclasses.replace(make_rotation(soon, "child", now), expires_at=now + 10 * DAY)
        assert await store.rotate(rotation) is True
        assert await admin.pttl(f"{store.prefix}:{{s:{handle_of(1)}}}") >= (10 * DAY + 60 - 5) * 1000


async def test_a_record_already_expired_on_the_servers_clock_gets_the_leeway(
    factory: Factory, admin: aioredis.Redis
) -> None:
    """A manager whose clock is behind (e.g. a FakeClock in 2023) still finds what it just wrote."""
    async with factory(ttl_leeway=30) as store:
        now = await server_now(admin)
        record = make_record(1, created_at=now - 10 * DAY, last_seen=now - 10 * DAY, expires_at=now - 5 * DAY)
        await store.create(record)
        for key, ttl in (await ttls(admin, store.prefix)).items():
            assert ttl == -1 if "{b:" in key else 25_000 < ttl <= 30_000, key
        assert await store.get(record.handle) == record


async def test_far_future_expiry_gets_a_matching_ttl(factory: Factory, admin: aioredis.Redis) -> None:
    async with factory() as store:
        record = make_record(1)  # expires in 2096, as in the conformance suite
        await store.create(record)
        session_keys = [key for key in await keys_of(admin, store.prefix) if "{s:" in key]
        assert await admin.pttl(session_keys[0]) >= (record.expires_at - await server_now(admin)) * 1000


# --- delete_expired beside TTL ---------------------------------------------------------------------


async def test_delete_expired_clears_entries_left_by_sessions_their_ttl_removed(
    factory: Factory, admin: aioredis.Redis
) -> None:
    async with factory() as store:
        gone, kept = make_record(1, expires_at=T0 + 10), make_record(2)
        await store.create(gone)
        await store.create(kept)
        await admin.delete(f"{store.prefix}:{{s:{handle_of(1)}}}")  # what the TTL would have done
        assert await store.list_for_user("user-1") == [kept]
        assert await store.delete_expired(T0 + 20) == 0  # nothing left to delete, but the entries go
        assert await admin.zrange(index_key(store.prefix, "user-1"), 0, -1) == [f"public:{handle_of(2)}"]
        assert await admin.zrange(shard_key(store.prefix, "user-1"), 0, -1) == [f"user-1:public:{handle_of(2)}"]


async def test_delete_expired_rechecks_the_session_before_deleting(factory: Factory, admin: aioredis.Redis) -> None:
    """An expiry entry behind the session (as after a rotation it raced) never deletes a live session."""
    async with factory() as store:
        record = make_record(1, expires_at=T0 + 100)
        await store.create(record)
        member, shard = f"user-1:public:{record.handle}", shard_key(store.prefix, "user-1")
        await admin.zadd(shard, {member: T0})
        assert await store.delete_expired(T0 + 50) == 0
        assert await store.get(record.handle) == record
        assert await admin.zscore(shard, member) == T0 + 100  # repaired
        await admin.zadd(shard, {"not-ours": T0, "other:public:h": T0})  # the second is in another user's bucket
        assert await store.delete_expired(T0 + 100) == 1
        assert await keys_of(admin, store.prefix) == []


# --- faults: killed connections, a paused server, no server ------------------------------------------


async def connections_named(admin: aioredis.Redis, name: str, command: str | None = None) -> list[str]:
    """The ids of the connections called ``name`` (whose last command is ``command``, when given)."""
    return [
        client["id"]
        for client in await admin.client_list()
        if client["name"] == name and (command is None or client["cmd"] == command)
    ]


@pytest.mark.parametrize("retries", [0, 1])
async def test_killed_idle_connections_give_store_error_or_the_right_data(
    factory: Factory, admin: aioredis.Redis, redis_url: str, retries: int
) -> None:
    name = f"asgi-session-test-{uuid.uuid4().hex[:12]}"
    record = make_record(1)
    async with factory(with_query(redis_url, client_name=name), retries=retries) as store:
        await store.create(record)
        assert await store.get(record.handle) == record
        killed = await connections_named(admin, name)
        assert killed
        for client_id in killed:
            await admin.client_kill_filter(_id=client_id)
        outcomes: list[object] = []
        while len(outcomes) < 3 and record not in outcomes:
            try:
                outcomes.append(await store.get(record.handle))
            except StoreError as exc:
                outcomes.append(str(exc))
        assert outcomes[-1] == record  # the store reconnected by itself
        if retries:
            assert len(outcomes) == 1  # the store re-sent the command on a fresh connection
        for outcome in outcomes[:-1]:  # before that, only errors: never wrong data
            assert isinstance(outcome, str)
            assert outcome.startswith("Redis store: get failed (ConnectionError")
        child = make_rotation(record, "child", T0 + 60)
        assert await store.rotate(child) is True
        assert await store.list_for_user("user-1") == [rotated(record, child)]


@pytest.mark.parametrize("retries", [0, 1])
async def test_connection_killed_mid_rotation_never_corrupts(
    factory: Factory, admin: aioredis.Redis, redis_url: str, retries: int
) -> None:
    name = f"asgi-session-test-{uuid.uuid4().hex[:12]}"
    record = make_record(1)
    rotation = make_rotation(record, "child", T0 + 60)
    outcome: list[object] = []
    async with factory(with_query(redis_url, client_name=name), retries=retries) as store:
        await store.create(record)

        async def attempt() -> None:
            try:
                outcome.append(await store.rotate(rotation))
            except StoreError as exc:
                outcome.append(exc)

        await admin.client_pause(3000, all=False)  # writes (and scripts) wait; CLIENT commands do not
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(attempt)
                with anyio.fail_after(2):
                    # Polls the server's state: nothing in this process could signal it.
                    while not (waiting := await connections_named(admin, name, "evalsha")):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                for client_id in waiting:
                    await admin.client_kill_filter(_id=client_id)
                await admin.client_unpause()
        finally:
            await admin.client_unpause()
        assert len(outcome) == 1
        assert outcome[0] is True if retries else isinstance(outcome[0], StoreError)
        current = await store.get(record.handle)
        if outcome[0] is True:  # the store sent the rotation again on a fresh connection
            assert current == rotated(record, rotation)
        else:
            assert isinstance(outcome[0], StoreError)
            assert current in (record, rotated(record, rotation))
        assert current is not None
        next_rotation = make_rotation(current, "grandchild", T0 + 120)
        assert await store.rotate(next_rotation) is True
        assert await store.get(record.handle) == rotated(current, next_rotation)


async def test_paused_server_gives_store_error_then_recovers(factory: Factory, admin: aioredis.Redis) -> None:
    record = make_record(1)
    rotation = make_rotation(record, "child", T0 + 60)
    async with factory(socket_timeout=0.5) as store:
        await store.create(record)
        await admin.client_pause(3000, all=False)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"^Redis store: rotate failed \(TimeoutError"):
                await store.rotate(rotation)
            assert time.monotonic() - started < 1.5
            assert await store.get(record.handle) == record  # reads go on during a write pause
        finally:
            await admin.client_unpause()
        current = await store.get(record.handle)
        assert current in (record, rotated(record, rotation))  # the timed-out script may run after the pause
        assert current is not None
        assert await store.rotate(make_rotation(current, "after", T0 + 120)) is True
        assert await store.delete([record.handle]) == [record.handle]


async def test_unreachable_server_fails_fast(factory: Factory) -> None:
    store = factory("redis://127.0.0.1:1/0", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"^Redis store: connecting failed \(ConnectionError"):
        await store.open()
    assert time.monotonic() - started < 2
    with pytest.raises(StoreError, match="not open"):
        await store.get(handle_of(1))
    await store.close()


async def test_closed_store_refuses_operations(factory: Factory) -> None:
    store = factory()
    async with store:
        await store.create(make_record(1))
    with pytest.raises(StoreError, match="not open"):
        await store.list_for_user("user-1")


async def test_errors_name_the_operation_and_never_a_value(factory: Factory, admin: aioredis.Redis) -> None:
    record = make_record(1)
    rotation = make_rotation(record, "child", T0 + 60)
    async with factory() as store:
        await store.create(record)
        session_key = next(key for key in await keys_of(admin, store.prefix) if "{s:" in key)
        await admin.hset(session_key, "session_data", "not json")
        with pytest.raises(StoreError, match="not valid JSON"):
            await store.get(record.handle)
        await admin.delete(session_key)
        await admin.set(session_key, "a string, not a hash")
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get(record.handle),
            "rotate": lambda: store.rotate(rotation),
        }
        for operation, call in calls.items():
            with pytest.raises(StoreError) as caught:
                await call()
            message = str(caught.value)
            assert message.startswith(f"Redis store: {operation} failed (ResponseError: ")
            assert "WRONGTYPE" in message
            for secret in (record.refresh_hash, rotation.new_refresh_hash):
                assert secret not in message


async def test_a_policy_other_than_noeviction_is_logged(
    redis_url: str, prefixes: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:

        async def lru(*args: Any, **kwargs: Any) -> dict[str, str]:
            return {"maxmemory-policy": "allkeys-lru"}

        async def refused(*args: Any, **kwargs: Any) -> dict[str, str]:
            raise ResponseError("ERR unknown command 'CONFIG'")

        prefixes.append(fresh_prefix())
        monkeypatch.setattr(client, "config_get", refused)
        with caplog.at_level(logging.WARNING, logger="asgi_session"):
            async with RedisStore(client, prefix=prefixes[-1]):
                pass
            assert not caplog.records
            monkeypatch.setattr(client, "config_get", lru)
            async with RedisStore(client, prefix=prefixes[-1]):
                pass
        assert "allkeys-lru" in caplog.text
        assert "noeviction" in caplog.text
    finally:
        await client.aclose()


# --- construction ----------------------------------------------------------------------------------


def test_store_from_url_builds_a_redis_store() -> None:
    store = store_from_url("redis://127.0.0.1:6379/0?prefix=x")
    assert isinstance(store, RedisStore)
    assert store.prefix == "x"
    secure = store_from_url("rediss://user:hunter2@example.com:6380/1?socket_timeout=1")
    assert isinstance(secure, RedisStore)
    assert secure.prefix == "asgi_session"
    assert "hunter2" not in repr(secure)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?prefix=a&prefix=b",
        "redis://127.0.0.1:6379/0?prefix=",
        "redis://127.0.0.1:6379/0?prefix=%7Bx%7D",
        "redis://:hunter2@127.0.0.1:6379/0?socket_timeout=soon",
    ],
)
def test_bad_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        {"prefix": "a{b"},
        {"prefix": ""},
        {"ttl_leeway": 0},
        {"ttl_leeway": float("nan")},
        {"socket_timeout": True},
        {"connect_timeout": float("inf")},
        {"max_connections": 0},
        {"retries": -1},
    ],
)
def test_bad_settings_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:6379/0", **options)


def test_a_bad_client_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio\.Redis"):
        RedisStore(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="malformed") as caught:
        RedisStore("http://user:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(caught.value)


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "redis" or name.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "asgi_session.stores.redis")
    # No collection during the import: on Python 3.10 a finalizer that imports while this thread waits for an
    # import lock corrupts importlib's per-thread bookkeeping (KeyError in _ModuleLock, seen once in CI).
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[redis\]'"):
            importlib.import_module("asgi_session.stores.redis")
    finally:
        gc.enable()
    with pytest.raises(ConfigurationError, match=r"pip install 'asgi-session\[redis\]'"):
        store_from_url("redis://127.0.0.1:6379/0")
