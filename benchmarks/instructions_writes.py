"""P5 in CPU instructions: one signature, and a create and a refresh on SQLite (64 concurrent tasks) and in memory.

    python benchmarks/instructions_writes.py [--sessions 256] [--json results.json]

The timed figure (``stores.py``) moves 10-30 % with whatever else runs on a shared machine; a callgrind count does
not. As in ``instructions.py``, the driver re-runs itself under ``valgrind --tool=callgrind`` and runs each case
for ``N`` then ``2N`` operations between ``getppid`` markers; one operation costs ``(I(2N) - I(N)) / N``, every
thread counted (aiosqlite's worker included). The cyclic garbage collector is paused during each run (a collection
would fall at a different point in each, which is noise, not cost). The "instruction limit" is
``I(signature) / I(operation)``: the share of the signing limit a single core would reach if an instruction cost
the same everywhere. Instructions are not time (a thread hand-off, a cache miss or a lock wait costs more than its
count), so this judges the Python-side work of a change; ``stores.py`` remains the measurement of P5.

Needs valgrind (``apt-get install valgrind``); about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from instructions import totals
from store_throughput import _run_concurrently

from asgi_session import SessionManager
from asgi_session.stores import MemoryStore, SessionStore, SQLiteStore
from asgi_session.tokens import sign_access_token

CASES = ["one signature", "create, memory", "refresh, memory", "create, sqlite", "refresh, sqlite"]
CONCURRENCY = 64


async def _store_cases(manager: SessionManager, label: str) -> dict[str, Callable[[int], Awaitable[None]]]:
    tokens: list[str] = []

    async def create(count: int) -> None:
        start = len(tokens)
        tokens.extend([""] * count)

        async def one(i: int) -> None:
            session = await manager.create_new_session_without_request_response(f"user-{i % 97}")
            tokens[start + i] = session.get_all_session_tokens_dangerously()["refreshToken"]

        await _run_concurrently(count, CONCURRENCY, one)

    done = 0

    async def refresh(count: int) -> None:
        nonlocal done
        first = done
        done += count

        async def one(i: int) -> None:
            await manager.refresh_session_without_request_response(tokens[first + i])

        await _run_concurrently(count, CONCURRENCY, one)

    return {f"create, {label}": create, f"refresh, {label}": refresh}


async def child(sessions: int, folder: str) -> None:
    """Under callgrind: each case for N then 2N operations, with a dump marker around each run."""
    stores: dict[str, SessionStore] = {"memory": MemoryStore(), "sqlite": SQLiteStore(os.path.join(folder, "s.db"))}
    runs: dict[str, Callable[[int], Awaitable[None]]] = {}
    managers = []
    for label, store in stores.items():
        manager = SessionManager(store=store)
        await manager.open()
        managers.append(manager)
        runs.update(await _store_cases(manager, label))
        await runs[f"create, {label}"](CONCURRENCY)  # warm-up: caches, statements, the first batches
        await runs[f"refresh, {label}"](CONCURRENCY)
    key = await managers[0].keys.signing_key()
    claims = (await managers[0].create_new_session_without_request_response("claims")).get_access_token_payload()

    async def sign(count: int) -> None:
        for _ in range(count):
            sign_access_token(claims, key)

    runs["one signature"] = sign
    for name in CASES:
        for count in (sessions, 2 * sessions):
            gc.collect()
            gc.disable()  # a collection falls at a different point in each run: counted it is noise, not cost
            os.getppid()  # dump: what ran since the last marker is set-up
            await runs[name](count)
            os.getppid()  # dump: this run
            gc.enable()
    for manager in managers:
        await manager.close()


def parent(sessions: int, json_path: str | None) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as directory:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getppid",
            "--dump-instr=no",
            "--compress-strings=no",
            f"--callgrind-out-file={directory}/callgrind.out",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--sessions",
            str(sessions),
            "--folder",
            directory,
        ]
        # Our own interpreter running this script: no untrusted input.
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        counts = totals(directory)
    runs = counts[1:]  # dump 1 is everything before the first marker; then per case: [N, gap, 2N, gap]
    per_operation = {name: (runs[4 * i + 2] - runs[4 * i]) / sessions for i, name in enumerate(CASES)}
    print(f"{sessions} and {2 * sessions} operations per case, {CONCURRENCY} tasks; instructions per operation")
    for name in CASES:
        print(f"{name:<20} {per_operation[name]:>12,.0f}")
    signature = per_operation["one signature"]
    ratios = {name: signature / per_operation[name] for name in CASES[1:]}
    print()
    for name, value in ratios.items():
        print(f"{name:<20} {value:.3f} of the instruction limit (signature / operation)")
    if json_path:
        with open(json_path, "w") as file:
            json.dump({"sessions": sessions, "per_operation": per_operation, "ratios": ratios}, file, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=256, help="N: each case runs N then 2N operations")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.sessions, args.folder))
    else:
        parent(args.sessions, args.json)


if __name__ == "__main__":
    main()
