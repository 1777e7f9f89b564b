"""The demo app served by ``asgi-session demo``: sign in, inspect, refresh and revoke sessions in a browser.

Run it with ``asgi-session demo`` (or ``python -m asgi_session demo``) and open the printed URL. The app is an
ordinary Starlette application, so it can also be served by any ASGI server::

    uvicorn --factory asgi_session.demo:create_app
"""

from __future__ import annotations

from .app import DEMO_STORE_URL, ROLE_CLAIM, create_app, demo_manager, demo_store_url

__all__ = ["DEMO_STORE_URL", "ROLE_CLAIM", "create_app", "demo_manager", "demo_store_url"]
