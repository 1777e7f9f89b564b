"""RedisStore on a real Redis Cluster (three primaries, three replicas on 127.0.0.1; ``.ci/redis-cluster``).

The conformance suite through a ``redis+cluster://`` URL and through a ``RedisCluster`` passed in; where the keys land
(every primary holds some, one operation's keys share a slot); the revocation log and its feed on the primary that
holds it; the cluster URL's form. A cluster refuses a command or script whose keys span slots (``CROSSSLOT``), so
the suite passing here is the proof that none does. Skipped on a laptop without ``ASGI_SESSION_REDIS_CLUSTER_URL``, a
failure in CI.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from asgi_session.exceptions import ConfigurationError, StoreError
from asgi_session.stores import store_from_url
from asgi_session.stores.base import SessionStore
from asgi_session.stores.redis import RedisStore
from asgi_session.testing import CONFORMANCE_CHECKS, PersistedReader, run_conformance_suite
from asgi_session.testing._records import T0, handle_of, make_record, make_rotation, rotated
from tests._store_urls import delete_redis_keys, redis_keys, unique_name, with_query
from tests.stores.conftest import cluster_node_url
from tests.stores.test_redis_revocations import Recorder, revoke, ticks

pytestmark = pytest.mark.anyio

Factory = Callable[..., RedisStore]


@pytest.fixture
async def factory(redis_cluster_url: str) -> AsyncIterator[Factory]:
    """Builds an unopened store on the cluster under a new prefix; every key is removed afterwards."""
    used: list[str] = []

    def build(source: RedisCluster | str = redis_cluster_url, **options: Any) -> RedisStore:
        options.setdefault("prefix", unique_name("cluster"))
        used.append(options["prefix"])
        return RedisStore(source, **options)

    yield build
    with anyio.CancelScope(shield=True):
        for prefix in used:
            await anyio.to_thread.run_sync(delete_redis_keys, redis_cluster_url, prefix)
            assert await anyio.to_thread.run_sync(redis_keys, redis_cluster_url, prefix) == []


async def keys_of(admin: RedisCluster, prefix: str) -> list[str]:
    """Every key under ``prefix``, on every primary."""
    found: list[str] = []
    for node in admin.get_primaries():
        found += await node_keys(admin, node.host, int(node.port), prefix)
    return sorted(found)


async def node_keys(admin: RedisCluster, host: str, port: int, prefix: str) -> list[str]:
    client = aioredis.Redis(host=host, port=port, decode_responses=True)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    finally:
        await client.aclose()


@pytest.fixture
def dump_keys(cluster_admin: RedisCluster) -> PersistedReader:
    """Every key name and value under the store's prefix, on every primary, as text."""

    async def read(store: SessionStore) -> bytes:
        assert isinstance(store, RedisStore)
        chunks: list[str] = []
        for key in await keys_of(cluster_admin, store.prefix):
            kind = await cluster_admin.type(key)
            if kind == "string":
                chunks += [key, str(await cluster_admin.get(key))]
            elif kind == "hash":
                chunks += [key, *(f"{k!s}={v!s}" for k, v in (await cluster_admin.hgetall(key)).items())]
            elif kind == "zset":
                chunks += [key, *await cluster_admin.zrange(key, 0, -1)]
            elif kind == "stream":
                chunks += [key, *(str(entry) for entry in await cluster_admin.xrange(key) or [])]
            else:
                chunks += [key, f"<unexpected type {kind!s}>"]
        return "\n".join(chunks).encode()

    return read


# --- conformance ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", sorted(CONFORMANCE_CHECKS))
async def test_conforms_on_a_cluster(check: str, factory: Factory, dump_keys: PersistedReader) -> None:
    await CONFORMANCE_CHECKS[check](factory, persisted=dump_keys)


async def test_conforms_with_a_cluster_client_passed_in(factory: Factory, redis_cluster_url: str) -> None:
    """A ``RedisCluster`` passed in (bytes replies, its own settings) works as it is, and close() leaves it open."""
    client = RedisCluster.from_url(cluster_node_url(redis_cluster_url))
    try:
        await run_conformance_suite(lambda: factory(client))
        assert await client.ping() is True
    finally:
        await client.aclose()


# --- where the keys land -------------------------------------------------------------------------------------


async def test_sessions_spread_over_every_primary_and_each_operations_keys_share_a_slot(
    factory: Factory, cluster_admin: RedisCluster
) -> None:
    async with factory() as store:
        for n in range(1, 61):
            await store.create(make_record(n, user_id=f"user-{n % 20}", tenant_id="public" if n % 2 else "t:{x}"))
        keys = await keys_of(cluster_admin, store.prefix)
        holders = {cluster_admin.get_node_from_key(key).name for key in keys}  # type: ignore[union-attr]
        assert holders == {node.name for node in cluster_admin.get_primaries()}  # every primary holds a share
        assert len([key for key in keys if "{s:" in key]) == 60  # a session is one key: one slot
        for user in (f"user-{n}" for n in range(20)):
            index = next(key for key in keys if key.endswith(f":u:{user}"))
            shard = index.rpartition(":u:")[0] + ":expiry"
            assert shard in keys
            assert key_slot(index.encode()) == key_slot(shard.encode())  # the create's first script
            listed = await store.list_for_user(user)
            assert len(listed) == 3
            assert {record.user_id for record in listed} == {user}
        public = [record.handle for record in await store.list_for_user("user-1") if record.tenant_id == "public"]
        assert await store.delete_for_user("user-1", "public") == public
        assert await store.delete_expired(10**12) == 60 - len(public)
        assert [key for key in await keys_of(cluster_admin, store.prefix) if "{revocations}" not in key] == []


