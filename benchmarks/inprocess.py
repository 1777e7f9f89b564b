"""Per-request verification cost in process, asgi-session beside the PERFORMANCE.md anchors, in one run.

    python benchmarks/inprocess.py [--requests 1000] [--rounds 30] [--json results.json]

Each case drives an ASGI app directly, building the scope per request as a server would (a headers list with the
Cookie or Authorization header, a receive that returns ``http.request``, a no-op send). Every case's inner app
checks the session and answers 200 only when it found one, 401 otherwise; a warm-up asserts 200 with the case's
token and 401 with a tampered one, so a case whose verification silently fails cannot look fast.

Cases: the bare app (the limit); Starlette's ``SessionMiddleware`` (signed cookie); a naive hand-written middleware
calling PyJWT ``jwt.decode`` (ES256) per request; asgi-session with a token it has seen before (cookie, Bearer);
asgi-session with tokens it has never seen (each pre-minted token used once); and the raw verification function,
``SessionManager.verify_access_token`` on fresh tokens beside ``jwt.decode`` on the same tokens.
Rounds interleave the cases (the order rotates each round) so machine noise spreads over all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware

try:  # an anchor, not our dependency: pip install starsessions
    from starsessions import InMemoryStore as StarInMemoryStore
    from starsessions import SessionAutoloadMiddleware as StarAutoload
    from starsessions import SessionMiddleware as StarSessionsMiddleware
except ImportError:  # pragma: no cover - the case is then left out
    StarSessionsMiddleware = None

from asgi_session import SessionManager, SessionMiddleware, get_session
from asgi_session.stores import MemoryStore

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

ISSUER = "asgi-session"  # SessionConfig's default issuer
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "sessionHandle"]
BASE_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
]

# -- the ASGI plumbing a server provides ---------------------------------------------------------------------


def make_scope(auth_header: tuple[bytes, bytes]) -> Scope:
    """A fresh http scope, as a server builds one per request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [*BASE_HEADERS, auth_header],
    }


_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def receive() -> Message:
    return _REQUEST


async def noop_send(message: Message) -> None:
    return None


class RecordingSend:
    """A send that keeps the response status (warm-up only)."""

    def __init__(self) -> None:
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def respond(send: Callable[[Message], Awaitable[None]], status: int) -> None:
    # A fresh headers list per response: Starlette's middleware appends to it.
    body = b"ok" if status == 200 else b"no"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the inner apps: 200 only when the session was found -----------------------------------------------------


async def bare_app(scope: Scope, receive: Any, send: Any) -> None:
    await respond(send, 200)


async def starlette_inner(scope: Scope, receive: Any, send: Any) -> None:
    await respond(send, 200 if scope["session"].get("user") == "user-1" else 401)


async def naive_inner(scope: Scope, receive: Any, send: Any) -> None:
    await respond(send, 200 if scope.get("user") is not None else 401)


async def ours_inner(scope: Scope, receive: Any, send: Any) -> None:
    try:
        session = await get_session(scope)
    except Exception:  # a TryRefreshTokenError: the middleware already knows the token is bad
        session = None
    await respond(send, 200 if session is not None else 401)


def access_token_cookie(header: bytes) -> str | None:
    """The last ``sAccessToken`` in one ``Cookie`` header, read as a hand-written middleware would; None if absent.

    Shared by every naive anchor (here, ``stores.py``, ``e2e_apps.py``), so they all pay the same for it.
    """
    token = None
    for chunk in header.decode("latin-1").split(";"):
        name, _, value = chunk.strip().partition("=")
        if name == "sAccessToken":
            token = value
    return token


class NaivePyJWTMiddleware:
    """What a user writes by hand: read the token (Bearer, else cookie), ``jwt.decode`` it on every request."""

    def __init__(self, app: App, key: Any) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1")
            elif name == b"cookie" and token is None:
                token = access_token_cookie(value)
        scope["user"] = None
        if token is not None:
            try:
                claims = jwt.decode(
                    token, self.key, algorithms=["ES256"], issuer=ISSUER, options={"require": REQUIRED_CLAIMS}
                )
                scope["user"] = claims["sub"]
            except jwt.InvalidTokenError:
                pass
        await self.app(scope, receive, send)


# -- setup -------------------------------------------------------------------------------------------------


async def mint(manager: SessionManager, count: int, prefix: str) -> list[str]:
    """Create `count` sessions and return their access tokens (never verified, so never in the cache)."""
    tokens = []
    for i in range(count):
        session = await manager.create_new_session_without_request_response(f"{prefix}-{i}")
        tokens.append(session.access_token)
    return tokens


