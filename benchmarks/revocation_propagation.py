"""Revocation propagation: from "revoke returned" in one process to "refused" by a uvicorn worker in another.

    python benchmarks/revocation_propagation.py [--trials 200] [--warmup 5] [--sessions-per-user 5]
                                                [--stores sqlite,redis,postgres] [--json PATH]

Issue 10 asks for the time a revocation takes to reach another process, p50 and p99 per store. What is measured,
per store (SQLite: a file in a temporary folder; Redis: ``ASGI_SESSION_REDIS_URL`` with a unique key prefix;
PostgreSQL: ``ASGI_SESSION_POSTGRES_DSN`` with a unique schema; a store whose variable is unset or whose server does
not answer is skipped and named in the output; whatever the run wrote is removed at the end):

- The worker: ONE uvicorn process on 127.0.0.1 (``e2e_servers.py``: 1 worker, httptools and uvloop when installed)
  serving ``e2e_apps:asgi_session_blacklisting``: ``SessionMiddleware`` with ``access_token_blacklisting=True`` and
  ``revocation_max_lag=0.1`` (Redis and PostgreSQL follow the store's push feed and trust their in-memory view
  while the feed confirmed it within 0.1 s, else read the store; SQLite probes its revocation log synchronously on
  every request and ignores the lag). ``GET /`` answers 200 only when the session was found, 401 otherwise;
  ``POST /login`` creates a session of ``user-1``. Before any trial the worker is checked (``e2e_servers.check``:
  200 with a token, 401 without, 401 after ``POST /revoke``).
- This process: one ``SessionManager`` on the same store with the worker's config, opened once, and one keep-alive
  ``httpx.AsyncClient`` to the worker; requests carry the token as ``Authorization: Bearer`` (header mode), one at
  a time.

One trial of the variant ``revoke``: ``POST /login`` on the worker (header mode) gives an access token; its handle is
read by verifying it here; ``GET /`` with it on the worker must answer 200 (the worker has now verified and cached
it; that request's round trip is the "RTT 200" reference); ``await manager.revoke_session(handle)`` here;
t0 = ``time.perf_counter()`` as soon as it returned; then ``GET /`` with the token, one request after another, as
fast as the client goes, until the worker answers 401. Propagation = (when the first 401 response was received)
minus t0, so it includes that request's round trip: on SQLite, where the very next request must be refused, it
reads as one request. Every 200 received after t0 is an accepted-after-revoke request: counted, and the last one's send
and receive times (after t0) are kept. On SQLite any such request breaks the exactness guarantee; on Redis and
PostgreSQL one whose request was SENT more than 0.1 s after t0 breaks the bound (the worker decided between the send
and the receive: a 200 sent before and received after t0 + 0.1 s is flagged as ambiguous, not as a violation). A
token still accepted ``POLL_LIMIT`` seconds after t0 ends the trial as "never refused". Any other status is counted.

The variant ``revoke-all``: ``--sessions-per-user`` logins of ``user-1`` (the login route's only user; every
earlier session of it was revoked), each verified once on the worker, then ``revoke_all_sessions_for_user("user-1")``
here (all handles in one store write: one delete script on Redis, one statement on PostgreSQL); then the tokens
are polled in order, each until its first 401. Propagation = the first token's first 401 minus t0 ("first
refused"); "all refused" is the last token's first 401 (about ``k - 1`` round trips later when the whole batch
arrived at once).

Between trials this process sleeps a random 0-50 ms, so revokes fall at random phases of the feed's heartbeat. The
first ``--warmup`` trials of each variant are not counted. Printed per store and variant: p50, p99 and max of the
propagation, its p50 in round trips (propagation / median "RTT 401", the round trip of the first refused request),
how many polls a trial took (median, max), in how many trials each token was refused at its first request
after the revoke ("refused at once"), accepted-after-revoke requests and their latest send/receive times, the
median revoke call, the median round trips of a 200 (the cached verify before the revoke) and of the first 401,
violations, and the worker's log lines about the revocation feed (a lost or recovered feed). With the date, the
versions (Python, asgi-session, httpx, uvicorn, the Redis and PostgreSQL servers), the machine and the load average
at the start and the end (the machines are shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from e2e_servers import Running, Server, check, running, uvicorn_options
from stores import StoreUnderTest, prepare_stores

from asgi_session import SessionConfig, SessionManager
from asgi_session.stores import store_from_url

MAX_LAG = 0.1  # revocation_max_lag on Redis and PostgreSQL (P4's setting); SQLite is exact whatever it says
POLL_LIMIT = 2.0  # seconds after the revoke: a token still accepted then is recorded as never refused
PAUSE = 0.05  # the longest random pause between trials, seconds
USER = "user-1"  # the only user of the worker's login route
WORKER = Server(
    "e2e_apps:asgi_session_blacklisting", env=(("STORE_URL", "{store_url}"), ("REVOCATION_MAX_LAG", str(MAX_LAG)))
)
# The worker's configuration (``e2e_apps.asgi_session_blacklisting``): this process must sign and read as it does.
CONFIG = SessionConfig(access_token_blacklisting=True, cookie_secure=False, revocation_max_lag=MAX_LAG)


@dataclass
class Trial:
    """One revocation and the polling that followed it; times in seconds after t0 (the revoke returned)."""

    revoke_call: float  # how long the revoke call itself took
    rtt_200: float  # the verify-once request before the revoke (a cached token, 200)
    refused: list[float] = field(default_factory=list)  # each token's first 401, in polling order
    rtt_401: float | None = None  # the round trip of the first refused request
    polls: int = 0
    accepted: int = 0  # 200s received after t0
    last_accepted_sent: float | None = None
    last_accepted_received: float | None = None
    other_statuses: list[int] = field(default_factory=list)
    never_refused: bool = False


@dataclass
class Variant:
    """The trials of one variant on one store."""

    store: str
    name: str
    trials: list[Trial] = field(default_factory=list)


# -- one trial ------------------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    """The request header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


