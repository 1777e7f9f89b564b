"""Faults in the revocation feed, at the manager level, against real Redis and PostgreSQL servers.

With ``access_token_blacklisting`` and ``revocation_max_lag``, a manager checks revocations from its in-memory view
only while its store's push feed has confirmed the view within the lag; otherwise it reads the store. Each test
breaks the feed the way production breaks it, and checks what the library promises: a session revoked by another
manager (``other``, standing for another process) is refused by the verifying manager (``web``) once the bound has
passed, by a store read while the view is not trusted; the feed recovers by itself; and then verification is
answered from memory again.

- A killed feed connection (``CLIENT KILL`` on Redis, ``pg_terminate_backend`` on PostgreSQL): loss and recovery are
  logged, and in between every verification reads the store.
- A server that stops answering the feed while its connection stays up (``CLIENT PAUSE ... ALL`` on Redis; on
  PostgreSQL a lock that holds the feed's read of the log): the view stops being trusted after the lag, and a
  revoked session is never accepted once the bound has passed.
- The hard case, the connection up but nothing arriving while everything else works. On Redis, a TCP proxy holds
  back the replies to the feed's blocking ``XREAD`` (any other connection, such as one that confirms how far the
  log goes, still answers): the view must stop being trusted, not be confirmed past entries it never received. On
  PostgreSQL, the driver drops every notification: the heartbeat's read of the log still delivers the revocation
  within the bound (a notification only wakes the feed early).
- A log whose numbers go back (a Redis restart without persistence, an older snapshot, an eviction or a failover to
  a replica that lagged; on PostgreSQL a restore or a failover): the feed notices that the log ends below its
  position, and the manager reads the whole log again (this was a bug: the view stayed trusted without the new
  entries, so a revoked session was accepted until its access token expired).

Instruments, on the verifying manager's store only: its reads (``get``) are counted per handle, which proves when a
verification fell back to the store; and a restart of its feed can be held back, so that the window in which the
feed is down lasts as long as the test needs instead of the follower's 50 ms retry (the follower still restarts the
feed by itself, through the same call). Every wait is bounded; no duration is asserted except the guarantee itself
(after the bound, refused).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from asgi_session import Session, SessionConfig, SessionManager, StoreError, UnauthorisedError
from asgi_session._feed import FeedFollower
from asgi_session.stores import store_from_url
from asgi_session.stores.base import Revocation, SessionRecord, SessionStore
from asgi_session.stores.postgres import PostgresStore
from asgi_session.stores.redis import RedisStore
from tests._store_urls import async_shared_store_url

pytestmark = pytest.mark.anyio

LAG = 0.3  # revocation_max_lag: the feed's heartbeat is a third of it
STALL_MS = 1500  # how long a Redis pause lasts; shorter than the feed's own bound (heartbeat + socket_timeout)
BOUND = 10.0  # the longest any single wait may take before the test fails

LOST, RECOVERED = "revocation feed lost", "revocation feed recovered"


async def eventually(condition: Callable[[], bool]) -> None:
    """Poll ``condition()`` every 10 ms until it holds; fail after ``BOUND`` seconds (a bound, never a timing)."""
    with anyio.fail_after(BOUND):
        while not condition():  # noqa: ASYNC110 - the states polled (the feed's, a server's) signal no event
            await anyio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    """How many records of the ``asgi_session`` logger contain ``text``."""
    return sum(text in record.getMessage() for record in caplog.records if record.name == "asgi_session")


# -- the verifying manager's store, watched ----------------------------------------------------------------------


class Watched:
    """Counts the store's reads per handle, and can hold back the (re)starts of its feed.

    The store is the real one: only ``get`` and ``follow_revocations`` are wrapped, on the instance.
    """

    def __init__(self, store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store
        self.reads: Counter[str] = Counter()
        self.feed_starts = 0
        self._go = anyio.Event()
        self._go.set()
        get, follow = store.get, getattr(store, "follow_revocations")  # noqa: B009 - not on SessionStore

        async def counted_get(handle: str) -> SessionRecord | None:
            self.reads[handle] += 1
            return await get(handle)

        async def gated_follow(
            after: int,
            deliver: Callable[[list[Revocation], float], None],
            *,
            now: Callable[[], float],
            heartbeat: float,
        ) -> None:
            await self._go.wait()
            self.feed_starts += 1
            await follow(after, deliver, now=now, heartbeat=heartbeat)

        monkeypatch.setattr(store, "get", counted_get)
        monkeypatch.setattr(store, "follow_revocations", gated_follow)

    def hold_restarts(self) -> None:
        """From now on, a (re)start of the feed waits until :meth:`release_restarts`."""
        self._go = anyio.Event()

    def release_restarts(self) -> None:
        self._go.set()


# -- the servers, driven from outside the library ----------------------------------------------------------------


class Server(Protocol):
    """What a test does to a backend behind the library's back."""

    async def feed_connections(self, store: SessionStore) -> list[str]:
        """The ids of the store's feed connections the server knows (by name)."""

    async def kill(self, connection: str) -> None:
        """End one connection from the server's side."""

    def stall(self, store: SessionStore) -> contextlib.AbstractAsyncContextManager[None]:
        """While the block runs, the server does not answer the feed (its connection stays up)."""

    async def rewind_log(self, store: SessionStore) -> None:
        """Make the revocation log start over, as data lost or restored on the server would."""