async def starlette_cookie(secret: str) -> bytes:
    """Log in once through Starlette's middleware and return the signed session cookie it set."""

    async def login(scope: Scope, receive: Any, send: Any) -> None:
        scope["session"]["user"] = "user-1"
        await respond(send, 200)

    captured: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.extend(v for k, v in message["headers"] if k.lower() == b"set-cookie")

    await StarletteSessionMiddleware(login, secret_key=secret)(make_scope((b"x-none", b"")), receive, send)
    assert len(captured) == 1, captured
    return captured[0].split(b";", 1)[0]  # b"session=<signed>"


def starsessions_app(inner: App) -> App:
    """starsessions, server-side sessions: a cookie with a session id, the data loaded from its store per request."""
    assert StarSessionsMiddleware is not None
    return StarSessionsMiddleware(StarAutoload(inner), store=StarInMemoryStore(), cookie_https_only=False)


async def starsessions_cookie(app_factory: Callable[[App], App]) -> tuple[App, bytes]:
    """A starsessions stack with one logged-in session, and that session's cookie (one login request)."""

    async def inner(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/login":
            scope["session"]["user"] = "user-1"
            await respond(send, 200)
        else:
            await starlette_inner(scope, receive, send)

    app = app_factory(inner)
    captured: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.extend(v for k, v in message["headers"] if k.lower() == b"set-cookie")

    scope = make_scope((b"x-none", b""))
    scope["path"] = "/login"
    await app(scope, receive, send)
    assert len(captured) == 1, captured
    return app, captured[0].split(b";", 1)[0]  # b"session=<id>"


def tampered(token: str) -> str:
    """The same JWT with one signature character changed (verification must fail)."""
    head, _, signature = token.rpartition(".")
    changed = "A" if signature[10] != "A" else "B"
    return f"{head}.{signature[:10]}{changed}{signature[11:]}"


class Case:
    """One benchmark case: a name and a function running `count` requests (or verifications)."""

    def __init__(self, name: str, run: Callable[[int], Awaitable[None]]) -> None:
        self.name = name
        self.run = run
        self.samples: list[float] = []  # µs per request, one per round


def request_case(name: str, app: App, header: tuple[bytes, bytes]) -> Case:
    """A case that drives `app` with requests that all carry `header`."""

    async def run(count: int) -> None:
        for _ in range(count):
            await app(make_scope(header), receive, noop_send)

    return Case(name, run)


async def expect(app: App, header: tuple[bytes, bytes], status: int, what: str) -> None:
    recorder = RecordingSend()
    await app(make_scope(header), receive, recorder)
    if recorder.status != status:
        raise SystemExit(f"warm-up failed: {what} answered {recorder.status}, expected {status}")


async def build_cases(requests: int, rounds: int) -> tuple[list[Case], Callable[[int], None]]:
    """Set up every case (warm-ups asserted) and return them with a function that selects the round's fresh tokens."""
    # Three managers on one store (so one key ring): `issuer` mints every token, `seen_manager` verifies the one
    # token of the "seen" cases (a cache hit), and `fresh_manager` verifies tokens it has never seen, minted by
    # another manager, so no cache-on-issue shortcut could turn the "never seen" cases into cache hits.
    store = MemoryStore()
    issuer = SessionManager(store=store)
    await issuer.open()
    seen_manager = SessionManager(store=store)
    fresh_manager = SessionManager(store=store)
    await seen_manager.open()
    await fresh_manager.open()
    # PyJWT gets the same public key, as the loaded key object (the strongest naive baseline) and, for a second
    # row of the raw comparison, as PEM (what most hand-written code passes).
    fresh_token_0 = (await mint(issuer, 1, "probe"))[0]
    kid = jwt.get_unverified_header(fresh_token_0)["kid"]
    public_key = fresh_manager.keys.verification_key(kid).public_key  # type: ignore[union-attr]
    public_pem = public_key.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    seen_token = (await mint(issuer, 1, "seen"))[0]
    naive_token = fresh_token_0  # PyJWT caches nothing, so reusing one token is fair
    secret = os.urandom(32).hex()
    starlette_cookie_header = (b"cookie", await starlette_cookie(secret))

    star: tuple[App, bytes] | None = None
    if StarSessionsMiddleware is not None:
        star = await starsessions_cookie(starsessions_app)
    ours_seen = SessionMiddleware(ours_inner, manager=seen_manager)
    ours_fresh = SessionMiddleware(ours_inner, manager=fresh_manager)
    starlette = StarletteSessionMiddleware(starlette_inner, secret_key=secret)
    naive = NaivePyJWTMiddleware(naive_inner, public_key)

    def cookie(token: str) -> tuple[bytes, bytes]:
        return (b"cookie", f"sAccessToken={token}".encode("latin-1"))

    def bearer(token: str) -> tuple[bytes, bytes]:
        return (b"authorization", f"Bearer {token}".encode("latin-1"))

    # Warm-up: every case must answer 200 with its token and 401 with a tampered one.
    await expect(bare_app, cookie(seen_token), 200, "bare")
    await expect(starlette, starlette_cookie_header, 200, "starlette sessions")
    bad_starlette = starlette_cookie_header[1][:-3] + b"AAA"
    await expect(starlette, (b"cookie", bad_starlette), 401, "starlette sessions, tampered")
    if star is not None:
        await expect(star[0], (b"cookie", star[1]), 200, "starsessions")
        await expect(star[0], (b"cookie", b"session=unknown"), 401, "starsessions, unknown id")
    await expect(naive, cookie(naive_token), 200, "naive PyJWT")
    await expect(naive, cookie(tampered(naive_token)), 401, "naive PyJWT, tampered")
    await expect(ours_seen, cookie(seen_token), 200, "asgi-session cookie")
    await expect(ours_seen, bearer(seen_token), 200, "asgi-session bearer")
    await expect(ours_seen, cookie(tampered(seen_token)), 401, "asgi-session, tampered")
    await expect(ours_fresh, bearer(tampered(fresh_token_0)), 401, "asgi-session fresh, tampered")
    for token in await mint(issuer, 3, "warm"):
        await expect(ours_fresh, cookie(token), 200, "asgi-session fresh token")
    for token in await mint(issuer, 3, "warm-raw"):
        claims = await fresh_manager.verify_access_token(token)
        jwt_claims = jwt.decode(token, public_key, algorithms=["ES256"], issuer=ISSUER)
        assert claims == jwt_claims, (claims, jwt_claims)

    # Fresh tokens for every round, minted before any timing. The fresh manager's verified-token cache is filled
    # to its bound first: a busy server's steady state, where each new token evicts one.
    fresh_requests = [[cookie(t) for t in await mint(issuer, requests, f"fresh-r{r}")] for r in range(rounds)]
    fresh_verify = [await mint(issuer, requests, f"verify-r{r}") for r in range(rounds)]
    for token in await mint(issuer, fresh_manager.config.verified_token_cache_size, "fill"):
        await fresh_manager.verify_access_token(token)
    # The minted sessions and tokens are setup data a server would not hold: keep the collector off them.
    gc.collect()
    gc.freeze()
    round_index = 0

    def select_round(index: int) -> None:
        nonlocal round_index
        round_index = index

    async def ours_unseen(count: int) -> None:
        for header in fresh_requests[round_index][:count]:
            await ours_fresh(make_scope(header), receive, noop_send)

    async def raw_ours(count: int) -> None:
        verify = fresh_manager.verify_access_token
        for token in fresh_verify[round_index][:count]:
            await verify(token)

    async def raw_pyjwt(count: int) -> None:
        for token in fresh_verify[round_index][:count]:
            jwt.decode(token, public_key, algorithms=["ES256"], issuer=ISSUER, options={"require": REQUIRED_CLAIMS})

    async def raw_pyjwt_pem(count: int) -> None:
        for token in fresh_verify[round_index][:count]:
            jwt.decode(token, public_pem, algorithms=["ES256"], issuer=ISSUER, options={"require": REQUIRED_CLAIMS})

    cases = [
        request_case("bare ASGI app", bare_app, cookie(seen_token)),
        request_case("Starlette SessionMiddleware", starlette, starlette_cookie_header),
        request_case("naive PyJWT middleware", naive, cookie(naive_token)),
        *([request_case("starsessions (in-memory store)", star[0], (b"cookie", star[1]))] if star is not None else []),
        request_case("asgi-session, seen, cookie", ours_seen, cookie(seen_token)),
        request_case("asgi-session, seen, Bearer", ours_seen, bearer(seen_token)),
        Case("asgi-session, never seen, cookie", ours_unseen),
        Case("raw: verify_access_token (fresh)", raw_ours),
        Case("raw: jwt.decode ES256, key object", raw_pyjwt),
        Case("raw: jwt.decode ES256, PEM key", raw_pyjwt_pem),
    ]
    for case in cases:  # one short untimed pass (imports, caches, branch warm-up)
        if case.run not in (ours_unseen, raw_ours):
            await case.run(min(200, requests))
    return cases, select_round


async def main(requests: int, rounds: int, json_path: str | None) -> None:
    cases, select_round = await build_cases(requests, rounds)
    started = time.perf_counter()
    for round_index in range(rounds):
        select_round(round_index)  # the fresh-token cases read this round's tokens
        shift = round_index % len(cases)
        for case in cases[shift:] + cases[:shift]:
            gc.collect()
            t0 = time.perf_counter_ns()
            await case.run(requests)
            case.samples.append((time.perf_counter_ns() - t0) / 1000 / requests)
    elapsed = time.perf_counter() - started

    report(cases, requests, rounds, elapsed, json_path)


def ratio(cases: dict[str, Case], numerator: str, denominator: str, *, minus: str | None) -> tuple[float, list[float]]:
    """Ratio of medians (overheads over `minus` when given) and the per-round ratios (same-round pairs)."""

    def over(values: list[float]) -> list[float]:
        base = cases[minus].samples if minus else [0.0] * len(values)
        return [v - b for v, b in zip(values, base, strict=True)]

    num = over(cases[numerator].samples)
    den = over(cases[denominator].samples)
    return statistics.median(num) / statistics.median(den), [n / d for n, d in zip(num, den, strict=True)]


def report(cases: list[Case], requests: int, rounds: int, elapsed: float, json_path: str | None) -> None:
    by_name = {case.name: case for case in cases}
    bare = statistics.median(by_name["bare ASGI app"].samples)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {platform.machine()}; "
        f"asgi-session {version('asgi-session')}, starlette {version('starlette')}, PyJWT {version('PyJWT')}, "
        f"cryptography {version('cryptography')}"
    )
    print(f"{rounds} rounds x {requests} requests per case, interleaved; {elapsed:.1f} s timed")
    print("ratios: of the medians; per round: the same ratio within each round (pairs measured close in time)\n")
    print(f"{'case':<36}{'median µs':>11}{'min':>9}{'max':>9}{'over bare':>11}")
    for case in cases:
        median = statistics.median(case.samples)
        extra = f"{median - bare:>11.2f}" if not case.name.startswith("raw") else f"{'':>11}"
        print(f"{case.name:<36}{median:>11.2f}{min(case.samples):>9.2f}{max(case.samples):>9.2f}{extra}")

    bare_name, starlette_name, naive_name = "bare ASGI app", "Starlette SessionMiddleware", "naive PyJWT middleware"
    ratios = {
        "P1 cookie": ratio(by_name, "asgi-session, seen, cookie", starlette_name, minus=bare_name),
        "P1 Bearer": ratio(by_name, "asgi-session, seen, Bearer", starlette_name, minus=bare_name),
        "P3 middleware": ratio(by_name, "asgi-session, never seen, cookie", naive_name, minus=bare_name),
        "P3 raw verify": ratio(
            by_name, "raw: verify_access_token (fresh)", "raw: jwt.decode ES256, key object", minus=None
        ),
        "P3 raw verify vs PEM": ratio(
            by_name, "raw: verify_access_token (fresh)", "raw: jwt.decode ES256, PEM key", minus=None
        ),
    }
    targets = {"P1": 0.20, "P3": 0.70}
    print()
    descriptions = {
        "P1 cookie": "(ours seen, cookie - bare) / (Starlette sessions - bare)",
        "P1 Bearer": "(ours seen, Bearer - bare) / (Starlette sessions - bare)",
        "P3 middleware": "(ours never seen - bare) / (naive PyJWT ES256 middleware - bare)",
        "P3 raw verify": "verify_access_token / jwt.decode (key object)",
        "P3 raw verify vs PEM": "verify_access_token / jwt.decode (PEM string)",
    }
    for name, (value, per_round) in ratios.items():
        target = targets[name[:2]]
        verdict = "met" if value <= target else "MISSED"
        print(
            f"{name:<22}{value:>6.3f}  (per round: median {statistics.median(per_round):.3f}, "
            f"{min(per_round):.3f}-{max(per_round):.3f}; target <= {target:.2f}: {verdict})  {descriptions[name]}"
        )

    star_name = "starsessions (in-memory store)"
    if star_name in by_name:
        value, _ = ratio(by_name, "asgi-session, seen, cookie", star_name, minus=bare_name)
        print(f"{'vs starsessions':<22}{value:>6.3f}  (ours seen, cookie - bare) / (starsessions - bare); no target")

    if json_path:
        document = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "versions": {p: version(p) for p in ("asgi-session", "starlette", "PyJWT", "cryptography")},
            "requests": requests,
            "rounds": rounds,
            "cases": {
                c.name: {
                    "median_us": statistics.median(c.samples),
                    "min_us": min(c.samples),
                    "max_us": max(c.samples),
                    "samples_us": c.samples,
                }
                for c in cases
            },
            "ratios": {name: {"ratio": value, "per_round": per_round} for name, (value, per_round) in ratios.items()},
        }
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        print(f"\nwrote {json_path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per case per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be >= 1")
    asyncio.run(main(args.requests, args.rounds, args.json))
