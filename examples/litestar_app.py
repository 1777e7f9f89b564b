"""A Litestar app with sessions: sign in, a protected route, sign out, sign out everywhere, a revocation-safe route.

Run it with ``python examples/litestar_app.py`` (``pip install 'asgi-session[litestar,demo]'``); it serves
http://127.0.0.1:8000, with the OpenAPI page at http://127.0.0.1:8000/schema showing which routes need a session.
Sessions live in ``./asgi_session.db`` (or ``ASGI_SESSION_STORE_URL``). The protocol endpoints
(``POST /auth/session/refresh``, ``POST /auth/signout``) are served by the middleware the plugin adds.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get, post
from litestar.exceptions import ValidationException

from asgi_session import SessionManager, create_new_session
from asgi_session.frameworks.litestar import OptionalSessionDep, SessionDep, SessionGuard, SessionPlugin


def create_app(manager: SessionManager | None = None) -> Litestar:
    """Build the app; without a manager it uses the SQLite default."""
    manager = manager or SessionManager()

    @post("/signin", status_code=200)
    async def signin(request: Request[Any, Any, Any]) -> dict[str, str]:
        body = await request.json()
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not user:
            raise ValidationException('send {"user": "<name>"}')
        session = await create_new_session(request, user)  # the middleware writes the tokens to this response
        return {"user": session.user_id, "handle": session.handle}

    @get("/me")
    async def me(session: SessionDep) -> dict[str, str]:  # `session: SessionDep` requires a session
        return {"user": session.user_id, "tenant": session.tenant_id}

    # The guard also refuses a token whose session was revoked elsewhere (it checks the store).
    @get("/account", guards=[SessionGuard(check_database=True)])
    async def account(session: SessionDep) -> dict[str, Any]:
        return {"user": session.user_id, "data": await session.get_session_data_from_database()}

    @get("/hello")
    async def hello(session: OptionalSessionDep) -> dict[str, str | None]:  # optional: None without a session
        return {"user": session.user_id if session is not None else None}

    @post("/signout", status_code=200)
    async def signout(session: SessionDep) -> dict[str, str]:
        await session.revoke()  # the response clears the tokens
        return {"status": "OK"}

    @post("/signout-everywhere", status_code=200)
    async def signout_everywhere(session: SessionDep) -> dict[str, int]:
        await session.revoke()  # this device: revoked and its tokens cleared in this response
        others = await manager.revoke_all_sessions_for_user(session.user_id)  # every other device, every tenant
        return {"revoked": len(others) + 1}

    return Litestar(
        [signin, me, account, hello, signout, signout_everywhere],
        plugins=[SessionPlugin(manager)],
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
