"""P7 memory: what the verified-token cache costs per token, whether it stays bounded, and what else can grow.

    python benchmarks/memory.py [--tokens 10000] [--requests 1000000] [--cache-size 1000,10000]
                                [--algorithm HS256] [--revocations 20000] [--json PATH]

Everything runs in one process with ``tracemalloc`` tracing from the start (1 frame); "traced" below is
``tracemalloc.get_traced_memory()[0]`` after ``gc.collect()``, and RSS (from ``/proc/self/statm``) is printed beside
it for reference only (the allocator keeps freed pages, so RSS lags and never shrinks).

1. Bytes per cached token. A ``SessionMiddleware`` around a trivial app (200 only when it found the session),
   ``MemoryStore``, blacklisting off, ``verified_token_cache_size`` = tokens + warm-up. A second manager on the same
   store creates ``--tokens`` real sessions (``create_new_session_without_request_response``), so the verifying
   manager has never seen them; their ``Cookie: sAccessToken=...`` headers are built as bytes first. Then
   ``tracemalloc.clear_traces()``, and each header is sent once through the middleware: the middleware parses the
   cookie into a new token string and its SHA-256 (the cache key) and decodes new claims (the cache value), so
   everything the cache keeps (key, claims dict with its keys and values, the OrderedDict entry, the per-session
   index and its dict slot) is allocated after the clear, and frees of older objects cannot offset it. Bytes per
   token = traced after the loop / tokens, everything still alive counted: the header memo's token strings (up to
   512 headers) are in it too. The six largest allocation
   sites (file:line) of what is still alive are listed. Done for the default claims and for a payload with a few
   custom claims, for each of ``--part1-algorithms`` (ES256 is the default algorithm; RS256 has the longest
   signature).
2. Bound. For each ``--cache-size``, ``--requests`` requests through the middleware, each with a distinct, valid
   access token of a distinct session, minted on the fly (the claims of a real session of the manager, with a new
   ``sessionHandle`` and ``refreshTokenHash1`` each time, signed by the library's ``sign_access_token`` with the
   ring's current key; ``--algorithm`` HS256 by default, as signing 10^6 ES256 tokens is slow on 2 cores) and
   dropped after its request. Every response must be 200. Sampled every ``--sample-every`` requests and at the
   request that fills the cache: cache entries, sessions in the cache's per-session index, traced, peak, RSS.
   Growth = last sample - the sample when the cache filled (the samples in between show the sawtooth of the
   hash tables' deleted slots being reclaimed).
3. Other state that can grow. The revocation view with blacklisting on, driven by a ``FakeClock`` that moves 1 ms
   between each revoke and the next request (as real time would): ``--revocations`` sessions revoked through the
   manager, a request verified after each. Reported: view entries, bytes per entry (traced allocations made in
   ``_revocations.py``) and per revocation (everything traced), then after the clock moves past the retention
   (access-token validity + 60 s) and one more revoke + request (which should expire the rest), and after
   ``delete_expired_sessions`` (which reloads and trims the log); entries "with no expiry entry" are handles in the
   view that no longer have an entry in its age queue, so nothing will ever remove them. For (a) ``MemoryStore``
   (exact probe, like SQLite) and (b) the same store with its probe switched off (``probe_revocations = None``, the
   documented opt-out) and ``revocation_max_lag=0``: the default configuration of a Redis or PostgreSQL deployment
   (a revocation log, no exact probe, no feed). Part 2 also prints the size of the module-level JWT header cache
   (``tokens._HEADERS``) and of the key ring's verification keys.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import platform
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any, cast

from inprocess import make_scope, ours_inner, receive
from stores import cookie

from asgi_session import SessionConfig, SessionManager, SessionMiddleware, tokens
from asgi_session._asgi import ASGIApp
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

Message = MutableMapping[str, Any]
KIB = 1024
WARMUP = 200
HS256_SECRET = "memory-benchmark-secret-0123456789abcdef"  # a benchmark key, not a secret
PAYLOADS: dict[str, dict[str, Any] | None] = {
    "default claims": None,
    "custom payload": {
        "role": "admin",
        "email": "someone.user@example.com",
        "permissions": ["read", "write", "billing"],
        "org": "acme-corporation",
        "plan": 3,
    },
}
INNER = cast(ASGIApp, ours_inner)


def traced() -> int:
    """Bytes currently traced by tracemalloc, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def rss() -> int:
    """Resident set size of this process in bytes (from /proc/self/statm), for reference."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def config_for(algorithm: str, cache_size: int, **extra: Any) -> SessionConfig:
    """A SessionConfig signing with `algorithm` (HS256 gets a benchmark secret) and the given cache size."""
    secret = HS256_SECRET if algorithm == "HS256" else None
    return SessionConfig(
        signing_algorithm=algorithm,  # type: ignore[arg-type]
        signing_secret=secret,
        verified_token_cache_size=cache_size,
        cookie_secure=False,
        **extra,
    )


class StatusCounter:
    """An ASGI send that counts responses by status (every request must answer 200)."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def failures(self) -> int:
        """How many responses were not 200."""
        return sum(n for status, n in self.statuses.items() if status != 200)


