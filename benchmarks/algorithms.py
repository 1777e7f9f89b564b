"""The signing algorithms side by side: what each costs to sign and to verify, and P5 against its own signing limit.

    python benchmarks/algorithms.py [--algorithms ES256,EdDSA,RS256,HS256] [--sessions 1000] [--rounds 5]
                                    [--signatures 500] [--json PATH]

Issue 11 asks for the trade-off of ``SessionConfig.signing_algorithm`` between signing (every create and refresh
signs one token) and verification (every first sight of a token verifies one signature). For each algorithm, in one
process, with the rounds interleaved across algorithms so machine noise spreads over all of them:

- one signature: ``sign_access_token`` of a real session's claims with the ring's signing key (the library's own
  signing path), median µs of ``--signatures`` calls; the **signing limit** is 10^6 / that median (PERFORMANCE.md,
  P5);
- one verification: ``decode_access_token`` of tokens never seen before (the signature check, the claims' JSON and
  checks, no cache), and ``jwt.decode`` of the same tokens with the key object (PyJWT: the naive baseline of P3);
- the token's length (cookie and header budgets: a cookie holds 4096 bytes with its name);
- create and refresh on SQLite with ``--concurrency`` tasks (``store_throughput.create_then_refresh``, a new file
  per round), sessions/s, and P5 = that rate / the signing limit of the same algorithm (target >= 0.60); and the same
  on ``MemoryStore`` (no I/O: what the manager alone reaches).

HS256 is listed for completeness: a shared secret cannot be published in a JWKS, so other services cannot verify
its tokens, and the frontend SDK never verifies signatures anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jwt
from store_throughput import create_then_refresh

from asgi_session import SessionConfig, SessionManager
from asgi_session.stores import MemoryStore, SQLiteStore
from asgi_session.tokens import decode_access_token, sign_access_token

ALGORITHMS = ("ES256", "EdDSA", "RS256", "HS256")
REQUIRED = ["exp", "iat", "sub", "sessionHandle"]


def config_for(algorithm: str) -> SessionConfig:
    """The default configuration with ``algorithm`` (HS256 with a fresh 32-byte secret)."""
    if algorithm == "HS256":
        return SessionConfig(signing_algorithm="HS256", signing_secret=secrets.token_bytes(32))
    return SessionConfig(signing_algorithm=algorithm)  # type: ignore[arg-type]


@dataclass
class Algorithm:
    """One algorithm's manager, keys and samples."""

    name: str
    config: SessionConfig
    manager: SessionManager
    sign_us: list[float] = field(default_factory=list)
    verify_us: list[float] = field(default_factory=list)
    pyjwt_us: list[float] = field(default_factory=list)
    create_per_s: list[float] = field(default_factory=list)
    refresh_per_s: list[float] = field(default_factory=list)
    memory_create_per_s: list[float] = field(default_factory=list)
    memory_refresh_per_s: list[float] = field(default_factory=list)
    token_length: int = 0


async def mint(manager: SessionManager, count: int, prefix: str) -> list[str]:
    """``count`` access tokens of new sessions (never verified by anyone)."""
    return [
        (await manager.create_new_session_without_request_response(f"{prefix}-{i}")).access_token for i in range(count)
    ]


async def measure_signing(algorithm: Algorithm, signatures: int) -> None:
    """Median µs of one ``sign_access_token`` with the ring's current key."""
    key = await algorithm.manager.keys.signing_key()
    session = await algorithm.manager.create_new_session_without_request_response("signing-limit")
    claims = session.get_access_token_payload()
    samples = []
    for _ in range(signatures):
        started = time.perf_counter_ns()
        sign_access_token(claims, key)
        samples.append((time.perf_counter_ns() - started) / 1000)
    algorithm.sign_us.append(statistics.median(samples))


async def measure_verification(algorithm: Algorithm, signatures: int) -> None:
    """Median µs of ``decode_access_token`` and of ``jwt.decode`` on tokens neither has seen."""
    manager = algorithm.manager
    tokens = await mint(manager, signatures, f"verify-{secrets.token_hex(3)}")
    algorithm.token_length = len(tokens[0])
    kid = jwt.get_unverified_header(tokens[0])["kid"]
    key = manager.keys.verification_key(kid)
    assert key is not None
    issuer = manager.config.issuer
    ours, theirs = [], []
    for token in tokens:
        now = time.time()
        started = time.perf_counter_ns()
        decode_access_token(token, lookup=manager.keys.verification_key, issuer=issuer, now=now, max_length=8192)
        ours.append((time.perf_counter_ns() - started) / 1000)
    for token in tokens:
        started = time.perf_counter_ns()
        jwt.decode(token, key.public_key, algorithms=[algorithm.name], issuer=issuer, options={"require": REQUIRED})
        theirs.append((time.perf_counter_ns() - started) / 1000)
    algorithm.verify_us.append(statistics.median(ours))
    algorithm.pyjwt_us.append(statistics.median(theirs))


