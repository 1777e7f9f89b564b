"""Failovers of a real Redis Cluster under load: 503s at worst, never a wrong answer.

``CLUSTER FAILOVER`` sent to a replica makes it its primary's successor (the old primary stops taking writes, the
replica catches up, they swap). While one happens, requests through the middleware (``tests/_multiprocess_app.py``
with access-token blacklisting, so every verification reads the store) and refreshes go on: each answer must be the
right one (200 for a live session, 401 for a revoked one) or a 503; never a 401 for a live session (a silent logout)
nor a 200 for a revoked one (a silent login). The revocation feed, cut by a failover of the primary that holds the
log, restarts on the new primary and loses nothing. The HTTP test fails over every primary once, in turn, the feed
test the log's; the cluster keeps its new roles afterwards (``.ci/redis-cluster`` only needs one that answers). A
replica demoted a moment ago resyncs for a few seconds before it can be failed over again, so a rerun waits.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from asgi_session import StoreError
from asgi_session.stores import store_from_url
from asgi_session.stores.base import Revocation
from asgi_session.stores.redis import RedisStore
from asgi_session.testing._records import handle_of, make_record
from tests._store_urls import async_shared_store_url
from tests.test_store_faults_http import UNAUTHORISED, Site, Tokens, assert_unavailable, open_site

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SETTLE_TIMEOUT = 20.0  # bound on a failover and on the cluster agreeing on it


# -- failing over -----------------------------------------------------------------------------------------------


def node_client(address: str) -> aioredis.Redis:
    """A plain client for one node (``host:port``)."""
    host, _, port = address.rpartition(":")
    return aioredis.Redis(host=host, port=int(port), decode_responses=True, socket_timeout=2)


async def cluster_nodes(address: str) -> list[tuple[str, str, set[str], str]]:
    """``CLUSTER NODES`` as one node sees it: (id, host:port, flags, primary's id or '-') per node."""
    client = node_client(address)
    try:
        text = await client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    rows = []
    for line in str(text).splitlines():
        fields = line.split()
        rows.append((fields[0], fields[1].partition("@")[0], set(fields[2].split(",")), fields[3]))
    return rows


async def cluster_ok(address: str) -> bool:
    client = node_client(address)
    try:
        info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    return "cluster_state:ok" in str(info)


async def replica_in_sync(address: str) -> bool:
    """Whether a replica's link to its primary is up and no full sync is running (a manual failover needs both)."""
    client = node_client(address)
    try:
        info = await client.info("replication")
    finally:
        await client.aclose()
    return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")


async def fail_over(admin: RedisCluster, primary: str) -> str:
    """Make a replica of ``primary`` (host:port) take its place; wait until every node agrees. Returns the new one.

    A replica still syncing (as one is for a few seconds after a failover made it one) refuses, or lets the manual
    failover time out: the request waits for the replica to be in sync, and is sent again if it timed out.
    """
    with anyio.fail_after(SETTLE_TIMEOUT):
        while True:
            nodes = await cluster_nodes(primary)
            primary_id = next(node_id for node_id, address, _, _ in nodes if address == primary)
            replicas = [address for _, address, flags, parent in nodes if parent == primary_id and "fail" not in flags]
            if replicas:
                replica = replicas[0]
                break
            await anyio.sleep(0.05)  # a node just demoted may not list its primary's replicas yet
        while True:
            while not await replica_in_sync(replica):  # noqa: ASYNC110 - polls the server's state
                await anyio.sleep(0.05)
            client = node_client(replica)
            try:
                await client.execute_command("CLUSTER", "FAILOVER")  # type: ignore[no-untyped-call]
            finally:
                await client.aclose()
            with anyio.move_on_after(6):  # Redis gives a manual failover 5 s
                while True:  # every node sees the replica as a primary, and the cluster as whole
                    views = [await cluster_nodes(address) for _, address, _, _ in nodes]
                    promoted = all(
                        "master" in flags for view in views for _, address, flags, _ in view if address == replica
                    )
                    if promoted and all([await cluster_ok(address) for _, address, _, _ in nodes]):
                        return replica
                    await anyio.sleep(0.05)


@pytest.fixture
async def primaries(cluster_admin: RedisCluster) -> list[str]:
    """The cluster's primaries (host:port) when the test starts."""
    return sorted(node.name for node in cluster_admin.get_primaries())


# -- over HTTP, under load --------------------------------------------------------------------------------------


@pytest.fixture
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    async with async_shared_store_url("redis_cluster", request, tmp_path) as url, open_site(url) as opened:
        yield opened


def refreshed(tokens: Tokens, response: httpx.Response) -> Tokens:
    return Tokens(response.cookies["sAccessToken"], response.cookies["sRefreshToken"], tokens.handle)


async def test_failovers_during_verifications_and_refreshes_give_503s_at_worst(
    site: Site, cluster_admin: RedisCluster, primaries: list[str]
) -> None:
    live = [await site.login(f"user-{n}") for n in range(8)]
    revoked = [await site.login(f"gone-{n}") for n in range(4)]
    for tokens in revoked:
        assert await site.manager.revoke_session(tokens.handle) is True
    outcomes: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    stop = anyio.Event()

    def judge(what: str, response: httpx.Response, right: int) -> bool:
        """Count the answer; a 503 must be the protocol's, anything but ``right`` or 503 is a wrong answer."""
        outcomes[f"{what} {response.status_code}"] += 1
        if response.status_code == 503:
            assert_unavailable(response)
        elif response.status_code != right:
            wrong.append(f"{what}: {response.status_code} {response.text}")
        return response.status_code == right

    async def keep_using(n: int) -> None:
        tokens = live[n]
        while not stop.is_set():
            response = await site.me(tokens)
            if judge("verify", response, 200):
                assert response.json()["handle"] == tokens.handle
            response = await site.refresh(tokens.refresh)
            if judge("refresh", response, 200):
                tokens = refreshed(tokens, response)
        live[n] = tokens

    async def keep_trying(tokens: Tokens) -> None:
        while not stop.is_set():
            response = await site.me(tokens)
            if judge("revoked verify", response, 401):
                assert response.json() == UNAUTHORISED

    async with anyio.create_task_group() as group:
        for n in range(len(live)):
            group.start_soon(keep_using, n)
        for tokens in revoked:
            group.start_soon(keep_trying, tokens)
        await anyio.sleep(0.3)
        for primary in primaries:
            await fail_over(cluster_admin, primary)
            await anyio.sleep(0.3)
        stop.set()

    assert wrong == []
    assert outcomes["verify 200"] > 0
    assert outcomes["refresh 200"] > 0
    assert outcomes["revoked verify 401"] > 0
    # The same manager, after the failovers: every live session verifies and refreshes, every revoked one is refused.
    for tokens in live:
        assert (await site.me(tokens)).status_code == 200
        response = await site.refresh(tokens.refresh)
        assert response.status_code == 200, response.text
        assert (await site.me(refreshed(tokens, response))).status_code == 200
    for tokens in revoked:
        assert (await site.me(tokens)).status_code == 401
    assert await site.manager.revoke_all_sessions_for_user("user-0") == [live[0].handle]
    assert (await site.me(live[0])).status_code == 401


# -- the revocation feed --------------------------------------------------------------------------------------


async def test_the_feed_restarts_on_the_new_primary_and_loses_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, cluster_admin: RedisCluster
) -> None:
    delivered: list[Revocation] = []
    failures: list[StoreError] = []
    refused = 0

    def deliver(entries: list[Revocation], as_of: float) -> None:
        delivered.extend(entries)

    async def follow_forever(store: RedisStore) -> None:
        """What the manager's follower does: start again from the last entry delivered after each failure."""
        while True:
            try:
                await store.follow_revocations(
                    delivered[-1][0] if delivered else 0, deliver, now=anyio.current_time, heartbeat=0.2
                )
            except StoreError as exc:
                failures.append(exc)
                await anyio.sleep(0.05)

    async def revoke_batches(store: RedisStore, start: int) -> None:
        nonlocal refused
        for number in range(start, start + 200, 4):
            batch = [handle_of(n) for n in range(number, number + 4)]
            try:
                for n in range(number, number + 4):
                    await store.create(make_record(n))
                await store.delete(batch)
            except StoreError:
                refused += 1  # a 503 in the middleware: the caller tries again later

    async with async_shared_store_url("redis_cluster", request, tmp_path) as url:
        store = store_from_url(url)
        assert isinstance(store, RedisStore)
        async with store, anyio.create_task_group() as group:
            group.start_soon(follow_forever, store)
            async with anyio.create_task_group() as revokers:
                revokers.start_soon(revoke_batches, store, 1)
                log_primary = cluster_admin.get_node_from_key(f"{store.prefix}:{{revocations}}")
                assert log_primary is not None
                await anyio.sleep(0.1)
                await fail_over(cluster_admin, log_primary.name)  # the feed's own server
            await revoke_batches(store, 1001)  # after the failovers
            logged = await store.revocations_since(0)
            with anyio.fail_after(SETTLE_TIMEOUT):
                while len(delivered) < len(logged):  # noqa: ASYNC110 - the feed signals nothing else
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        assert delivered == logged  # in order, nothing twice, nothing missed
        assert [seq for seq, _ in logged] == list(range(1, len(logged) + 1))
        assert len(logged) >= 50 * 4 - 4 * refused
        assert not any("went back" in str(exc) for exc in failures)
