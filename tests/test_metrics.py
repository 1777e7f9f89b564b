"""Metrics and traces through the OpenTelemetry SDK's in-memory reader and exporter.

The SDK's providers are installed once for the session (OpenTelemetry allows one global provider of each kind);
each test reads the counters' change over what it did. Without ``opentelemetry-api``, nothing is imported: checked
in a subprocess that hides the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest

from asgi_session import (
    SessionConfig,
    SessionManager,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
    _metrics,
)
from asgi_session.stores import MemoryStore
from asgi_session.testing import FakeClock

otel_sdk = pytest.importorskip("opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk (the test extra)")

from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

pytestmark = pytest.mark.anyio

READER = InMemoryMetricReader()
SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def providers() -> None:
    """The SDK as the global providers (once per process: OpenTelemetry refuses to replace them)."""
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(tracer_provider)


def points() -> dict[str, dict[tuple[tuple[str, Any], ...], Any]]:
    """Every data point by instrument name, then by sorted attributes: a sum's value, or a histogram's count."""
    found: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    value = getattr(point, "value", None)
                    found.setdefault(metric.name, {})[key] = value if value is not None else getattr(point, "count", 0)
    return found


class Delta:
    """Counter changes since it was made."""

    def __init__(self) -> None:
        self.before = points()

    def __call__(self, name: str, **attributes: Any) -> Any:
        key = tuple(sorted(attributes.items()))
        return points().get(name, {}).get(key, 0) - self.before.get(name, {}).get(key, 0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def manager(clock: FakeClock) -> Any:
    config = SessionConfig(anti_csrf="VIA_TOKEN", refresh_token_grace_period=timedelta(seconds=30))
    async with SessionManager(store=MemoryStore(), config=config, clock=clock) as manager:
        yield manager


async def test_session_counters(manager: SessionManager, clock: FakeClock) -> None:
    delta = Delta()
    first = await manager.create_new_session_without_request_response("alice")
    second = await manager.create_new_session_without_request_response("alice")
    await manager.create_new_session_without_request_response("bob")
    assert delta("asgi_session.sessions.created") == 3

    refresh = first.refresh_token
    assert refresh is not None
    child = await manager.refresh_session_without_request_response(refresh, anti_csrf_token=first.anti_csrf_token)
    await manager.refresh_session_without_request_response(refresh, anti_csrf_token=first.anti_csrf_token)  # grace
    assert delta("asgi_session.sessions.refreshed", outcome="rotated") == 1
    assert delta("asgi_session.sessions.refreshed", outcome="grace") == 1

    clock.advance(31)
    with pytest.raises(TokenTheftDetectedError):
        await manager.refresh_session_without_request_response(refresh, anti_csrf_token=first.anti_csrf_token)
    assert delta("asgi_session.token_theft.detected") == 1
    assert delta("asgi_session.sessions.revoked", reason="token_theft") == 1
    assert child.handle == first.handle

    assert await manager.revoke_session(second.handle)
    assert await manager.revoke_all_sessions_for_user("bob")
    assert delta("asgi_session.sessions.revoked", reason="revoke_session") == 1
    assert delta("asgi_session.sessions.revoked", reason="revoke_all_sessions_for_user") == 1


async def test_revoke_multiple_sessions_counts_what_it_revoked(manager: SessionManager) -> None:
    sessions = [await manager.create_new_session_without_request_response(user) for user in ("alice", "bob", "carol")]
    delta = Delta()
    revoked = await manager.revoke_multiple_sessions([sessions[0].handle, sessions[2].handle, "no-such-handle"])
    assert sorted(revoked) == sorted([sessions[0].handle, sessions[2].handle])
    assert delta("asgi_session.sessions.revoked", reason="revoke_multiple_sessions") == 2  # the unknown one: not
    assert await manager.revoke_multiple_sessions([sessions[0].handle, "no-such-handle"]) == []
    assert delta("asgi_session.sessions.revoked", reason="revoke_multiple_sessions") == 2  # nothing revoked: no count
    for other in ("revoke_session", "revoke_all_sessions_for_user", "token_theft"):
        assert delta("asgi_session.sessions.revoked", reason=other) == 0


async def test_verification_and_anti_csrf_failures(manager: SessionManager, clock: FakeClock) -> None:
    delta = Delta()
    session = await manager.create_new_session_without_request_response("alice")
    with pytest.raises(TryRefreshTokenError):
        await manager.get_session_without_request_response("not.a.token")
    with pytest.raises(TryRefreshTokenError):
        await manager.get_session_without_request_response(session.access_token, anti_csrf_token="wrong")
    assert delta("asgi_session.anti_csrf.failures", mode="VIA_TOKEN") == 1
    await manager.revoke_session(session.handle)
    with pytest.raises(UnauthorisedError):
        await manager.get_session_without_request_response(
            session.access_token, anti_csrf_check=False, check_database=True
        )
    assert delta("asgi_session.verification.failures", reason="revoked") == 1
    clock.advance(3601)
    with pytest.raises(TryRefreshTokenError):
        await manager.get_session_without_request_response(session.access_token, anti_csrf_check=False)
    assert delta("asgi_session.verification.failures", reason="invalid") == 1
    assert delta("asgi_session.verification.failures", reason="expired") == 1


async def test_a_cached_verification_records_nothing(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    await manager.get_session_without_request_response(session.access_token, anti_csrf_check=False)
    SPANS.clear()
    before = points()
    for _ in range(3):
        assert manager.verify_now(session.access_token) is not None
        await manager.get_session_without_request_response(session.access_token, anti_csrf_check=False)
    assert points() == before
    assert SPANS.get_finished_spans() == ()


async def test_store_latency_and_spans(manager: SessionManager) -> None:
    delta = Delta()
    SPANS.clear()
    session = await manager.create_new_session_without_request_response("alice")
    assert await manager.get_session_information(session.handle) is not None
    labels = {"store": "MemoryStore", "outcome": "ok"}
    assert delta("asgi_session.store.operation.duration", operation="create", **labels) == 1
    assert delta("asgi_session.store.operation.duration", operation="get", **labels) == 1
    spans = {span.name: span for span in SPANS.get_finished_spans()}
    assert {"asgi_session.store.create", "asgi_session.store.get"} <= set(spans)
    assert spans["asgi_session.store.get"].attributes == {"asgi_session.store": "MemoryStore"}


async def test_a_failing_store_call_is_an_error_span(clock: FakeClock) -> None:
    from asgi_session import StoreError

    class Broken(MemoryStore):
        async def get(self, handle: str) -> Any:
            raise StoreError("down")

    delta = Delta()
    SPANS.clear()
    async with SessionManager(store=Broken(), clock=clock) as manager:
        with pytest.raises(StoreError):
            await manager.get_session_information("h")
    assert delta("asgi_session.store.operation.duration", operation="get", store="Broken", outcome="error") == 1
    failed = next(span for span in SPANS.get_finished_spans() if span.name == "asgi_session.store.get")
    assert failed.status.status_code == trace.StatusCode.ERROR


async def test_a_refresh_is_a_span_around_its_store_calls(manager: SessionManager) -> None:
    session = await manager.create_new_session_without_request_response("alice")
    SPANS.clear()
    assert session.refresh_token is not None
    await manager.refresh_session_without_request_response(
        session.refresh_token, anti_csrf_token=session.anti_csrf_token
    )
    spans = SPANS.get_finished_spans()
    refresh = next(span for span in spans if span.name == "asgi_session.refresh")
    rotate = next(span for span in spans if span.name == "asgi_session.store.rotate_sliding")
    assert rotate.parent is not None
    assert rotate.parent.span_id == refresh.context.span_id


async def test_http_anti_csrf_failure_is_counted(clock: FakeClock) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from asgi_session import SessionMiddleware, get_session

    async def me(request: Request) -> JSONResponse:
        await get_session(request, session_required=True)
        return JSONResponse({})

    config = SessionConfig(cookie_same_site="none", cleanup_interval=None)  # VIA_CUSTOM_HEADER
    manager = SessionManager(store=MemoryStore(), config=config, clock=clock)
    app = SessionMiddleware(Starlette(routes=[Route("/me", me, methods=["POST"])]), manager=manager)
    session = await manager.create_new_session_without_request_response("alice")
    delta = Delta()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.post("/me", headers={"cookie": f"sAccessToken={session.access_token}"})
    assert response.status_code == 401
    assert delta("asgi_session.anti_csrf.failures", mode="VIA_CUSTOM_HEADER") == 1
    await manager.close()


def test_without_opentelemetry_nothing_is_imported() -> None:
    code = (
        "import sys, json\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "import asgi_session, asgi_session.manager, asgi_session.middleware\n"
        "from asgi_session import _metrics\n"
        "from asgi_session.stores import MemoryStore\n"
        "store = MemoryStore()\n"
        "_metrics.instrument_store(store)\n"
        "print(json.dumps([_metrics.ENABLED, 'get' in vars(store),"
        " sorted(m for m in sys.modules if m.startswith('opentelemetry'))]))\n"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == [False, False, []]


def test_instruments_are_enabled_here() -> None:
    assert _metrics.ENABLED


async def test_an_unknown_key_is_counted_once(manager: SessionManager, clock: FakeClock) -> None:
    async with SessionManager(store=MemoryStore(), clock=clock) as elsewhere:  # another key ring
        foreign = await elsewhere.create_new_session_without_request_response("mallory")
    delta = Delta()
    assert manager.verify_now(foreign.access_token) is None  # the sync path hands over to the async one
    with pytest.raises(TryRefreshTokenError):
        await manager.get_session_without_request_response(foreign.access_token, anti_csrf_check=False)
    assert delta("asgi_session.verification.failures", reason="unknown_key") == 1
    assert delta("asgi_session.verification.failures", reason="invalid") == 0


async def test_no_spans_are_made_until_a_tracer_provider_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the application sets a provider the API's spans record nothing; making them cost ~7 µs per store call.
    async with SessionManager(store=MemoryStore()) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        SPANS.clear()
        delta = Delta()
        monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
        assert session.refresh_token is not None
        await manager.refresh_session_without_request_response(session.refresh_token)
        assert SPANS.get_finished_spans() == ()
        store = "MemoryStore"
        operation = "rotate_sliding"  # the refresh's read and swap in one store call
        assert delta("asgi_session.store.operation.duration", operation=operation, outcome="ok", store=store) == 1
        monkeypatch.undo()  # a provider set later is used from then on
        await manager.create_new_session_without_request_response("alice")
        assert [span.name for span in SPANS.get_finished_spans()] == ["asgi_session.store.create"]
