"""A Quart app with sessions: sign in, a protected route, sign out, sign out everywhere, a revocation-safe route.

Run it with ``python examples/quart_app.py`` (``pip install 'asgi-session[quart,demo]'``); it serves
http://127.0.0.1:8000 with uvicorn and keeps sessions in ``./asgi_session.db`` (or ``ASGI_SESSION_STORE_URL``).
The protocol endpoints (``POST /auth/session/refresh``, ``POST /auth/signout``) are served by the middleware.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, request

from asgi_session import SessionManager
from asgi_session.frameworks.quart import create_new_session, get_session, install, session_required


def create_app(manager: SessionManager | None = None) -> Quart:
    """Build the app; without a manager it uses the SQLite default."""
    manager = manager or SessionManager()
    app = Quart(__name__)
    install(app, manager)

    @app.post("/signin")
    async def signin() -> Any:
        body = await request.get_json(silent=True)
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not user:
            return {"error": 'send {"user": "<name>"}'}, 400
        session = await create_new_session(user)
        return {"user": session.user_id, "handle": session.handle}

    @app.get("/me")
    @session_required
    async def me() -> dict[str, str]:
        session = await get_session(session_required=True)
        return {"user": session.user_id, "tenant": session.tenant_id}

    @app.get("/account")
    @session_required(check_database=True)  # also refuses a token whose session was revoked elsewhere
    async def account() -> dict[str, Any]:
        session = await get_session(session_required=True)
        return {"user": session.user_id, "data": await session.get_session_data_from_database()}

    @app.get("/hello")
    async def hello() -> dict[str, str | None]:
        session = await get_session()  # optional: None without a session
        return {"user": session.user_id if session is not None else None}

    @app.post("/signout")
    @session_required
    async def signout() -> dict[str, str]:
        session = await get_session(session_required=True)
        await session.revoke()  # the response clears the tokens
        return {"status": "OK"}

    @app.post("/signout-everywhere")
    @session_required
    async def signout_everywhere() -> dict[str, int]:
        session = await get_session(session_required=True)
        await session.revoke()  # this device: revoked and its tokens cleared in this response
        others = await manager.revoke_all_sessions_for_user(session.user_id)  # every other device, every tenant
        return {"revoked": len(others) + 1}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
