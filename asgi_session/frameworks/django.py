"""Django (under ASGI) integration: ``SessionErrorMiddleware``, ``get_session(request)`` and ``session_required``.

Wrap the ASGI application in ``asgi.py`` and add the error middleware to ``MIDDLEWARE``::

    # asgi.py
    application = SessionMiddleware(get_asgi_application(), manager=manager)

    # settings.py
    MIDDLEWARE = [..., "asgi_session.frameworks.django.SessionErrorMiddleware"]

    # views.py
    @session_required
    async def me(request: HttpRequest) -> JsonResponse:
        session = await get_session(request, session_required=True)
        return JsonResponse({"user": session.user_id})


    @session_required(override_global_claim_validators=lambda validators, session: [*validators, is_admin])
    async def admin(request: HttpRequest) -> JsonResponse: ...

Django turns an exception raised in a view into its own 500 response and does not re-raise it, so the
``SessionMiddleware`` outside never sees a :class:`~asgi_session.SessionError`. ``SessionErrorMiddleware`` answers
it inside Django with the protocol response instead (401 ``unauthorised`` / ``try refresh token``, 403 ``invalid
claim``, 503 when the store failed), clearing the tokens where the protocol says so. With
``SessionMiddleware(..., error_handlers=ErrorHandlers(...))`` it leaves the errors those handlers cover to them, as
the Starlette, FastAPI, Quart and Litestar integrations do. Sessions need Django under ASGI: under WSGI there is no
``SessionMiddleware`` and :func:`get_session` raises ``ConfigurationError``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, overload

from ..exceptions import ConfigurationError, SessionError

try:
    from asgiref.sync import sync_to_async
    from django.http import HttpRequest, HttpResponse
    from django.utils.deprecation import MiddlewareMixin
except ImportError as exc:
    raise ConfigurationError("asgi_session.frameworks.django needs Django: pip install 'asgi-session[django]'") from exc

from .._context import get_route_session as _get_route_session
from .._context import get_session as _get_session
from ..claims import OverrideGlobalClaimValidators
from ._errors import defer_to_override, protocol_error

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["SessionErrorMiddleware", "get_session", "protocol_response", "session_required"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _scope_of(request: HttpRequest) -> Any:
    scope = getattr(request, "scope", None)
    if scope is None:
        raise ConfigurationError(
            "this Django request did not come through ASGI: asgi-session needs Django under ASGI, with "
            "application = SessionMiddleware(get_asgi_application(), manager=manager) in asgi.py"
        )
    return scope


class _ProtocolResponse(HttpResponse):
    """An ``HttpResponse`` that also carries ``Set-Cookie`` values exactly as asgi-session wrote them.

    Django keeps one value per header name, and its cookie jar would re-encode the clearing cookies (quoting the
    empty value, reordering the attributes); Django's handlers send ``items()`` as the response headers.
    """

    def __init__(self, content: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(content, status=status, content_type="application/json")
        self.raw_cookies: list[str] = []
        for name, value in headers:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            if key.lower() == "set-cookie":
                self.raw_cookies.append(text)
            elif key in self.headers:
                self.headers[key] = f"{self.headers[key]}, {text}"
            else:
                self.headers[key] = text

    def items(self) -> Iterator[tuple[str, str]]:  # Django's handlers send these as the response headers
        yield from self.headers.items()
        for cookie in self.raw_cookies:
            yield "Set-Cookie", cookie


def protocol_response(exc: SessionError, request: HttpRequest) -> HttpResponse | None:
    """Return the protocol response for ``exc`` as a Django response, or ``None`` for developer errors.

    What ``SessionErrorMiddleware`` answers; a middleware of your own that calls :func:`get_session` can return
    it too (Django turns an exception raised in a middleware into a 500 before any other middleware sees it).
    ``ConfigurationError`` and ``InvalidPayloadError`` give ``None``: they are bugs, and stay 500s.
    """
    answer = protocol_error(exc, getattr(request, "scope", None), None)
    if answer is None:
        return None
    status, body, headers = answer
    return _ProtocolResponse(body, status, headers)


class SessionErrorMiddleware(MiddlewareMixin):
    """Django middleware answering a :class:`~asgi_session.SessionError` raised in a view with its protocol response.

    Add ``"asgi_session.frameworks.django.SessionErrorMiddleware"`` to ``MIDDLEWARE``; last in the list is best,
    since Django offers a view's exception to the middleware from the bottom of the list up and the first response
    wins. It covers exceptions raised by the view (including :func:`session_required` and template rendering);
    Django turns an exception raised in another middleware into a 500 before any middleware can answer it, so a
    middleware that needs the session should return a response itself. ``ConfigurationError`` and
    ``InvalidPayloadError`` are developer errors: they stay 500s.

    An error that the ``SessionMiddleware``'s :class:`~asgi_session.ErrorHandlers` cover is answered by the
    override instead (for example a redirect to a sign-in page), with the protocol's token changes applied: this
    middleware then returns a placeholder 500 that ``SessionMiddleware`` holds back and replaces.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Return the protocol response for a ``SessionError``; ``None`` lets Django handle anything else."""
        if not isinstance(exception, SessionError):
            return None
        if defer_to_override(exception, getattr(request, "scope", None)):
            # A placeholder: SessionMiddleware holds back every 5xx, and sends the override's answer instead.
            placeholder = HttpResponse(status=500)
            placeholder._has_been_logged = True  # type: ignore[attr-defined]  # no "Internal Server Error" log
            return placeholder
        return protocol_response(exception, request)


@overload
async def get_session(
    request: HttpRequest,
    session_required: Literal[True],
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session: ...


@overload
async def get_session(
    request: HttpRequest,
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None: ...


async def get_session(
    request: HttpRequest,
    session_required: bool = False,
    check_database: bool | None = None,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Session | None:
    """Return the request's verified session, or ``None`` when there is none and it is not required.

    The same as :func:`asgi_session.get_session`, for a Django ``HttpRequest`` served under ASGI. The token was
    verified by ``SessionMiddleware``; this reads the result (and the store, at most once per request, with
    ``check_database``).

    Args:
        request: the Django request.
        session_required: raise ``UnauthorisedError`` instead of returning ``None``.
        check_database: also check the store (the session must not be revoked); default: the config's
            ``access_token_blacklisting``.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators to run instead of the manager's ``global_claim_validators`` (a failure: 403
            ``invalid claim``). Without one, in a view that :func:`session_required` already checked, no claim
            validator runs again: the decorator's check stands for the view.

    Returns:
        The session, or ``None``.

    Raises:
        TryRefreshTokenError: the access token is expired or invalid, or the anti-CSRF check failed.
        UnauthorisedError: no session while required, or (with the database check) the session was revoked.
        InvalidClaimsError: a claim validator failed (403 ``invalid claim``); a value re-fetched on the way is
            stored, and its re-issued access token is sent with the 403.
        StoreError: the store failed during the database check.
        ConfigurationError: the request did not come through ASGI and ``SessionMiddleware``.
    """
    # In a view that session_required checked, the scope is marked: no validator runs again without an override.
    return await _get_session(
        _scope_of(request), session_required, check_database, anti_csrf_check, override_global_claim_validators
    )


class _ViewDecorator(Protocol):
    @overload
    def __call__(self, view: Callable[_P, Coroutine[Any, Any, _R]], /) -> Callable[_P, Coroutine[Any, Any, _R]]: ...

    @overload
    def __call__(self, view: Callable[_P, _R], /) -> Callable[_P, Coroutine[Any, Any, _R]]: ...


@overload
def session_required(view: Callable[_P, Coroutine[Any, Any, _R]], /) -> Callable[_P, Coroutine[Any, Any, _R]]: ...


@overload
def session_required(view: Callable[_P, _R], /) -> Callable[_P, Coroutine[Any, Any, _R]]: ...


@overload
def session_required(
    view: None = None,
    /,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> _ViewDecorator: ...


def session_required(
    view: Callable[..., Any] | None = None,
    /,
    *,
    session_required: bool = True,
    check_database: bool = False,
    anti_csrf_check: bool | None = None,
    override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
) -> Any:
    """Protect a Django view: verify the session before the view runs.

    Use it bare (``@session_required``) or with options (``@session_required(check_database=True)``). The view
    reads the session with :func:`get_session` (already checked, so no second store read) or from
    ``request.asgi_session``. A refused request never reaches the view: ``SessionErrorMiddleware`` answers it.

    Sync views are supported: the decorated view becomes async, checks the session on the event loop, then runs
    the sync view through ``sync_to_async`` (in Django's thread-sensitive executor, as Django runs sync views
    under ASGI). Class-based views take it through ``django.utils.decorators.method_decorator``.

    Args:
        view: the view, when used bare.
        session_required: refuse requests without a session (401 ``unauthorised``); with ``False`` the view
            runs and ``request.asgi_session`` is ``None``.
        check_database: also check the store, so a revoked session's still-unexpired access token is refused
            (401 ``unauthorised``, tokens cleared). With ``access_token_blacklisting`` on, every request is
            checked anyway.
        anti_csrf_check: force (``True``) or skip (``False``) the anti-CSRF check; by default it runs on
            cookie-authenticated requests other than GET, HEAD, OPTIONS and TRACE.
        override_global_claim_validators: ``override(global_validators, session)``, sync or async, returning the
            claim validators this view runs instead of the manager's ``global_claim_validators`` (add, remove
            or replace them). A failure never reaches the view: 403 ``invalid claim``, answered by
            ``SessionErrorMiddleware``. The view's own ``get_session(request)`` then runs no validator again.

    Returns:
        The wrapped (async) view (bare form), or a decorator (called form).
    """
    required = session_required
    if override_global_claim_validators is not None and not callable(override_global_claim_validators):
        raise ConfigurationError(
            "session_required: override_global_claim_validators must be a callable "
            f"(global_validators, session) -> list, got {override_global_claim_validators!r}"
        )

    def decorator(func: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        if not callable(func):
            raise ConfigurationError(f"session_required: expected a view function, got {func!r}")
        call = func if inspect.iscoroutinefunction(func) else sync_to_async(func, thread_sensitive=True)

        @functools.wraps(func)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(request, HttpRequest):
                raise ConfigurationError(
                    f"session_required: the view's first argument must be the HttpRequest, got "
                    f"{type(request).__name__} (decorate methods with django.utils.decorators.method_decorator)"
                )
            request.asgi_session = await _get_route_session(  # type: ignore[attr-defined]
                _scope_of(request), required, check_database, anti_csrf_check, override_global_claim_validators
            )
            result = await call(request, *args, **kwargs)
            if inspect.isawaitable(result):  # a sync dispatch() of an async class-based view returns a coroutine
                result = await result
            return result

        return wrapper

    if view is not None:
        return decorator(view)
    return decorator