async def test_revoke_all_and_delete_expired_leave_nothing_but_the_log(
    factory: Factory, cluster_admin: RedisCluster
) -> None:
    async with factory() as store:
        for n in range(1, 31):
            await store.create(make_record(n, user_id=f"user-{n % 3}"))
        revoked = await store.delete_for_user("user-0")
        assert sorted(revoked) == sorted(handle_of(n) for n in range(3, 31, 3))
        assert [entry[1] for entry in await store.revocations_since(0)] == revoked
        assert await store.delete_expired(10**12) == 20
        assert [key for key in await keys_of(cluster_admin, store.prefix) if "{revocations}" not in key] == []


# --- the revocation log and its feed -------------------------------------------------------------------------


async def test_the_feed_delivers_a_catch_up_then_every_entry_in_order(
    factory: Factory, cluster_admin: RedisCluster
) -> None:
    recorder = Recorder()
    async with factory() as store:
        await revoke(store, 1, 2, 3)
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(recorder.run, store, 1, now=ticks(), heartbeat=0.2))
            await recorder.wait_for(lambda: len(recorder.calls) >= 1)
            assert recorder.calls[0][0] == [(2, handle_of(2)), (3, handle_of(3))]  # the catch-up
            # The feed's two connections are on the primary that holds the log.
            primary = cluster_admin.get_node_from_key(f"{store.prefix}:{{revocations}}")
            assert primary is not None
            node = aioredis.Redis(host=primary.host, port=int(primary.port), decode_responses=True)
            try:
                named = [c for c in await node.client_list() if c["name"] == f"{store.prefix}:feed"]
            finally:
                await node.aclose()
            assert len(named) == 2
            async with anyio.create_task_group() as revokers:  # concurrent deletes, several per script
                for start in range(10, 70, 5):
                    revokers.start_soon(revoke, store, *range(start, start + 5))
            await recorder.wait_for(lambda: len(recorder.entries) == 62)
            group.cancel_scope.cancel()
        assert recorder.failure is None
        assert recorder.entries == await store.revocations_since(1)  # in order, nothing twice, nothing missed


# --- faults --------------------------------------------------------------------------------------------------


async def test_a_paused_primary_gives_store_error_within_the_retries_then_recovers(
    factory: Factory, cluster_admin: RedisCluster
) -> None:
    """A primary that stops answering: each try waits ``socket_timeout``, ``retries + 3`` tries in all."""
    record = make_record(1)
    rotation = make_rotation(record, "child", T0 + 60)
    async with factory(socket_timeout=0.3, retries=0) as store:
        await store.create(record)
        primary = cluster_admin.get_node_from_key(f"{store.prefix}:{{s:{record.handle}}}")
        assert primary is not None
        node = aioredis.Redis(host=primary.host, port=int(primary.port), decode_responses=True)
        try:
            await node.client_pause(3000, all=False)  # writes (and scripts) wait
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"^Redis store: rotate failed \(TimeoutError"):
                await store.rotate(rotation)
            assert time.monotonic() - started < 3 * 0.3 + 1.5  # three tries and the backoff, on a loaded machine
        finally:
            await node.client_unpause()
            await node.aclose()
        current = await store.get(record.handle)
        assert current in (record, rotated(record, rotation))  # a timed-out script may run after the pause
        assert current is not None
        assert await store.rotate(make_rotation(current, "after", T0 + 120)) is True


# --- the URL ---------------------------------------------------------------------------------------------------


def test_store_from_url_builds_a_cluster_store() -> None:
    store = store_from_url("redis+cluster://127.0.0.1:7100/?prefix=x")
    assert isinstance(store, RedisStore)
    assert store.prefix == "x"
    secure = store_from_url("rediss+cluster://user:hunter2@example.com:6380/0?socket_timeout=1")
    assert isinstance(secure, RedisStore)
    assert "hunter2" not in repr(secure)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://:hunter2@127.0.0.1:7100/1",  # a cluster has database 0 only
        "redis+cluster:///tmp/redis.sock",  # no host
        "redis+cluster://:hunter2@127.0.0.1:7100/0?socket_timeout=soon",
    ],
)
def test_bad_cluster_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    assert "hunter2" not in str(caught.value)


async def test_an_unreachable_cluster_fails_fast(factory: Factory) -> None:
    store = factory("redis+cluster://127.0.0.1:1/", connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"^Redis store: connecting failed"):
        await store.open()
    assert time.monotonic() - started < 5
    await store.close()


async def test_cluster_url_parameters_reach_every_node(
    factory: Factory, redis_cluster_url: str, cluster_admin: RedisCluster
) -> None:
    """redis-py's own query parameters (here a client name) apply to the connections to every node."""
    name = unique_name("named")
    async with factory(with_query(redis_cluster_url, client_name=name)) as store:
        for n in range(1, 21):
            await store.create(make_record(n, user_id=f"user-{n}"))
        assert len(await store.list_for_user("user-3")) == 1
        named = set()
        for node in cluster_admin.get_primaries():
            client = aioredis.Redis(host=node.host, port=int(node.port), decode_responses=True)
            try:
                if any(c["name"] == name for c in await client.client_list()):
                    named.add(node.name)
            finally:
                await client.aclose()
        assert named == {node.name for node in cluster_admin.get_primaries()}