@dataclass
class RedisServer:
    admin: aioredis.Redis

    async def feed_connections(self, store: SessionStore) -> list[str]:
        assert isinstance(store, RedisStore)
        return [client["id"] for client in await self.admin.client_list() if client["name"] == f"{store.prefix}:feed"]

    async def kill(self, connection: str) -> None:
        await self.admin.client_kill_filter(_id=connection)

    @contextlib.asynccontextmanager
    async def stall(self, store: SessionStore) -> AsyncIterator[None]:
        # ALL, not WRITE: the feed's XREAD is a read. Every client waits, the store's own reads too.
        await self.admin.client_pause(STALL_MS, all=True)
        try:
            yield
        finally:
            # Waits for the pause to end on Redis 7.0 (the unpause is paused too); ends it at once where it can.
            with anyio.move_on_after(STALL_MS / 1000 + BOUND, shield=True):
                await self.admin.client_unpause()

    async def rewind_log(self, store: SessionStore) -> None:
        assert isinstance(store, RedisStore)
        log = f"{store.prefix}:{{revocations}}"
        assert await self.admin.delete(log, f"{log}:seq") == 2


@dataclass
class PostgresServer:
    admin: Any  # an asyncpg connection
    dsn: str

    async def feed_connections(self, store: SessionStore) -> list[str]:
        assert isinstance(store, PostgresStore)
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
        return [str(row["pid"]) for row in await self.admin.fetch(query, store.feed_application_name)]

    async def kill(self, connection: str) -> None:
        assert await self.admin.fetchval("SELECT pg_terminate_backend($1)", int(connection))

    @contextlib.asynccontextmanager
    async def stall(self, store: SessionStore) -> AsyncIterator[None]:
        # The feed's read of the log waits for this lock (the revokes' inserts too); the sessions stay readable.
        assert isinstance(store, PostgresStore)
        locker = await asyncpg.connect(self.dsn)
        try:
            async with locker.transaction():
                await locker.execute(f'LOCK TABLE "{store.schema}".revocations IN ACCESS EXCLUSIVE MODE')
                yield
        finally:
            with anyio.CancelScope(shield=True):
                await locker.close()

    async def rewind_log(self, store: SessionStore) -> None:
        assert isinstance(store, PostgresStore)
        schema = f'"{store.schema}"'
        async with self.admin.transaction():
            await self.admin.execute("DELETE FROM {s}.revocations".replace("{s}", schema))
            await self.admin.execute("UPDATE {s}.revocation_counter SET last_seq = 0".replace("{s}", schema))


# -- a proxy that holds back the replies of the connections that push ---------------------------------------------

PUSH_COMMAND = b"\r\nXREAD\r\n"  # how RESP spells the command of a blocking read of the log


