"""Refresh tokens against the bad-input catalogue and the rotation sequences of SECURITY.md, driven through
``SessionManager.refresh_session_without_request_response``.

Every bad input gets ``UnauthorisedError`` (exactly), writes nothing to the store, leaves the real session's record
as it was (a forged token must never revoke the session it names: that would be a denial of service), and never
shows a token value in an exception or a log record. The real refresh token still rotates afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from asgi_session import (
    Session,
    SessionConfig,
    SessionError,
    SessionManager,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from asgi_session._refresh_token import new_handle, stored_refresh_hash
from asgi_session.stores.base import SessionRecord
from asgi_session.stores.memory import MemoryStore
from asgi_session.testing import FakeClock
from tests._helpers import CountingStore, assert_not_leaked, b64u

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
GRACE = 30.0


# -- helpers ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Ctx:
    manager: SessionManager
    store: CountingStore
    clock: FakeClock
    caplog: pytest.LogCaptureFixture
    session: Session
    other: Session  # a second live session (bob), for cross-session tokens

    @property
    def refresh_token(self) -> str:
        token = self.session.refresh_token
        assert token is not None
        return token

    @property
    def access_token(self) -> str:
        return self.session.access_token

    @property
    def handle(self) -> str:
        return self.session.handle

    @property
    def other_refresh_token(self) -> str:
        token = self.other.refresh_token
        assert token is not None
        return token

    async def record(self, handle: str | None = None) -> SessionRecord | None:
        return await MemoryStore.get(self.store, handle or self.handle)

    async def refresh(self, token: str) -> Session:
        session = await self.manager.refresh_session_without_request_response(token)
        assert session.refresh_token is not None
        assert session.refresh_token != token
        assert session.handle == self.handle
        assert session.user_id == "alice"
        return session

    async def assert_refresh_fails(
        self, token: object, expected: type[SessionError] = UnauthorisedError
    ) -> SessionError:
        """The bad-input oracle: exactly ``expected``, no store write, the real session untouched, no leak."""
        before, other_before = await self.record(), await self.record(self.other.handle)
        self.store.reset()
        with pytest.raises(SessionError) as info:
            await self.manager.refresh_session_without_request_response(token)  # type: ignore[arg-type]
        assert type(info.value) is expected
        assert self.store.writes() == {}
        assert await self.record() == before
        assert await self.record(self.other.handle) == other_before
        assert_not_leaked([token, self.refresh_token, self.other_refresh_token], info.value, self.caplog)
        return info.value

    async def assert_session_intact(self) -> None:
        """The real session still rotates, and its new access token verifies against the store."""
        refreshed = await self.refresh(self.refresh_token)
        verified = await self.manager.get_session_without_request_response(refreshed.access_token, check_database=True)
        assert verified is not None
        assert verified.handle == self.handle


@asynccontextmanager
async def open_ctx(caplog: pytest.LogCaptureFixture, *, interleave: bool = False, **config: Any) -> AsyncIterator[Ctx]:
    caplog.set_level(logging.DEBUG, logger="asgi_session")
    store = CountingStore(interleave=interleave)
    clock = FakeClock()
    async with SessionManager(store=store, config=SessionConfig(**config), clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        other = await manager.create_new_session_without_request_response("bob")
        store.reset()
        yield Ctx(manager=manager, store=store, clock=clock, caplog=caplog, session=session, other=other)


@pytest.fixture
async def ctx(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Ctx]:
    async with open_ctx(caplog) as context:
        yield context


def _parts(token: str) -> tuple[str, str, str]:
    handle, body, tag = token.split(".")
    return handle, body, tag


def _flip_tag(token: str) -> str:
    handle, body, tag = _parts(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = alphabet[(alphabet.index(tag[0]) + 1) % 64] + tag[1:]
    return f"{handle}.{body}.{flipped}"


def _replace(token: str, *, handle: str | None = None, body: str | None = None, tag: str | None = None) -> str:
    """The token with some of its three parts replaced."""
    old_handle, old_body, old_tag = _parts(token)
    return f"{handle or old_handle}.{body or old_body}.{tag or old_tag}"


def _random_shape(handle: str | None = None) -> str:
    return f"{handle or uuid.uuid4()}.{b64u(secrets.token_bytes(32))}.{b64u(secrets.token_bytes(16))}"


async def _foreign_manager_token(c: Ctx) -> str:
    """A genuine refresh token of another deployment (another MAC key) for a handle of the same shape."""
    async with SessionManager(store=MemoryStore(), config=SessionConfig(), clock=FakeClock()) as other:
        session = await other.create_new_session_without_request_response("alice")
        assert session.refresh_token is not None
        return session.refresh_token


async def _foreign_manager_token_with_our_handle(c: Ctx) -> str:
    return _replace(await _foreign_manager_token(c), handle=c.handle)


BAD_REFRESH_TOKENS: list[Any] = [
    pytest.param(lambda c: "", id="empty"),
    pytest.param(lambda c: "a", id="one-char"),
    pytest.param(lambda c: ".", id="one-dot"),
    pytest.param(lambda c: "..", id="empty-segments"),
    pytest.param(lambda c: "a" * 10 * 1024, id="10-kib"),
    pytest.param(lambda c: c.refresh_token + "a" * 10 * 1024, id="real-token-plus-10-kib"),
    pytest.param(lambda c: c.refresh_token * 2, id="real-token-twice"),
    pytest.param(lambda c: _random_shape(), id="never-issued-right-shape"),
    pytest.param(lambda c: _random_shape(c.handle), id="forged-body-and-tag-for-existing-handle"),
    pytest.param(lambda c: _flip_tag(c.refresh_token), id="real-token-tag-altered"),
    pytest.param(
        lambda c: _replace(c.refresh_token, body=b64u(secrets.token_bytes(32))), id="real-handle-and-tag-other-body"
    ),
    pytest.param(lambda c: _replace(c.other_refresh_token, handle=c.handle), id="other-sessions-body-this-handle"),
    pytest.param(lambda c: _replace(c.refresh_token, handle=c.other.handle), id="this-body-other-sessions-handle"),
    pytest.param(_foreign_manager_token, id="genuine-token-of-another-deployment"),
    pytest.param(_foreign_manager_token_with_our_handle, id="another-deployments-body-and-tag-our-handle"),
    pytest.param(lambda c: c.access_token, id="access-token-as-refresh-token"),
    pytest.param(lambda c: c.refresh_token[:-1], id="truncated-by-one-char"),
    pytest.param(lambda c: c.refresh_token + "\n", id="trailing-newline"),
    pytest.param(lambda c: " " + c.refresh_token, id="leading-space"),
    pytest.param(lambda c: c.refresh_token + "=", id="padding-on-tag"),
    pytest.param(lambda c: c.refresh_token.upper(), id="uppercased"),
    pytest.param(lambda c: c.refresh_token.replace("-", "+").replace("_", "/") + "+/", id="standard-base64-chars"),
    pytest.param(lambda c: c.refresh_token.replace(".", ".\u200b", 1), id="zero-width-space"),
    pytest.param(lambda c: c.refresh_token[:-1] + "\uff21", id="non-ascii-fullwidth"),
    pytest.param(lambda c: c.refresh_token + ".extra", id="four-segments"),
    pytest.param(lambda c: c.refresh_token.rsplit(".", 1)[0], id="tag-missing"),
    pytest.param(lambda c: "Bearer " + c.refresh_token, id="bearer-prefix"),
    pytest.param(lambda c: None, id="none"),
    pytest.param(lambda c: c.refresh_token.encode(), id="bytes"),
    pytest.param(lambda c: 12345, id="int"),
    pytest.param(lambda c: [c.refresh_token], id="list"),
    pytest.param(lambda c: {"t": c.refresh_token}, id="dict"),
]


@pytest.mark.parametrize("builder", BAD_REFRESH_TOKENS)
async def test_bad_refresh_token(ctx: Ctx, builder: Callable[[Ctx], object]) -> None:
    token = builder(ctx)
    if isinstance(token, Awaitable):
        token = await token
    assert token != ctx.refresh_token
    await ctx.assert_refresh_fails(token)
    await ctx.assert_session_intact()


async def test_forged_tags_never_revoke_the_session(ctx: Ctx) -> None:
    """The DoS guard: many right-shaped forgeries naming a live handle leave it alive and never touch the store."""
    for _ in range(100):
        await ctx.assert_refresh_fails(_random_shape(ctx.handle))
    await ctx.assert_refresh_fails(_flip_tag(ctx.refresh_token))
    assert ctx.store.calls["get"] == 0  # rejected before any store access
    await ctx.assert_session_intact()


async def test_revoked_sessions_refresh_token(ctx: Ctx) -> None:
    assert await ctx.manager.revoke_session(ctx.handle)
    await ctx.assert_refresh_fails(ctx.refresh_token)
    assert await ctx.record() is None


async def test_past_the_absolute_lifetime(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, session_max_lifetime=timedelta(hours=2)) as c:
        c.clock.advance(2 * 3600 + 1)
        await c.assert_refresh_fails(c.refresh_token)
        c.clock.set(T0 + 2 * 3600)  # exactly at the end: already over
        await c.assert_refresh_fails(c.refresh_token)


async def test_refreshes_never_extend_past_the_absolute_lifetime(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, session_max_lifetime=timedelta(hours=2)) as c:
        end = T0 + 2 * 3600
        token = c.refresh_token
        for _ in range(7):  # every 15 minutes up to 1h45
            c.clock.advance(15 * 60)
            refreshed = await c.refresh(token)
            token = refreshed.refresh_token or ""
            record = await c.record()
            assert record is not None
            assert record.expires_at <= end
            assert refreshed.access_token_expiry <= end
        c.clock.set(end - 1)
        refreshed = await c.refresh(token)  # the last second still works
        token = refreshed.refresh_token or ""
        c.session = refreshed
        c.clock.set(end)
        await c.assert_refresh_fails(token)
        with pytest.raises(TryRefreshTokenError):
            await c.manager.get_session_without_request_response(refreshed.access_token)


async def test_past_the_idle_timeout(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, refresh_token_validity=timedelta(hours=3)) as c:
        c.clock.advance(3 * 3600)
        await c.assert_refresh_fails(c.refresh_token)
        c.clock.advance(3600)
        await c.assert_refresh_fails(c.refresh_token)


async def test_idle_timeout_slides_with_each_refresh(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, refresh_token_validity=timedelta(hours=3)) as c:
        c.clock.advance(3 * 3600 - 1)
        first = await c.refresh(c.refresh_token)  # just inside the idle window
        c.clock.advance(3 * 3600 - 1)  # 6h - 2s after creation: alive only because the first refresh slid it
        second = await c.refresh(first.refresh_token or "")
        c.session = second
        c.clock.advance(3 * 3600)
        await c.assert_refresh_fails(second.refresh_token)


# -- sequences --------------------------------------------------------------------------------------------------


async def test_replay_after_the_child_was_used_is_theft(ctx: Ctx) -> None:
    t0 = ctx.refresh_token
    first = await ctx.refresh(t0)
    t1 = first.refresh_token or ""
    second = await ctx.refresh(t1)  # the victim uses the child
    t2 = second.refresh_token or ""
    ctx.store.reset()
    with pytest.raises(TokenTheftDetectedError) as info:
        await ctx.manager.refresh_session_without_request_response(t0)  # no time has passed: not a timing effect
    theft = info.value
    assert type(theft) is TokenTheftDetectedError
    assert (theft.handle, theft.user_id, theft.tenant_id) == (ctx.handle, "alice", "public")
    assert ctx.store.writes() == {"delete": 1}
    assert await ctx.record() is None
    assert_not_leaked([t0, t1, t2, second.access_token], theft, ctx.caplog)
    warnings = [r for r in ctx.caplog.records if r.levelno >= logging.WARNING and "theft" in r.getMessage()]
    assert len(warnings) == 1
    assert ctx.handle in warnings[0].getMessage()
    assert "alice" in warnings[0].getMessage()
    # Both the thief's and the victim's tokens are dead now; bob's session is untouched.
    ctx.session = second
    for token in (t0, t1, t2):
        await ctx.assert_refresh_fails(token)
    for access_token in (ctx.access_token, first.access_token, second.access_token):
        with pytest.raises(UnauthorisedError):
            await ctx.manager.get_session_without_request_response(access_token, check_database=True)
    assert await ctx.record(ctx.other.handle) is not None
    assert (await ctx.manager.refresh_session_without_request_response(ctx.other_refresh_token)).user_id == "bob"


async def test_replay_within_the_grace_window_returns_the_same_child(ctx: Ctx) -> None:
    t0 = ctx.refresh_token
    first = await ctx.refresh(t0)  # the response is "lost"
    before = await ctx.record()
    ctx.clock.advance(GRACE - 1)
    ctx.store.reset()
    again = await ctx.refresh(t0)
    assert again.refresh_token == first.refresh_token
    assert ctx.store.writes() == {}  # no second rotation, no revocation
    assert await ctx.record() == before
    verified = await ctx.manager.get_session_without_request_response(again.access_token, check_database=True)
    assert verified is not None
    # The chain carries on from the one child.
    ctx.session = again
    await ctx.assert_session_intact()
    assert not any("theft" in r.getMessage() for r in ctx.caplog.records)


async def test_replay_after_the_grace_window_is_theft(ctx: Ctx) -> None:
    t0 = ctx.refresh_token
    first = await ctx.refresh(t0)
    ctx.clock.advance(GRACE + 1)
    ctx.store.reset()
    with pytest.raises(TokenTheftDetectedError) as info:
        await ctx.manager.refresh_session_without_request_response(t0)
    assert type(info.value) is TokenTheftDetectedError
    assert ctx.store.writes() == {"delete": 1}
    assert await ctx.record() is None
    assert_not_leaked([t0, first.refresh_token], info.value, ctx.caplog)
    ctx.session = first
    await ctx.assert_refresh_fails(first.refresh_token)  # the victim's current token is dead too


async def test_replay_after_theft_is_unauthorised(ctx: Ctx) -> None:
    t0 = ctx.refresh_token
    first = await ctx.refresh(t0)
    await ctx.refresh(first.refresh_token or "")
    with pytest.raises(TokenTheftDetectedError):
        await ctx.manager.refresh_session_without_request_response(t0)
    ctx.session = first
    for _ in range(3):  # and no second theft verdict: there is nothing left to revoke
        await ctx.assert_refresh_fails(t0)


@pytest.mark.parametrize("interleave", [False, True], ids=["plain", "interleaved"])
@pytest.mark.parametrize("k", [2, 10, 100])
async def test_concurrent_refreshes_of_one_token(caplog: pytest.LogCaptureFixture, k: int, interleave: bool) -> None:
    async with open_ctx(caplog, interleave=interleave) as c:
        t0 = c.refresh_token
        results: list[Session] = []
        errors: list[BaseException] = []

        async def refresh_once() -> None:
            try:
                results.append(await c.manager.refresh_session_without_request_response(t0))
            except Exception as exc:  # collected and asserted empty below
                errors.append(exc)

        c.store.reset()
        async with anyio.create_task_group() as tg:
            for _ in range(k):
                tg.start_soon(refresh_once)
        assert errors == []
        assert len(results) == k
        children = {session.refresh_token for session in results}
        assert len(children) == 1
        child = children.pop()
        assert child is not None
        assert child != t0
        assert c.store.rotations_applied == 1  # exactly one chain
        assert c.store.writes().get("delete", 0) == 0
        if interleave:
            assert c.store.calls["rotate_sliding"] > 1  # the tasks really raced for the swap
        record = await c.record()
        assert record is not None
        assert record.refresh_hash == stored_refresh_hash(child)
        for session in results[:3]:
            verified = await c.manager.get_session_without_request_response(session.access_token, check_database=True)
            assert verified is not None
        assert_not_leaked([t0, child], None, caplog)
        # Afterwards the child refreshes normally: no theft verdict.
        grandchild = await c.refresh(child)
        assert grandchild.refresh_token not in (t0, child)
        assert await c.record() is not None
        assert not any("theft" in r.getMessage() for r in caplog.records)


def test_new_handles_are_random_version_4_uuids() -> None:
    handles = {new_handle() for _ in range(1000)}
    assert len(handles) == 1000
    for handle in handles:
        parsed = uuid.UUID(handle)
        assert str(parsed) == handle  # lower-case hex, hyphens where str(uuid4()) puts them
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
