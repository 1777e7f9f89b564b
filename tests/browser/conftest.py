"""Fixtures of the real-browser tests: Debian's Chromium driven by Playwright, the SDK from node_modules, servers.

What these tests need beyond the ``test`` extra: Chromium (``apt-get install chromium``; another binary through
``ASGI_SESSION_CHROMIUM``), the ``browser`` extra (Playwright for Python, never asked to download a browser) and the
SuperTokens SDK (``npm ci`` in tests/browser). Without one of them the tests skip on a laptop and fail in CI, like
the store tests (tests/conftest.py). Every test module is marked ``browser``: the tox envs of every Python deselect
them, and the ``browser`` env runs them, on one Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asgi_session import SessionConfig, SessionManager
from asgi_session.claims import SessionClaim
from asgi_session.stores import SQLiteStore
from tests._servers import serve_in_thread
from tests.browser._apps import Backend, ShiftedClock, api_app, find_bundles
from tests.browser._tab import Tab

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright

SCREENSHOTS = Path(__file__).parents[2] / "docs" / "img"
FAKE_DOMAIN = "example.test"
"""Names under this domain resolve to 127.0.0.1 in the test browser (a host-resolver rule): cookie-domain tests."""


def needed(message: str) -> None:
    """Skip on a developer laptop, fail in CI: there a skipped browser test would hide a broken set-up."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser tests (.ci/run installs what they need)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium binary: ``$ASGI_SESSION_CHROMIUM``, else ``chromium`` on PATH (Debian's package)."""
    path = os.environ.get("ASGI_SESSION_CHROMIUM") or shutil.which("chromium") or ""
    if not path or not Path(path).is_file():
        needed("no Chromium: apt-get install chromium (or set ASGI_SESSION_CHROMIUM)")
    return path


@pytest.fixture(scope="session")
def bundles() -> dict[str, Path]:
    """The SuperTokens SDK's browser bundles from tests/browser/node_modules."""
    try:
        return find_bundles()
    except FileNotFoundError as exc:
        needed(f"the SuperTokens SDK is not installed ({exc}): run `npm ci` in tests/browser")
        raise  # pragma: no cover - needed() does not return


# Package scope, not session: Playwright's sync API marks its event loop as running in this thread while it is
# started, so it must be stopped before the tests of other packages run their own loops (anyio's runner).
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        needed("Playwright is not installed: pip install -e '.[test,browser]'")
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="package")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    """One headless Chromium for all the browser tests (each test gets fresh contexts: separate cookie jars)."""
    launched = playwright.chromium.launch(
        executable_path=chromium_path,
        args=[f"--host-resolver-rules=MAP *.{FAKE_DOMAIN} 127.0.0.1"],
    )
    yield launched
    launched.close()


@pytest.fixture
def new_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    """Open pages, each in a new browser context (a separate cookie jar: another device); all closed afterwards.

    Keyword arguments go to ``browser.new_context`` (``user_agent=``, ``viewport=``...).
    """
    contexts: list[BrowserContext] = []

    def open_tab(**options: Any) -> Tab:
        context = browser.new_context(**options)
        contexts.append(context)
        context.set_default_timeout(15_000)
        tab = Tab(context, context.new_page())
        tab.page.on("response", tab.record)
        return tab

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def tab(new_tab: Callable[..., Tab]) -> Tab:
    return new_tab()


# -- servers ------------------------------------------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path, bundles: dict[str, Path]) -> Iterator[Callable[..., Backend]]:
    """Start test APIs on 127.0.0.1 (each with the SDK page at ``/`` unless ``page=False``); all stopped afterwards.

    ``serve(config=SessionConfig(...), cors_origins=(...), page=True, claims=(...))``; each has a SQLite file of its
    own, which an offline manager (a backend job's view, :meth:`Backend.offline`) opens too; ``db=`` shares another's.
    ``claims`` go to the manager (fetched into every new session's payload).
    """
    count = 0
    with contextlib.ExitStack() as stack:

        def start(
            config: SessionConfig | None = None,
            *,
            cors_origins: tuple[str, ...] = (),
            page: bool = True,
            db: Path | None = None,
            claims: tuple[SessionClaim[Any], ...] = (),
        ) -> Backend:
            nonlocal count
            count += 1
            clock = ShiftedClock()
            db = db or tmp_path / f"sessions-{count}.db"
            manager = SessionManager(SQLiteStore(db), config or SessionConfig(), clock=clock, claims=claims)
            app = api_app(manager, bundles if page else None, cors_origins=cors_origins)
            url = stack.enter_context(serve_in_thread(app))
            return Backend(url, manager, clock, db)

        yield start
