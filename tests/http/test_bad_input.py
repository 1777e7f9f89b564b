"""The HTTP rows of the SECURITY.md bad-input catalogue, driven as raw ASGI with raw header bytes.

Every request is built by hand (so a test can send bytes 0x80-0xFF, NUL, CR/LF and repeated headers) and sent to
``SessionMiddleware`` wrapping a tiny raw ASGI app (and, for a few rows, a Starlette app with the middleware inside
or outside it). The oracle, checked on every reply:

- no 5xx and no exception escaping the middleware, and exactly one ``http.response.start``;
- no authenticated session (status 200 on the protected route, or a session in ``scope["asgi_session"]``) unless
  the input carries a genuinely valid, current token;
- the presented token never appears in the response (body or headers);
- no store write for an invalid token (a ``MemoryStore`` subclass counts the writes).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from asgi_session import (
    SessionConfig,
    SessionManager,
    SessionMiddleware,
    create_new_session,
    get_session,
)
from asgi_session.stores.memory import MemoryStore
from asgi_session.testing import FakeClock
from tests._helpers import CountingStore, examples
from tests.http.conftest import JWKS, REFRESH, SIGNOUT, TRY_REFRESH, UNAUTHORISED

T0 = 1_700_000_000.0
KIB = 1024
MIB = 1024 * 1024
Headers = list[tuple[bytes, bytes]]


# -- the apps under test --------------------------------------------------------------------------------------------


def _raw_inner(seen: list[Any]) -> Callable[..., Awaitable[None]]:
    """A framework-free ASGI app: ``/login`` creates a session, ``/optional`` reads one, anything else needs one."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        seen.append(scope.get("asgi_session"))
        path = scope["path"]
        if path == "/login":
            params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            session = await create_new_session(scope, params.get("user", ["victim"])[0])
            text = session.user_id
        elif path == "/optional":
            maybe = await get_session(scope, session_required=False)
            text = "anonymous" if maybe is None else maybe.user_id
        else:
            required = await get_session(scope, session_required=True)
            assert required is not None
            text = required.user_id
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": text.encode("utf-8")})

    return app


def _starlette_routes(seen: list[Any]) -> list[Route]:
    async def protected(request: Request) -> Response:
        seen.append(request.scope.get("asgi_session"))
        session = await get_session(request, session_required=True)
        assert session is not None
        return PlainTextResponse(session.user_id)

    async def optional(request: Request) -> Response:
        seen.append(request.scope.get("asgi_session"))
        session = await get_session(request, session_required=False)
        return PlainTextResponse("anonymous" if session is None else session.user_id)

    async def login(request: Request) -> Response:
        seen.append(request.scope.get("asgi_session"))
        session = await create_new_session(request, request.query_params.get("user", "victim"))
        return PlainTextResponse(session.user_id)

    return [
        Route("/protected", protected, methods=["GET", "POST"]),
        Route("/optional", optional, methods=["GET", "POST"]),
        Route("/login", login, methods=["POST"]),
    ]


def build_app(kind: str, manager: SessionManager, seen: list[Any]) -> Any:
    if kind == "raw":
        return SessionMiddleware(_raw_inner(seen), manager=manager)
    routes = _starlette_routes(seen)
    if kind == "starlette-inner":
        return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, manager=manager)])
    assert kind == "starlette-outer"
    return SessionMiddleware(Starlette(routes=routes), manager=manager)


# -- raw requests ---------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One response, as the middleware sent it."""

    status: int
    headers: Headers
    body: bytes
    seen: list[Any]
    writes: dict[str, int]

    def json(self) -> Any:
        return json.loads(self.body)

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]

    @property
    def wire(self) -> bytes:
        return b"\n".join([*(k + b": " + v for k, v in self.headers), self.body])

    def cookie(self, name: str) -> str | None:
        prefix = f"{name}=".encode()
        for value in self.values(b"set-cookie"):
            if value.startswith(prefix):
                return value[len(prefix) :].split(b";", 1)[0].decode("latin-1")
        return None


def http_scope(method: str, path: str, headers: Sequence[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 443),
        "state": {},
    }


