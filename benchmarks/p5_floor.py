"""How close can any create get to the signing limit? A hand-written floor beside asgi-session, in one run (P5).

    python benchmarks/p5_floor.py [--sessions 4000] [--concurrency 64] [--rounds 5] [--json PATH]

P5 asks a create or refresh on SQLite to reach 0.60 of the *signing limit* (10^6 / the µs of one signature, same
run). This driver asks what the limit leaves for everything else a create must do, by timing a **floor**: the
create's essential steps written out by hand with nothing around them, using the library's own pieces:

- a handle (``new_handle``), a refresh token bound to it (``mint_refresh_token``), its two hashes;
- the access token's claims as a dict, encoded (``claims_json``) and signed (``sign_claims_json``, ES256);
- the session's ``SessionRecord`` and its row (``to_row``), inserted with the store's own ``INSERT`` into a file the
  ``SQLiteStore`` created (same schema, indexes, WAL and ``synchronous = NORMAL``), committed in groups of
  ``--concurrency``, as the group commit does.

No manager, no checks of ids or payloads, no metrics, no hooks, no aiosqlite worker thread. Cases, each over
``--sessions`` creates, rounds interleaved:

- ``sign``: ``sign_access_token`` of a real session's claims (what ``algorithms.py`` and ``stores.py`` call one
  signature: the claims' JSON, base64 and the ES256 signature); the signing limit is 10^6 / its median;
- ``sign, key only``: ``private_key.sign`` of a fixed signing input (the cryptography call alone), for reference;
- ``floor, no store``: the essential steps, the record kept in a dict;
- ``floor, SQLite, one thread``: the same, rows inserted ``--concurrency`` at a time (``executemany``), one
  ``BEGIN IMMEDIATE ... COMMIT`` each, on the calling thread;
- ``floor, SQLite, one thread, table only``: the same on a file whose two secondary indexes (by handle, by expiry)
  were dropped: what they cost (no store could run without them);
- ``floor, SQLite, asyncio``: ``--concurrency`` tasks, each create awaiting a future answered after its group's
  commit, the group committed synchronously on the event loop thread (the cheapest way an asyncio server could do
  it: no thread hop at all);
- ``floor, SQLite, asyncio + signing thread``: the same with the signatures made in batches on one worker thread
  (cryptography releases the GIL while it signs), to see whether a second core helps;
- ``asgi-session, SQLite`` and ``asgi-session, no store``: ``create_new_session_without_request_response`` with
  ``--concurrency`` tasks (``store_throughput.create_then_refresh``: the P5 measurement), create and refresh.

Each prints sessions/s and its share of the signing limit. Nothing here is a test; the ratios are what matter.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from store_throughput import _run_concurrently, create_then_refresh

from asgi_session import SessionManager
from asgi_session._key_material import SigningKey
from asgi_session._refresh_token import mint_refresh_token, new_handle, sha256_hex, stored_hash_of_hash1
from asgi_session.stores import MemoryStore, SessionRecord, SQLiteStore
from asgi_session.stores._sqlite_sql import COLUMNS, INSERT, PLACES, to_row
from asgi_session.tokens import claims_json, sign_access_token, sign_claims_json

VALIDITY = 3600
PLAIN_INSERT = f"INSERT INTO sessions ({COLUMNS}) VALUES ({PLACES})"  # noqa: S608 (no unique index to conflict on)
IDLE = 100 * 86400


class Floor:
    """The essential steps of a create, by hand, with the library's pieces (see the module docstring)."""

    def __init__(self, key: SigningKey, mac_key: bytes, issuer: str) -> None:
        self.key = key
        self.mac_key = mac_key
        self.issuer = issuer

    def unsigned(self, index: int) -> tuple[bytes, str, list[Any]]:
        """The claims' JSON, the refresh token and the row of one new session."""
        now = time.time()
        user_id = f"user-{index % 97}"
        handle = new_handle()
        refresh_token = mint_refresh_token(self.mac_key, handle)
        hash1 = sha256_hex(refresh_token)
        record = SessionRecord(
            handle=handle,
            user_id=user_id,
            tenant_id="public",
            refresh_hash=stored_hash_of_hash1(hash1),
            session_data={},
            access_token_payload={},
            created_at=now,
            last_seen=now,
            expires_at=now + IDLE,
        )
        claims = {
            "sub": user_id,
            "exp": int(now) + VALIDITY,
            "iat": int(now),
            "tId": "public",
            "rsub": user_id,
            "sessionHandle": handle,
            "refreshTokenHash1": hash1,
            "parentRefreshTokenHash1": None,
            "antiCsrfToken": None,
            "iss": self.issuer,
        }
        return claims_json(claims), refresh_token, to_row(record)

    def create(self, index: int) -> tuple[str, str, list[Any]]:
        """One new session: its access token, refresh token and row."""
        payload, refresh_token, row = self.unsigned(index)
        return sign_claims_json(payload, self.key), refresh_token, row


