"""Every store in one run: verify with blacklisting (P4, in process) and create/refresh throughput (P5).

    python benchmarks/stores.py [--requests 400] [--rounds 9] [--sessions 1000] [--concurrency 64]
                                [--throughput-rounds 3] [--stores sqlite,redis,postgres] [--json PATH]

Stores: SQLite (a file in a temporary folder), Redis (``ASGI_SESSION_REDIS_URL``, a unique key prefix) and
PostgreSQL (``ASGI_SESSION_POSTGRES_DSN``, a unique schema). A store whose variable is unset or whose server does not
answer is skipped, and the output says so. Whatever the run writes is removed at the end.

(a) Verify with blacklisting on, in process: µs per request through ``SessionMiddleware`` with
``access_token_blacklisting=True`` and a token verified before (its signature is a cache hit; the store is read on
every request), beside the bare app and the naive anchor of PERFORMANCE.md: a hand-written middleware doing a PyJWT
HS256 decode and one aiosqlite round trip (``execute_fetchall`` of the session row) per request. Two columns:
requests one after another (latency), and 32 tasks sending at once (µs per request = time / requests: what a server
under load pays). Every case answers 200 only when it found the session; a warm-up checks 200 with its token, and
401 after the session is revoked in the store (so a case that skipped the store could not look fast).

(b) Create and refresh throughput, sessions/s with 64 concurrent tasks (``create_new_session_without_request_response``
then ``refresh_session_without_request_response`` of each session), beside the naive aiosqlite anchors of
``store_throughput.py`` (INSERT, and read + compare-and-swap UPDATE, each statement its own round trip and commit),
run with the same 64 tasks and with 1. With many tasks on one connection the naive code commits by accident in
groups (``sqlite3`` opens a transaction on the first INSERT and the first task's ``commit`` also commits the
statements the other tasks ran meanwhile), so it is much faster than with one client: P5 is judged against the
same-concurrency anchor, and the one-client ratio is printed beside it.

Rounds interleave the cases (the order rotates each round) so machine noise spreads over all of them. Ratios:

- P4 (in-process proxy): (ours - bare) / (naive - bare) per store, and the end-to-end ratio it implies for a
  server whose bare request costs ``--bare-e2e-us`` (33 µs: uvicorn + httptools, RESULTS.md): bare / (bare +
  overhead). The real P4 is end to end: ``benchmarks/e2e.py p4`` (target >= 0.60 x bare, SQLite).
- P5: ours / naive, create against INSERT and refresh against CAS UPDATE (target >= 3x, SQLite; the others are for
  comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiosqlite
import jwt
from inprocess import access_token_cookie, bare_app, make_scope, noop_send, ours_inner, receive, respond
from store_throughput import create_then_refresh, naive_cas, naive_insert

from asgi_session import SessionConfig, SessionManager, SessionMiddleware
from asgi_session.stores import MemoryStore, store_from_url
from asgi_session.tokens import sign_access_token

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[..., Awaitable[None]]

CONCURRENT_TASKS = 32
HS256_SECRET = secrets.token_bytes(32)


# -- stores -------------------------------------------------------------------------------------------------------


@dataclass
class StoreUnderTest:
    """One store of the run: its URL (with a unique prefix or schema) and how to remove what it wrote."""

    name: str
    url: str
    cleanup: Callable[[], Awaitable[None]]


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _nothing() -> None:
    return None


async def _available(url: str) -> str | None:
    """None when a store on this URL opens within 5 s; otherwise why not."""
    store = store_from_url(url)
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(store.open(), 5)
            return None
        return "did not answer within 5 s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await store.close()


async def prepare_stores(
    wanted: list[str], folder: Path, *, postgres_pool: int | None = 20
) -> tuple[list[StoreUnderTest], list[str]]:
    """The stores to measure, and a note for each one skipped.

    ``postgres_pool``: the PostgreSQL pool's ``max_size`` (None: the store's default). The in-process cases share
    one pool among many concurrent tasks; a server under wrk keeps the default.
    """
    stores: list[StoreUnderTest] = []
    skipped: list[str] = []
    tag = f"bench_{secrets.token_hex(5)}"
    for name in wanted:
        if name == "sqlite":
            stores.append(StoreUnderTest("sqlite", f"sqlite:///{folder / 'sessions.db'}", _nothing))
            continue
        variable = {"redis": "ASGI_SESSION_REDIS_URL", "postgres": "ASGI_SESSION_POSTGRES_DSN"}[name]
        service = os.environ.get(variable, "").strip()
        if not service:
            skipped.append(f"{name}: skipped, {variable} is not set")
            continue
        if name == "redis":
            url = _with_query(service, prefix=tag)

            async def clean_redis(service: str = service) -> None:
                import redis.asyncio as aioredis

                client = aioredis.Redis.from_url(service)
                try:
                    keys = [key async for key in client.scan_iter(match=f"{tag}:*", count=1000)]
                    for start in range(0, len(keys), 500):
                        await client.delete(*keys[start : start + 500])
                finally:
                    await client.aclose()

            cleanup = clean_redis
        else:
            pool = {} if postgres_pool is None else {"max_size": str(postgres_pool)}
            url = _with_query(service, schema=tag, **pool)

            async def drop_schema(service: str = service) -> None:
                import asyncpg

                connection = await asyncpg.connect(service)
                try:
                    await connection.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
                finally:
                    await connection.close()

            cleanup = drop_schema
        why = await _available(url)
        if why is None:
            stores.append(StoreUnderTest(name, url, cleanup))
        else:
            skipped.append(f"{name}: skipped, the server is unavailable ({why})")
            with contextlib.suppress(Exception):
                await cleanup()
    return stores, skipped


# -- (a) verify with blacklisting -----------------------------------------------------------------------------------


async def naive_session(db: aiosqlite.Connection, secret: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    """What the PERFORMANCE.md anchor does per request: the token from the cookie, a PyJWT HS256 decode, then one
    aiosqlite round trip for the session row. Returns the claims when the row exists, else None.

    Shared with the end-to-end anchor (``e2e_apps.naive_blacklisting``), so both measure the very same code.
    """
    token = None
    for name, value in headers:
        if name == b"cookie" and (cookie := access_token_cookie(value)) is not None:
            token = cookie
    if token is None:
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.InvalidTokenError:
        return None
    rows = await db.execute_fetchall("SELECT user_id FROM sessions WHERE handle = ?", (claims["sid"],))
    return claims if rows else None


class NaiveBlacklistMiddleware:
    """The anchor as a middleware: ``scope["user"]`` is the user of a session found in the store, else None."""

    def __init__(self, app: App, db: aiosqlite.Connection) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        claims = await naive_session(self.db, HS256_SECRET, scope["headers"])
        scope["user"] = None if claims is None else claims["sub"]
        await self.app(scope, receive, send)


async def naive_inner(scope: Scope, receive: Any, send: Any) -> None:
    await respond(send, 200 if scope.get("user") is not None else 401)


def cookie(token: str) -> tuple[bytes, bytes]:
    return (b"cookie", f"sAccessToken={token}".encode("latin-1"))


async def status_of(app: App, header: tuple[bytes, bytes]) -> int | None:
    status: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(make_scope(header), receive, send)
    return status[0] if status else None


@dataclass
class VerifyCase:
    name: str
    app: App
    header: tuple[bytes, bytes]
    sequential: list[float] = field(default_factory=list)  # µs per request, one sample per round
    concurrent: list[float] = field(default_factory=list)

    async def run_sequential(self, count: int) -> float:
        app, header = self.app, self.header
        start = time.perf_counter_ns()
        for _ in range(count):
            await app(make_scope(header), receive, noop_send)
        return (time.perf_counter_ns() - start) / 1000 / count

    async def run_concurrent(self, count: int) -> float:
        app, header = self.app, self.header
        each = max(1, count // CONCURRENT_TASKS)

        async def task() -> None:
            for _ in range(each):
                await app(make_scope(header), receive, noop_send)

        start = time.perf_counter_ns()
        await asyncio.gather(*(task() for _ in range(CONCURRENT_TASKS)))
        return (time.perf_counter_ns() - start) / 1000 / (each * CONCURRENT_TASKS)


@contextlib.asynccontextmanager
async def naive_case(folder: Path) -> AsyncIterator[VerifyCase]:
    async with aiosqlite.connect(folder / "naive-verify.db") as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("CREATE TABLE sessions (handle TEXT PRIMARY KEY, user_id TEXT)")
        await db.execute("INSERT INTO sessions VALUES ('h-1', 'user-1')")
        await db.commit()
        app = NaiveBlacklistMiddleware(naive_inner, db)
        claims = {"sub": "user-1", "sid": "h-1", "exp": int(time.time()) + 3600}
        token = jwt.encode(claims, HS256_SECRET, algorithm="HS256")
        gone = jwt.encode({**claims, "sid": "h-gone"}, HS256_SECRET, algorithm="HS256")
        if await status_of(app, cookie(token)) != 200 or await status_of(app, cookie(gone)) != 401:
            raise SystemExit("warm-up failed: the naive anchor must answer 200 with its token, 401 for a gone session")
        yield VerifyCase("naive: PyJWT HS256 + aiosqlite round trip", app, cookie(token))


@contextlib.asynccontextmanager
async def ours_case(label: str, url: str, *, blacklisting: bool = True) -> AsyncIterator[VerifyCase]:
    config = SessionConfig(access_token_blacklisting=blacklisting)
    async with SessionManager(store=store_from_url(url), config=config) as manager:
        app = SessionMiddleware(ours_inner, manager=manager)
        session = await manager.create_new_session_without_request_response("user-1")
        token = session.get_access_token()
        probe = await manager.create_new_session_without_request_response("user-probe")
        if await status_of(app, cookie(token)) != 200 or await status_of(app, cookie(probe.get_access_token())) != 200:
            raise SystemExit(f"warm-up failed: {label} must answer 200 with its token")
        if blacklisting:
            await manager.revoke_session(probe.get_handle())
            if await status_of(app, cookie(probe.get_access_token())) != 401:
                raise SystemExit(f"warm-up failed: {label} accepted a revoked session: the store was not read")
        yield VerifyCase(label, app, cookie(token))


async def measure_verify(stores: list[StoreUnderTest], folder: Path, requests: int, rounds: int) -> list[VerifyCase]:
    async with contextlib.AsyncExitStack() as stack:
        cases = [
            VerifyCase("bare ASGI app", bare_app, cookie("x")),
            await stack.enter_async_context(naive_case(folder)),
        ]
        sqlite_url = next((store.url for store in stores if store.name == "sqlite"), None)
        if sqlite_url is not None:
            off = ours_case("asgi-session, blacklisting OFF, sqlite", sqlite_url, blacklisting=False)
            cases.append(await stack.enter_async_context(off))
        for store in stores:
            cases.append(
                await stack.enter_async_context(ours_case(f"asgi-session, blacklisting, {store.name}", store.url))
            )
        for case in cases:  # an untimed pass: imports, caches, connections
            await case.run_sequential(min(100, requests))
            await case.run_concurrent(min(100, requests))
        gc.collect()
        for round_index in range(rounds):
            shift = round_index % len(cases)
            for case in cases[shift:] + cases[:shift]:
                case.sequential.append(await case.run_sequential(requests))
                case.concurrent.append(await case.run_concurrent(requests))
        return cases


# -- (b) create and refresh throughput -----------------------------------------------------------------------------


async def ours_throughput(url: str, count: int, concurrency: int) -> tuple[float, float]:
    run = secrets.token_hex(3)  # the store is shared by the rounds: users of this run only
    return await create_then_refresh(store_from_url(url), count, concurrency, f"user-{run}")


async def measure_throughput(
    stores: list[StoreUnderTest], folder: Path, count: int, concurrency: int, rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "naive INSERT (aiosqlite)": [],
        "naive CAS UPDATE (aiosqlite)": [],
        "naive INSERT, 1 client": [],
        "naive CAS UPDATE, 1 client": [],
    }
    for store in stores:
        results[f"create, {store.name}"] = []
        results[f"refresh, {store.name}"] = []

    async def naive() -> None:
        results["naive INSERT (aiosqlite)"].append(await naive_insert(folder, count, concurrency))
        results["naive CAS UPDATE (aiosqlite)"].append(await naive_cas(folder, count, concurrency))
        # The same statements from one client: no accidental group commit (see the module docstring).
        results["naive INSERT, 1 client"].append(await naive_insert(folder, count, 1))
        results["naive CAS UPDATE, 1 client"].append(await naive_cas(folder, count, 1))

    def ours(store: StoreUnderTest) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            created, refreshed = await ours_throughput(store.url, count, concurrency)
            results[f"create, {store.name}"].append(created)
            results[f"refresh, {store.name}"].append(refreshed)

        return run

    signer = SessionManager(store=MemoryStore())  # the default algorithm (ES256), as the stores' managers sign
    await signer.open()
    key = await signer.keys.signing_key()
    session = await signer.create_new_session_without_request_response("signing-limit")
    claims = session.get_access_token_payload()
    results[SIGNATURE] = []

    async def signing() -> None:
        # The signing limit (PERFORMANCE.md, P5): what one core could do if nothing but the signature cost anything.
        samples = []
        for _ in range(SIGNATURES_PER_ROUND):
            started = time.perf_counter_ns()
            sign_access_token(claims, key)
            samples.append((time.perf_counter_ns() - started) / 1000)
        results[SIGNATURE].append(statistics.median(samples))

    jobs = [naive, signing, *(ours(store) for store in stores)]
    for round_index in range(rounds):
        shift = round_index % len(jobs)
        for job in jobs[shift:] + jobs[:shift]:
            gc.collect()
            await job()
    return results


SIGNATURE = "one signature, µs (not /s)"
SIGNATURES_PER_ROUND = 500


# -- report ---------------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(
    cases: list[VerifyCase],
    throughput: dict[str, list[float]],
    stores: list[StoreUnderTest],
    skipped: list[str],
    settings: dict[str, Any],
    elapsed: float,
) -> dict[str, Any]:
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {platform.machine()}; asgi-session "
        f"{version('asgi-session')}, aiosqlite {version('aiosqlite')}, redis {version('redis')}, "
        f"asyncpg {version('asyncpg')}, PyJWT {version('PyJWT')}"
    )
    print(f"stores: {', '.join(store.name for store in stores)}")
    for note in skipped:
        print(f"  {note}")
    print(f"{elapsed:.0f} s in all; settings: {settings}\n")

    by_name = {case.name: case for case in cases}
    bare = by_name["bare ASGI app"]
    naive = by_name["naive: PyJWT HS256 + aiosqlite round trip"]
    print(f"(a) verify, token seen before; µs per request over {settings['rounds']} rounds x {settings['requests']}")
    header = f"{'case':<44}{'sequential':>11}{'min':>8}{'max':>8}{f'{CONCURRENT_TASKS} tasks':>11}{'min':>8}{'max':>8}"
    print(header)
    for case in cases:
        seq, conc = case.sequential, case.concurrent
        print(
            f"{case.name:<44}{_median(seq):>11.1f}{min(seq):>8.1f}{max(seq):>8.1f}"
            f"{_median(conc):>11.1f}{min(conc):>8.1f}{max(conc):>8.1f}"
        )

    ratios: dict[str, Any] = {}
    bare_e2e = settings["bare_e2e_us"]
    print(
        f"\nP4 proxy: overhead over bare, its ratio to the naive anchor's, and bare/(bare+overhead) for a {bare_e2e} µs"
    )
    print("server request (the real P4 is end to end: benchmarks/e2e.py p4; target >= 0.60)")
    for case in cases:
        if not case.name.startswith("asgi-session"):
            continue
        for column in ("sequential", "concurrent"):
            ours_over = _median(getattr(case, column)) - _median(getattr(bare, column))
            naive_over = _median(getattr(naive, column)) - _median(getattr(bare, column))
            implied = bare_e2e / (bare_e2e + ours_over)
            naive_implied = bare_e2e / (bare_e2e + naive_over)
            ratios[f"P4 proxy, {case.name}, {column}"] = {
                "overhead_us": ours_over,
                "vs_naive_overhead": ours_over / naive_over,
                "implied_e2e_ratio": implied,
                "naive_implied_e2e_ratio": naive_implied,
            }
            print(
                f"  {case.name:<42} {column:<11} +{ours_over:7.1f} µs = {ours_over / naive_over:5.2f} x naive's "
                f"+{naive_over:.1f}; implied e2e {implied:.2f} (naive {naive_implied:.2f})"
            )

    print(
        f"\n(b) create and refresh, sessions/s, {settings['concurrency']} concurrent tasks, "
        f"{settings['sessions']} sessions x {settings['throughput_rounds']} rounds"
    )
    print(f"{'case':<34}{'median/s':>10}{'min/s':>10}{'max/s':>10}")
    for name, values in throughput.items():
        if name == SIGNATURE:
            continue
        print(f"{name:<34}{_median(values):>10.0f}{min(values):>10.0f}{max(values):>10.0f}")
    signature_us = _median(throughput[SIGNATURE])
    limit = 1e6 / signature_us
    print(
        f"\nP5 (restated): ours / the signing limit, 10^6 / {signature_us:.1f} µs (the median ES256 signature of "
        f"this run) = {limit:.0f}/s (target >= 0.60 on SQLite; the others for comparison)"
    )
    for store in stores:
        created, refreshed = _median(throughput[f"create, {store.name}"]), _median(throughput[f"refresh, {store.name}"])
        verdict = ""
        if store.name == "sqlite":
            verdict = "  (" + ("met" if min(created, refreshed) / limit >= 0.6 else "MISSED") + ")"
        ratios[f"P5 restated, {store.name}"] = {
            "signature_us": signature_us,
            "signing_limit_per_s": limit,
            "create_vs_limit": created / limit,
            "refresh_vs_limit": refreshed / limit,
        }
        share = f"create {created / limit:5.2f}, refresh {refreshed / limit:5.2f}"
        print(f"  {store.name:<9} {share} of the limit{verdict}")
    naive_insert_rate = _median(throughput["naive INSERT (aiosqlite)"])
    naive_cas_rate = _median(throughput["naive CAS UPDATE (aiosqlite)"])
    single_insert_rate = _median(throughput["naive INSERT, 1 client"])
    single_cas_rate = _median(throughput["naive CAS UPDATE, 1 client"])
    print(
        f"\nP5 (the old anchor): ours / the naive aiosqlite anchor with the same {settings['concurrency']} clients "
        "(old target >= 3x on SQLite); [in brackets: / the naive anchor with 1 client]"
    )
    for store in stores:
        created, refreshed = _median(throughput[f"create, {store.name}"]), _median(throughput[f"refresh, {store.name}"])
        create, refresh = created / naive_insert_rate, refreshed / naive_cas_rate
        ratios[f"P5, {store.name}"] = {
            "create_vs_naive_insert": create,
            "refresh_vs_naive_cas": refresh,
            "create_vs_naive_insert_1_client": created / single_insert_rate,
            "refresh_vs_naive_cas_1_client": refreshed / single_cas_rate,
        }
        verdict = ""
        if store.name == "sqlite":
            verdict = "  (" + ("met" if min(create, refresh) >= 3 else "MISSED") + ")"
        print(
            f"  {store.name:<9} create {create:5.2f}x naive INSERT [{created / single_insert_rate:5.2f}x], "
            f"refresh {refresh:5.2f}x naive CAS [{refreshed / single_cas_rate:5.2f}x]{verdict}"
        )
    return {
        "settings": settings,
        "skipped": skipped,
        "verify_us": {c.name: {"sequential": c.sequential, "concurrent": c.concurrent} for c in cases},
        "throughput_per_s": throughput,
        "ratios": ratios,
    }


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    wanted = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {"sqlite", "redis", "postgres"})
    if unknown:
        raise SystemExit(f"unknown stores: {unknown}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores, skipped = await prepare_stores(wanted, folder)
        try:
            cases = await measure_verify(stores, folder, args.requests, args.rounds)
            throughput = await measure_throughput(
                stores, folder, args.sessions, args.concurrency, args.throughput_rounds
            )
        finally:
            for store in stores:
                await store.cleanup()
    settings = {
        "requests": args.requests,
        "rounds": args.rounds,
        "sessions": args.sessions,
        "concurrency": args.concurrency,
        "throughput_rounds": args.throughput_rounds,
        "bare_e2e_us": args.bare_e2e_us,
    }
    document = report(cases, throughput, stores, skipped, settings, time.perf_counter() - started)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="verify: requests per case per round (400)")
    parser.add_argument("--rounds", type=int, default=9, help="verify: interleaved rounds (9)")
    parser.add_argument("--sessions", type=int, default=1000, help="throughput: sessions per case per round (1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="throughput: concurrent tasks (64)")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="throughput: interleaved rounds (3)")
    parser.add_argument("--stores", default="sqlite,redis,postgres", help="which stores (default: all three)")
    parser.add_argument("--bare-e2e-us", type=float, default=33.0, help="a bare request end to end, for the P4 proxy")
    parser.add_argument("--json", metavar="PATH", help="also write every sample and ratio to this JSON file")
    arguments = parser.parse_args()
    if min(arguments.requests, arguments.rounds, arguments.sessions, arguments.concurrency) < 1:
        parser.error("counts must be >= 1")
    asyncio.run(main(arguments))