async def call_raw(app: Any, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    """Run one request through ``app``; return every message it sent."""
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return requests.pop(0) if requests else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(dict(message))

    await app(scope, receive, send)
    return messages


def to_reply(messages: list[dict[str, Any]], seen: list[Any], writes: dict[str, int]) -> Reply:
    starts = [m for m in messages if m["type"] == "http.response.start"]
    assert len(starts) == 1, messages
    assert messages[0] is starts[0]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Reply(starts[0]["status"], list(starts[0].get("headers", [])), body, list(seen), writes)


@dataclass
class Tokens:
    user: str
    handle: str
    access: str
    refresh: str
    anti_csrf: str | None = None


async def _tokens(manager: SessionManager, user: str) -> Tokens:
    session = await manager.create_new_session_without_request_response(user)
    assert session.refresh_token is not None
    return Tokens(user, session.handle, session.access_token, session.refresh_token, session.anti_csrf_token)


@dataclass
class Env:
    manager: SessionManager
    store: CountingStore
    clock: FakeClock
    alice: Tokens
    bob: Tokens
    expired: Tokens  # access token past exp (its session is alive)
    revoked: Tokens  # session deleted from the store
    foreign: Tokens  # another manager (another key ring and MAC key), same user id "alice"
    seen: list[Any] = field(default_factory=list)
    apps: dict[str, Any] = field(default_factory=dict)

    def app(self, kind: str = "raw") -> Any:
        if kind not in self.apps:
            self.apps[kind] = build_app(kind, self.manager, self.seen)
        return self.apps[kind]

    async def request(
        self,
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        method: str = "GET",
        path: str = "/protected",
        query: bytes = b"",
        body: bytes = b"",
        kind: str = "raw",
    ) -> Reply:
        self.store.reset()
        self.seen.clear()
        with anyio.fail_after(10):  # bounded time (a hang fails the test instead of blocking the run)
            messages = await call_raw(self.app(kind), http_scope(method, path, headers, query), body)
        return to_reply(messages, self.seen, self.store.writes())


@asynccontextmanager
async def make_env(config: SessionConfig | None = None) -> AsyncIterator[Env]:
    config = config or SessionConfig()
    clock = FakeClock(T0 - 7200)
    store = CountingStore()
    manager = SessionManager(store, config, clock=clock)
    foreign_manager = SessionManager(MemoryStore(), config, clock=clock)
    async with manager, foreign_manager:
        expired = await _tokens(manager, "eve")
        clock.set(T0)  # eve's access token (1 h) is now an hour past its exp
        alice = await _tokens(manager, "alice")
        bob = await _tokens(manager, "bob")
        revoked = await _tokens(manager, "alice")
        assert await manager.revoke_session(revoked.handle)
        foreign = await _tokens(foreign_manager, "alice")
        store.reset()
        yield Env(manager, store, clock, alice, bob, expired, revoked, foreign)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with make_env() as built:
        yield built


# -- the oracle ---------------------------------------------------------------------------------------------------


def cookie(*pairs: bytes) -> tuple[bytes, bytes]:
    return (b"cookie", b"; ".join(pairs))


def access_cookie(token: str | bytes) -> bytes:
    return b"sAccessToken=" + (token.encode("latin-1") if isinstance(token, str) else token)


def bearer(token: str | bytes) -> tuple[bytes, bytes]:
    return (b"authorization", b"Bearer " + (token.encode("latin-1") if isinstance(token, str) else token))


def assert_sane(reply: Reply, *presented: str) -> None:
    """No 5xx, and no presented token (long enough to be unambiguous) anywhere in the response."""
    assert reply.status < 500, reply
    for token in presented:
        if len(token) >= 16:
            assert token.encode("latin-1") not in reply.wire


def assert_rejected(reply: Reply, env: Env, message: dict[str, str] | None, *presented: str) -> None:
    """Not authenticated on the protected route: 401 with ``message``, nothing cleared, nothing written."""
    assert_sane(reply, env.alice.access, env.bob.access, *presented)
    assert reply.seen == [None] or reply.seen == [], reply.seen
    assert reply.status == 401, reply
    if message is not None:
        assert reply.json() == message
    assert reply.values(b"set-cookie") == []  # neither "try refresh token" nor "no token" clears anything
    assert reply.values(b"front-token") == []
    assert reply.writes == {}


def assert_csrf_refused(reply: Reply, env: Env) -> None:
    """A failed anti-CSRF check: 401 "try refresh token", nothing cleared or written.

    The token itself is genuine, so ``scope["asgi_session"]`` does hold alice's session: docs/csrf.md says the
    middleware's verification does not run the anti-CSRF check, ``get_session`` does (and refused here).
    """
    assert_sane(reply, env.alice.access, env.bob.access)
    assert [(s.user_id, s.handle) for s in reply.seen] == [("alice", env.alice.handle)]
    assert (reply.status, reply.json()) == (401, TRY_REFRESH)
    assert reply.values(b"set-cookie") == []
    assert reply.values(b"front-token") == []
    assert reply.writes == {}


def assert_user(reply: Reply, user: Tokens, *presented: str) -> None:
    """Authenticated as ``user`` (and only as ``user``), with nothing written or set."""
    assert_sane(reply, user.access, *presented)
    assert reply.status == 200, reply
    assert reply.body == user.user.encode()
    assert [(s.user_id, s.handle) for s in reply.seen] == [(user.user, user.handle)]
    assert reply.values(b"set-cookie") == []
    assert reply.writes == {}


def assert_alice_or_rejected(reply: Reply, env: Env, *presented: str) -> None:
    assert_sane(reply, env.alice.access, *presented)
    if reply.status == 200:
        assert_user(reply, env.alice, env.alice.access)
    else:
        assert_rejected(reply, env, None)


def assert_refresh_refused(reply: Reply, env: Env, *presented: str) -> None:
    """The refresh endpoint's 401 unauthorised: tokens cleared, nothing written, no token echoed."""
    assert_sane(reply, env.alice.access, env.alice.refresh, *presented)
    assert reply.status == 401, reply
    assert reply.json() == UNAUTHORISED
    assert reply.values(b"front-token") == [b"remove"]
    assert reply.cookie("sAccessToken") in (None, "")
    assert reply.cookie("sRefreshToken") in (None, "")
    assert reply.writes == {}


async def assert_alice_intact(env: Env) -> None:
    """Alice's session still works: her access token authenticates and her refresh token rotates."""
    assert_user(await env.request([cookie(access_cookie(env.alice.access))]), env.alice)
    record = await env.manager.store.get(env.alice.handle)
    assert record is not None
    reply = await env.request([cookie(b"sRefreshToken=" + env.alice.refresh.encode())], method="POST", path=REFRESH)
    assert reply.status == 200, reply
    assert reply.writes == {"rotate_sliding": 1}  # the refresh's read and swap, as one store step


def _middle(token: str, junk: bytes) -> bytes:
    raw = token.encode("ascii")
    return raw[: len(raw) // 2] + junk + raw[len(raw) // 2 :]


# -- Transport --------------------------------------------------------------------------------------------------

JUNK = {
    "x80": b"\x80",
    "xa0-nbsp": b"\xa0",
    "x85-nel": b"\x85",
    "xff": b"\xff",
    "nul": b"\x00",
    "crlf": b"\r\n",
    "cr": b"\r",
    "lf": b"\n",
    "high-run": bytes(range(0x80, 0x100)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
async def test_junk_bytes_inside_the_cookie_token_are_rejected(env: Env, junk: bytes) -> None:
    reply = await env.request([cookie(access_cookie(_middle(env.alice.access, junk)))])
    assert_rejected(reply, env, TRY_REFRESH)


@pytest.mark.anyio
@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
async def test_junk_bytes_inside_the_bearer_token_are_rejected(env: Env, junk: bytes) -> None:
    reply = await env.request([bearer(_middle(env.alice.access, junk))])
    assert_rejected(reply, env, UNAUTHORISED)  # no longer shaped like our token: ignored, and there is no cookie


@pytest.mark.anyio
@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
async def test_junk_bytes_around_the_token_never_authenticate_anyone_else(env: Env, junk: bytes) -> None:
    """Junk next to an intact token: alice or nobody.

    (Cookie values are trimmed with ``str.strip()``, which also drops CR, LF, NEL 0x85 and NBSP 0xA0, so those
    leave the intact token usable; the Bearer parser refuses them. Neither ever yields another user.)
    """
    token = env.alice.access.encode()
    for headers in (
        [cookie(access_cookie(junk + token))],
        [cookie(access_cookie(token + junk))],
        [(b"authorization", b"Bearer " + token + junk)],
        [(b"authorization", b"Bearer" + junk + token)],
        [(b"authorization", junk + b"Bearer " + env.bob.access.encode()), cookie(access_cookie(token))],
    ):
        assert_alice_or_rejected(await env.request(headers), env)


@pytest.mark.anyio
@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
async def test_junk_bytes_in_another_cookie_do_not_break_the_session_cookie(env: Env, junk: bytes) -> None:
    token = env.alice.access.encode()
    assert_user(await env.request([cookie(b"junk=" + junk * 3, access_cookie(token))]), env.alice)
    assert_user(await env.request([cookie(access_cookie(token), b"junk=x" + junk + b"y")]), env.alice)


@pytest.mark.anyio
@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
async def test_a_header_made_of_junk_is_no_token(env: Env, junk: bytes) -> None:
    assert_rejected(await env.request([(b"cookie", junk * 64)]), env, UNAUTHORISED)
    assert_rejected(await env.request([(b"authorization", junk * 64)]), env, UNAUTHORISED)
    optional = await env.request([(b"cookie", junk * 64), (b"authorization", junk * 64)], path="/optional")
    assert (optional.status, optional.body, optional.seen) == (200, b"anonymous", [None])


@pytest.mark.anyio
@pytest.mark.parametrize("size", [64 * KIB, MIB], ids=["64KiB", "1MiB"])
async def test_huge_cookie_and_authorization_values(env: Env, size: int) -> None:
    filler = b"A" * size
    token = env.alice.access.encode()
    # A huge token is refused (before any decoding, in bounded time) ...
    assert_rejected(await env.request([cookie(access_cookie(filler))]), env, TRY_REFRESH)
    assert_rejected(await env.request([bearer(filler)]), env, UNAUTHORISED)  # not shaped like ours: ignored
    assert_rejected(await env.request([bearer(token + b"." + filler)]), env, UNAUTHORISED)
    assert_rejected(await env.request([bearer(token)] * 2 + [(b"authorization", filler)]), env, TRY_REFRESH)
    # ... a huge neighbour does not hide a genuine token ...
    assert_user(await env.request([cookie(b"big=" + filler, access_cookie(token))]), env.alice)
    assert_user(await env.request([(b"authorization", b"Basic " + filler), cookie(access_cookie(token))]), env.alice)
    # ... and a huge refresh token is refused as unauthorised.
    reply = await env.request([cookie(b"sRefreshToken=" + filler)], method="POST", path=REFRESH)
    assert_refresh_refused(reply, env)


@pytest.mark.anyio
async def test_a_thousand_cookie_pairs(env: Env) -> None:
    pairs = [b"c%d=v%d" % (i, i) for i in range(1000)]
    token = access_cookie(env.alice.access)
    assert_rejected(await env.request([cookie(*pairs)]), env, UNAUTHORISED)
    for position in (0, 500, 1000):
        with_token = [*pairs[:position], token, *pairs[position:]]
        assert_user(await env.request([cookie(*with_token)]), env.alice)
    duplicated = [token, *pairs, token]
    assert_rejected(await env.request([cookie(*duplicated)]), env, TRY_REFRESH)


@pytest.mark.anyio
async def test_empty_cookie_chunks(env: Env) -> None:
    token = access_cookie(env.alice.access)
    for value in (b";;;;", b";", b"", b" ; ; ", b"=;=;="):
        assert_rejected(await env.request([(b"cookie", value)]), env, UNAUTHORISED)
    for value in (b";;;;" + token + b";;;;", token + b";;;;", b";;;; " + token):
        assert_user(await env.request([(b"cookie", value)]), env.alice)


AUTH_PAIRS = {
    "garbage-bearer": b"Bearer garbage",
    "basic": b"Basic dXNlcjpwYXNz",
    "same-valid-bearer": None,  # the valid one twice
    "bob-bearer": b"bob",
}


@pytest.mark.anyio
@pytest.mark.parametrize("valid_first", [True, False], ids=["valid-first", "valid-second"])
@pytest.mark.parametrize("other", AUTH_PAIRS.values(), ids=AUTH_PAIRS.keys())
async def test_two_authorization_headers_are_never_a_guess(env: Env, other: bytes | None, valid_first: bool) -> None:
    valid = bearer(env.alice.access)
    if other is None:
        second = valid
    elif other == b"bob":
        second = bearer(env.bob.access)
    else:
        second = (b"authorization", other)
    headers = [valid, second] if valid_first else [second, valid]
    assert_rejected(await env.request(headers), env, TRY_REFRESH)
    # A valid cookie does not rescue a request whose Authorization is ambiguous.
    assert_rejected(await env.request([*headers, cookie(access_cookie(env.alice.access))]), env, TRY_REFRESH)


@pytest.mark.anyio
async def test_comma_joined_bearer_tokens(env: Env) -> None:
    alice, bob = env.alice.access.encode(), env.bob.access.encode()
    # Nothing shaped like our token: the header is ignored (and there is no cookie).
    assert_rejected(await env.request([(b"authorization", b"Bearer a, Bearer b")]), env, UNAUTHORISED)
    for value in (
        b"Bearer " + alice + b", Bearer " + bob,
        b"Bearer " + bob + b", Bearer " + alice,
        b"Bearer " + alice + b", Bearer " + alice,
        b"Bearer " + alice + b",",
        b"Bearer " + alice + b",Bearer " + alice,
    ):
        assert_rejected(await env.request([(b"authorization", value)]), env, TRY_REFRESH)


@pytest.mark.anyio
async def test_the_session_cookie_only_in_a_second_cookie_header_authenticates(env: Env) -> None:
    """Positive control: HTTP/2 may split cookies over several headers; all of them are read."""
    token = access_cookie(env.alice.access)
    front = b"sFrontToken=eyJ1aWQiOiJhbGljZSJ9+/=="
    assert_user(await env.request([(b"cookie", front), (b"cookie", token)]), env.alice)
    assert_user(await env.request([(b"cookie", token), (b"cookie", front)]), env.alice)
    assert_user(
        await env.request([(b"cookie", front), (b"x-other", b"1"), (b"cookie", b"a=b"), (b"cookie", token)]),
        env.alice,
    )


@pytest.mark.anyio
async def test_tokens_in_the_query_string_path_or_body_are_ignored(env: Env) -> None:
    token = env.alice.access
    for query in (
        b"access_token=" + token.encode(),
        b"sAccessToken=" + token.encode(),
        b"authorization=Bearer%20" + token.encode(),
    ):
        assert_rejected(await env.request(query=query), env, UNAUTHORISED, token)
        optional = await env.request(query=query, path="/optional")
        assert (optional.status, optional.body, optional.seen) == (200, b"anonymous", [None])
    assert_rejected(await env.request(path=f"/protected/{token}"), env, UNAUTHORISED, token)
    assert_rejected(await env.request(path=f"/protected;sAccessToken={token}"), env, UNAUTHORISED, token)
    form = b"sAccessToken=" + token.encode() + b"&access_token=" + token.encode()
    reply = await env.request([(b"content-type", b"application/x-www-form-urlencoded")], method="POST", body=form)
    assert_rejected(reply, env, UNAUTHORISED, token)


# -- Cookies ------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "pair",
    ["alice+alice", "alice+bob", "bob+alice", "alice+garbage", "garbage+alice", "alice+empty", "empty+alice"],
)
async def test_duplicate_access_cookies_are_try_refresh(env: Env, pair: str) -> None:
    values = {"alice": env.alice.access.encode(), "bob": env.bob.access.encode(), "garbage": b"x.y.z", "empty": b""}
    first, second = (values[name] for name in pair.split("+"))
    assert_rejected(await env.request([cookie(access_cookie(first), access_cookie(second))]), env, TRY_REFRESH)
    # Split over two Cookie headers, and with other cookies between: the same.
    split = [(b"cookie", access_cookie(first)), (b"cookie", b"a=b; " + access_cookie(second))]
    assert_rejected(await env.request(split), env, TRY_REFRESH)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name", [b"sACCESSTOKEN", b"saccesstoken", b"SAccessToken", b"sAccessTokens", b"xsAccessToken", b"sAccess Token"]
)
async def test_cookie_names_are_case_and_byte_exact(env: Env, name: bytes) -> None:
    reply = await env.request([cookie(name + b"=" + env.alice.access.encode())])
    assert_rejected(reply, env, UNAUTHORISED)


@pytest.mark.anyio
async def test_nameless_chunks_are_skipped(env: Env) -> None:
    token = access_cookie(env.alice.access)
    bob = env.bob.access.encode()
    for header in (
        cookie(b"=abc", token),
        cookie(b"=", token),
        cookie(b"abc", token),
        cookie(token, b"=abc"),
        cookie(b"=" + bob, token),
        cookie(b" =" + bob, token),
    ):
        assert_user(await env.request([header]), env.alice)
    # A nameless chunk holding a genuine token is not a session cookie.
    assert_rejected(await env.request([cookie(b"=" + env.alice.access.encode())]), env, UNAUTHORISED)
    assert_rejected(await env.request([cookie(b"=sAccessToken=" + env.alice.access.encode())]), env, UNAUTHORISED)


def _percent_all(raw: bytes) -> bytes:
    return b"".join(b"%%%02X" % byte for byte in raw)


@pytest.mark.anyio
async def test_quoted_or_percent_encoded_tokens_are_rejected(env: Env) -> None:
    raw = env.alice.access.encode()
    for value in (
        b'"' + raw + b'"',
        b'"' + raw,
        raw + b'"',
        b"%22" + raw + b"%22",
        raw.replace(b".", b"%2E"),
        raw.replace(b".", b"%2e", 1),
        _percent_all(raw),
        raw[:1] + b"%" + b"%02X" % raw[1] + raw[2:],
    ):
        assert_rejected(await env.request([cookie(access_cookie(value))]), env, TRY_REFRESH)
        # "try refresh token" when our token is recognisable inside the value; otherwise it is ignored (no session).
        assert_rejected(await env.request([bearer(value)]), env, None)


@pytest.mark.anyio
async def test_empty_access_cookie_is_try_refresh(env: Env) -> None:
    refresh = b"sRefreshToken=" + env.alice.refresh.encode()
    for header in (cookie(b"sAccessToken="), cookie(b"sAccessToken= "), cookie(b"sAccessToken=", refresh)):
        assert_rejected(await env.request([header]), env, TRY_REFRESH)
    assert_rejected(await env.request([cookie(b'sAccessToken=""')]), env, TRY_REFRESH)


@pytest.mark.anyio
async def test_a_4097_byte_cookie_value_is_rejected(env: Env) -> None:
    raw = env.alice.access.encode()
    padded = raw + b"A" * (4097 - len(raw))
    assert len(padded) == 4097
    for value in (b"a" * 4097, padded, b"." * 4097):
        assert_rejected(await env.request([cookie(access_cookie(value))]), env, TRY_REFRESH)


@pytest.mark.anyio
async def test_swapped_access_and_refresh_cookies(env: Env) -> None:
    access, refresh = env.alice.access.encode(), env.alice.refresh.encode()
    swapped = cookie(b"sAccessToken=" + refresh, b"sRefreshToken=" + access)
    # The refresh endpoint does not take an access token as a refresh token ...
    reply = await env.request([swapped], method="POST", path=REFRESH)
    assert_refresh_refused(reply, env, env.alice.access, env.alice.refresh)
    # ... and the protected route does not take a refresh token as an access token.
    assert_rejected(await env.request([swapped]), env, TRY_REFRESH, env.alice.refresh)
    assert_rejected(await env.request([cookie(b"sAccessToken=" + refresh)]), env, TRY_REFRESH, env.alice.refresh)
    await assert_alice_intact(env)


# -- Authorization ------------------------------------------------------------------------------------------------

AUTHORIZATION = {
    # id: (value built from alice's access token, refresh token and others, expected outcome)
    "bearer-alone": (lambda e: b"Bearer", "none"),
    "bearer-trailing-space": (lambda e: b"Bearer ", "none"),
    "bearer-spaces-only": (lambda e: b"Bearer    ", "none"),
    "lower-case-scheme": (lambda e: b"bearer " + e.alice.access.encode(), "alice"),
    "upper-case-scheme": (lambda e: b"BEARER " + e.alice.access.encode(), "alice"),
    "two-spaces": (lambda e: b"Bearer  " + e.alice.access.encode(), "alice"),
    "tab-separator": (lambda e: b"Bearer\t" + e.alice.access.encode(), "alice"),
    "trailing-space": (lambda e: b"Bearer " + e.alice.access.encode() + b" ", "alice"),
    "trailing-garbage": (lambda e: b"Bearer " + e.alice.access.encode() + b" x", "try"),
    "no-separator": (lambda e: b"Bearer" + e.alice.access.encode(), "try"),
    "nul-separator": (lambda e: b"Bearer\x00" + e.alice.access.encode(), "try"),
    "token-scheme": (lambda e: b"Token " + e.alice.access.encode(), "none"),
    "basic": (lambda e: b"Basic dXNlcjpwYXNz", "none"),
    "bearer-refresh-token": (lambda e: b"Bearer " + e.alice.refresh.encode(), "none"),
    "bearer-expired": (lambda e: b"Bearer " + e.expired.access.encode(), "try"),
    "bearer-foreign-key-ring": (lambda e: b"Bearer " + e.foreign.access.encode(), "try"),
    "bearer-truncated": (lambda e: b"Bearer " + e.alice.access.encode()[:-8], "try"),
    "bearer-quoted": (lambda e: b'Bearer "' + e.alice.access.encode() + b'"', "try"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", AUTHORIZATION.values(), ids=AUTHORIZATION.keys())
async def test_authorization_header_forms(env: Env, case: tuple[Callable[[Env], bytes], str]) -> None:
    build, expected = case
    value = build(env)
    reply = await env.request([(b"authorization", value)])
    if expected == "alice":
        assert_user(reply, env.alice, env.alice.access)
    elif expected == "try":
        assert_rejected(reply, env, TRY_REFRESH, env.alice.refresh)
    else:
        assert_rejected(reply, env, UNAUTHORISED)


@pytest.mark.anyio
@pytest.mark.parametrize("case", AUTHORIZATION.values(), ids=AUTHORIZATION.keys())
async def test_authorization_header_forms_with_a_valid_cookie(
    env: Env, case: tuple[Callable[[Env], bytes], str]
) -> None:
    """A Bearer token shaped like ours decides alone (valid or not); anything else leaves the cookie in charge."""
    build, expected = case
    reply = await env.request([(b"authorization", build(env)), cookie(access_cookie(env.alice.access))])
    if expected == "try":
        assert_rejected(reply, env, TRY_REFRESH, env.alice.refresh)
    else:
        assert_user(reply, env.alice, env.alice.access)


@pytest.mark.anyio
async def test_a_bearer_header_wins_over_the_cookie(env: Env) -> None:
    reply = await env.request([bearer(env.bob.access), cookie(access_cookie(env.alice.access))])
    assert_user(reply, env.bob)
    reply = await env.request(
        [(b"authorization", b"Token " + env.bob.access.encode()), cookie(access_cookie(env.alice.access))]
    )
    assert_user(reply, env.alice)


# -- CSRF ---------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", [SIGNOUT, REFRESH])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "post"])
async def test_signout_and_refresh_by_another_method_change_nothing(env: Env, path: str, method: str) -> None:
    before = await env.store.get(env.alice.handle)
    headers = [
        cookie(access_cookie(env.alice.access), b"sRefreshToken=" + env.alice.refresh.encode()),
        (b"rid", b"session"),
    ]
    reply = await env.request(headers, method=method, path=path)
    assert_sane(reply, env.alice.access, env.alice.refresh)
    assert reply.status == 405
    assert reply.values(b"allow") == [b"POST"]
    assert reply.values(b"set-cookie") == []
    assert reply.values(b"front-token") == []
    assert reply.writes == {}
    assert await env.store.get(env.alice.handle) == before
    await assert_alice_intact(env)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [b"Bearer garbage", b"Bearer", b"Bearer x.y.z", b"bearer  ", "expired", "refresh", "foreign", "revoked"],
)
async def test_an_invalid_bearer_with_a_valid_cookie(env: Env, value: bytes | str) -> None:
    """A token shaped like ours that fails is "try refresh token"; anything else leaves the cookie in charge."""
    shaped = value in ("expired", "foreign")
    if isinstance(value, str):
        tokens = {"expired": env.expired.access, "refresh": env.alice.refresh, "foreign": env.foreign.access}
        value = b"Bearer " + tokens.get(value, "a.b.c").encode()
    reply = await env.request([(b"authorization", value), cookie(access_cookie(env.alice.access))], method="POST")
    if shaped:
        assert_rejected(reply, env, TRY_REFRESH)
    else:
        assert_user(reply, env.alice)


@pytest.mark.anyio
async def test_via_custom_header_needs_rid_on_cookie_requests() -> None:
    async with make_env(SessionConfig(anti_csrf="VIA_CUSTOM_HEADER")) as env:
        token = cookie(access_cookie(env.alice.access))
        assert_csrf_refused(await env.request([token], method="POST"), env)
        assert_csrf_refused(await env.request([token, (b"rid", b"a"), (b"rid", b"b")], method="POST"), env)
        assert_user(await env.request([token, (b"rid", b"anti-csrf")], method="POST"), env.alice)
        assert_user(await env.request([token], method="GET"), env.alice)
        # Header mode is not subject to the check (a cross-site page cannot set Authorization).
        assert_user(await env.request([bearer(env.alice.access)], method="POST"), env.alice)
        refresh = cookie(b"sRefreshToken=" + env.alice.refresh.encode())
        reply = await env.request([refresh], method="POST", path=REFRESH)
        assert_sane(reply, env.alice.refresh)
        assert (reply.status, reply.json(), reply.writes) == (401, UNAUTHORISED, {})
        assert reply.values(b"set-cookie") == []  # a cross-site request cannot log the user out


@pytest.mark.anyio
async def test_via_token_refuses_a_missing_or_foreign_anti_csrf_token() -> None:
    async with make_env(SessionConfig(anti_csrf="VIA_TOKEN")) as env:
        assert env.alice.anti_csrf
        assert env.bob.anti_csrf
        token = cookie(access_cookie(env.alice.access))
        for extra in (
            [],
            [(b"anti-csrf", env.bob.anti_csrf.encode())],
            [(b"anti-csrf", b"")],
            [(b"anti-csrf", env.alice.anti_csrf.encode() + b"\xff")],
            [(b"anti-csrf", env.alice.anti_csrf.encode())] * 2,
        ):
            assert_csrf_refused(await env.request([token, *extra], method="POST"), env)
        assert_user(await env.request([token, (b"anti-csrf", env.alice.anti_csrf.encode())], method="POST"), env.alice)


# -- Fixation -----------------------------------------------------------------------------------------------------


async def _login(env: Env, headers: Headers, *, kind: str = "raw") -> tuple[Reply, Any]:
    reply = await env.request(headers, method="POST", path="/login", query=b"user=victim", kind=kind)
    assert reply.status == 200, reply
    assert reply.body == b"victim"
    new_access = reply.cookie("sAccessToken")
    assert new_access
    session = await env.manager.get_session_without_request_response(new_access, anti_csrf_check=False)
    assert session is not None
    assert session.user_id == "victim"
    return reply, session


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["raw", "starlette-inner", "starlette-outer"])
@pytest.mark.parametrize("via", ["cookie", "bearer"])
async def test_login_carrying_an_attackers_session_mints_a_new_one_and_revokes_it(
    env: Env, via: str, kind: str
) -> None:
    attacker = env.alice
    headers = [cookie(access_cookie(attacker.access))] if via == "cookie" else [bearer(attacker.access)]
    reply, session = await _login(env, headers, kind=kind)
    assert_sane(reply, attacker.access, attacker.refresh)
    assert session.handle != attacker.handle
    assert [s.handle for s in reply.seen] == [attacker.handle]  # the request did carry the attacker's session
    assert reply.writes == {"delete": 1, "create": 1}
    assert await env.store.get(attacker.handle) is None
    assert await env.store.get(session.handle) is not None
    refresh = await env.request([cookie(b"sRefreshToken=" + attacker.refresh.encode())], method="POST", path=REFRESH)
    assert_refresh_refused(refresh, env, attacker.refresh)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "made_up",
    [
        [cookie(b"sAccessToken=made-up-session")],
        [cookie(b"sAccessToken=" + str(uuid.uuid4()).encode())],
        [cookie(b"sRefreshToken=" + str(uuid.uuid4()).encode() + b".x.y")],
        [bearer(b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhdHRhY2tlciJ9.")],
    ],
    ids=["garbage-access", "uuid-access", "made-up-refresh", "alg-none"],
)
async def test_login_with_a_made_up_session_value(env: Env, made_up: Headers) -> None:
    reply, session = await _login(env, made_up)
    assert reply.seen == [None]
    assert reply.writes == {"create": 1}
    assert b"made-up" not in reply.wire
    assert session.handle not in {env.alice.handle, env.bob.handle, env.revoked.handle}
    assert await env.store.get(env.alice.handle) is not None


# -- The refresh endpoint ---------------------------------------------------------------------------------------


def _b64(nbytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode()


BAD_REFRESH: dict[str, Callable[[Env], str]] = {
    "empty": lambda e: "",
    "one-char": lambda e: "x",
    "10KiB": lambda e: "A" * (10 * KIB),
    "10KiB-genuine-prefix": lambda e: e.alice.refresh + "A" * (10 * KIB),
    "never-issued": lambda e: f"{uuid.uuid4()}.{_b64(32)}.{_b64(16)}",
    "never-issued-alice-handle": lambda e: f"{e.alice.handle}.{_b64(32)}.{_b64(16)}",
    "another-sessions-body": lambda e: e.alice.handle + "." + e.bob.refresh.split(".", 1)[1],
    "another-sessions-tag": lambda e: e.alice.refresh.rsplit(".", 1)[0] + "." + e.bob.refresh.rsplit(".", 1)[1],
    "revoked": lambda e: e.revoked.refresh,
    "access-token": lambda e: e.alice.access,
    "foreign-mac-key": lambda e: e.foreign.refresh,
    "genuine-plus-char": lambda e: e.alice.refresh + "A",
    "genuine-quoted": lambda e: f'"{e.alice.refresh}"',
    "genuine-upper-handle": lambda e: e.alice.refresh.upper(),
}


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["cookie", "header"])
@pytest.mark.parametrize("build", BAD_REFRESH.values(), ids=BAD_REFRESH.keys())
async def test_bad_refresh_tokens_are_unauthorised(env: Env, build: Callable[[Env], str], transport: str) -> None:
    token = build(env)
    before = await env.store.get(env.alice.handle)
    if transport == "cookie":
        headers = [cookie(b"sRefreshToken=" + token.encode("latin-1"), access_cookie(env.alice.access))]
    else:
        headers = [bearer(token)]
    reply = await env.request(headers, method="POST", path=REFRESH)
    assert_refresh_refused(reply, env, token)
    assert await env.store.get(env.alice.handle) == before
    await assert_alice_intact(env)


@pytest.mark.anyio
async def test_a_refresh_without_any_token_is_unauthorised(env: Env) -> None:
    for headers in ([], [cookie(b"sAccessToken=" + env.alice.access.encode())], [(b"authorization", b"Basic x")]):
        reply = await env.request(headers, method="POST", path=REFRESH)
        assert_refresh_refused(reply, env)


@pytest.mark.anyio
async def test_two_refresh_cookies_are_a_500_that_clears_nothing(env: Env) -> None:
    """Without ``older_cookie_domain``: the SuperTokens 500 that says to set it; the victim keeps their cookies."""
    genuine = b"sRefreshToken=" + env.alice.refresh.encode()
    for headers in (
        [cookie(genuine, genuine)],
        [cookie(genuine, b"sRefreshToken=x")],
        [cookie(b"sRefreshToken=x", genuine)],
    ):
        reply = await env.request(headers, method="POST", path=REFRESH)
        assert reply.status == 500, reply
        assert b"older_cookie_domain" in reply.body
        assert env.alice.refresh.encode() not in reply.wire
        assert reply.values(b"set-cookie") == []
        assert reply.values(b"front-token") == []
        assert reply.writes == {}
    await assert_alice_intact(env)


# -- The same rows through Starlette ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["starlette-inner", "starlette-outer"])
async def test_starlette_apps_answer_bad_input_like_the_raw_app(env: Env, kind: str) -> None:
    alice = env.alice.access.encode()
    assert_user(await env.request([cookie(access_cookie(alice))], kind=kind), env.alice)
    assert_user(
        await env.request([(b"cookie", b"a=\xff\x00"), (b"cookie", access_cookie(alice))], kind=kind), env.alice
    )
    assert_rejected(await env.request([], kind=kind), env, UNAUTHORISED)
    assert_rejected(await env.request([(b"cookie", b"\x80\xff\x00\r\n;;;;")], kind=kind), env, UNAUTHORISED)
    assert_rejected(
        await env.request([cookie(access_cookie(_middle(env.alice.access, b"\xff")))], kind=kind), env, TRY_REFRESH
    )
    duplicate = cookie(access_cookie(alice), access_cookie(env.bob.access))
    assert_rejected(await env.request([duplicate], kind=kind), env, TRY_REFRESH)
    assert_rejected(await env.request([bearer(b"A" * MIB)], kind=kind), env, UNAUTHORISED)
    assert_user(
        await env.request([bearer(b"garbage"), cookie(access_cookie(alice))], method="POST", kind=kind), env.alice
    )
    assert_rejected(await env.request([], query=b"access_token=" + alice, kind=kind), env, UNAUTHORISED)
    optional = await env.request([cookie(access_cookie(b"x"))], path="/optional", kind=kind)
    assert (optional.status, optional.json()) == (401, TRY_REFRESH)


# -- Property: arbitrary headers ------------------------------------------------------------------------------------


@dataclass
class PropertyState:
    env: Env
    pool: list[bytes]  # realistic but invalid token values
    never_echoed: list[bytes]  # every token that must never be echoed


@pytest.fixture(scope="module")
def header_property_state() -> Iterator[tuple[anyio.from_thread.BlockingPortal, PropertyState]]:
    """One manager (blacklisting on, so a revoked session's access token is invalid too) on a background loop."""
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        context = make_env(SessionConfig(access_token_blacklisting=True))
        env = portal.call(context.__aenter__)
        try:
            pool = [
                env.expired.access,
                env.revoked.access,
                env.revoked.refresh,
                env.foreign.access,
                env.foreign.refresh,
                env.alice.access[:-10],
                env.alice.access + ".",
                f'"{env.alice.access}"',
                env.alice.handle + "." + env.bob.refresh.split(".", 1)[1],
            ]
            tokens = [env.alice.access, env.alice.refresh, env.bob.access, env.bob.refresh, env.expired.refresh]
            state = PropertyState(env, [t.encode() for t in pool], [t.encode() for t in [*pool, *tokens]])
            yield portal, state
        finally:
            portal.call(context.__aexit__, None, None, None)


_FRAGMENTS = [
    b"sAccessToken=",
    b"sRefreshToken=",
    b"sFrontToken=",
    b"sACCESSTOKEN=",
    b"; ",
    b";",
    b"=",
    b",",
    b" ",
    b"\t",
    b'"',
    b"%",
    b"\x00",
    b"\r\n",
    b"\x80",
    b"\xa0",
    b"\xff",
    b"Bearer ",
    b"bearer",
    b"Basic ",
    b"header",
    b"cookie",
    b"session",
]


def _header_values(pool: list[bytes]) -> st.SearchStrategy[bytes]:
    """Header values: random bytes, fragment soups, and token-shaped values built around realistic bad tokens."""
    piece = st.one_of(st.sampled_from(_FRAGMENTS), st.sampled_from(pool), st.binary(max_size=12))
    junk = st.binary(max_size=3)
    prefix = st.sampled_from(
        [b"sAccessToken=", b"sRefreshToken=", b"Bearer ", b"bearer\t", b"Bearer  ", b'sAccessToken="', b""]
    )
    token_shaped = st.tuples(junk, prefix, st.sampled_from(pool), junk).map(b"".join)
    cookie_list = st.lists(st.one_of(token_shaped, piece), min_size=1, max_size=5).map(b"; ".join)
    return st.one_of(st.binary(max_size=200), st.lists(piece, max_size=8).map(b"".join), token_shaped, cookie_list)


_COMMON_NAMES = [b"cookie", b"authorization", b"st-auth-mode", b"rid", b"anti-csrf", b"Cookie", b"AUTHORIZATION"]
_NAMES = st.one_of(
    st.just(b"cookie"), st.just(b"authorization"), st.sampled_from(_COMMON_NAMES), st.binary(max_size=16)
)
_METHODS = st.one_of(
    st.just("POST"),
    st.just("GET"),
    st.sampled_from(["HEAD", "OPTIONS", "PUT", "DELETE", "post", ""]),
    st.text(max_size=8),
)
_PATHS = st.one_of(
    st.sampled_from(["/protected", "/optional", REFRESH, SIGNOUT, JWKS]),
    st.sampled_from([REFRESH + "/", "/AUTH/signout", "/auth/signout/", "/", ""]),
    st.text(max_size=30).filter(lambda p: p != "/login"),
)


def _check_header_example(
    portal: anyio.from_thread.BlockingPortal,
    state: PropertyState,
    headers: Headers,
    method: str,
    path: str,
    query: bytes,
) -> str:
    """Send one generated request, enforce the oracle, and return the kind of outcome (for coverage)."""
    env = state.env
    reply = portal.call(lambda: env.request(headers, method=method, path=path, query=query))
    # The one 5xx: a session cookie twice on refresh without older_cookie_domain, which clears nothing.
    duplicated = (method, path) == ("POST", REFRESH) and b"multiple session cookies" in reply.body
    assert reply.status < 500 or (reply.status == 500 and duplicated and not reply.values(b"set-cookie")), reply
    assert reply.seen in ([], [None]), reply.seen
    assert reply.writes == {}
    for secret in state.never_echoed:
        assert secret not in reply.wire
    endpoint = {REFRESH: "POST", SIGNOUT: "POST", JWKS: "GET"}.get(path)
    if endpoint is not None:
        assert reply.seen == []  # the protocol endpoints never reach the app
        if method != endpoint:
            assert reply.status == 405
            return "endpoint-405"
        if path == REFRESH and reply.status == 500:
            return "refresh-500-duplicated-cookies"
        if path == REFRESH:
            assert (reply.status, reply.json()) == (401, UNAUTHORISED)
            assert reply.values(b"front-token") == [b"remove"]
            return "refresh-401"
        if path == SIGNOUT:
            assert reply.status in (200, 401)
            assert all(b"Max-Age=0" in value for value in reply.values(b"set-cookie"))
            return f"signout-{reply.status}"
        assert reply.status == 200
        return "jwks-200"
    if reply.status == 200:
        assert path == "/optional"
        assert reply.body == b"anonymous"
        return "app-200-anonymous"
    assert reply.status == 401
    assert reply.json() in (UNAUTHORISED, TRY_REFRESH)
    assert reply.values(b"set-cookie") == [] or reply.json() == UNAUTHORISED  # only a revoked session clears
    return f"app-401-{reply.json()['message']}"


def test_property_arbitrary_headers_never_authenticate(
    header_property_state: tuple[anyio.from_thread.BlockingPortal, PropertyState],
) -> None:
    portal, state = header_property_state
    valid = state.env.alice.access.encode()
    queries = st.one_of(st.binary(max_size=40), st.just(b"access_token=" + valid), st.just(b"sAccessToken=" + valid))
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=examples(3000),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        headers=st.lists(st.tuples(_NAMES, _header_values(state.pool)), max_size=6),
        method=_METHODS,
        path=_PATHS,
        query=queries,
    )
    def run(headers: Headers, method: str, path: str, query: bytes) -> None:
        outcomes[_check_header_example(portal, state, headers, method, path, query)] += 1

    run()
    assert sum(outcomes.values()) >= 3000
    # The generator reached every kind of outcome (each is expected hundreds of times in 3000 examples).
    for kind in (
        "app-401-unauthorised",
        "app-401-try refresh token",
        "app-200-anonymous",
        "refresh-401",
        "signout-200",
        "signout-401",
        "jwks-200",
        "endpoint-405",
    ):
        assert outcomes[kind] > 0, outcomes


def test_property_state_accepts_its_genuine_token(
    header_property_state: tuple[anyio.from_thread.BlockingPortal, PropertyState],
) -> None:
    """Control for the property above: the same app does authenticate a genuine token."""
    portal, state = header_property_state
    env = state.env
    reply = portal.call(lambda: env.request([cookie(access_cookie(env.alice.access))]))
    assert_user(reply, env.alice)
    reply = portal.call(lambda: env.request([cookie(access_cookie(env.revoked.access))]))
    assert (reply.status, reply.json(), reply.writes) == (401, UNAUTHORISED, {})


# -- Property: a genuine token with single-byte mutations ----------------------------------------------------------


@pytest.fixture(scope="module")
def mutation_state() -> Iterator[tuple[anyio.from_thread.BlockingPortal, Env]]:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        context = make_env()
        env = portal.call(context.__aenter__)
        try:
            yield portal, env
        finally:
            portal.call(context.__aexit__, None, None, None)


def _genuine_cookie_header(env: Env) -> bytes:
    return (
        b"sFrontToken=eyJ1aWQiOiJhbGljZSJ9+/==; sAccessToken="
        + env.alice.access.encode()
        + b"; st-last-access-token-update=1700000000000"
    )


def _reference_access_cookies(header: bytes) -> list[str]:
    """The sAccessToken values a strict RFC 6265 reader sees (split on ';', trim only SP and HTAB)."""
    values = []
    for chunk in header.decode("latin-1").split(";"):
        name, sep, value = chunk.partition("=")
        if sep and name.strip(" \t") == "sAccessToken":
            values.append(value.strip(" \t"))
    return values


_BYTE_MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 2**16), st.integers(0, 255)),
    min_size=1,
    max_size=3,
)