def _rate(count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def floor_memory(floor: Floor, count: int) -> float:
    kept: dict[str, list[Any]] = {}

    def run() -> None:
        for index in range(count):
            _, _, row = floor.create(index)
            kept[row[1]] = row

    return _rate(count, run)


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    return connection


def _commit_group(connection: sqlite3.Connection, rows: list[list[Any]], sql: str = INSERT) -> None:
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(sql, rows)
    connection.execute("COMMIT")


def floor_sqlite_sync(floor: Floor, path: Path, count: int, group: int, sql: str = INSERT) -> float:
    connection = _connect(path)

    def run() -> None:
        for start in range(0, count, group):
            rows = [floor.create(index)[2] for index in range(start, min(count, start + group))]
            _commit_group(connection, rows, sql)

    try:
        return _rate(count, run)
    finally:
        connection.close()


async def floor_sqlite_asyncio(
    floor: Floor, path: Path, count: int, concurrency: int, signer: concurrent.futures.Executor | None = None
) -> float:
    """``concurrency`` tasks; each group of queued rows is committed on the loop thread, then its callers answered.

    With ``signer``, the signatures are made in batches on that executor (one batch in flight at a time).
    """
    loop = asyncio.get_running_loop()
    connection = _connect(path)
    rows: list[tuple[list[Any], asyncio.Future[None]]] = []
    to_sign: list[tuple[bytes, asyncio.Future[str]]] = []
    state = {"commit": False, "signing": False}

    def commit() -> None:
        group = rows[:]
        rows.clear()
        state["commit"] = False
        _commit_group(connection, [row for row, _ in group])
        for _, future in group:
            future.set_result(None)

    def sign_batch(batch: list[bytes]) -> list[str]:
        return [sign_claims_json(payload, floor.key) for payload in batch]

    def start_signing() -> None:
        if state["signing"] or not to_sign or signer is None:
            return
        batch = to_sign[:]
        to_sign.clear()
        state["signing"] = True
        done = loop.run_in_executor(signer, sign_batch, [payload for payload, _ in batch])

        def answer(result: asyncio.Future[list[str]]) -> None:
            state["signing"] = False
            for (_, future), token in zip(batch, result.result(), strict=True):
                future.set_result(token)
            start_signing()

        done.add_done_callback(answer)

    async def create(index: int) -> None:
        if signer is None:
            _, _, row = floor.create(index)
        else:
            payload, _, row = floor.unsigned(index)
            signed: asyncio.Future[str] = loop.create_future()
            to_sign.append((payload, signed))
            loop.call_soon(start_signing)
        committed: asyncio.Future[None] = loop.create_future()
        rows.append((row, committed))
        if not state["commit"]:
            state["commit"] = True
            loop.call_soon(commit)
        await committed
        if signer is not None:
            await signed

    try:
        return await _run_concurrently(count, concurrency, create)
    finally:
        connection.close()


def check_rows(path: Path, count: int) -> None:
    """A floor that wrote nothing could not look fast: every session it created must be in the file."""
    connection = sqlite3.connect(path)
    try:
        (stored,) = connection.execute("SELECT count(*) FROM sessions").fetchone()
    finally:
        connection.close()
    if stored != count:
        raise SystemExit(f"the floor stored {stored} sessions of {count} in {path}")


def median_us(samples: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - started) / 1000)
    return statistics.median(times)


async def ours(store: MemoryStore | SQLiteStore, count: int, concurrency: int) -> tuple[float, float]:
    return await create_then_refresh(store, count, concurrency)


