"""A browser tab under test: its page, its cookie jar, every response it received, and the SDK calls a test makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page, Response
    from playwright.sync_api._generated import LocatorAssertions

REFRESH = "/auth/session/refresh"
SIGNOUT = "/auth/signout"
TOKEN_COOKIES = ("sAccessToken", "sRefreshToken")

# The page's `api(path, init)` is `fetch(apiDomain + path, init)`: once supertokens.init() has run, `fetch` is the
# SDK's patched one, so these calls go through its refresh-and-retry logic exactly as an application's would.
_CALL = """async ([path, init]) => {
  try {
    const response = await api(path, init);
    return {status: response.status, body: await response.text()};
  } catch (error) {
    return {status: null, error: String(error)};
  }
}"""


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's ``expect`` (waits until the assertion holds), imported only when a test runs.

    The test modules are collected by every tox env, and only the ``browser`` env installs Playwright.
    """
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


class Exchange:
    """One request of the page and its response, as the browser's network layer reports them."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.method = response.request.method
        self.url = response.url
        self.status = response.status

    def __repr__(self) -> str:
        return f"<Exchange {self.method} {self.url} {self.status}>"

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @cached_property
    def request_headers(self) -> dict[str, str]:
        """Every header sent, as the network saw it (``Origin``, ``Cookie`` too), by lower-case name."""
        return self.response.request.all_headers()

    @cached_property
    def response_headers(self) -> dict[str, str]:
        """Every header received, by lower-case name (several ``Set-Cookie`` joined by newlines)."""
        return self.response.all_headers()

    def set_cookies(self) -> list[str]:
        """The ``Set-Cookie`` headers of the response, one string each."""
        return [h["value"] for h in self.response.headers_array() if h["name"].lower() == "set-cookie"]

    def brief(self) -> tuple[str, str, int]:
        return (self.method, self.path, self.status)


@dataclass
class Tab:
    """A page in its own browser context (its own cookie jar: a device), with every response recorded in order."""

    context: BrowserContext
    page: Page
    exchanges: list[Exchange] = field(default_factory=list)

    def record(self, response: Response) -> None:
        self.exchanges.append(Exchange(response))

    # -- the network record ---------------------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the record: :meth:`since` returns what came after it."""
        return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        """The API and protocol calls after ``mark`` (page and bundle loads left out)."""
        return [e for e in self.exchanges[mark:] if e.path.startswith(("/api/", "/auth/", "/.well-known/"))]

    def calls(self, mark: int) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of each call after ``mark``."""
        return [exchange.brief() for exchange in self.since(mark)]

    # -- the cookie jar -------------------------------------------------------------------------------------------

    def cookies(self) -> dict[str, dict[str, Any]]:
        """This context's cookies by name; a name held twice (two domains or paths) fails the test."""
        found: dict[str, dict[str, Any]] = {}
        for cookie in self.context.cookies():
            name = cookie["name"]
            assert name not in found, f"two {name} cookies: {self.context.cookies()}"
            found[name] = dict(cookie)
        return found

    def token_cookies(self) -> dict[str, str]:
        """The session cookies (``sAccessToken``, ``sRefreshToken``) by name, their values."""
        return {name: cookie["value"] for name, cookie in self.cookies().items() if name in TOKEN_COOKIES}

    # -- the SDK --------------------------------------------------------------------------------------------------

    def open_sdk_page(self, page_url: str, *, api: str | None = None, mode: str = "cookie") -> None:
        """Load the SDK test page from ``page_url``, the SDK configured for ``api`` (default: the page's origin)."""
        query = {"mode": mode} | ({"api": api} if api else {})
        self.page.goto(f"{page_url}/?{urlencode(query)}")
        assert self.page.text_content("#state") == f"ready: {mode} mode, API at {api or page_url}"

    def js(self, expression: str, argument: Any = None) -> Any:
        """Evaluate ``expression`` in the page (a function is called with ``argument``; a promise is awaited)."""
        return self.page.evaluate(expression, argument)

    def call(self, path: str, init: dict[str, Any] | None = None) -> dict[str, Any]:
        """``fetch`` through the SDK: ``{"status", "body"}``, or ``{"status": None, "error"}`` if it threw."""
        result: dict[str, Any] = self.js(_CALL, [path, init or {}])
        return result

    def sign_in(self, user: str) -> dict[str, Any]:
        init = {"method": "POST", "headers": {"content-type": "application/json"}, "body": f'{{"user": "{user}"}}'}
        return self.call("/api/signin", init)

    def session_exists(self) -> bool:
        exists: bool = self.js("() => supertokensSession.doesSessionExist()")
        return exists

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.js("() => supertokensSession.getAccessTokenPayloadSecurely()")
        return payload

    def sign_out(self) -> None:
        self.js("() => supertokensSession.signOut()")
