"""Small helpers that several test modules need: stores that count or fail, a leak check, base64url, a cookie jar.

Each was once written out in every module that used it; one copy here keeps the oracles the same everywhere (a fix
to the leak check, say, reaches every test that relies on it).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio.lowlevel
import pytest

from asgi_session import SessionManager, StoreError
from asgi_session.stores.base import Revocation, Rotation, SessionRecord, SlidingRotation
from asgi_session.stores.memory import MemoryStore

# -- a store that counts calls -----------------------------------------------------------------------------------

WRITE_METHODS = frozenset(
    {
        "create",
        "rotate",
        "update_session_data",
        "update_access_token_payload",
        "touch",
        "delete",
        "delete_for_user",
        "delete_expired",
        "add_key",
        "delete_keys",
    }
)
READ_METHODS = frozenset({"get", "list_for_user", "get_keys"})


class CountingStore(MemoryStore):
    """A MemoryStore that counts every call by method name, so a test can assert "no store write".

    With ``interleave``, every operation also yields to other tasks around its work, so concurrent refreshes really
    overlap (MemoryStore itself never suspends). ``rotations_applied`` counts the rotations that won their
    compare-and-swap (``rotate`` or ``rotate_sliding``).
    """

    def __init__(self, *, interleave: bool = False) -> None:
        super().__init__()
        self.interleave = interleave
        self.calls: Counter[str] = Counter()
        self.rotations_applied = 0
        self.sliding_swaps = 0

    def reset(self) -> None:
        self.calls.clear()
        self.rotations_applied = 0
        self.sliding_swaps = 0

    def writes(self) -> dict[str, int]:
        """Write calls by name; ``rotate_sliding`` only when it swapped (a refused one read and changed nothing)."""
        writes = {name: count for name, count in self.calls.items() if name in WRITE_METHODS}
        if self.sliding_swaps:
            writes["rotate_sliding"] = self.sliding_swaps
        return writes

    async def rotate(self, rotation: Rotation) -> bool:
        self.calls["rotate"] += 1
        if self.interleave:  # only before: the racing refreshes meet at the compare-and-swap itself
            await anyio.lowlevel.checkpoint()
        applied = await MemoryStore.rotate(self, rotation)
        self.rotations_applied += applied
        return applied

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        self.calls["rotate_sliding"] += 1
        if self.interleave:  # as ``rotate``: the racing refreshes meet at the swap itself
            await anyio.lowlevel.checkpoint()
        swapped = await MemoryStore.rotate_sliding(self, rotation)
        self.rotations_applied += swapped is not None
        self.sliding_swaps += swapped is not None
        return swapped


def _counted(name: str) -> Callable[..., Awaitable[Any]]:
    async def method(self: CountingStore, *args: Any, **kwargs: Any) -> Any:
        self.calls[name] += 1
        if self.interleave:
            await anyio.lowlevel.checkpoint()
        result = await getattr(MemoryStore, name)(self, *args, **kwargs)
        if self.interleave:
            await anyio.lowlevel.checkpoint()
        return result

    method.__name__ = name
    return method


for _name in (WRITE_METHODS | READ_METHODS) - {"rotate", "rotate_sliding"}:
    setattr(CountingStore, _name, _counted(_name))


# -- a store that records its lifecycle and fails on demand ------------------------------------------------------


class TrackingStore(MemoryStore):
    """A MemoryStore that records ``open()`` and ``close()`` in ``events``, and fails ``open()`` or ``get()`` on demand.

    For the lifecycle tests: who opens the store, once, and closes it; and what a request sees when ``get`` fails.
    """

    def __init__(self, *, fail_open: bool = False, fail_get: bool = False) -> None:
        super().__init__()
        self.events: list[str] = []
        self.fail_open = fail_open
        self.fail_get = fail_get

    @property
    def opens(self) -> int:
        return self.events.count("open")

    @property
    def closes(self) -> int:
        return self.events.count("close")

    async def open(self) -> None:
        self.events.append("open")
        if self.fail_open:
            raise StoreError("injected: the session database is unavailable")
        await super().open()

    async def close(self) -> None:
        self.events.append("close")
        await super().close()

    async def get(self, handle: str) -> SessionRecord | None:
        if self.fail_get:
            raise StoreError("injected: get failed")
        return await super().get(handle)

    def probe_revocations(self, after: int) -> list[Revocation] | None:
        # A store whose reads fail cannot be probed either: verification falls back to the failing read.
        return None if self.fail_get else super().probe_revocations(after)


# -- no token in an exception or a log record --------------------------------------------------------------------


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def assert_not_leaked(
    secrets: Iterable[object], exc: BaseException | None, caplog: pytest.LogCaptureFixture | None
) -> None:
    """No secret in the exception chain of ``exc`` or in a log record (each checked only when given).

    A secret is checked only when it is a string long enough (8 characters) that a coincidental match with a fixed
    message is impossible.
    """
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < 8:
            continue
        if exc is not None:
            for link in exception_chain(exc):
                assert secret not in str(link)
                assert secret not in repr(link)
                assert all(secret not in repr(arg) for arg in link.args)
        if caplog is not None:
            for record in caplog.records:
                assert secret not in record.getMessage()
                assert secret not in repr(record.args)


# -- base64url, as JWTs and refresh tokens use it ----------------------------------------------------------------


def b64u(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(segment: str) -> bytes:
    """Decode unpadded (or padded) base64url."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64u_json(segment: str) -> Any:
    """The JSON value in a base64url segment, such as a JWT's header or payload."""
    return json.loads(b64u_decode(segment))