async def log_in(client: httpx.AsyncClient, manager: SessionManager) -> tuple[str, str, float]:
    """A session made by the worker's login route, verified once by the worker: (token, handle, that round trip)."""
    response = await client.post("login", headers={"st-auth-mode": "header"})
    if response.status_code != 200:
        raise SystemExit(f"login answered {response.status_code}")
    token = response.headers["st-access-token"]
    session = await manager.get_session_without_request_response(token)
    if session is None:
        raise SystemExit("this process did not accept the token the worker issued")
    handle = session.get_handle()
    sent = time.perf_counter()
    status = (await client.get("", headers=bearer(token))).status_code
    rtt = time.perf_counter() - sent
    if status != 200:
        raise SystemExit(f"the worker answered {status} to a fresh token, before any revoke")
    return token, handle, rtt


async def poll_until_refused(client: httpx.AsyncClient, tokens: list[str], t0: float, trial: Trial) -> None:
    """Request with each token in turn, one request at a time, until the worker refuses it (or ``POLL_LIMIT``)."""
    for token in tokens:
        headers = bearer(token)
        while True:
            sent = time.perf_counter()
            if sent - t0 > POLL_LIMIT:
                trial.never_refused = True
                return
            status = (await client.get("", headers=headers)).status_code
            received = time.perf_counter()
            trial.polls += 1
            if status == 401:
                trial.refused.append(received - t0)
                if trial.rtt_401 is None:
                    trial.rtt_401 = received - sent
                break
            if status == 200:
                trial.accepted += 1
                trial.last_accepted_sent, trial.last_accepted_received = sent - t0, received - t0
            else:
                trial.other_statuses.append(status)


async def revoke_trial(client: httpx.AsyncClient, manager: SessionManager, sessions: int) -> Trial:
    """One trial: ``sessions`` == 1 revokes one session by handle, more revokes every session of ``USER``."""
    logged_in = [await log_in(client, manager) for _ in range(sessions)]
    started = time.perf_counter()
    if sessions == 1:
        if not await manager.revoke_session(logged_in[0][1]):
            raise SystemExit("revoke_session found no session to revoke")
    else:
        revoked = await manager.revoke_all_sessions_for_user(USER)
        if not {handle for _, handle, _ in logged_in} <= set(revoked):
            raise SystemExit(f"revoke_all_sessions_for_user revoked {len(revoked)} sessions, not all of this trial's")
    t0 = time.perf_counter()
    trial = Trial(revoke_call=t0 - started, rtt_200=statistics.median(rtt for _, _, rtt in logged_in))
    await poll_until_refused(client, [token for token, _, _ in logged_in], t0, trial)
    return trial


# -- one store ------------------------------------------------------------------------------------------------------


