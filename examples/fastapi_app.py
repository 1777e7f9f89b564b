"""A FastAPI app with sessions: sign in, a protected route, sign out, sign out everywhere, a revocation-safe route.

Run it with ``python examples/fastapi_app.py`` (``pip install 'asgi-session[fastapi,demo]'``); it serves
http://127.0.0.1:8000, with the OpenAPI page at http://127.0.0.1:8000/docs showing which routes need a session.
Sessions live in ``./asgi_session.db`` (or ``ASGI_SESSION_STORE_URL``). The protocol endpoints
(``POST /auth/session/refresh``, ``POST /auth/signout``) are served by the middleware.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from asgi_session import Session, SessionManager, SessionMiddleware, create_new_session
from asgi_session.frameworks.fastapi import OptionalSessionDep, SessionDep, install_exception_handlers, verify_session


class SignIn(BaseModel):
    """The sign-in body."""

    user: str


def create_app(manager: SessionManager | None = None) -> FastAPI:
    """Build the app; without a manager it uses the SQLite default."""
    manager = manager or SessionManager()
    app = FastAPI(title="asgi-session FastAPI example")
    app.add_middleware(SessionMiddleware, manager=manager)
    install_exception_handlers(app, manager)  # protocol responses even if another layer catches exceptions

    @app.post("/signin")
    async def signin(body: SignIn, request: Request) -> dict[str, str]:
        session = await create_new_session(request, body.user)
        return {"user": session.user_id, "handle": session.handle}

    @app.get("/me")
    async def me(session: SessionDep) -> dict[str, str]:
        return {"user": session.user_id, "tenant": session.tenant_id}

    @app.get("/account")
    async def account(session: Annotated[Session, Depends(verify_session(check_database=True))]) -> dict[str, Any]:
        # check_database=True also refuses a token whose session was revoked elsewhere
        return {"user": session.user_id, "data": await session.get_session_data_from_database()}

    @app.get("/hello")
    async def hello(session: OptionalSessionDep) -> dict[str, str | None]:
        return {"user": session.user_id if session is not None else None}

    @app.post("/signout")
    async def signout(session: SessionDep) -> dict[str, str]:
        await session.revoke()  # the response clears the tokens
        return {"status": "OK"}

    @app.post("/signout-everywhere")
    async def signout_everywhere(session: SessionDep) -> dict[str, int]:
        await session.revoke()  # this device: revoked and its tokens cleared in this response
        others = await manager.revoke_all_sessions_for_user(session.user_id)  # every other device, every tenant
        return {"revoked": len(others) + 1}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