_LINK_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class _Link:
    """One proxied connection: whether its client has sent a push read, and the gate on the server's replies."""

    def __init__(self) -> None:
        self.pushes = False
        self.gate: anyio.Event | None = None  # while set to an unset event, replies wait

    async def requested(self, chunk: bytes) -> None:
        self.pushes = self.pushes or PUSH_COMMAND in chunk

    async def replying(self, chunk: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()


class HoldingProxy:
    """A TCP proxy in front of Redis that can hold back, without closing anything, the replies to push reads.

    ``hold()`` stops passing the server's bytes to every connection that has sent an ``XREAD``: the feed's push
    connection stays up, its requests reach the server, and nothing comes back; ``release()`` passes what was held.
    Every other connection (the store's pool, any connection that confirms the log's position) goes on as before.
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._links: list[_Link] = []
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HoldingProxy]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio's, not Django's
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, self._relay)
            try:
                yield self
            finally:
                self.release()
                group.cancel_scope.cancel()

    def hold(self) -> int:
        """Hold the replies to every connection that pushes; return how many."""
        held = [link for link in self._links if link.pushes]
        for link in held:
            link.gate = anyio.Event()
        return len(held)

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Hold the replies to the pushing connections for the block (there must be one)."""
        assert self.hold() >= 1
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        for link in self._links:
            gate, link.gate = link.gate, None
            if gate is not None:
                gate.set()

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        link = _Link()
        self._links.append(link)
        try:
            with contextlib.suppress(*_LINK_ERRORS):
                async with (
                    client,
                    await anyio.connect_tcp(*self._upstream) as server,
                    anyio.create_task_group() as pumps,
                ):
                    pumps.start_soon(_pump, client, server, link.requested, pumps.cancel_scope)
                    pumps.start_soon(_pump, server, client, link.replying, pumps.cancel_scope)
        finally:
            self._links.remove(link)


async def _pump(
    source: anyio.abc.SocketStream,
    sink: anyio.abc.SocketStream,
    watch: Callable[[bytes], Awaitable[None]],
    link_scope: anyio.CancelScope,
) -> None:
    """Pass bytes one way, each chunk after ``watch(chunk)``, until either side ends; then end the link."""
    with contextlib.suppress(*_LINK_ERRORS):
        async for chunk in source:
            await watch(chunk)
            await sink.send(chunk)
    link_scope.cancel()


@contextlib.asynccontextmanager
async def server_for(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    if kind == "redis":
        redis_admin = aioredis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
        try:
            yield RedisServer(redis_admin)
        finally:
            await redis_admin.aclose()
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")
        postgres_admin = await asyncpg.connect(dsn)
        try:
            yield PostgresServer(postgres_admin, dsn)
        finally:
            await postgres_admin.close()


# -- the scene: two managers on one store, two sessions, the feed current ----------------------------------------


@dataclass
class Scene:
    web: SessionManager  # verifies, from its view while the feed is fresh
    other: SessionManager  # revokes, as another process would
    watched: Watched
    server: Server
    victim: Session  # the session the tests revoke
    keeper: Session  # a session nobody revokes
    proxy: HoldingProxy | None = None  # in front of the verifying manager's Redis store, when the test asked

    @property
    def follower(self) -> FeedFollower:
        follower = self.web._follower
        assert follower is not None
        return follower

    async def outcome(self, session: Session) -> str:
        """What the verifying manager answers for the session's access token (blacklisting on)."""
        try:
            await self.web.get_session_without_request_response(session.access_token)
        except UnauthorisedError:
            return "refused"
        except StoreError:
            return "store error"
        return "accepted"

    async def answers_from_memory(self, *, victim: str = "refused") -> None:
        """Once the feed is fresh: the victim gets ``victim``, the keeper is accepted, and neither reads the store."""
        await eventually(self.follower.fresh)
        self.watched.reads.clear()
        assert await self.outcome(self.victim) == victim
        assert await self.outcome(self.keeper) == "accepted"
        assert self.watched.reads == Counter()

    async def feed_connections(self, *, other_than: frozenset[str] = frozenset()) -> frozenset[str]:
        """The ids of the verifying manager's feed connections (one on PostgreSQL, one or more on Redis).

        Waits until there is at least one, and none of ``other_than`` is left (a terminated backend takes a moment
        to leave ``pg_stat_activity``).
        """
        with anyio.fail_after(BOUND):
            while True:
                found = frozenset(await self.server.feed_connections(self.web.store))
                if found and not found & other_than:
                    return found
                await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def routed(url: str, through_proxy: bool) -> AsyncIterator[tuple[str, HoldingProxy | None]]:
    """The URL for the verifying manager's store: ``url``, or the same Redis through a :class:`HoldingProxy`."""
    if not through_proxy:
        yield url, None
        return
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    async with HoldingProxy(parts.hostname or "127.0.0.1", parts.port or 6379).running() as proxy:
        netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
        yield urlunsplit(parts._replace(netloc=netloc)), proxy


@pytest.fixture(params=["redis", "postgres"])
async def scene(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Scene]:
    """Two managers on a fresh store (``redis``, ``postgres``, or ``redis+proxy``), two sessions, the feed current."""
    caplog.set_level(logging.WARNING, logger="asgi_session")
    kind, _, via = str(request.param).partition("+")
    async with (
        async_shared_store_url(kind, request, tmp_path) as url,
        server_for(kind, request) as server,
        routed(url, via == "proxy") as (web_url, proxy),
    ):
        store = store_from_url(web_url)
        watched = Watched(store, monkeypatch)
        config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=LAG)
        async with SessionManager(store, config) as web, SessionManager(store_from_url(url), SessionConfig()) as other:
            victim = await web.create_new_session_without_request_response("alice")
            keeper = await web.create_new_session_without_request_response("bob")
            built = Scene(web, other, watched, server, victim, keeper, proxy)
            # The feed is current, and both tokens are in the verified-token cache.
            await built.answers_from_memory(victim="accepted")
            assert logged(caplog, LOST) == 0
            yield built


# -- the tests ---------------------------------------------------------------------------------------------------


async def test_a_killed_feed_connection_is_covered_by_store_reads_until_the_feed_recovers_on_its_own(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    killed = await scene.feed_connections()
    scene.watched.hold_restarts()  # the follower's restart waits here, so the window lasts as long as the test needs
    for connection in killed:
        await scene.server.kill(connection)
    await eventually(lambda: logged(caplog, LOST) == 1)
    assert not scene.follower.fresh()

    await scene.other.revoke_session(scene.victim.handle)
    scene.watched.reads.clear()
    assert await scene.outcome(scene.victim) == "refused"
    assert await scene.outcome(scene.keeper) == "accepted"
    assert scene.watched.reads == Counter({scene.victim.handle: 1, scene.keeper.handle: 1})  # the fallback

    scene.watched.release_restarts()
    await eventually(lambda: logged(caplog, RECOVERED) == 1)
    assert scene.watched.feed_starts == 2  # the first start, and the follower's one restart
    await scene.feed_connections(other_than=killed)  # new connections replaced the killed ones
    await scene.answers_from_memory()  # the catch-up brought the revocation made while the feed was down
    assert logged(caplog, LOST) == logged(caplog, RECOVERED) == 1  # each logged once


async def revoke_during(scene: Scene, fault: contextlib.AbstractAsyncContextManager[None]) -> None:
    """Revoke the victim elsewhere while ``fault`` keeps the feed from confirming the view, and check the promise.

    While the fault lasts, the view stops being trusted and a still-valid session is checked by a store read; from
    ``revocation_max_lag`` after the revoke returned, no verification of the victim that starts accepts it, during
    the fault or after it. A probe verifies the victim every 10 ms throughout.
    """
    probes: list[tuple[float, str]] = []  # (when the verification started, its outcome)
    returned_at: list[float] = []

    async def probe_the_victim() -> None:
        while True:
            started = anyio.current_time()
            probes.append((started, await scene.outcome(scene.victim)))
            await anyio.sleep(0.01)

    async def revoke_the_victim() -> None:
        assert await scene.other.revoke_session(scene.victim.handle)
        returned_at.append(anyio.current_time())

    async with anyio.create_task_group() as group:
        async with fault:
            group.start_soon(revoke_the_victim)  # on a stalled server it returns once the server answers again
            group.start_soon(probe_the_victim)
            await eventually(lambda: not scene.follower.fresh())  # no confirmation covers the view any more
            # A still-valid session is checked by a store read. On a paused Redis that read waits for the pause to
            # end (or fails with StoreError, a 503); it never says "revoked".
            before = scene.watched.reads[scene.keeper.handle]
            assert await scene.outcome(scene.keeper) in {"accepted", "store error"}
            assert scene.watched.reads[scene.keeper.handle] == before + 1
        await eventually(lambda: bool(returned_at))
        deadline = returned_at[0] + LAG  # the guarantee: no acceptance starts this long after the revoke returned
        await eventually(lambda: sum(started >= deadline for started, _ in probes) >= 3)
        group.cancel_scope.cancel()

    late = [outcome for started, outcome in probes if started >= deadline]
    assert late
    assert set(late) == {"refused"}


async def test_a_feed_the_server_stops_answering_is_not_trusted_and_a_revoke_is_never_accepted_past_the_bound(
    scene: Scene,
) -> None:
    await revoke_during(scene, scene.server.stall(scene.web.store))
    await scene.answers_from_memory()  # the feed caught up by itself


@pytest.mark.parametrize("scene", ["redis+proxy"], indirect=True)
async def test_a_redis_push_read_whose_replies_stop_leaves_the_view_untrusted_while_other_connections_work(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """The hard case: the feed's blocking read stays up and reaches the server, but its replies never come back.

    Every other connection works: the store's reads, and any connection the feed uses to confirm how far the log
    goes. A confirmation that the log ends at an entry the push side has not delivered must not make the view
    trusted, or the revoked session would be accepted from memory.
    """
    proxy = scene.proxy
    assert proxy is not None
    await revoke_during(scene, proxy.holding())
    await scene.answers_from_memory()  # the held replies arrived: the push side delivered the revocation
    assert scene.watched.feed_starts == 1  # released within the feed's own bound: it never failed
    assert logged(caplog, LOST) == 0


@pytest.mark.parametrize("scene", ["postgres"], indirect=True)
async def test_postgres_notifications_that_never_arrive_still_let_the_heartbeat_read_refuse_a_revoke_in_time(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection and its LISTEN stay up, but the driver drops every notification it receives.

    A confirmation is a read of the log, never a notification: a fresh view has read past the revocation.
    """
    dropped: list[str] = []

    def drop(connection: object, pid: int, channel: str, payload: str) -> None:
        dropped.append(channel)

    monkeypatch.setattr(asyncpg.connection.Connection, "_process_notification", drop)
    await scene.other.revoke_session(scene.victim.handle)
    returned = anyio.current_time()
    await eventually(lambda: len(dropped) >= 1)  # the NOTIFY reached the feed's connection, and went nowhere
    with anyio.fail_after(BOUND):
        await anyio.sleep(max(0.0, returned + LAG - anyio.current_time()))
    await eventually(scene.follower.fresh)
    with pytest.raises(UnauthorisedError):  # from the view: a fresh view must know it by now
        scene.web.verify_now(scene.victim.access_token)
    await scene.answers_from_memory()
    assert scene.watched.feed_starts == 1  # the feed never failed: it only waited for its heartbeat


async def test_a_revocation_numbered_again_after_the_log_went_back_is_still_refused_within_the_bound(
    scene: Scene,
) -> None:
    """A Redis restart without persistence, a crash restored from an older snapshot, ``allkeys-*`` eviction of the
    log's keys, or a failover to a replica that lagged (PostgreSQL: a restore or a failover to a lagging standby)
    give the log a counter lower than the position the managers' views have reached. The next revocations reuse
    numbers at or below that position. Regression: the feed asked for entries above it, got none, and its
    heartbeats kept confirming a view that lacked them. Now a read of how far the log goes that comes back below
    the position ends the feed with ``RevocationLogRewound``, and the next feed starts from 0.
    """
    earlier = [await scene.web.create_new_session_without_request_response("carol") for _ in range(2)]
    assert len(await scene.other.revoke_multiple_sessions([session.handle for session in earlier])) == 2
    await eventually(lambda: scene.web._revoked.position == 2)

    await scene.server.rewind_log(scene.web.store)
    late = await scene.web.create_new_session_without_request_response("dave")
    assert await scene.other.revoke_session(late.handle)  # logged as number 1 again
    with pytest.raises(UnauthorisedError):  # the store knows
        await scene.web.get_session_without_request_response(late.access_token, check_database=True)
    with anyio.fail_after(BOUND):
        await anyio.sleep(LAG)  # the bound has passed
    await eventually(scene.follower.fresh)  # the view is trusted again (after reading the new log from the start)
    with pytest.raises(UnauthorisedError):  # used to be accepted from the view, and stay so
        await scene.web.get_session_without_request_response(late.access_token)
    with pytest.raises(UnauthorisedError):  # from memory: the view holds the new entry
        scene.web.verify_now(late.access_token)
