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
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING

from ._asgi import ASGIApp, Message, Receive, Scope, Send
from ._context import CONTEXT_KEY, SCOPE_KEY, RequestContext
from ._endpoints import Endpoints, answer_error, error_response, send_response
from ._error_handlers import ErrorHandlers
from .claims import no_claim_validators
from .exceptions import ConfigurationError, SessionError, StoreError, TryRefreshTokenError, UnauthorisedError
from .transport import access_token_reader

if TYPE_CHECKING:
    from ._cleanup import ScheduledCleanup
    from .manager import SessionManager
    from .session import Session

__all__ = ["SessionMiddleware"]

_new_context = object.__new__  # a RequestContext without __init__ (the request path sets its slots itself)

logger = logging.getLogger("asgi_session")


class _Done:
    """An awaitable that is already complete (what a held-back ``send`` returns)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # pragma: no cover - makes this a generator that finishes at once


_DONE = _Done()


class _Responder:
    """The app's ``send`` for one http request (its bound :meth:`send_wrapper`), and what that send has seen.

    It writes the session's token changes on ``http.response.start`` and holds back a 5xx start (with what follows
    it) until the app finishes. The middleware sets every slot itself (no ``__init__``): this is per request.

    Attributes:
        context: the request's context.
        scope: the request (for the response's token changes).
        send: the server's ``send``.
        started: whether a response start other than a held-back 5xx was sent.
        held: the messages from a held-back 5xx start on, or ``None``.
    """

    __slots__ = ("context", "held", "scope", "send", "started")

    context: RequestContext
    scope: Scope
    send: Send
    started: bool
    held: list[Message] | None

    # A plain method returning send's own awaitable: an ASGI ``send`` only has to return an awaitable, and this
    # saves a coroutine per message.
    def send_wrapper(self, message: Message) -> Awaitable[None]:
        held = self.held
        if held is not None:
            held.append(message)
            return _DONE
        if message["type"] == "http.response.start":
            if message["status"] >= 500:
                self.held = [message]
                return _DONE
            self.started = True
            context = self.context
            session = context.session  # context.changed, inlined: this runs on every response
            if session is not None and (session.revoked or session.access_and_front_token_updated):
                context.response_changes(self.scope).apply(message)
        return self.send(message)


_new_responder = object.__new__


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

    def __init__(self, app: ASGIApp, manager: SessionManager, error_handlers: ErrorHandlers | None = None) -> None:
        from .manager import SessionManager

        if not isinstance(manager, SessionManager):
            raise ConfigurationError("SessionMiddleware needs manager=SessionManager(...)")
        if error_handlers is not None and not isinstance(error_handlers, ErrorHandlers):
            raise ConfigurationError("error_handlers must be an asgi_session.ErrorHandlers(...)")
        self.app = app
        self.manager = manager
        self.error_handlers = error_handlers
        self.endpoints = Endpoints(manager, error_handlers)
        self._read_access_token = access_token_reader(manager.config, self._known)
        self._endpoint_paths = frozenset(self.endpoints.routes)
        self._cleanup: ScheduledCleanup | None = None
        if manager.config.cleanup_interval is not None:  # started and stopped by the lifespan
            from ._cleanup import ScheduledCleanup

            self._cleanup = ScheduledCleanup(manager, manager.config.cleanup_interval)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (http, websocket or lifespan; anything else passes through)."""
        kind = scope["type"]
        if kind == "http":
            # The per-request path, in this coroutine (no extra await layer, no call of its own): _verify_in_place,
            # inlined; then the endpoint or the app.
            manager = self.manager
            source = self._read_access_token(scope)
            token = source.token
            session: Session | None = None
            error: SessionError | None = None
            context: RequestContext | None
            if token:
                try:
                    session = manager.verify_now(token, source.key)
                except (TryRefreshTokenError, UnauthorisedError) as exc:
                    error = exc
            elif source.malformed:
                error = TryRefreshTokenError("malformed access token")
            if session is not None or not token or error is not None:  # verified in place (None: needs I/O)
                # RequestContext(self.manager, source, session, error, False), built without a call: its __init__
                # sets these slots (the store was not read: verify_now declines when blacklisting needs the store).
                context = _new_context(RequestContext)
                context.manager = manager
                context.source = source
                context.session = session
                context.error = error
                context.db_checked = False
                if session is not None:
                    session.transfer_method = source.method
                if self.error_handlers is not None:
                    context.error_handlers = self.error_handlers
                scope[SCOPE_KEY] = session
                scope[CONTEXT_KEY] = context
            else:
                context = await self._verify_or_answer(scope, send)
                if context is None:
                    return
            if scope.get("path") in self._endpoint_paths:
                endpoint = self.endpoints.match(scope)
                if endpoint is not None:
                    await endpoint(context, scope, send)
                    return
            # Run the app; write token changes on its response, and turn a SessionError into the protocol's
            # response (a 5xx start is held back until we know whether a SessionError caused it).
            responder = _new_responder(_Responder)  # _Responder's slots, set here: no __init__ call per request
            responder.context = context
            responder.scope = scope
            responder.send = send
            responder.started = False
            responder.held = None
            try:
                await self.app(scope, receive, responder.send_wrapper)
            except SessionError as exc:
                if not responder.started and await self._answer(exc, context, scope, receive, send):
                    return
                held = responder.held
                if held is not None and not responder.started:
                    await self._flush(held, context, scope, send)
                raise
            except BaseException:
                held = responder.held
                if held is not None and not responder.started:
                    await self._flush(held, context, scope, send)
                raise
            held = responder.held
            if held is not None:
                # A framework's exception handler may have left a session error to this middleware's override.
                deferred = getattr(context, "deferred_error", None)
                if deferred is not None and await self._answer(deferred, context, scope, receive, send):
                    return
                await self._flush(held, context, scope, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure: SessionError | None = None
        joined = False  # whether the app took part in the protocol (called receive or send)

        async def receive_wrapper() -> Message:
            nonlocal joined
            joined = True
            return await receive()

        async def send_wrapper(message: Message) -> None:
            nonlocal failure, joined
            joined = True
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
            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except Exception as exc:
                if joined:
                    raise
                logger.debug("asgi_session: the app refused the lifespan scope (%r); the middleware runs it", exc)
            if not joined:
                await self._lifespan_without_app(receive, send)
        except BaseException as exc:
            if failure is None or not _caused_by(exc, failure):
                raise
        finally:
            if self._cleanup is not None:  # the app's lifespan ended without a shutdown: stop the schedule too
                await self._cleanup.stop()

    async def _lifespan_without_app(self, receive: Receive, send: Send) -> None:
        """Run the lifespan protocol for an app that does not speak it (Django): open, clean up, close.

        The app refused the scope before receiving or sending anything (ASGI lets an app raise for a scope type it
        does not support), so no message was consumed and the server still waits for an answer to
        ``lifespan.startup``: the store opens and the scheduled cleanup starts as for an app that speaks it.
        """
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.manager.open()
                except SessionError as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"asgi-session: {exc}"})
                    return  # the server exits without a shutdown
                if self._cleanup is not None:
                    self._cleanup.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._cleanup is not None:
                    await self._cleanup.stop()
                await self.manager.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _verify_in_place(self, scope: Scope) -> RequestContext | None:
        """Verify without awaiting (a cached token, or a new one signed by a key we hold); ``None``: needs I/O.

        The per-request path of almost every request: one header scan, one cache lookup, the ``Session``.
        """
        source = self._read_access_token(scope)
        token = source.token
        session: Session | None = None
        error: SessionError | None = None
        if token:
            try:
                session = self.manager.verify_now(token, source.key)
            except (TryRefreshTokenError, UnauthorisedError) as exc:
                error = exc
            else:
                if session is None:
                    return None
        elif source.malformed:
            error = TryRefreshTokenError("malformed access token")
        # Verified in place: the store was not read (verify_now declines when blacklisting needs the store).
        context = RequestContext(self.manager, source, session, error, False)
        if self.error_handlers is not None:
            context.error_handlers = self.error_handlers
        scope[SCOPE_KEY] = session
        scope[CONTEXT_KEY] = context
        return context

    async def _verify(self, scope: Scope) -> RequestContext:
        manager = self.manager
        source = self._read_access_token(scope)
        token = source.token
        session: Session | None = None
        error: SessionError | None = None
        if token:
            try:
                # Claims are checked by the route's get_session (which may override them), not here.
                session = await manager.get_session_without_request_response(
                    token, anti_csrf_check=False, override_global_claim_validators=no_claim_validators
                )
            except (TryRefreshTokenError, UnauthorisedError) as exc:
                error = exc
        elif source.malformed:
            error = TryRefreshTokenError("malformed access token")
        db_checked = manager.config.access_token_blacklisting and not manager.checks_revocations_in_memory
        context = RequestContext(manager, source, session, error, db_checked)
        if self.error_handlers is not None:
            context.error_handlers = self.error_handlers
        scope[SCOPE_KEY] = session
        scope[CONTEXT_KEY] = context
        return context

    def _known(self, token: str) -> bool:
        # A token in the verified-token cache is ours: a dict lookup instead of the shape check's JSON parse.
        return self.manager.has_verified(token)

    async def _verify_or_answer(self, scope: Scope, send: Send) -> RequestContext | None:
        """Verify with I/O; on a store failure answer 503 and return ``None``."""
        try:
            return await self._verify(scope)
        except StoreError as exc:
            logger.error("asgi_session: store failure while verifying a request: %s", exc)
            response = error_response(exc, self.manager.config, None, None)
            assert response is not None  # noqa: S101 - StoreError always maps to a 503
            await send_response(send, *response)
            return None

    async def _answer(
        self, exc: SessionError, context: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        return await answer_error(exc, context, self.error_handlers, self.manager.config, scope, receive, send)

    async def _flush(self, held: list[Message], context: RequestContext, scope: Scope, send: Send) -> None:
        context.response_changes(scope).apply(held[0])
        for message in held:
            await send(message)
        held.clear()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self._verify_in_place(scope) is None:
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