async def request(app: SessionMiddleware, header: tuple[bytes, bytes], send: StatusCounter) -> None:
    """One GET / through the middleware with the given header."""
    await app(make_scope(header), receive, send)


async def create_headers(
    manager: SessionManager, count: int, prefix: str, payload: dict[str, Any] | None
) -> list[tuple[bytes, bytes]]:
    """Create `count` sessions and return their access tokens as Cookie headers (bytes, never verified)."""
    headers = []
    for i in range(count):
        session = await manager.create_new_session_without_request_response(
            f"{prefix}-{i}", access_token_payload=payload
        )
        headers.append(cookie(session.access_token))
    return headers


# -- 1. bytes per cached token --------------------------------------------------------------------------------


@dataclass
class PerToken:
    """The result of part 1 for one algorithm and payload."""

    algorithm: str
    payload: str
    tokens: int
    token_chars: int
    bytes_per_token: float
    rss_per_token: float
    cache_entries: int
    top_sites: list[str] = field(default_factory=list)


async def bytes_per_token(algorithm: str, payload_name: str, count: int) -> PerToken:
    """Verify `count` never-seen tokens once each through the middleware; traced growth per cached token."""
    store = MemoryStore()
    config = config_for(algorithm, count + WARMUP)
    minter, verifier = SessionManager(store, config), SessionManager(store, config)
    app = SessionMiddleware(INNER, manager=verifier)
    send = StatusCounter()
    async with minter, verifier:
        payload = PAYLOADS[payload_name]
        for header in await create_headers(minter, WARMUP, "warm", payload):
            await request(app, header, send)
        headers = await create_headers(minter, count, "user", payload)
        token_chars = len(headers[0][1]) - len(b"sAccessToken=")
        cache = verifier._cache
        assert len(cache) == WARMUP, len(cache)
        # Forget every earlier trace: the reading after counts only blocks allocated from here on and still alive,
        # so frees of older objects (the previous measurement's leftovers) cannot hide anything.
        gc.collect()
        rss_before = rss()
        tracemalloc.clear_traces()
        for header in headers:
            await request(app, header, send)
        after, rss_after = traced(), rss()
        entries = len(cache)
        if send.failures() or entries != WARMUP + count:
            raise SystemExit(f"part 1: statuses {send.statuses}, cache {entries} (expected {WARMUP + count})")
        sites = [
            f"{stat.size / count:7.1f} B/token  {os.path.basename(frame.filename)}:{frame.lineno}"
            for stat in tracemalloc.take_snapshot().statistics("lineno")[:6]
            for frame in stat.traceback[:1]
        ]
        return PerToken(
            algorithm,
            payload_name,
            count,
            token_chars,
            after / count,
            (rss_after - rss_before) / count,
            entries,
            sites,
        )


# -- 2. the bound over many distinct tokens -------------------------------------------------------------------


@dataclass
class Sample:
    """One reading during part 2."""

    requests: int
    cache_entries: int
    indexed_sessions: int
    traced: int
    peak: int
    rss: int
    seconds: float


@dataclass
class BoundRun:
    """The result of part 2 for one cache size."""

    cache_size: int
    algorithm: str
    requests: int
    seconds: float
    failures: int
    max_entries: int
    fill_index: int
    growth_after_fill: int
    samples: list[Sample] = field(default_factory=list)
    headers_cached: int = 0
    verification_keys: int = 0


