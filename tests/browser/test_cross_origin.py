"""A single-page app on one origin, its API on another (issue 15, item 5): the CORS recipe of docs/frontend.md.

The page comes from one uvicorn server on 127.0.0.1, the API from another port of 127.0.0.1 (a different origin,
the same site), wrapped in Starlette's CORSMiddleware with credentials, the SDK's request headers allowed and the
protocol's response headers exposed (tests/browser/_apps.py, ``api_app(..., cors_origins=...)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from asgi_session import SessionConfig
from tests._servers import serve_in_thread
from tests.browser._apps import PAYLOAD, Backend, page_app
from tests.browser._tab import REFRESH, SIGNOUT, TOKEN_COOKIES, Tab

PROTECTED = "/api/protected"

pytestmark = pytest.mark.browser


@contextmanager
def spa(
    serve: Callable[..., Backend], bundles: dict[str, Path], config: SessionConfig
) -> Iterator[tuple[str, Backend]]:
    """The page's server, and an API that allows exactly the page's origin."""
    with serve_in_thread(page_app(bundles)) as page_url:
        yield page_url, serve(config, cors_origins=(page_url,), page=False)


def test_the_sdk_on_another_origin_signs_in_refreshes_and_signs_out(
    serve: Callable[..., Backend], bundles: dict[str, Path], tab: Tab
) -> None:
    with spa(serve, bundles, SessionConfig(access_token_validity=timedelta(minutes=1))) as (page_url, api):
        assert page_url != api.url
        tab.open_sdk_page(page_url, api=api.url)
        assert tab.session_exists() is False

        mark = tab.mark()
        signed_in = tab.sign_in("alice")
        assert signed_in["status"] == 200, signed_in
        (signin,) = tab.since(mark)
        assert signin.url == f"{api.url}/api/signin"
        assert signin.request_headers["origin"] == page_url
        assert signin.response_headers["access-control-allow-origin"] == page_url
        assert signin.response_headers["access-control-allow-credentials"] == "true"
        # The SDK read the front token from a cross-origin response: it must be exposed, and it was.
        assert "front-token" in signin.response_headers["access-control-expose-headers"]
        assert tab.session_exists() is True
        assert {key: tab.payload()[key] for key in PAYLOAD} == PAYLOAD
        assert set(TOKEN_COOKIES) <= set(tab.cookies())

        # A protected call with the API's cookies (credentials), an expiry, one refresh through CORS, a retry.
        assert json.loads(tab.call(PROTECTED)["body"])["user"] == "alice"
        before = tab.token_cookies()
        api.clock.advance(61)
        mark = tab.mark()
        assert tab.call(PROTECTED)["status"] == 200
        assert tab.calls(mark) == [("GET", PROTECTED, 401), ("POST", REFRESH, 200), ("GET", PROTECTED, 200)]
        expired, refreshed, _ = tab.since(mark)
        assert expired.response_headers["access-control-allow-origin"] == page_url  # the 401 is readable too
        for header in ("rid", "fdi-version", "st-auth-mode"):  # sent, so allowed by the preflight
            assert header in refreshed.request_headers
        assert refreshed.response_headers["access-control-allow-origin"] == page_url
        after = tab.token_cookies()
        assert all(after[name] != before[name] for name in TOKEN_COOKIES)

        mark = tab.mark()
        tab.sign_out()
        assert tab.calls(mark) == [("POST", SIGNOUT, 200)]
        assert not set(TOKEN_COOKIES) & set(tab.cookies())
        assert tab.session_exists() is False


def test_a_page_from_an_origin_the_api_does_not_allow_cannot_read_its_answers(
    serve: Callable[..., Backend], bundles: dict[str, Path], tab: Tab
) -> None:
    with spa(serve, bundles, SessionConfig()) as (_, api), serve_in_thread(page_app(bundles)) as stranger:
        tab.open_sdk_page(stranger, api=api.url)
        result = tab.sign_in("alice")
    # The preflight for the SDK's headers is refused: fetch fails, no session is created.
    assert result["status"] is None
    assert "Failed to fetch" in result["error"]
    assert not set(TOKEN_COOKIES) & set(tab.cookies())
    assert api.offline(lambda manager: manager.get_all_session_handles_for_user("alice")) == []