async def main(count: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Run every case ``rounds`` times, print the table, and return the samples and ratios."""
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    signer = concurrent.futures.ThreadPoolExecutor(1)
    ecdsa = ec.ECDSA(SHA256())
    signing_input = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with SessionManager(store=MemoryStore()) as manager:
            key = await manager.keys.signing_key()
            session = await manager.create_new_session_without_request_response("signing-limit")
            claims = session.get_access_token_payload()
            floor = Floor(key, manager.keys.refresh_mac_key, manager.config.issuer)
            private_key: Any = key.private_key

            async def new_file() -> Path:
                path = folder / f"floor-{uuid.uuid4().hex}.db"
                store = SQLiteStore(path)  # the store's own schema, then closed: the floor writes with sqlite3
                await store.open()
                await store.close()
                return path

            # The floor's tokens are real: the manager verifies one (a floor signing garbage could look fast).
            token, _, _ = floor.create(0)
            if (await manager.verify_access_token(token))["sub"] != "user-0":
                raise SystemExit("the floor's access token did not verify")

            async def floor_file(case: str, run: Callable[[Path], Awaitable[float]]) -> None:
                path = await new_file()
                add(case, await run(path))
                check_rows(path, count)

            async def one_thread(path: Path) -> float:
                return floor_sqlite_sync(floor, path, count, concurrency)

            async def table_only(path: Path) -> float:
                # What the two secondary indexes cost: the same without them (not a schema anyone could run: the
                # handle index serves every lookup, the expiry index the cleanup).
                with contextlib.closing(sqlite3.connect(path)) as connection:
                    connection.execute("DROP INDEX sessions_handle")
                    connection.execute("DROP INDEX sessions_expires_at")
                    connection.commit()
                return floor_sqlite_sync(floor, path, count, concurrency, PLAIN_INSERT)

            async def on_loop(path: Path) -> float:
                return await floor_sqlite_asyncio(floor, path, count, concurrency)

            async def with_thread(path: Path) -> float:
                return await floor_sqlite_asyncio(floor, path, count, concurrency, signer)

            for _ in range(rounds):
                add("sign", median_us(1000, lambda: sign_access_token(claims, key)))
                add("sign, key only", median_us(1000, lambda: private_key.sign(signing_input, ecdsa)))
                add("floor, no store", floor_memory(floor, count))
                await floor_file("floor, SQLite, one thread", one_thread)
                await floor_file("floor, SQLite, one thread, table only", table_only)
                await floor_file("floor, SQLite, asyncio", on_loop)
                await floor_file("floor, SQLite, asyncio + signing thread", with_thread)
                created, refreshed = await ours(SQLiteStore(await new_file()), count, concurrency)
                add("asgi-session create, SQLite", created)
                add("asgi-session refresh, SQLite", refreshed)
                created, refreshed = await ours(MemoryStore(), count, concurrency)
                add("asgi-session create, no store", created)
                add("asgi-session refresh, no store", refreshed)
    signer.shutdown()

    sign = statistics.median(results["sign"])
    limit = 1e6 / sign
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {platform.machine()}; cryptography "
        f"{version('cryptography')}; {count} sessions x {concurrency} tasks, {rounds} rounds"
    )
    print(f"signing limit: 10^6 / {sign:.1f} µs = {limit:,.0f} signatures/s (sign_access_token, ES256)")
    print(f"{'case':<44}{'median':>12}{'min':>10}{'max':>10}{'of limit':>10}")
    ratios: dict[str, float] = {}
    for name, values in results.items():
        if name.startswith("sign"):
            print(f"{name:<44}{statistics.median(values):>10.1f}µs{min(values):>10.1f}{max(values):>10.1f}")
            continue
        ratios[name] = statistics.median(values) / limit
        print(
            f"{name:<44}{statistics.median(values):>10,.0f}/s{min(values):>10,.0f}{max(values):>10,.0f}"
            f"{ratios[name]:>10.2f}"
        )
    print("P5 target: >= 0.60 of the limit for a create and a refresh on SQLite")
    return {"count": count, "concurrency": concurrency, "samples": results, "of_limit": ratios}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=4000, help="creates per case per round (4000)")
    parser.add_argument("--concurrency", type=int, default=64, help="tasks, and rows per commit (64)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--json", metavar="PATH", help="also write every sample to this JSON file")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.sessions, args.concurrency, args.rounds))
    if args.json:
        Path(args.json).write_text(json.dumps(outcome, indent=1))