# -- a cookie jar that keeps nothing -----------------------------------------------------------------------------


class _KeepNoCookies(DefaultCookiePolicy):
    """Stores and returns nothing."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def cookieless_jar() -> CookieJar:
    """A cookie jar for an httpx client that must send cookies only by hand (in a ``Cookie`` header).

    A test that chooses which token goes to which request cannot have the client add the last ones it was given.
    """
    return CookieJar(policy=_KeepNoCookies())


# -- ES256 signatures in the one spelling we accept --------------------------------------------------------------

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(signature: bytes) -> bytes:
    """The low-S form of a raw ES256 signature ``r || s`` (verification refuses the high-S twin)."""
    s = int.from_bytes(signature[32:], "big")
    return signature if s <= P256_ORDER // 2 else signature[:32] + (P256_ORDER - s).to_bytes(32, "big")


# -- property-test sizes -------------------------------------------------------------------------------------------


def examples(count: int) -> int:
    """``count`` Hypothesis examples, times ``ASGI_SESSION_FUZZ_SCALE`` (1 by default; ``tox -e fuzz`` sets 10)."""
    import os

    return count * max(1, int(os.environ.get("ASGI_SESSION_FUZZ_SCALE", "1")))


LiveSessions = dict[int, tuple[str, str, str]]
"""The property tests' live sessions: number -> (handle, access token, refresh token)."""


async def session_step(manager: SessionManager, action: str, number: int, live: LiveSessions) -> list[str]:
    """One step of the revocation property tests: create, refresh, revoke or revoke-all through ``manager``.

    ``number`` names the session (or, modulo 2, the user ``user-0`` / ``user-1``); ``live`` is updated. Returns the
    access tokens of the sessions this step revoked. Other actions (and a session number not live) do nothing.
    """
    if action == "create":
        session = await manager.create_new_session_without_request_response(f"user-{number % 2}")
        assert session.refresh_token is not None
        live[number] = (session.handle, session.access_token, session.refresh_token)
    elif action == "refresh" and number in live:
        handle, _, refresh_token = live[number]
        session = await manager.refresh_session_without_request_response(refresh_token)
        assert session.refresh_token is not None
        live[number] = (handle, session.access_token, session.refresh_token)
    elif action == "revoke" and number in live:
        await manager.revoke_session(live[number][0])
        return [live.pop(number)[1]]
    elif action == "revoke_all":
        revoked: list[str] = []
        for handle in await manager.revoke_all_sessions_for_user(f"user-{number % 2}"):
            for key, (live_handle, token, _) in list(live.items()):
                if live_handle == handle:
                    revoked.append(token)
                    del live[key]
        return revoked
    return []