async def measure_store(store: StoreUnderTest, folder: Path, args: argparse.Namespace) -> tuple[list[Variant], str]:
    """Start the store's worker, run every variant's trials against it; return them and its feed log lines."""
    server = dataclasses.replace(WORKER, env=tuple((k, v.format(store_url=store.url)) for k, v in WORKER.env))
    variants = [Variant(store.name, "revoke")]
    if args.sessions_per_user > 1:
        variants.append(Variant(store.name, f"revoke-all ({args.sessions_per_user} sessions)"))
    with running([server], folder / store.name) as servers:
        worker: Running = servers[server]
        await asyncio.to_thread(check, worker, "bearer", revocable=True)
        async with (
            SessionManager(store=store_from_url(store.url), config=CONFIG) as manager,
            httpx.AsyncClient(base_url=worker.url, timeout=10) as client,
        ):
            await manager.revoke_all_sessions_for_user(USER)  # the session the check left
            for variant in variants:
                sessions = 1 if variant.name == "revoke" else args.sessions_per_user
                for index in range(args.warmup + args.trials):
                    await asyncio.sleep(random.uniform(0, PAUSE))
                    trial = await revoke_trial(client, manager, sessions)
                    if index >= args.warmup:
                        variant.trials.append(trial)
                print(f"  {store.name}: {variant.name}: {len(variant.trials)} trials done", flush=True)
        log = worker.log.read_text(errors="replace")
    feed_lines = "\n".join(line for line in log.splitlines() if "revocation feed" in line or "Error" in line)
    return variants, feed_lines


# -- report ---------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks; the only value of a single sample."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def ms(value: float | None) -> str:
    """Seconds as milliseconds for the table, ``-`` for none."""
    return "-" if value is None else f"{value * 1000:.2f}"


def summarize(variant: Variant) -> dict[str, Any]:
    """The row of one variant, and its violations of the store's guarantee."""
    trials = variant.trials
    done = [trial for trial in trials if not trial.never_refused]
    first = [trial.refused[0] for trial in done]
    every = [trial.refused[-1] for trial in done]
    rtt_401 = [trial.rtt_401 for trial in done if trial.rtt_401 is not None]
    accepted = [trial for trial in trials if trial.accepted]
    exact = variant.store == "sqlite"
    violations = [
        f"trial {index}: never refused within {POLL_LIMIT} s"
        for index, trial in enumerate(trials)
        if trial.never_refused
    ]
    ambiguous = []
    for index, trial in ((i, t) for i, t in enumerate(trials) if t.accepted):
        sent, received = trial.last_accepted_sent or 0.0, trial.last_accepted_received or 0.0
        what = f"trial {index}: {trial.accepted} accepted, the last sent {ms(sent)} ms and received {ms(received)} ms"
        if exact or sent > MAX_LAG:
            violations.append(f"{what} after the revoke returned")
        elif received > MAX_LAG:
            ambiguous.append(f"{what} after the revoke returned (sent within the bound, received after it)")
    return {
        "store": variant.store,
        "variant": variant.name,
        "trials": len(trials),
        "p50_ms": 1000 * percentile(first, 50) if first else None,
        "p99_ms": 1000 * percentile(first, 99) if first else None,
        "max_ms": 1000 * max(first) if first else None,
        "all_refused_p50_ms": 1000 * percentile(every, 50) if every else None,
        "all_refused_p99_ms": 1000 * percentile(every, 99) if every else None,
        "rtt_200_median_ms": 1000 * statistics.median(trial.rtt_200 for trial in trials),
        "rtt_401_median_ms": 1000 * statistics.median(rtt_401) if rtt_401 else None,
        "polls_median": statistics.median(trial.polls for trial in trials),
        "polls_max": max(trial.polls for trial in trials),
        "refused_at_first_request": sum(1 for trial in done if trial.polls == len(trial.refused)),
        "accepted_after_revoke": sum(trial.accepted for trial in trials),
        "trials_with_accepted": len(accepted),
        "latest_accepted_sent_ms": max((1000 * (t.last_accepted_sent or 0) for t in accepted), default=None),
        "latest_accepted_received_ms": max((1000 * (t.last_accepted_received or 0) for t in accepted), default=None),
        "revoke_call_median_ms": 1000 * statistics.median(trial.revoke_call for trial in trials),
        "other_statuses": sorted({status for trial in trials for status in trial.other_statuses}),
        "violations": violations,
        "ambiguous": ambiguous,
    }


