"""Starlette's TestClient, imported once without its import-time warning, and an https client on one app.

The tests run with warnings as errors, and ``starlette.testclient`` warns when it is imported (it prefers httpx2 to
httpx); every module that drives an app through TestClient imports it from here. The base URL is https because the
session cookies are ``Secure``: over http a real cookie jar would not send them back.
"""

from __future__ import annotations

import warnings
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["SwallowErrors", "TestClient", "https_client"]


def https_client(app: ASGIApp, **options: Any) -> TestClient:
    """A TestClient on ``app`` at ``https://testserver`` (enter it to run the app's lifespan)."""
    return TestClient(app, base_url="https://testserver", **options)


class SwallowErrors:
    """A layer that turns every exception into its own 500, so the exception never reaches SessionMiddleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:
            await JSONResponse({"error": "internal"}, status_code=500)(scope, receive, send)
