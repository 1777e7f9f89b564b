"""The protocol response for a session error, as plain status, body and headers that any framework can send.

Frameworks that turn exceptions into responses themselves (Starlette's and FastAPI's exception handlers, Quart's
error handlers) answer with exactly what :class:`~asgi_session.SessionMiddleware` would have sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._context import CONTEXT_KEY, RequestContext
from .._endpoints import error_response
from ..config import SessionConfig

if TYPE_CHECKING:
    from ..exceptions import SessionError
    from ..manager import SessionManager

__all__ = ["defer_to_override", "protocol_error"]

Headers = list[tuple[bytes, bytes]]


def protocol_error(
    exc: SessionError, scope: Mapping[str, Any] | None, manager: SessionManager | None
) -> tuple[int, bytes, Headers] | None:
    """Return ``(status, JSON body, headers)`` for ``exc``, or ``None`` for errors that must stay 500s.

    The config comes from the request's middleware context when there is one (the middleware's manager is the
    one that matters), else from ``manager``, else the defaults.
    """
    context = scope.get(CONTEXT_KEY) if scope is not None else None
    if not isinstance(context, RequestContext):
        context = None
    if context is not None:
        config = context.manager.config
    elif manager is not None:
        config = manager.config
    else:
        config = SessionConfig()
    response = error_response(exc, config, context, dict(scope) if scope is not None else None)
    if response is None:
        return None
    status, body, changes, extra_headers = response
    message: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": list(extra_headers)}
    if changes is not None:
        if context is not None and scope is not None and context.changed:
            # The middleware will also write this request's own token changes (e.g. a revoke just before the
            # error) on this response; leave those cookies to it, so each cookie is set once.
            for key in context.response_changes(dict(scope)).cookies:
                changes.cookies.pop(key, None)
        changes.apply(message)
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return status, payload, message["headers"]


def defer_to_override(exc: SessionError, scope: Mapping[str, Any] | None) -> bool:
    """Leave ``exc`` to the middleware's :class:`~asgi_session.ErrorHandlers` override, when it has one for it.

    The framework's exception handler then answers with a placeholder 500, which the middleware holds back (as it
    holds every 5xx) and replaces with the override's response, the protocol's token changes applied. Returns
    whether the error was deferred.
    """
    context = scope.get(CONTEXT_KEY) if scope is not None else None
    if not isinstance(context, RequestContext):
        return False
    handlers = getattr(context, "error_handlers", None)
    if handlers is None or handlers.for_error(exc) is None:
        return False
    if error_response(exc, context.manager.config, context, dict(scope) if scope is not None else None) is None:
        return False
    context.deferred_error = exc
    return True
