"""Change what the session manager does by subclassing it, and keep an audit log with lifecycle hooks.

The counterpart of SuperTokens' ``override.functions``: subclass ``SessionManager`` and override a public method.
The middleware and the request helpers call the public methods, so ``create_new_session(request, ...)`` goes
through the override too. Run it with ``python examples/manager_overrides.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from asgi_session import SessionEvent, SessionHooks, SessionManager, SessionMiddleware, create_new_session
from asgi_session.stores import MemoryStore

PLANS = {"alice": "pro"}


class AppSessionManager(SessionManager):
    """Every new session carries the user's plan in its access token; one user's sessions may never be revoked."""

    async def create_new_session_without_request_response(
        self,
        user_id: str,
        tenant_id: str = "public",
        access_token_payload: Mapping[str, Any] | None = None,
        session_data_in_database: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        payload = {**(access_token_payload or {}), "plan": PLANS.get(user_id, "free")}
        return await super().create_new_session_without_request_response(
            user_id, tenant_id, payload, session_data_in_database, **options
        )

    async def revoke_all_sessions_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        if user_id == "kiosk":
            return []  # the shared kiosk account stays signed in
        return await super().revoke_all_sessions_for_user(user_id, tenant_id)


class AuditLog:
    """Records every lifecycle event; in production, write to your database or log pipeline instead."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def record(self, event: SessionEvent) -> None:
        client = event.scope.get("client") if event.scope is not None else None
        self.entries.append(
            {
                "event": event.kind,
                "session": event.handle,
                "user": event.user_id,
                "tenant": event.tenant_id,
                "reason": event.reason,
                "ip": client[0] if client else None,
            }
        )

    def hooks(self) -> SessionHooks:
        return SessionHooks(
            on_created=self.record,
            on_refreshed=self.record,
            on_revoked=self.record,
            on_token_theft_detected=self.record,
            on_anti_csrf_failure=self.record,
        )


def create_app(manager: SessionManager) -> Any:
    """A bare ASGI app: ``POST /signin?user=...`` creates a session; the middleware serves refresh and sign-out."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        user = scope["query_string"].decode().removeprefix("user=") or "alice"
        session = await create_new_session(scope, user)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": session.handle.encode()})

    return SessionMiddleware(app, manager=manager)


async def main() -> list[dict[str, Any]]:
    audit = AuditLog()
    async with AppSessionManager(MemoryStore(), hooks=audit.hooks()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        print("plan in the token:", session.get_access_token_payload()["plan"])
        await manager.create_new_session_without_request_response("kiosk")
        print("kiosk sessions revoked:", await manager.revoke_all_sessions_for_user("kiosk"))
        await manager.revoke_all_sessions_for_user("alice")
    for entry in audit.entries:
        print(entry)
    return audit.entries


if __name__ == "__main__":
    asyncio.run(main())
