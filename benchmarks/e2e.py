"""End to end: one uvicorn server per case on 127.0.0.1, loaded with wrk in alternating rounds (P2 and P4).

    python benchmarks/e2e.py p2                      # 5 rounds of wrk -t1 -c32 -d5s per case, about 2 minutes
    python benchmarks/e2e.py p2 --rounds 7 --duration 10
    python benchmarks/e2e.py p2 --loader python      # the bounded Python load generator instead of wrk
    python benchmarks/e2e.py p4                      # every store whose variable is set, about 2-3 minutes
    python benchmarks/e2e.py p4 --stores sqlite      # only SQLite (default: sqlite,redis,postgres)
    python benchmarks/e2e.py p2 --json /tmp/p2.json  # also every round's requests/s and the ratios, as JSON

The suites are data (``SUITES``): each case names the app it serves (``e2e_apps.py``), how a client logs in to get
its token, and what its ratio to bare is judged against. P2: asgi-session (cookie and Bearer) beside bare and
Starlette's ``SessionMiddleware``, target >= 0.80 x bare. P4: asgi-session with access-token blacklisting (a revocation
check on every request) on SQLite, and on Redis and PostgreSQL when ``ASGI_SESSION_REDIS_URL`` /
``ASGI_SESSION_POSTGRES_DSN`` are set (a unique key prefix / schema, removed on exit), beside bare and the naive
anchor and the same middleware with blacklisting off; target >= 0.60 x bare on every store (Redis and PostgreSQL
with ``revocation_max_lag=0.1``).

Every server is checked before any timing: 200 with its token and 401 without (and, for the P4 cases, 401 once its
session is revoked, so a case that did not read the store cannot pass). Any non-2xx response or socket error during
a load run fails the run. A warm-up of 1 s per case is not counted; the rounds rotate the order of the cases. Prints
requests/s per case (median, min, max), the ratio to bare and the per-round ratios. Every server this script starts
is stopped through its own process handle on exit, Ctrl-C and errors included.

wrk is installed with apt-get when missing and possible (as root). P2 may fall back to the Python load generator
(the output says so, and P2 is then not judged: its numbers are not comparable with wrk's); P4 needs wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from e2e_load import python_load, run_wrk, wrk_available
from e2e_servers import CheckFailed, Running, Server, check, running, uvicorn_options
from stores import StoreUnderTest, prepare_stores

# -- the cases, as data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the results, served by ``server`` (cases with equal servers share one process).

    ``login``: how a client gets its token (see ``e2e_servers.check``); ``revocable``: the check also revokes a
    session. ``target``: the ratio to bare the case must reach for the goal named in ``note``; without a target,
    ``note`` says what the case is there for. ``optional``: a failed check skips the case (a store server that does
    not work on this machine) instead of ending the run. The server's environment may name ``{folder}`` (the run's
    temporary folder) and ``{store_url}``.
    """

    name: str
    label: str
    server: Server
    login: str | None = "cookie"
    revocable: bool = False
    target: float | None = None
    note: str = ""
    optional: bool = False

    def resolved(self, **values: str) -> Server:
        return dataclasses.replace(self.server, env=tuple((k, v.format(**values)) for k, v in self.server.env))


@dataclass(frozen=True)
class Suite:
    cases: tuple[Case, ...]
    store_cases: Mapping[str, Case] = field(default_factory=dict)  # one more case for each store that answers
    wrk_only: bool = False


BARE = Case("bare", "bare", Server("e2e_apps:bare", factory=False), login=None)
OURS = Server("e2e_apps:asgi_session")
STARLETTE = Server("e2e_apps:starlette_sessions")
NAIVE = Server("e2e_apps:naive_blacklisting", env=(("NAIVE_DB", "{folder}/naive.db"),))
BLACKLISTING = Server("e2e_apps:asgi_session_blacklisting", env=(("STORE_URL", "{store_url}"),))

