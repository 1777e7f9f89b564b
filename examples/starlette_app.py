"""A Starlette app with sessions: sign in, a protected route, sign out, sign out everywhere, a revocation-safe route.

Run it with ``python examples/starlette_app.py`` (needs uvicorn: ``pip install 'asgi-session[demo]'``); it serves
http://127.0.0.1:8000 and keeps sessions in ``./asgi_session.db`` (or ``ASGI_SESSION_STORE_URL``)::

    curl -c jar -b jar -X POST localhost:8000/signin -H 'content-type: application/json' -d '{"user": "alice"}'
    curl -c jar -b jar localhost:8000/me

(``cookie_secure`` is on by default; curl and browsers accept ``Secure`` cookies from ``localhost``.)
The protocol endpoints (``POST /auth/session/refresh``, ``POST /auth/signout``) are served by the middleware.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_session import SessionManager, SessionMiddleware, create_new_session
from asgi_session.frameworks.starlette import get_session, requires_session


def create_app(manager: SessionManager | None = None) -> Starlette:
    """Build the app; without a manager it uses the SQLite default."""
    manager = manager or SessionManager()

    async def signin(request: Request) -> JSONResponse:
        body = await request.json()
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not user:
            return JSONResponse({"error": 'send {"user": "<name>"}'}, status_code=400)
        session = await create_new_session(request, user)
        return JSONResponse({"user": session.user_id, "handle": session.handle})

    @requires_session
    async def me(request: Request) -> JSONResponse:
        session = request.state.session
        return JSONResponse({"user": session.user_id, "tenant": session.tenant_id})

    @requires_session(check_database=True)  # also refuses a token whose session was revoked elsewhere
    async def account(request: Request) -> JSONResponse:
        session = request.state.session
        return JSONResponse({"user": session.user_id, "data": await session.get_session_data_from_database()})

    async def hello(request: Request) -> JSONResponse:
        session = await get_session(request)  # optional: None without a session
        return JSONResponse({"user": session.user_id if session is not None else None})

    @requires_session
    async def signout(request: Request) -> JSONResponse:
        await request.state.session.revoke()  # the response clears the tokens
        return JSONResponse({"status": "OK"})

    @requires_session
    async def signout_everywhere(request: Request) -> JSONResponse:
        session = request.state.session
        await session.revoke()  # this device: revoked and its tokens cleared in this response
        others = await manager.revoke_all_sessions_for_user(session.user_id)  # every other device, every tenant
        return JSONResponse({"revoked": len(others) + 1})

    routes = [
        Route("/signin", signin, methods=["POST"]),
        Route("/me", me),
        Route("/account", account),
        Route("/hello", hello),
        Route("/signout", signout, methods=["POST"]),
        Route("/signout-everywhere", signout_everywhere, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, manager=manager)])


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
