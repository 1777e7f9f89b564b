"""Create and refresh throughput on the SQLite store, beside the naive aiosqlite anchors, in one run.

    python benchmarks/store_throughput.py [--sessions 2000] [--concurrency 64] [--rounds 3]

Prints sessions/s (median of the rounds) for: naive aiosqlite INSERT (execute + close + commit per row with
aiosqlite's defaults: the PERFORMANCE.md anchor), naive aiosqlite compare-and-swap UPDATE (read, update, commit),
the same two with WAL and synchronous=NORMAL (what our store uses), asgi-session create and refresh.
Rounds interleave the cases so machine noise spreads over all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiosqlite
import anyio

from asgi_session import SessionConfig, SessionManager
from asgi_session.stores import SessionStore, SQLiteStore


async def _run_concurrently(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> float:
    """Run job(0..count-1) with `concurrency` workers; return operations per second."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await job(index)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return count / (time.perf_counter() - start)


@contextlib.asynccontextmanager
async def _naive_db(folder: Path, *, wal: bool) -> AsyncIterator[aiosqlite.Connection]:
    """A new database file with aiosqlite's defaults, or (``wal``) the journal settings our store uses."""
    async with aiosqlite.connect(folder / f"naive-{uuid.uuid4().hex}.db") as db:
        if wal:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
        yield db


async def naive_insert(folder: Path, count: int, concurrency: int, *, wal: bool = False) -> float:
    async with _naive_db(folder, wal=wal) as db:
        await db.execute("CREATE TABLE s (handle TEXT PRIMARY KEY, user_id TEXT, hash TEXT, expires REAL)")
        await db.commit()

        async def job(i: int) -> None:
            cursor = await db.execute(
                "INSERT INTO s VALUES (?, ?, ?, ?)", (uuid.uuid4().hex, f"u{i}", uuid.uuid4().hex, time.time())
            )
            await cursor.close()
            await db.commit()

        return await _run_concurrently(count, concurrency, job)


async def naive_cas(folder: Path, count: int, concurrency: int, *, wal: bool = False) -> float:
    async with _naive_db(folder, wal=wal) as db:
        await db.execute("CREATE TABLE s (handle TEXT PRIMARY KEY, hash TEXT)")
        rows = [(f"h{i}", "a") for i in range(count)]
        await db.executemany("INSERT INTO s VALUES (?, ?)", rows)
        await db.commit()

        async def job(i: int) -> None:
            cursor = await db.execute("SELECT hash FROM s WHERE handle = ?", (f"h{i}",))
            (old,) = await cursor.fetchone()  # type: ignore[misc]
            await cursor.close()
            cursor = await db.execute("UPDATE s SET hash = ? WHERE handle = ? AND hash = ?", ("b", f"h{i}", old))
            await cursor.close()
            await db.commit()

        return await _run_concurrently(count, concurrency, job)


async def create_then_refresh(
    store: SessionStore, count: int, concurrency: int, users: str = "user", *, config: SessionConfig | None = None
) -> tuple[float, float]:
    """asgi-session on ``store``: create ``count`` sessions (of 97 users), then refresh each; both rates per second.

    ``config``: the manager's configuration (the default one when ``None``; ``algorithms.py`` varies the algorithm).
    """
    async with SessionManager(store=store, config=config) as manager:
        refresh_tokens: list[str] = [""] * count

        async def create(i: int) -> None:
            session = await manager.create_new_session_without_request_response(f"{users}-{i % 97}")
            refresh_tokens[i] = session.get_all_session_tokens_dangerously()["refreshToken"]

        async def refresh(i: int) -> None:
            await manager.refresh_session_without_request_response(refresh_tokens[i])

        created = await _run_concurrently(count, concurrency, create)
        refreshed = await _run_concurrently(count, concurrency, refresh)
        return created, refreshed


async def ours(folder: Path, count: int, concurrency: int) -> tuple[float, float]:
    return await create_then_refresh(SQLiteStore(folder / f"ours-{uuid.uuid4().hex}.db"), count, concurrency)


async def main(count: int, concurrency: int, rounds: int) -> None:
    results: dict[str, list[float]] = {
        "naive INSERT": [],
        "naive CAS UPDATE": [],
        "naive INSERT, WAL": [],
        "naive CAS, WAL": [],
        "create": [],
        "refresh": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(rounds):
            results["naive INSERT"].append(await naive_insert(folder, count, concurrency))
            results["naive CAS UPDATE"].append(await naive_cas(folder, count, concurrency))
            results["naive INSERT, WAL"].append(await naive_insert(folder, count, concurrency, wal=True))
            results["naive CAS, WAL"].append(await naive_cas(folder, count, concurrency, wal=True))
            created, refreshed = await ours(folder, count, concurrency)
            results["create"].append(created)
            results["refresh"].append(refreshed)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {count} sessions, {concurrency} concurrent")
    print(f"{'case':<20}{'median/s':>10}{'min/s':>10}{'max/s':>10}")
    for name, values in results.items():
        print(f"{name:<20}{statistics.median(values):>10.0f}{min(values):>10.0f}{max(values):>10.0f}")
    create_ratio = statistics.median(results["create"]) / statistics.median(results["naive INSERT"])
    refresh_ratio = statistics.median(results["refresh"]) / statistics.median(results["naive CAS UPDATE"])
    print(f"create / naive INSERT = {create_ratio:.2f}x; refresh / naive CAS = {refresh_ratio:.2f}x (P5 target >= 3x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.sessions, args.concurrency, args.rounds)
