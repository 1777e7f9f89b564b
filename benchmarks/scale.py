"""P6: cost of the per-session operations with 10^6 stored sessions against 10^3, on SQLite, Redis and PostgreSQL.

    python benchmarks/scale.py [--sizes 1000,1000000] [--stores sqlite,redis,postgres] [--ops 300]
                               [--rounds 10] [--per-user 10] [--json PATH]

Stores: as in ``stores.py`` (``prepare_stores`` there): SQLite is a file in a temporary folder, Redis
(``ASGI_SESSION_REDIS_URL``) gets a unique key prefix and PostgreSQL (``ASGI_SESSION_POSTGRES_DSN``) a unique schema;
a store whose variable is unset or whose server does not answer is skipped and named. Each store is made once per
size, so the small and the large store of a kind are open side by side. Everything written (the temporary folder,
the Redis keys, the PostgreSQL schemas) is removed at the end, also after an error or Ctrl-C.

Fill. Each store is filled directly, not through the manager: ``size`` sessions of ``--per-user`` sessions per user
(uuid4 handles led by their user's ``handle_prefix`` as the manager makes them, or random throughout with ``--handles
random``, the layout before 2026-12-03; tenant ``public``, empty data and payload, each created at a random moment of
the last 29 days and expiring 30 days after it; session ``i`` belongs to user ``i % users``). The sessions are inserted
oldest first, as a live system creates them, so the users' sessions interleave in time and a user's lie far apart in
insertion order; ``--fill-order index`` inserts them by ``i`` instead (the order before 2026-12-03: every user's first
session, then every user's second, ...; users in the order of their ids). SQLite: one ``executemany`` of the store's own
``INSERT`` in one transaction (rows encoded by the store's own ``to_row``), then a WAL checkpoint. Redis: the store's
own ``create`` Lua script sent by SHA in pipelines of 2,000 calls, so every key, index entry and TTL is exactly what
``RedisStore.create`` writes. PostgreSQL: ``COPY`` into the store's ``sessions`` table, then ``ANALYZE``. The fill time
is printed; after it a ``store.get`` of the first and last filled session must return them, and the stored count must
equal ``size``.

Measured, through a ``SessionManager`` on each store (``access_token_blacklisting=True``, ``revocation_max_lag=0.1``,
which SQLite ignores), µs per call (p50 and p90 over ``--ops`` calls per operation):

- verify: ``get_session_without_request_response(token, check_database=True)`` on a session just created by the
  manager whose signature was verified once before (untimed), so the timed call is the cache hit plus the store's
  primary-key read;
- refresh: ``refresh_session_without_request_response`` of that session's refresh token (on SQLite and PostgreSQL
  the store's ``rotate_sliding``, a read and compare-and-swap in one statement; on Redis a read, then the
  compare-and-swap; one ES256 signature);
- revoke: ``revoke_session`` of that session (the store's logged delete);
- revoke-all: ``revoke_all_sessions_for_user`` of a random filled user holding ``--per-user`` sessions (the call must
  return that many); the user's sessions are then put back with ``store.create`` (untimed), so the store keeps its
  size;
- get (filled): ``store.get`` of a random filled session: a read of an old row, not one just written;
- revoke (filled): ``revoke_session`` of a random filled session (an old row), put back with ``store.create``.

Creating the session the first three use is not timed. Calls are interleaved: ``--rounds`` rounds, each running
``ops / rounds`` calls of every operation on every (store, size), in an order that rotates each round. Printed per
store and operation: p50 and p90 at each size, p50(largest) / p50(smallest) with the P6 verdict (<= 1.5), and the
median over rounds of the same ratio taken within each round (less moved by a slow phase of this shared machine).

``--sqlite-pragma NAME=VALUE`` (repeatable) sets a PRAGMA on each measured SQLite store's connection after it
opened (``cache_size``, ``mmap_size``: what a page cache changes at each size).

Query plans, on the largest store of each kind: SQLite ``EXPLAIN QUERY PLAN`` of every statement the measured
operations run (including the revocation trigger's ``DELETE``, which ``EXPLAIN QUERY PLAN`` of the ``INSERT`` does
not show); PostgreSQL ``EXPLAIN`` of the same statements, with the custom plan and with
``plan_cache_mode = force_generic_plan`` (the plan a prepared statement may settle on); Redis: the keys each
operation touches and their cost. A plan line that scans ``sessions`` (``SCAN sessions`` / ``Seq Scan on sessions``)
is flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from stores import StoreUnderTest, prepare_stores

from asgi_session import SessionConfig, SessionManager
from asgi_session._refresh_token import handle_prefix
from asgi_session.stores import _sqlite_revocations as sqlite_log
from asgi_session.stores import store_from_url
from asgi_session.stores._json import dump_object
from asgi_session.stores._postgres_sql import FIELDS as PG_FIELDS
from asgi_session.stores._postgres_sql import JSON_FIELDS as PG_JSON_FIELDS
from asgi_session.stores._sqlite_sql import GET, INSERT, ROTATE, ROTATE_SLIDING
from asgi_session.stores._sqlite_sql import to_row as _to_row
from asgi_session.stores.base import SessionRecord, SessionStore

OPERATIONS = ("verify", "refresh", "revoke", "revoke-all", "get (filled)", "revoke (filled)")
TARGET = 1.5
REDIS_BATCH = 2_000
VALIDITY = 30 * 86_400.0


# -- the filled sessions ----------------------------------------------------------------------------------------


@dataclass
class Filler:
    """Makes the ``i``-th filled session of a store, the same every time (so a revoked user can be put back).

    Session ``i`` belongs to user ``i % users``; ``records`` yields them oldest first, so a user's sessions are spread
    over the insertion order, as sessions created at different times are.
    """

    seed: str
    per_user: int
    users: int
    now: float = field(default_factory=time.time)
    by_time: bool = True  # insert oldest first; else by index
    by_user: bool = True  # handles lead with the user's prefix, as the manager makes them; else uuid4 throughout
    mac_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def user(self, index: int) -> str:
        """The user id of the ``index``-th user."""
        return f"fill-{self.seed}-{index}"

    def _digest(self, index: int) -> bytes:
        return hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=16).digest()

    def _created(self, index: int) -> float:
        # A random moment of the 29 days before the run (so the time indexes are spread as in real use); the session
        # expires 30 days after it, so every filled session stays live for a day at least (Redis' TTL would otherwise
        # remove some during the run).
        return self.now - int.from_bytes(self._digest(index)[:4], "big") % int((VALIDITY - 86_400) * 1000) / 1000

    def record(self, index: int) -> SessionRecord:
        """The ``index``-th session: a uuid4 handle (see ``handle``), its user ``index % users``, live."""
        digest = self._digest(index)
        created = self._created(index)
        return SessionRecord(
            handle=self.handle(index, digest),
            user_id=self.user(index % self.users),
            tenant_id="public",
            refresh_hash=digest.hex() * 2,
            session_data={},
            access_token_payload={},
            created_at=created,
            last_seen=created,
            expires_at=created + VALIDITY,
        )

    def handle(self, index: int, digest: bytes) -> str:
        """The ``index``-th handle: from ``digest``, led by its user's ``handle_prefix`` unless ``by_user`` is off."""
        if self.by_user:
            digest = handle_prefix(self.mac_key, self.user(index % self.users)) + digest[4:]
        return str(uuid.UUID(bytes=digest, version=4))

    def records(self, size: int) -> Iterator[SessionRecord]:
        """Every filled session, in insertion order: oldest first (or by index, when not ``by_time``)."""
        order = sorted(range(size), key=self._created) if self.by_time else range(size)
        return (self.record(index) for index in order)

    def of_user(self, user_index: int) -> list[SessionRecord]:
        """The filled sessions of one user."""
        return [self.record(user_index + turn * self.users) for turn in range(self.per_user)]


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def fill_sqlite(path: str, filler: Filler, size: int) -> None:
    """One ``executemany`` of the store's ``INSERT`` in one transaction, then a WAL checkpoint (blocking)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA cache_size = -1000000")  # 1 GB for the fill's connection only
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(INSERT, (_to_row(record) for record in filler.records(size)))
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


async def fill_redis(store: Any, service: str, filler: Filler, size: int) -> None:
    """The store's own scripts (index entries, then the session), by SHA, in pipelines of ``REDIS_BATCH`` sessions."""
    import redis.asyncio as aioredis

    from asgi_session.stores._redis_keys import escape, seconds, to_fields
    from asgi_session.stores._redis_scripts import CREATE, INDEX

    client = aioredis.Redis.from_url(service)
    try:
        await client.script_load(INDEX.source)
        await client.script_load(CREATE.source)
        pipe = client.pipeline(transaction=False)
        for record in filler.records(size):
            user_tag, tenant_tag, handle = escape(record.user_id), escape(record.tenant_id), record.handle
            created_at = seconds(record.created_at, "created_at")
            expires_at = seconds(record.expires_at, "expires_at")
            index_keys = [store._index(user_tag), store._shard(user_tag)]
            index_args = [f"{tenant_tag}:{handle}", created_at, f"{user_tag}:{tenant_tag}:{handle}", expires_at]
            pipe.evalsha(INDEX.sha, len(index_keys), *index_keys, *index_args)
            session_args = [expires_at, store._leeway_ms, *to_fields(record)]
            pipe.evalsha(CREATE.sha, 1, store._session(handle), *session_args)
            if len(pipe) >= 2 * REDIS_BATCH and not all(result == 1 for result in (await pipe.execute())[1::2]):
                raise SystemExit("Redis fill: the create script refused a session")
        if len(pipe) and not all(result == 1 for result in (await pipe.execute())[1::2]):
            raise SystemExit("Redis fill: the create script refused a session")
    finally:
        await client.aclose()


