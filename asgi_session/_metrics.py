"""OpenTelemetry metrics and traces, recorded only when ``opentelemetry-api`` is installed (the ``otel`` extra).

Without the package, :data:`ENABLED` is false, nothing is imported, every ``record_*`` function returns at once and
stores are left as they are. With it, the instruments come from the global meter and tracer providers: the API's
no-ops until the application configures an SDK (before or after this module is imported; the API's proxies
forward to a provider set later). Every instrument and attribute is listed in ``docs/metrics.md``.

Nothing is recorded on the path of a verified, cached access token: failures are counted where they are raised,
and store calls (which already cost a round trip) are timed by wrapping the store's methods on the instance.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

try:
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
except ImportError:  # the otel extra is not installed: record nothing
    ENABLED = False
else:
    ENABLED = True

__all__ = [
    "ENABLED",
    "STORE_OPERATIONS",
    "instrument_store",
    "record_anti_csrf_failure",
    "record_created",
    "record_refreshed",
    "record_revoked",
    "record_theft",
    "record_verification_failure",
    "refresh_span",
]

SCOPE_NAME = "asgi_session"
STORE_OPERATIONS = (
    "create",
    "get",
    "rotate",
    "rotate_sliding",
    "update_session_data",
    "update_access_token_payload",
    "touch",
    "delete",
    "list_for_user",
    "delete_for_user",
    "delete_expired",
    "get_keys",
    "add_key",
    "delete_keys",
    "revocations_since",
    "trim_revocations",
    "acquire_lease",
)
"""The store methods timed and traced (``follow_revocations`` runs for ever; ``probe_revocations`` is in memory)."""


class _Instruments:
    """The instruments, made on first use from the global providers."""

    def __init__(self) -> None:
        meter = _otel_metrics.get_meter(SCOPE_NAME)
        self.tracer = _otel_trace.get_tracer(SCOPE_NAME)
        self.created = meter.create_counter(
            "asgi_session.sessions.created", unit="{session}", description="Sessions created."
        )
        self.refreshed = meter.create_counter(
            "asgi_session.sessions.refreshed", unit="{session}", description="Successful refreshes."
        )
        self.revoked = meter.create_counter(
            "asgi_session.sessions.revoked", unit="{session}", description="Sessions revoked, by reason."
        )
        self.theft = meter.create_counter(
            "asgi_session.token_theft.detected", unit="{event}", description="Refresh-token reuse detected."
        )
        self.verification_failures = meter.create_counter(
            "asgi_session.verification.failures", unit="{failure}", description="Access tokens refused, by reason."
        )
        self.anti_csrf_failures = meter.create_counter(
            "asgi_session.anti_csrf.failures", unit="{failure}", description="Anti-CSRF checks failed, by mode."
        )
        self.store_duration = meter.create_histogram(
            "asgi_session.store.operation.duration",
            unit="s",
            description="Duration of session-store operations, by operation and store.",
        )


@functools.lru_cache(maxsize=1)
def _instruments() -> _Instruments:
    return _Instruments()


def record_created() -> None:
    """Count a session created."""
    if ENABLED:
        _instruments().created.add(1)


def record_refreshed(outcome: str) -> None:
    """Count a successful refresh: ``"rotated"``, or ``"grace"`` (a just-rotated parent presented again)."""
    if ENABLED:
        _instruments().refreshed.add(1, {"outcome": outcome})


def record_revoked(reason: str, count: int) -> None:
    """Count ``count`` sessions revoked for ``reason`` (nothing when ``count`` is 0)."""
    if ENABLED and count:
        _instruments().revoked.add(count, {"reason": reason})


def record_theft() -> None:
    """Count a refresh-token theft verdict."""
    if ENABLED:
        _instruments().theft.add(1)


def record_verification_failure(reason: str) -> None:
    """Count an access token refused: ``"expired"``, ``"invalid"``, ``"unknown_key"`` or ``"revoked"``."""
    if ENABLED:
        _instruments().verification_failures.add(1, {"reason": reason})


def record_anti_csrf_failure(mode: str) -> None:
    """Count an anti-CSRF check failed in ``mode`` (``"VIA_TOKEN"`` or ``"VIA_CUSTOM_HEADER"``)."""
    if ENABLED:
        _instruments().anti_csrf_failures.add(1, {"mode": mode})


class _NoSpan:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def _tracing() -> bool:
    """Whether spans can be recorded: a tracer provider is set (other than the API's no-op one).

    Until the application sets one, the API's proxy hands out non-recording spans; entering one still costs about
    7 µs (context variables, a span object), which a create or a refresh would pay per store call for nothing. The
    check runs per call, so a provider set later is used from then on.
    """
    provider = _otel_trace.get_tracer_provider()
    return not isinstance(provider, (_otel_trace.ProxyTracerProvider, _otel_trace.NoOpTracerProvider))


def refresh_span() -> Any:
    """A context manager: the ``asgi_session.refresh`` span, or nothing without OpenTelemetry or a tracer provider."""
    if not ENABLED or not _tracing():
        return _NO_SPAN
    return _instruments().tracer.start_as_current_span("asgi_session.refresh")


_instrumented: weakref.WeakSet[Any] = weakref.WeakSet()


def instrument_store(store: object) -> None:
    """Time and trace ``store``'s operations by wrapping its methods on the instance (once; no-op when disabled).

    A store whose instances take no attributes (``__slots__``) or no weak references is left as it is.
    """
    if not ENABLED:
        return
    try:
        if store in _instrumented:
            return
        _instrumented.add(store)
    except TypeError:
        return
    label = type(store).__name__
    for operation in STORE_OPERATIONS:
        method = getattr(store, operation, None)
        if not callable(method):
            continue
        try:
            setattr(store, operation, _timed(method, operation, label))
        except (AttributeError, TypeError):
            return


def _timed(method: Callable[..., Awaitable[Any]], operation: str, label: str) -> Callable[..., Awaitable[Any]]:
    attributes = {"operation": operation, "store": label}
    span_name = f"asgi_session.store.{operation}"

    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        instruments = _instruments()
        outcome = "error"
        start = time.perf_counter()
        try:
            if _tracing():
                with instruments.tracer.start_as_current_span(span_name, attributes={"asgi_session.store": label}):
                    result = await method(*args, **kwargs)
            else:
                result = await method(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            elapsed = time.perf_counter() - start
            instruments.store_duration.record(elapsed, {**attributes, "outcome": outcome})

    return timed
