"""SessionMiddleware: pure ASGI; verifies tokens, puts the session in the scope, serves the protocol endpoints.

Per request it reads the access token (``Authorization: Bearer`` first when it holds a token shaped like ours,
else the ``sAccessToken`` cookie), verifies it, and sets ``scope["asgi_session"]`` to the
:class:`~asgi_session.Session` or ``None``. Token changes made during the request (a new session, a revoke, a
payload merge) are written on ``http.response.start``.

A :class:`~asgi_session.SessionError` raised by the app becomes the protocol response. Because frameworks turn an
exception into a complete 500 response before re-raising it, a 5xx ``http.response.start`` is held back until the
app finishes: if a ``SessionError`` caused it, the protocol response is sent instead and the 500 is dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._asgi import ASGIApp, Message, Receive, Scope, Send
from ._context import CONTEXT_KEY, SCOPE_KEY, RequestContext
from ._endpoints import Endpoints, error_response, send_response
from .exceptions import ConfigurationError, SessionError, StoreError, TryRefreshTokenError, UnauthorisedError
from .transport import read_access_token

if TYPE_CHECKING:
    from ._cleanup import ScheduledCleanup
    from .manager import SessionManager
    from .session import Session

__all__ = ["SessionMiddleware"]

logger = logging.getLogger("asgi_session")


def _caused_by(exc: BaseException, cause: BaseException) -> bool:
    """Whether ``exc`` is ``cause`` or wraps it (frameworks may re-raise it wrapped or inside a group)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is cause:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(getattr(current, "exceptions", ()))
    return False


class SessionMiddleware:
    """Sessions for any ASGI app.

    Args:
        app: the ASGI app to wrap.
        manager: the :class:`~asgi_session.SessionManager` (its store is opened on ``lifespan.startup``, or on
            the first request when the server runs no lifespan, and closed on shutdown).

    Usable directly (``SessionMiddleware(app, manager=manager)``) or as Starlette
    ``Middleware(SessionMiddleware, manager=manager)``.
    """

    def __init__(self, app: ASGIApp, manager: SessionManager) -> None:
        from .manager import SessionManager

        if not isinstance(manager, SessionManager):
            raise ConfigurationError("SessionMiddleware needs manager=SessionManager(...)")
        self.app = app
        self.manager = manager
        self.endpoints = Endpoints(manager)
        self._cleanup: ScheduledCleanup | None = None
        if manager.config.cleanup_interval is not None:  # started and stopped by the lifespan
            from ._cleanup import ScheduledCleanup

            self._cleanup = ScheduledCleanup(manager, manager.config.cleanup_interval)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (http, websocket or lifespan; anything else passes through)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure: SessionError | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal failure
            if failure is not None:
                return  # startup already failed: swallow what the app sends while it unwinds
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self.manager.open()
                except SessionError as exc:
                    failure = exc
                    await send({"type": "lifespan.startup.failed", "message": f"asgi-session: {exc}"})
                    # Raise into the app so its lifespan call ends; the server exits without a shutdown.
                    raise
                if self._cleanup is not None:
                    self._cleanup.start()
            elif message["type"] == "lifespan.shutdown.complete":
                if self._cleanup is not None:
                    await self._cleanup.stop()
                await self.manager.close()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if failure is None or not _caused_by(exc, failure):
                raise
        finally:
            if self._cleanup is not None:  # the app's lifespan ended without a shutdown: stop the schedule too
                await self._cleanup.stop()

    async def _verify(self, scope: Scope) -> RequestContext:
        manager = self.manager
        source = read_access_token(scope, manager.config, self._known)
        token = source.token
        session: Session | None = None
        error: SessionError | None = None
        if token:
            try:
                # The common case needs no I/O: a cache hit, or a new token signed by a key we hold.
                session = manager.verify_now(token)
                if session is None:
                    session = await manager.get_session_without_request_response(token, anti_csrf_check=False)
            except (TryRefreshTokenError, UnauthorisedError) as exc:
                error = exc
        elif source.malformed:
            error = TryRefreshTokenError("malformed access token")
        context = RequestContext(manager, scope, source, session, error)
        scope[SCOPE_KEY] = session
        scope[CONTEXT_KEY] = context
        return context

    def _known(self, token: str) -> bool:
        # A token in the verified-token cache is ours: a dict lookup instead of the shape check's JSON parse.
        return self.manager.has_verified(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            context = await self._verify(scope)
        except StoreError as exc:
            logger.error("asgi_session: store failure while verifying a request: %s", exc)
            response = error_response(exc, self.manager.config, None)
            assert response is not None  # noqa: S101 - StoreError always maps to a 503
            await send_response(send, *response)
            return
        endpoint = self.endpoints.match(scope)
        if endpoint is not None:
            await endpoint(context, send)
            return

        started = False
        held: list[Message] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if held:
                held.append(message)
                return
            if message["type"] == "http.response.start":
                if message["status"] >= 500:
                    held.append(message)
                    return
                started = True
                if context.changed:
                    context.response_changes().apply(message)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except SessionError as exc:
            response = error_response(exc, self.manager.config, context)
            if started or response is None:
                if held and not started:
                    await self._flush(held, context, send)
                raise
            await send_response(send, *response)
            return
        except BaseException:
            if held and not started:
                await self._flush(held, context, send)
            raise
        if held:
            await self._flush(held, context, send)

    async def _flush(self, held: list[Message], context: RequestContext, send: Send) -> None:
        context.response_changes().apply(held[0])
        for message in held:
            await send(message)
        held.clear()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._verify(scope)
        except StoreError as exc:
            logger.error("asgi_session: store failure while verifying a websocket: %s", exc)
            await send({"type": "websocket.close", "code": 1011, "reason": "session store unavailable"})
            return
        accepted = False

        async def send_wrapper(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except SessionError:
            if accepted:
                raise
            # A handshake refused for a session reason: policy violation (1008). A websocket cannot carry
            # Set-Cookie after the handshake, so session changes made on a websocket are not sent to the client.
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorised"})