SUITES = {
    "p2": Suite(
        cases=(
            BARE,
            Case(
                "starlette",
                "starlette SessionMiddleware",
                STARLETTE,
                "starlette",
                note="the anchor (PERFORMANCE.md: 0.40)",
            ),
            Case("ours-cookie", "asgi-session, cookie", OURS, "cookie", target=0.80, note="P2"),
            Case("ours-bearer", "asgi-session, Bearer", OURS, "bearer", target=0.80, note="P2"),
        ),
    ),
    "p4": Suite(
        cases=(
            BARE,
            Case(
                "naive-sqlite",
                "naive: PyJWT HS256 + aiosqlite",
                NAIVE,
                revocable=True,
                note="the naive anchor (PERFORMANCE.md: 0.16)",
            ),
            Case("ours-off", "asgi-session, blacklisting off", OURS, note="the same middleware without the check"),
        ),
        store_cases={
            "sqlite": Case("ours-sqlite", "asgi-session, SQLite", BLACKLISTING, revocable=True, target=0.60, note="P4"),
            "redis": Case(
                "ours-redis", "asgi-session, Redis", BLACKLISTING, revocable=True, target=0.60, note="P4", optional=True
            ),
            "postgres": Case(
                "ours-postgres",
                "asgi-session, PostgreSQL",
                BLACKLISTING,
                revocable=True,
                target=0.60,
                note="P4",
                optional=True,
            ),
        },
        wrk_only=True,
    ),
}


# -- the run --------------------------------------------------------------------------------------------------------


def load(url: str, header: str, seconds: int, args: argparse.Namespace) -> float:
    """Requests/s of one load run; a non-2xx response or a socket error ends the benchmark."""
    if args.loader == "wrk":
        result = run_wrk(url, header, args.connections, seconds)
    else:
        result = asyncio.run(python_load(url, header, args.connections, seconds))
    if result.errors or result.requests_per_second is None:
        raise SystemExit(f"load run on {url} had errors, or printed no requests/s:\n{result.output}")
    return result.requests_per_second


def checked(planned: list[tuple[Case, Running]], notes: list[str]) -> list[tuple[Case, Running, str]]:
    """The cases whose server passed its check, each with the header to load it with; a skipped case is noted."""
    ready = []
    for case, server in planned:
        try:
            header = check(server, case.login, revocable=case.revocable)
        except (CheckFailed, httpx.HTTPError, KeyError) as exc:
            failure = f"check failed for {case.name}: {exc!r}; server log:\n{server.log.read_text(errors='replace')}"
            if not case.optional:
                raise SystemExit(failure) from exc
            print(failure, file=sys.stderr)
            notes.append(f"{case.name}: skipped, its server failed the check (log above)")
            continue
        ready.append((case, server, header))
        print(f"checked {case.name} at {server.url}")
    return ready


def rounds(ready: list[tuple[Case, Running, str]], args: argparse.Namespace) -> dict[Case, list[float]]:
    """Requests/s of every case, one sample per round; the order of the cases rotates from round to round."""
    print("warming up (1 s per case, not counted)")
    for _, server, header in ready:
        load(server.url, header, 1, args)
    results: dict[Case, list[float]] = {case: [] for case, _, _ in ready}
    for round_index in range(args.rounds):
        shift = round_index % len(ready)
        line = f"round {round_index + 1}:"
        for case, server, header in ready[shift:] + ready[:shift]:
            rate = load(server.url, header, args.duration, args)
            results[case].append(rate)
            line += f" {case.name}={rate:.2f}"
        print(line, flush=True)
    return results