async def measure_writes(algorithm: Algorithm, folder: Path, sessions: int, concurrency: int) -> None:
    """Create then refresh ``sessions`` sessions on a new SQLite file with this algorithm."""
    store = SQLiteStore(folder / f"{algorithm.name}-{secrets.token_hex(4)}.db")
    created, refreshed = await create_then_refresh(store, sessions, concurrency, config=algorithm.config)
    algorithm.create_per_s.append(created)
    algorithm.refresh_per_s.append(refreshed)
    # The same with no store I/O at all: the manager's own ceiling with this algorithm.
    created, refreshed = await create_then_refresh(MemoryStore(), sessions, concurrency, config=algorithm.config)
    algorithm.memory_create_per_s.append(created)
    algorithm.memory_refresh_per_s.append(refreshed)


def report(algorithms: list[Algorithm], settings: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """Print the table and return the JSON document."""
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.machine()}; cryptography "
        f"{version('cryptography')}, PyJWT {version('PyJWT')}; {settings['rounds']} interleaved rounds, "
        f"{settings['sessions']} sessions x {settings['concurrency']} tasks on SQLite; {elapsed:.0f} s"
    )
    print(
        f"{'algorithm':<10}{'sign µs':>9}{'limit/s':>9}{'verify µs':>11}{'PyJWT µs':>10}{'token B':>9}"
        f"{'create/s':>10}{'refresh/s':>11}{'P5 create':>11}{'P5 refresh':>12}{'no store':>13}{'verify/PyJWT':>14}"
    )
    rows: dict[str, Any] = {}
    for algorithm in algorithms:
        sign = statistics.median(algorithm.sign_us)
        limit = 1e6 / sign
        verify = statistics.median(algorithm.verify_us)
        pyjwt_verify = statistics.median(algorithm.pyjwt_us)
        created = statistics.median(algorithm.create_per_s)
        refreshed = statistics.median(algorithm.refresh_per_s)
        memory_create = statistics.median(algorithm.memory_create_per_s) / limit
        memory_refresh = statistics.median(algorithm.memory_refresh_per_s) / limit
        rows[algorithm.name] = {
            "sign_us": algorithm.sign_us,
            "verify_us": algorithm.verify_us,
            "pyjwt_verify_us": algorithm.pyjwt_us,
            "create_per_s": algorithm.create_per_s,
            "refresh_per_s": algorithm.refresh_per_s,
            "memory_create_per_s": algorithm.memory_create_per_s,
            "memory_refresh_per_s": algorithm.memory_refresh_per_s,
            "token_length": algorithm.token_length,
            "signing_limit_per_s": limit,
            "p5_create": created / limit,
            "p5_refresh": refreshed / limit,
            "verify_vs_pyjwt": verify / pyjwt_verify,
        }
        print(
            f"{algorithm.name:<10}{sign:>9.1f}{limit:>9.0f}{verify:>11.1f}{pyjwt_verify:>10.1f}"
            f"{algorithm.token_length:>9}{created:>10.0f}{refreshed:>11.0f}{created / limit:>11.2f}"
            f"{refreshed / limit:>12.2f}{f'{memory_create:.2f}/{memory_refresh:.2f}':>13}{verify / pyjwt_verify:>14.2f}"
        )
    print(
        "P5 = sessions/s / (10^6 / median signature µs of the same algorithm), target >= 0.60; no store = P5 create/"
        "refresh on MemoryStore (the manager alone); verify = decode_access_token of a token never seen (P3's raw "
        "row is verify / PyJWT, target <= 0.70)"
    )
    return {"settings": settings, "python": sys.version, "algorithms": rows}


async def main(args: argparse.Namespace) -> None:
    wanted = [name.strip() for name in args.algorithms.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(ALGORITHMS))
    if unknown:
        raise SystemExit(f"unknown algorithms: {unknown} (choose from {', '.join(ALGORITHMS)})")
    algorithms = []
    for name in wanted:
        config = config_for(name)
        manager = SessionManager(store=MemoryStore(), config=config)
        await manager.open()
        algorithms.append(Algorithm(name, config, manager))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for round_index in range(args.rounds):
            shift = round_index % len(algorithms)
            for algorithm in algorithms[shift:] + algorithms[:shift]:
                gc.collect()
                await measure_signing(algorithm, args.signatures)
                await measure_verification(algorithm, args.signatures)
                await measure_writes(algorithm, folder, args.sessions, args.concurrency)
    for algorithm in algorithms:
        await algorithm.manager.close()
    settings = {
        "algorithms": wanted,
        "rounds": args.rounds,
        "sessions": args.sessions,
        "concurrency": args.concurrency,
        "signatures": args.signatures,
    }
    document = report(algorithms, settings, time.perf_counter() - started)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
        print(f"wrote {args.json}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated (default: all four)")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions per create/refresh round (1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent tasks (64)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--signatures", type=int, default=500, help="signatures and verifications per round (500)")
    parser.add_argument("--json", metavar="PATH", help="also write every sample and ratio to this JSON file")
    arguments = parser.parse_args()
    if min(arguments.sessions, arguments.concurrency, arguments.rounds, arguments.signatures) < 1:
        parser.error("counts must be >= 1")
    asyncio.run(main(arguments))
