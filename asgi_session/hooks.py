"""Lifecycle hooks: your code, called when a session is created, refreshed or revoked, on theft and on CSRF failures.

::

    async def audit(event: SessionEvent) -> None:
        await audit_log.write(event.kind, event.handle, event.user_id, event.reason)


    manager = SessionManager(store, config, hooks=SessionHooks(on_revoked=audit, on_token_theft_detected=audit))

A hook runs after the store write it reports has committed (a ``created`` hook never sees a session that failed to
be stored), is awaited before the response is sent, and may be sync or async. A hook that raises is logged
(``asgi_session`` logger) and never changes the response or the session.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from ._asgi import Scope

__all__ = ["EventKind", "RevokeReason", "SessionEvent", "SessionHooks"]

logger = logging.getLogger("asgi_session")

EventKind = Literal["created", "refreshed", "revoked", "token_theft_detected", "anti_csrf_failure"]
"""What happened; the hook ``on_<kind>`` of :class:`SessionHooks` receives the event."""

RevokeReason = Literal["sign-out", "revoke", "revoke-all", "theft", "expired"]
"""Why a session ended (``SessionEvent.reason`` of a ``revoked`` event)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent:
    """One lifecycle event, as a hook receives it.

    Attributes:
        kind: ``"created"``, ``"refreshed"``, ``"revoked"``, ``"token_theft_detected"`` or ``"anti_csrf_failure"``.
        handle: the session handle (``None`` only for an anti-CSRF failure whose token names no session).
        user_id: the session's user (``None`` when unknown: an anti-CSRF failure whose token names no session).
        tenant_id: the session's tenant (``None`` when unknown, as for ``user_id``; also for a session created
            by another process while ``revoke_all_sessions_for_user`` ran across tenants).
        scope: the ASGI scope of the request that caused the event, or ``None`` (an offline call).
        reason: for ``revoked``: ``"sign-out"``, ``"revoke"``, ``"revoke-all"``, ``"theft"`` or ``"expired"``
            (a refresh met a session past its expiry); for ``anti_csrf_failure``: what failed. Else ``None``.
    """

    kind: EventKind
    handle: str | None
    user_id: str | None
    tenant_id: str | None
    scope: Scope | None = None
    reason: str | None = None


Hook = Callable[[SessionEvent], "Awaitable[None] | None"]
"""A hook: ``hook(event)``, sync or async."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHooks:
    """The lifecycle hooks of a :class:`~asgi_session.SessionManager` (``SessionManager(..., hooks=...)``).

    Attributes:
        on_created: a session was created (online or offline).
        on_refreshed: a refresh token was rotated (a repeat within the grace window is not a new refresh).
        on_revoked: a session was deleted: by sign-out, by handle (``revoke``), by user (``revoke-all``), on theft,
            or a refresh found it expired (``expired``; the periodic cleanup deletes expired rows silently).
        on_token_theft_detected: a superseded refresh token was reused; the session is already revoked.
        on_anti_csrf_failure: a request failed the anti-CSRF check.
    """

    on_created: Hook | None = None
    on_refreshed: Hook | None = None
    on_revoked: Hook | None = None
    on_token_theft_detected: Hook | None = None
    on_anti_csrf_failure: Hook | None = None

    def __post_init__(self) -> None:
        for name in ("on_created", "on_refreshed", "on_revoked", "on_token_theft_detected", "on_anti_csrf_failure"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                from .exceptions import ConfigurationError

                raise ConfigurationError(f"SessionHooks.{name} must be a callable (event) -> None, sync or async")

    async def emit(
        self,
        kind: EventKind,
        handle: str | None,
        user_id: str | None,
        tenant_id: str | None,
        reason: str | None = None,
    ) -> None:
        """Call the hook for ``kind``, if any, with the request scope of the current call; log what it raises."""
        hook: Hook | None = getattr(self, f"on_{kind}")
        if hook is None:
            return
        event = SessionEvent(
            kind=kind, handle=handle, user_id=user_id, tenant_id=tenant_id, scope=_current.get()[0], reason=reason
        )
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("asgi_session: the %s hook raised (session %r); the response is unchanged", kind, handle)


# The request scope (and a revocation reason) of the current call, so that hooks fired deep in the manager see
# them without every manager method taking a scope argument. Set only around create, refresh, sign-out and a
# request-bound revoke, never on the per-request verification path.
_current: contextvars.ContextVar[tuple[Scope | None, str | None]] = contextvars.ContextVar(
    "asgi_session_hook_context", default=(None, None)
)


@contextlib.contextmanager
def hook_context(scope: Scope | None, revoke_reason: str | None = None) -> Iterator[None]:
    """Within the block, hooks see ``scope`` and ``revoke_reason`` (an outer block's values fill in ``None``)."""
    outer_scope, outer_reason = _current.get()
    token = _current.set((scope if scope is not None else outer_scope, revoke_reason or outer_reason))
    try:
        yield
    finally:
        _current.reset(token)


def revoke_reason(default: str) -> str:
    """The revocation reason set by an enclosing :func:`hook_context`, else ``default``."""
    return _current.get()[1] or default