def report(results: dict[Case, list[float]], settings: str, notes: list[str], judged: bool) -> None:
    """The table (median, min, max requests/s, ratio to bare), then each case's ratio, per round too, and verdict."""
    print(f"\n{settings}")
    for note in notes:
        print(f"  {note}")
    bare = results[BARE]
    width = max(len(case.label) for case in results) + 2
    print(f"{'case':<{width}}{'median req/s':>14}{'min':>10}{'max':>10}{'vs bare':>9}")
    for case, values in results.items():
        median = statistics.median(values)
        ratio = median / statistics.median(bare)
        print(f"{case.label:<{width}}{median:>14.0f}{min(values):>10.0f}{max(values):>10.0f}{ratio:>9.2f}")
    for case, values in results.items():
        if case is BARE:
            continue
        ratio = statistics.median(values) / statistics.median(bare)
        per_round = [value / base for value, base in zip(values, bare, strict=True)]
        if case.target is None:
            verdict = case.note or "for comparison"
        elif not judged:
            verdict = f"{case.note} not judged: Python load generator, not wrk"
        else:
            verdict = f"{case.note} target >= {case.target:.2f}: {'met' if ratio >= case.target else 'MISSED'}"
        print(
            f"{case.label}: {ratio:.2f} x bare (per round: median {statistics.median(per_round):.2f}, "
            f"{min(per_round):.2f}-{max(per_round):.2f}); {verdict}"
        )


def plan(suite: Suite, stores: list[StoreUnderTest], folder: Path) -> list[tuple[Case, Server]]:
    """Every case of the suite, and one per store, with its server's environment filled in."""
    cases = [(case, case.resolved(folder=str(folder))) for case in suite.cases]
    return cases + [(suite.store_cases[s.name], suite.store_cases[s.name].resolved(store_url=s.url)) for s in stores]


def main(args: argparse.Namespace) -> None:
    suite = SUITES[args.suite]
    if args.loader == "wrk" and not wrk_available():
        if suite.wrk_only:
            raise SystemExit(f"wrk is needed (apt-get install -y wrk): {args.suite} is measured with wrk only")
        args.loader = "python"
        print("NOTE: wrk is not installed and cannot be installed: using the bounded Python load generator. On a")
        print("      small machine it may saturate before uvicorn does, so its ratios are not comparable with wrk's.")
    wanted = [name.strip() for name in args.stores.split(",") if name.strip()] if suite.store_cases else []
    unknown = sorted(set(wanted) - set(suite.store_cases))
    if unknown:
        raise SystemExit(f"unknown stores: {unknown} (sqlite, redis, postgres)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores, notes = asyncio.run(prepare_stores(wanted, folder, postgres_pool=None))
        try:
            planned = plan(suite, stores, folder)
            with running([server for _, server in planned], folder) as servers:
                results = rounds(checked([(case, servers[server]) for case, server in planned], notes), args)
        finally:
            for store in stores:
                asyncio.run(store.cleanup())
    load_description = (
        f"wrk -t1 -c{args.connections} -d{args.duration}s"
        if args.loader == "wrk"
        else f"bounded Python load generator (asyncio, {args.connections} keep-alive connections, {args.duration}s)"
    )
    settings = (
        f"{uvicorn_options()[1]}; load: {load_description}; {args.rounds} alternating rounds; {os.cpu_count()} cpus"
    )
    report(results, settings, notes, judged=args.loader == "wrk")
    if args.json:
        bare = statistics.median(results[BARE])
        document = {
            "suite": args.suite,
            "settings": settings,
            "notes": notes,
            "requests_per_s": {case.label: values for case, values in results.items()},
            "ratios_to_bare": {case.label: statistics.median(values) / bare for case, values in results.items()},
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=sorted(SUITES), help="p2: bare, Starlette, asgi-session; p4: blacklisting")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per case per round (5)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    parser.add_argument("--loader", choices=["wrk", "python"], default="wrk", help="the load generator (wrk)")
    parser.add_argument("--stores", default="sqlite,redis,postgres", help="p4: which stores (default: all three)")
    parser.add_argument("--json", metavar="PATH", help="also write every round's requests/s and the ratios here")
    arguments = parser.parse_args()
    if min(arguments.rounds, arguments.duration, arguments.connections) < 1:
        parser.error("--rounds, --duration and --connections must be >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # as Ctrl-C: the servers are stopped on the way out
    try:
        main(arguments)
    except KeyboardInterrupt:
        sys.exit(130)
