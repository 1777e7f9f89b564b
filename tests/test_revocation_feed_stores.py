"""Redis and PostgreSQL with revocation_max_lag: a revoke by another manager is refused within the bound.

Two managers on one store stand for two processes (the multi-process suite runs real workers). Nothing asserts a
timing tighter than the configured bound plus a generous margin for a loaded machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from asgi_session import SessionConfig, SessionManager, UnauthorisedError
from asgi_session.stores import store_from_url
from tests._store_urls import async_shared_store_url

pytestmark = pytest.mark.anyio

LAG = 0.2


@pytest.fixture(params=["redis", "redis_cluster", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with async_shared_store_url(request.param, request, tmp_path) as url:
        yield url


async def _wait_until(condition: object, limit: float = 5.0) -> float:
    """Poll ``condition()`` every 10 ms; return the seconds it took (fail after ``limit``)."""
    start = anyio.current_time()
    while not condition():  # type: ignore[operator]
        assert anyio.current_time() - start < limit, "condition not met in time"
        await anyio.sleep(0.01)
    return anyio.current_time() - start


async def test_a_revoke_elsewhere_is_refused_from_memory_within_the_bound(store_url: str) -> None:
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=LAG)
    async with (
        SessionManager(store_from_url(store_url), config) as web,
        SessionManager(store_from_url(store_url), SessionConfig()) as admin,
    ):
        session = await web.create_new_session_without_request_response("alice")
        await _wait_until(lambda: web.verify_now(session.access_token) is not None)  # the feed is current
        await admin.revoke_all_sessions_for_user("alice")

        def refused() -> bool:
            try:
                web.verify_now(session.access_token)
            except UnauthorisedError:
                return True
            return False

        await _wait_until(refused)
        # Whatever the view says, the async path never accepts it either (it reads the store when unsure).
        with pytest.raises(UnauthorisedError):
            await web.get_session_without_request_response(session.access_token)


async def test_while_the_feed_is_unconfirmed_verification_reads_the_store(store_url: str) -> None:
    config = SessionConfig(access_token_blacklisting=True, revocation_max_lag=LAG)
    async with (
        SessionManager(store_from_url(store_url), config) as web,
        SessionManager(store_from_url(store_url), SessionConfig()) as admin,
    ):
        session = await web.create_new_session_without_request_response("bob")
        follower = web._follower
        assert follower is not None
        await follower.stop()  # as if the feed were lost: no confirmation from now on
        assert web.verify_now(session.access_token) is None  # not trusted: the async path reads the store
        await admin.revoke_session(session.handle)
        with pytest.raises(UnauthorisedError):
            await web.get_session_without_request_response(session.access_token)