def cell(value: Any, digits: int = 2) -> str:
    """A table cell: a number with ``digits`` decimals, ``-`` for none."""
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """The results, one line per store and variant (times in ms after the revoke returned)."""
    print(
        "\n| store | variant | trials | p50 ms | p99 ms | max ms | p50 / RTT 401 | all refused p50 / p99 ms "
        "| polls p50 / max | refused at once | accepted after revoke (trials) | latest accepted sent / recv ms "
        "| revoke call p50 ms | RTT 200 p50 ms | RTT 401 p50 ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rtt = row["rtt_401_median_ms"]
        in_rtt = None if rtt is None or row["p50_ms"] is None else row["p50_ms"] / rtt
        print(
            f"| {row['store']} | {row['variant']} | {row['trials']} | {cell(row['p50_ms'])} | {cell(row['p99_ms'])} "
            f"| {cell(row['max_ms'])} | {cell(in_rtt)} "
            f"| {cell(row['all_refused_p50_ms'])} / {cell(row['all_refused_p99_ms'])} "
            f"| {cell(row['polls_median'], 0)} / {row['polls_max']} | {row['refused_at_first_request']} "
            f"| {row['accepted_after_revoke']} ({row['trials_with_accepted']}) "
            f"| {cell(row['latest_accepted_sent_ms'])} / {cell(row['latest_accepted_received_ms'])} "
            f"| {cell(row['revoke_call_median_ms'])} | {cell(row['rtt_200_median_ms'])} | {cell(rtt)} |"
        )


async def server_versions() -> dict[str, str]:
    """The Redis and PostgreSQL server versions, when their variables are set and the servers answer."""
    found: dict[str, str] = {}
    redis_url = os.environ.get("ASGI_SESSION_REDIS_URL", "").strip()
    postgres_dsn = os.environ.get("ASGI_SESSION_POSTGRES_DSN", "").strip()
    if redis_url:
        import redis.asyncio as aioredis

        with contextlib.suppress(Exception):
            client = aioredis.Redis.from_url(redis_url)
            try:
                found["redis server"] = str((await client.info("server"))["redis_version"])
            finally:
                await client.aclose()
    if postgres_dsn:
        import asyncpg  # type: ignore[import-untyped]

        with contextlib.suppress(Exception):
            connection = await asyncpg.connect(postgres_dsn)
            try:
                found["postgres server"] = str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()
    return found


async def environment() -> dict[str, Any]:
    """The date, the versions and the machine, for the report."""
    packages = {name: version(name) for name in ("asgi-session", "httpx", "uvicorn", "redis", "asyncpg")}
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        **packages,
        **await server_versions(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load average at start": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "server": uvicorn_options()[1],
    }


async def main(args: argparse.Namespace) -> None:
    """Every store in turn (one worker at a time), then the report."""
    started = time.perf_counter()
    wanted = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {"sqlite", "redis", "postgres"})
    if unknown:
        raise SystemExit(f"unknown stores: {unknown} (sqlite, redis, postgres)")
    about = await environment()
    for key, value in about.items():
        print(f"{key}: {value}")
    variants: list[Variant] = []
    feed_logs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores, skipped = await prepare_stores(wanted, folder, postgres_pool=None)
        for note in skipped:
            print(f"  {note}")
        try:
            for store in stores:
                (folder / store.name).mkdir()
                measured, feed_logs[store.name] = await measure_store(store, folder, args)
                variants += measured
        finally:
            for store in stores:
                await store.cleanup()
    rows = [summarize(variant) for variant in variants]
    settings = {
        "trials": args.trials,
        "warmup": args.warmup,
        "sessions_per_user": args.sessions_per_user,
        "revocation_max_lag": MAX_LAG,
        "poll_limit_s": POLL_LIMIT,
        "pause_s": f"uniform 0-{PAUSE}",
    }
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nsettings: {settings}; {time.perf_counter() - started:.0f} s in all; load average at the end: {load}")
    print("times in ms after the revoke call returned; RTT: one request's round trip through the client")
    print_table(rows)
    print()
    for row in rows:
        verdict = "exact: 0 accepted after the revoke" if row["store"] == "sqlite" else f"bound {MAX_LAG} s"
        status = "VIOLATED" if row["violations"] else "held"
        print(
            f"{row['store']}, {row['variant']}: {verdict}: {status}; other statuses: {row['other_statuses'] or 'none'}"
        )
        for line in row["violations"] + row["ambiguous"]:
            print(f"    {line}")
    for name, lines in feed_logs.items():
        print(f"worker log ({name}), revocation feed and errors: {lines or 'nothing'}")
    if args.json:
        document = {
            "environment": about,
            "settings": settings,
            "skipped": skipped,
            "summary": rows,
            "trials": {f"{v.store}, {v.name}": [dataclasses.asdict(trial) for trial in v.trials] for v in variants},
            "worker_logs": feed_logs,
        }
        Path(args.json).write_text(json.dumps(document, indent=2), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200, help="counted trials per store and variant (200)")
    parser.add_argument("--warmup", type=int, default=5, help="trials per store and variant not counted (5)")
    parser.add_argument(
        "--sessions-per-user", type=int, default=5, help="revoke-all variant: sessions of the user (5; 1: no variant)"
    )
    parser.add_argument("--stores", default="sqlite,redis,postgres", help="which stores (default: all three)")
    parser.add_argument("--json", metavar="PATH", help="also write every trial and the summary to this JSON file")
    arguments = parser.parse_args()
    if min(arguments.trials, arguments.sessions_per_user) < 1 or arguments.warmup < 0:
        parser.error("--trials and --sessions-per-user must be >= 1, --warmup >= 0")
    asyncio.run(main(arguments))