def token_factory(minter: SessionManager, template: dict[str, Any], key: Any) -> Callable[[int], str]:
    """Return mint(i): a valid access token of a new session, the template claims with a fresh handle and hash."""

    def mint(i: int) -> str:
        claims = dict(template)
        claims["sessionHandle"] = str(uuid.uuid4())
        claims["refreshTokenHash1"] = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        return tokens.sign_access_token(claims, key)

    return mint


async def bound_run(cache_size: int, algorithm: str, count: int, every: int) -> BoundRun:
    """Send `count` requests with distinct fresh tokens; sample the cache and memory along the way."""
    store = MemoryStore()
    config = config_for(algorithm, cache_size)
    minter, verifier = SessionManager(store, config), SessionManager(store, config)
    app = SessionMiddleware(INNER, manager=verifier)
    send = StatusCounter()
    async with minter, verifier:
        session = await minter.create_new_session_without_request_response("bound-user")
        mint = token_factory(minter, dict(session._claims), await minter.keys.signing_key())
        cache = verifier._cache
        samples: list[Sample] = []
        max_entries, fill_index = 0, -1
        start = time.perf_counter()

        def sample(done: int) -> None:
            traced_now = traced()
            samples.append(
                Sample(
                    done,
                    len(cache),
                    len(cache._by_handle),
                    traced_now,
                    tracemalloc.get_traced_memory()[1],
                    rss(),
                    time.perf_counter() - start,
                )
            )
            line = samples[-1]
            print(
                f"  {done:>9,} requests  cache {line.cache_entries:>7,}  index {line.indexed_sessions:>7,}  "
                f"traced {line.traced / KIB:>9,.0f} KiB  RSS {line.rss / KIB:>9,.0f} KiB  {line.seconds:6.0f} s",
                flush=True,
            )

        sample(0)
        for i in range(1, count + 1):
            await request(app, cookie(mint(i)), send)
            entries = len(cache)
            max_entries = max(max_entries, entries)
            if i in (cache_size, count) or i % every == 0:
                if i == cache_size:
                    fill_index = len(samples)
                sample(i)
        seconds = time.perf_counter() - start
        if fill_index < 0:
            fill_index = len(samples) - 1
        run = BoundRun(
            cache_size,
            algorithm,
            count,
            seconds,
            send.failures(),
            max_entries,
            fill_index,
            samples[-1].traced - samples[fill_index].traced,
            samples,
            len(tokens._HEADERS),
            len(verifier.keys._verification),
        )
        return run


# -- 3. the revocation view ------------------------------------------------------------------------------------


class UnprobedMemoryStore(MemoryStore):
    """A MemoryStore without the exact probe: like Redis or PostgreSQL with ``revocation_max_lag=0``."""

    probe_revocations = None  # type: ignore[assignment]


@dataclass
class ViewRun:
    """The result of part 3 for one store."""

    store: str
    revocations: int
    view_entries: int
    view_bytes_per_entry: float
    traced_bytes_per_revocation: float
    entries_after_retention: int
    orphans: int
    entries_after_cleanup: int
    orphans_after_cleanup: int
    marks: int


async def revocation_view(store: MemoryStore, label: str, count: int) -> ViewRun:
    """Revoke `count` sessions (verifying a token after each), then let the retention pass and revoke once more."""
    clock = FakeClock(time.time())
    config = SessionConfig(access_token_blacklisting=True, cookie_secure=False)
    manager = SessionManager(store, config, clock=clock)
    app = SessionMiddleware(INNER, manager=manager)
    send = StatusCounter()
    async with manager:
        alive = await manager.create_new_session_without_request_response("view-alive")
        header = cookie(alive.access_token)
        handles = [
            (await manager.create_new_session_without_request_response(f"view-{i}")).handle for i in range(count + 1)
        ]
        await request(app, header, send)
        gc.collect()
        tracemalloc.clear_traces()
        for handle in handles[:count]:
            await manager.revoke_session(handle)
            clock.advance(0.001)  # real time passes between the revoke and the next request
            await request(app, header, send)
        total = traced()
        in_view = sum(
            stat.size
            for stat in tracemalloc.take_snapshot().statistics("filename")
            if stat.traceback[0].filename.endswith("_revocations.py")
        )
        entries = len(manager._revoked)
        clock.advance(manager._revoked.retention + 1)
        fresh = await manager.create_new_session_without_request_response("view-alive-2")
        await manager.revoke_session(handles[count])
        await request(app, cookie(fresh.access_token), send)
        after_retention = len(manager._revoked)
        view = manager._revoked
        orphans = len(set(view._handles) - {handle for _, handle in view._by_age})
        await manager.delete_expired_sessions()
        orphans_after_cleanup = len(set(view._handles) - {handle for _, handle in view._by_age})
        if send.failures():
            raise SystemExit(f"part 3 ({label}): statuses {send.statuses}")
        return ViewRun(
            label,
            count,
            entries,
            in_view / count,
            total / count,
            after_retention,
            orphans,
            len(manager._revoked),
            orphans_after_cleanup,
            len(manager._revoked._marks),
        )