def pg_values(record: SessionRecord) -> tuple[Any, ...]:
    """A ``sessions`` row as ``PostgresStore.create`` binds it: the JSON columns as JSON text."""
    return tuple(
        dump_object(getattr(record, name), what) if (what := PG_JSON_FIELDS.get(name)) else getattr(record, name)
        for name in PG_FIELDS
    )


async def fill_postgres(service: str, schema: str, filler: Filler, size: int) -> None:
    """``COPY`` into the store's ``sessions`` table, then ``ANALYZE``."""
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    def rows() -> Iterator[tuple[Any, ...]]:
        return (pg_values(record) for record in filler.records(size))

    connection = await asyncpg.connect(service)
    try:
        await connection.copy_records_to_table("sessions", records=rows(), columns=PG_FIELDS, schema_name=schema)
        await connection.execute(f'ANALYZE "{schema}".sessions')
    finally:
        await connection.close()


async def stored_count(kind: str, store: Any, service: str) -> int:
    """How many sessions the store holds, read from its own tables or its expiry index."""
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(store._path)) as connection:
            return int(connection.execute("SELECT count(*) FROM sessions").fetchone()[0])
    if kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(service)
        try:
            # The expiry index is split over the buckets: one entry per session in all of them together.
            from asgi_session.stores._redis_keys import BUCKETS

            pipe = client.pipeline(transaction=False)
            for number in range(BUCKETS):
                pipe.zcard(f"{store._prefix}:{{b:{number}}}:expiry")
            return sum(int(count) for count in await pipe.execute())
        finally:
            await client.aclose()
    import asyncpg

    connection = await asyncpg.connect(service)
    try:
        return int(await connection.fetchval(f'SELECT count(*) FROM "{store.schema}".sessions'))  # noqa: S608 - our schema
    finally:
        await connection.close()