def _apply(header: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(header)
    for kind, position, byte in mutations:
        if kind == "insert":
            data.insert(position % (len(data) + 1), byte)
        elif data and kind == "replace":
            data[position % len(data)] = byte
        elif data:
            del data[position % len(data)]
    return bytes(data)


def test_property_mutated_cookie_header_authenticates_alice_or_nobody(
    mutation_state: tuple[anyio.from_thread.BlockingPortal, Env],
) -> None:
    portal, env = mutation_state
    genuine = _genuine_cookie_header(env)
    control = portal.call(lambda: env.request([(b"cookie", genuine)]))
    assert_user(control, env.alice)

    @settings(
        max_examples=examples(3000),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mutations=_BYTE_MUTATIONS, path=st.sampled_from(["/protected", "/optional"]))
    def run(mutations: list[tuple[str, int, int]], path: str) -> None:
        header = _apply(genuine, mutations)
        reply = portal.call(lambda: env.request([(b"cookie", header)], path=path))
        assert reply.status < 500, reply
        assert reply.writes == {}
        assert env.alice.access.encode() not in reply.wire
        assert all(s is None or (s.user_id, s.handle) == ("alice", env.alice.handle) for s in reply.seen)
        if reply.status == 200:
            assert reply.body in (b"alice", b"anonymous")
            assert (reply.body == b"alice") == (reply.seen[0] is not None)
        else:
            assert reply.status == 401
            assert reply.json() in (UNAUTHORISED, TRY_REFRESH)
        if _reference_access_cookies(header) == [env.alice.access]:
            # The token and its cookie survived the mutation intact: it must still authenticate.
            assert (reply.status, reply.body) == (200, b"alice")
        outcomes["alice" if reply.body == b"alice" else "rejected" if reply.status == 401 else "anonymous"] += 1

    outcomes: Counter[str] = Counter()
    run()
    assert sum(outcomes.values()) >= 3000
    assert min(outcomes["alice"], outcomes["rejected"], outcomes["anonymous"]) > 0, outcomes