# -- report --------------------------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """Date, versions and machine."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "asgi-session": version("asgi-session"),
        "cryptography": version("cryptography"),
        "platform": platform.platform(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three parts, print the results and return them all."""
    env = environment()
    print(" | ".join(f"{k}: {v}" for k, v in env.items()))
    tracemalloc.start(1)
    started = time.perf_counter()

    print(f"\n1. bytes per cached token ({args.tokens:,} never-seen tokens each, token string counted)")
    per_token = []
    for algorithm in args.part1_algorithms.split(","):
        for name in PAYLOADS:
            result = await bytes_per_token(algorithm, name, args.tokens)
            per_token.append(result)
            verdict = "ok" if result.bytes_per_token <= KIB else "OVER 1 KiB"
            print(
                f"  {algorithm:6} {name:15} token {result.token_chars:4} chars  "
                f"{result.bytes_per_token:7.1f} B/token traced ({verdict})  RSS {result.rss_per_token:7.1f} B/token"
            )
            for site in result.top_sites:
                print(f"      {site}")

    bounds = []
    for size in (int(s) for s in args.cache_size.split(",")):
        print(f"\n2. bound: cache size {size:,}, {args.requests:,} distinct {args.algorithm} tokens")
        run = await bound_run(size, args.algorithm, args.requests, args.sample_every)
        bounds.append(run)
        fill = run.samples[run.fill_index]
        verdict = "ok" if run.max_entries <= size and not run.failures else "VIOLATED"
        print(
            f"  max cache entries {run.max_entries:,} (bound {size:,}: {verdict}); non-200 {run.failures}; "
            f"growth from the fill sample ({fill.requests:,} requests) to the last: {run.growth_after_fill:+,} B; "
            f"{run.seconds:.0f} s ({run.seconds / run.requests * 1e6:.1f} µs/request with tracing); "
            f"tokens._HEADERS {run.headers_cached}, verification keys {run.verification_keys}"
        )

    print(f"\n3. revocation view, blacklisting on, {args.revocations:,} revocations")
    views = []
    for store, label in ((MemoryStore(), "MemoryStore (exact probe)"), (UnprobedMemoryStore(), "no probe, lag 0")):
        view = await revocation_view(store, label, args.revocations)
        views.append(view)
        print(
            f"  {label:26} view {view.view_entries:,} entries, {view.view_bytes_per_entry:.0f} B/entry "
            f"(all traced: {view.traced_bytes_per_revocation:.0f} B/revocation); after the retention + 1 revoke: "
            f"{view.entries_after_retention:,} ({view.orphans:,} with no expiry entry); "
            f"after delete_expired_sessions: {view.entries_after_cleanup:,} "
            f"({view.orphans_after_cleanup:,} with no expiry entry); "
            f"{view.marks} marks"
        )

    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s")
    return {
        "environment": env,
        "arguments": vars(args),
        "per_token": [asdict(p) for p in per_token],
        "bound": [asdict(b) for b in bounds],
        "revocation_view": [asdict(v) for v in views],
        "seconds": elapsed,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10_000, help="part 1: tokens cached per measurement")
    parser.add_argument("--part1-algorithms", default="ES256,RS256", help="part 1: comma-separated algorithms")
    parser.add_argument("--requests", type=int, default=1_000_000, help="part 2: requests per cache size")
    parser.add_argument("--cache-size", default="1000,10000", help="part 2: comma-separated cache sizes")
    parser.add_argument("--algorithm", default="HS256", help="part 2: signing algorithm of the minted tokens")
    parser.add_argument("--sample-every", type=int, default=50_000, help="part 2: requests between samples")
    parser.add_argument("--revocations", type=int, default=20_000, help="part 3: sessions revoked")
    parser.add_argument("--json", help="write every result to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    results = asyncio.run(main(arguments))
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump(results, out, indent=1)