# -- one (store, size) ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One store of one kind and size: its manager, its filler, its samples (µs) per operation."""

    kind: str
    size: int
    target: StoreUnderTest
    service: str
    filler: Filler
    store: Any = None
    manager: SessionManager | None = None
    fill_seconds: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    created: int = 0
    sqlite_pragmas: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``kind size``, for the output."""
        return f"{self.kind} {self.size:,}"

    async def fill(self) -> None:
        """Create the schema (open, close), bulk-fill, check the count and that ``get`` returns filled sessions."""
        probe = store_from_url(self.target.url)
        await probe.open()
        await probe.close()
        started = time.perf_counter()
        if self.kind == "sqlite":
            await asyncio.to_thread(fill_sqlite, _sqlite_path(self.target.url), self.filler, self.size)
        elif self.kind == "redis":
            await fill_redis(probe, self.service, self.filler, self.size)
        else:
            await fill_postgres(self.service, probe.schema, self.filler, self.size)  # type: ignore[attr-defined]
        self.fill_seconds = time.perf_counter() - started
        count = await stored_count(self.kind, probe, self.service)
        if count != self.size:
            raise SystemExit(f"{self.label}: the store holds {count} sessions after the fill, not {self.size}")
        async with store_from_url(self.target.url) as store:
            for index in (0, self.size - 1):
                expected = self.filler.record(index)
                if await store.get(expected.handle) != expected:
                    raise SystemExit(f"{self.label}: store.get did not return filled session {index} as written")
        print(f"  filled {self.label}: {self.fill_seconds:.1f} s ({self.size / self.fill_seconds:,.0f} sessions/s)")

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        """Open the measured manager on this store."""
        config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=0.1)
        self.store = store_from_url(self.target.url)
        self.manager = await stack.enter_async_context(SessionManager(store=self.store, config=config))
        for pragma in self.sqlite_pragmas if self.kind == "sqlite" else ():
            # On the measured store's own connection (the same one its group commit uses), after it opened.
            await self.store._db.execute_fetchall(f"PRAGMA {pragma}")

    async def _timed(self, op: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter_ns()
        result = await call
        self.samples[op].append((time.perf_counter_ns() - started) / 1000)
        return result

    async def run(self, count: int, rng: random.Random) -> None:
        """``count`` calls of every operation, each on its own session (or user)."""
        manager, store = self.manager, self.store
        assert manager is not None
        assert isinstance(store, SessionStore)
        users = self.filler.users
        for _ in range(count):
            self.created += 1
            session = await manager.create_new_session_without_request_response(
                f"new-{self.filler.seed}-{self.created}"
            )
            tokens = session.get_all_session_tokens_dangerously()
            await manager.verify_access_token(tokens["accessToken"])  # the signature, untimed: cached from here on
            verify = manager.get_session_without_request_response(tokens["accessToken"], check_database=True)
            if (await self._timed("verify", verify)) is None:
                raise SystemExit(f"{self.label}: verify found no session")
            await self._timed("refresh", manager.refresh_session_without_request_response(tokens["refreshToken"]))
            if not await self._timed("revoke", manager.revoke_session(session.get_handle())):
                raise SystemExit(f"{self.label}: revoke found no session")
            user_index = rng.randrange(users)
            revoked = await self._timed(
                "revoke-all", manager.revoke_all_sessions_for_user(self.filler.user(user_index))
            )
            if len(revoked) != self.filler.per_user:
                raise SystemExit(f"{self.label}: revoke-all revoked {len(revoked)}, not {self.filler.per_user}")
            await asyncio.gather(*(store.create(record) for record in self.filler.of_user(user_index)))
            wanted = self.filler.record(rng.randrange(self.size))
            if (await self._timed("get (filled)", store.get(wanted.handle))) is None:
                raise SystemExit(f"{self.label}: store.get found no filled session")
            old = self.filler.record(rng.randrange(self.size))
            if not await self._timed("revoke (filled)", manager.revoke_session(old.handle)):
                raise SystemExit(f"{self.label}: revoke found no filled session")
            await store.create(old)


# -- query plans -----------------------------------------------------------------------------------------------


def _flag(line: str) -> str:
    scans = ("SCAN sessions" in line and "USING" not in line) or "Seq Scan on sessions" in line
    return "  <-- SCANS sessions" if scans else ""


def sqlite_plans(case: Case) -> list[dict[str, Any]]:
    """``EXPLAIN QUERY PLAN`` of every SQLite statement the measured operations run."""
    record = case.filler.record(0)
    rotate_params = ("h2", record.refresh_hash, 1.0, 1.0, 2.0, record.handle, record.refresh_hash)
    sliding = {"new": "h2", "old": record.refresh_hash, "now": 1.0, "idle": 2.0, "handle": record.handle}
    statements: list[tuple[str, str, Any]] = [
        ("get (verify, refresh's full path, get)", GET, (record.handle,)),
        ("rotate_sliding (refresh)", ROTATE_SLIDING, sliding),
        ("rotate (refresh's full path)", ROTATE, rotate_params),
        ("delete (revoke)", sqlite_log.revoke_handles_sql(1), (record.handle,)),
        ("trigger revocations_end_session", "DELETE FROM sessions WHERE handle = ?", (record.handle,)),
        ("delete_for_user (revoke-all)", sqlite_log.revoke_user_sql(False), (record.user_id,)),
        ("create (new sessions, restore)", INSERT, tuple(_to_row(record))),
        ("revocations_since (manager open)", sqlite_log.SINCE, (0, 10_000)),
        ("probe (verify's revocation check)", "SELECT seq, handle FROM revocations WHERE seq > ? ORDER BY seq", (0,)),
    ]
    found = []
    with contextlib.closing(sqlite3.connect(_sqlite_path(case.target.url))) as connection:
        for name, sql, params in statements:
            rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            found.append({"statement": name, "sql": sql, "plan": [str(row[3]) for row in rows]})
    return found


def postgres_plan_inputs(case: Case) -> list[tuple[str, str, tuple[Any, ...]]]:
    """The PostgreSQL statements the measured operations run, with arguments."""
    store, record = case.store, case.filler.record(0)
    sql, channel = store._sql, store.revocation_channel
    values = pg_values(record)
    rotation = (record.handle, record.refresh_hash, "h2", 1.0, 1.0, 2.0)
    sliding = (record.handle, record.refresh_hash, "h2", 1.0, 2.0)
    return [
        ("get (verify, refresh's full path, get)", sql["get"], (record.handle,)),
        ("rotate_sliding (refresh)", sql["rotate_sliding"], sliding),
        ("rotate (refresh's full path)", sql["rotate"], rotation),
        ("delete (revoke)", sql["delete"], ([record.handle], channel)),
        ("delete_for_user (revoke-all)", sql["delete_for_user"], (record.user_id, channel)),
        ("create (new sessions, restore)", sql["create"], values),
        ("revocations_feed (the feed)", sql["revocations_feed"], (0,)),
        ("revocations_since (manager open)", sql["revocations_since"], (0, 10_000)),
    ]


def _literal(value: Any) -> str:
    """A SQL literal for ``EXPLAIN EXECUTE``'s arguments (which take no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(item) for item in value) + "]::text[]"
    if isinstance(value, float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


async def postgres_plans(case: Case) -> list[dict[str, Any]]:
    """``EXPLAIN`` of each statement: the custom plan (bound values), and the generic plan of the prepared statement.

    The generic plan is what a prepared statement may settle on after five executions: ``PREPARE`` the statement,
    then ``EXPLAIN EXECUTE`` it under ``plan_cache_mode = force_generic_plan``.
    """
    import asyncpg

    found = []
    connection = await asyncpg.connect(case.service)
    try:
        for name, sql, params in postgres_plan_inputs(case):
            rows = await connection.fetch(f"EXPLAIN {sql}", *params)
            found.append({"statement": f"{name} [custom]", "sql": sql, "plan": [row[0] for row in rows]})
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        for number, (name, sql, params) in enumerate(postgres_plan_inputs(case)):
            await connection.execute(f"PREPARE scale_{number} AS {sql}")
            arguments = ", ".join(_literal(value) for value in params)
            rows = await connection.fetch(f"EXPLAIN EXECUTE scale_{number}({arguments})")
            await connection.execute(f"DEALLOCATE scale_{number}")
            found.append({"statement": f"{name} [generic]", "sql": sql, "plan": [row[0] for row in rows]})
    finally:
        await connection.close()
    return found


REDIS_KEYS = [
    ("verify (get)", "HGETALL P:{s:H} (a hash of ~10 fields)", "O(1)"),
    (
        "refresh",
        "get as above; ROTATE script on P:{s:H}: HGET, HSET, PEXPIRE",
        "O(1) (the expiry index is corrected by the cleanup, not per refresh)",
    ),
    (
        "revoke",
        "LOG script: P:{revocations}:seq, XADD P:{revocations}; DEL P:{s:H}; UNINDEX script: ZREM P:{b:B}:u:U and "
        "P:{b:B}:expiry",
        "O(log n) in the user's bucket (n = sessions of the bucket's users, about N / 1024)",
    ),
    (
        "revoke-all",
        "ZRANGE P:{b:B}:u:U 0 -1; the revoke above for each of the user's k sessions, one script per slot",
        "O(k log n): k = the user's sessions; never a SCAN/KEYS",
    ),
    (
        "create (untimed)",
        "INDEX script: ZADD P:{b:B}:u:U, ZADD P:{b:B}:expiry; CREATE script: EXISTS, HSET + PEXPIRE P:{s:H}",
        "O(log n)",
    ),
]


async def redis_layout(case: Case) -> dict[str, Any]:
    """The sizes of the keys the operations touch, read from the filled store, with the static description."""
    import redis.asyncio as aioredis

    from asgi_session.stores._redis_keys import BUCKETS

    store, record = case.store, case.filler.record(0)
    client = aioredis.Redis.from_url(case.service)
    try:
        user_tag = record.user_id  # ids without %{}: escaping leaves them as they are
        pipe = client.pipeline(transaction=False)
        for number in range(BUCKETS):
            pipe.zcard(f"{store._prefix}:{{b:{number}}}:expiry")
        expiry_total = sum(int(count) for count in await pipe.execute())
        facts = {
            "expiry index entries (all 1,024 buckets)": expiry_total,
            "expiry index entries (filled user 0's bucket)": int(await client.zcard(store._shard(user_tag))),
            "user index entries (filled user 0)": int(await client.zcard(store._index(user_tag))),
            "session hash fields": int(await client.hlen(store._session(record.handle))),
            "session TTL ms": int(await client.pttl(store._session(record.handle))),
            "keys in the prefix (dbsize share)": "not counted (a SCAN would be O(keyspace))",
        }
    finally:
        await client.aclose()
    return {"facts": facts, "operations": [list(row) for row in REDIS_KEYS]}


# -- report ---------------------------------------------------------------------------------------------------------


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def header() -> str:
    """Date, machine, load and versions."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    now = datetime.now(timezone.utc)
    return (
        f"{now:%Y-%m-%d %H:%M:%S} UTC; {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {load}\npython {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}; asgi-session "
        f"{version('asgi-session')}, aiosqlite {version('aiosqlite')}, redis-py {version('redis')}, "
        f"asyncpg {version('asyncpg')}"
    )


def round_ratio(small: list[float], large: list[float], per_round: int) -> float:
    """The median over rounds of p50(large) / p50(small) within each round (both sizes ran in that round)."""
    ratios = [
        statistics.median(large[start : start + per_round]) / statistics.median(small[start : start + per_round])
        for start in range(0, min(len(small), len(large)), per_round)
    ]
    return statistics.median(ratios)


def summarise(cases: list[Case], per_round: int) -> dict[str, Any]:
    """p50/p90 per (store, size, operation) and the ratio largest/smallest per (store, operation).

    Two ratios: of the p50s over the whole run (judged), and the median of the per-round ratios, which is less
    moved by a slow phase of the machine (both sizes ran in each round).
    """
    table: dict[str, Any] = {}
    for kind in dict.fromkeys(case.kind for case in cases):
        mine = sorted((case for case in cases if case.kind == kind), key=lambda case: case.size)
        small, large = mine[0], mine[-1]
        print(f"\n{kind}: µs per call, p50 / p90 ({len(small.samples['verify'])} calls per operation and size)")
        sizes = "".join(f"{f'{case.size:,}':>22}" for case in mine)
        print(f"{'operation':<16}{sizes}{'p50 ratio':>11}{'per round':>11}  P6 (<= {TARGET})")
        for op in OPERATIONS:
            cells, entry = "", dict[str, Any]()
            for case in mine:
                values = case.samples[op]
                p50, p90 = statistics.median(values), _p(values, 90)
                entry[str(case.size)] = {"p50": p50, "p90": p90, "n": len(values)}
                cells += f"{f'{p50:8.0f} / {p90:8.0f}':>22}"
            ratio = statistics.median(large.samples[op]) / statistics.median(small.samples[op])
            by_round = round_ratio(small.samples[op], large.samples[op], per_round)
            verdict = "met" if ratio <= TARGET else "MISSED"
            entry["ratio"], entry["ratio_per_round"], entry["verdict"] = ratio, by_round, verdict
            print(f"{op:<16}{cells}{ratio:>11.2f}{by_round:>11.2f}  {verdict if len(mine) > 1 else '-'}")
            table[f"{kind} {op}"] = entry
    return table


def print_plans(title: str, plans: list[dict[str, Any]]) -> int:
    """Print plans, flagging scans of ``sessions``; returns how many lines were flagged."""
    flagged = 0
    print(f"\n{title}")
    for item in plans:
        print(f"  {item['statement']}")
        for line in item["plan"]:
            mark = _flag(line)
            flagged += bool(mark)
            print(f"      {line}{mark}")
    return flagged


# -- main ----------------------------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, folder: Path, cleanups: list[Callable[[], Awaitable[None]]]) -> None:
    """Prepare, fill, measure, explain: everything between creating the stores and removing them."""
    wanted = [name.strip() for name in args.stores.split(",") if name.strip()]
    services = {
        "sqlite": "",
        "redis": os.environ.get("ASGI_SESSION_REDIS_URL", ""),
        "postgres": os.environ.get("ASGI_SESSION_POSTGRES_DSN", ""),
    }
    cases: list[Case] = []
    for size in args.sizes:
        place = folder / str(size)
        place.mkdir()
        targets, skipped = await prepare_stores(wanted, place)
        cleanups.extend(target.cleanup for target in targets)
        for note in skipped:
            print(f"  {note}")
        for target in targets:
            users = size // args.per_user
            filler = Filler(
                secrets.token_hex(3),
                args.per_user,
                users,
                by_time=args.fill_order == "time",
                by_user=args.handles == "user",
            )
            case = Case(target.name, size, target, services[target.name], filler)
            case.sqlite_pragmas = tuple(args.sqlite_pragma)
            cases.append(case)
    if args.sqlite_pragma:
        print(f"SQLite PRAGMAs on the measured connections: {', '.join(args.sqlite_pragma)}")
    print("fill:")
    for case in cases:
        await case.fill()
    rng = random.Random(args.seed)
    document: dict[str, Any] = {"settings": vars(args) | {"sizes": args.sizes}, "header": header()}
    async with contextlib.AsyncExitStack() as stack:
        for case in cases:
            await case.open(stack)
        for case in cases:  # untimed warm-up: connections, scripts, statement caches
            await case.run(3, rng)
            case.samples = {op: [] for op in OPERATIONS}
        gc.collect()
        per_round = max(1, args.ops // args.rounds)
        started = time.perf_counter()
        for round_index in range(args.rounds):
            shift = round_index % len(cases)
            for case in cases[shift:] + cases[:shift]:
                await case.run(per_round, rng)
        print(f"\nmeasured in {time.perf_counter() - started:.0f} s; {header()}")
        document["results"] = summarise(cases, per_round)
        document["fill_seconds"] = {case.label: case.fill_seconds for case in cases}
        document["samples_us"] = {case.label: case.samples for case in cases}  # in the order taken
        print("\nfill times: " + ", ".join(f"{case.label} {case.fill_seconds:.1f} s" for case in cases))
        plans: dict[str, Any] = {}
        flagged = 0
        for case in cases:
            if case.size != max(args.sizes):
                continue
            if case.kind == "sqlite":
                plans["sqlite"] = sqlite_plans(case)
                flagged += print_plans(f"SQLite EXPLAIN QUERY PLAN ({case.label} sessions)", plans["sqlite"])
            elif case.kind == "postgres":
                plans["postgres"] = await postgres_plans(case)
                flagged += print_plans(f"PostgreSQL EXPLAIN ({case.label} sessions, analyzed)", plans["postgres"])
            else:
                plans["redis"] = layout = await redis_layout(case)
                print(f"\nRedis keys per operation ({case.label} sessions); measured: {layout['facts']}")
                for name, keys, cost in REDIS_KEYS:
                    print(f"  {name:<17} {cost}\n      {keys}")
        print(f"\nplan lines that scan sessions: {flagged}")
        document["plans"], document["flagged_scans"] = plans, flagged
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
        print(f"wrote {args.json}")


async def main(args: argparse.Namespace) -> None:
    """Run everything in a temporary folder; remove every store's data whatever happens."""
    print(header())
    cleanups: list[Callable[[], Awaitable[None]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            await measure(args, Path(tmp), cleanups)
        finally:
            for cleanup in cleanups:
                with contextlib.suppress(Exception):
                    await asyncio.shield(cleanup())


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 1000,1000000")
    return sizes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=[1_000, 1_000_000], help="stored sessions (1000,1000000)")
    parser.add_argument("--stores", default="sqlite,redis,postgres", help="which stores (default: all three)")
    parser.add_argument("--ops", type=int, default=300, help="calls per operation per (store, size) (300)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the calls are split into (10)")
    parser.add_argument("--per-user", type=int, default=10, help="filled sessions per user (10)")
    parser.add_argument("--seed", type=int, default=1, help="random choice of filled users and sessions (1)")
    parser.add_argument(
        "--fill-order",
        choices=("time", "index"),
        default="time",
        help="insert the filled sessions oldest first (time, the default) or by index (user 0, 1, ..., then again)",
    )
    parser.add_argument(
        "--handles",
        choices=("user", "random"),
        default="user",
        help="filled handles led by their user's keyed prefix, as the manager makes them (user, the default), or "
        "random uuid4 throughout (random: handles before 2026-12-03)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every result and plan to this JSON file")
    parser.add_argument(
        "--sqlite-pragma",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PRAGMA set on each measured SQLite store's connection once it opened, e.g. cache_size=-65536 "
        "(repeatable; not on the fill's connection)",
    )
    arguments = parser.parse_args()
    if min(arguments.ops, arguments.rounds, arguments.per_user) < 1 or arguments.sizes[0] < arguments.per_user:
        parser.error("counts must be >= 1 and every size at least --per-user")
    if any(size % arguments.per_user for size in arguments.sizes):
        parser.error("every size must be a multiple of --per-user")
    if arguments.ops < arguments.rounds:
        parser.error("--ops must be at least --rounds")
    asyncio.run(main(arguments))
