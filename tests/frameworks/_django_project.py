"""The Django example project (``examples/django_app``), importable by the tests, and test-only views.

Django's settings are process-wide: every test that runs Django uses the example's settings module, and changes
what it needs with ``override_settings`` (``ROOT_URLCONF = "tests.frameworks._django_project"`` serves the views
below as well as the example's).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")

from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.utils.decorators import method_decorator  # noqa: E402
from django.views import View  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from asgi_session import ConfigurationError, SessionManager, UnauthorisedError  # noqa: E402
from asgi_session.frameworks.django import get_session, session_required  # noqa: E402

__all__ = ["EXAMPLES", "asgi", "create_app", "urlpatterns", "views"]

# Imported by name: the examples folder is not on mypy's path.
asgi = importlib.import_module("django_app.asgi")
views = importlib.import_module("django_app.views")


def create_app(manager: SessionManager) -> Any:
    """The example's ASGI application around ``manager``."""
    return asgi.create_app(manager)


async def plain(request: HttpRequest) -> JsonResponse:
    """No decorator: the view raises the SessionError itself."""
    session = await get_session(request, session_required=True)
    return JsonResponse({"user": session.user_id})


@session_required(session_required=False)
async def optional(request: HttpRequest) -> JsonResponse:
    session = request.asgi_session  # type: ignore[attr-defined]
    return JsonResponse({"user": None if session is None else session.user_id})


async def raises(request: HttpRequest) -> HttpResponse:
    raise UnauthorisedError("refused by the view", clear_tokens=False)


async def broken(request: HttpRequest) -> HttpResponse:
    raise ConfigurationError("a developer error")


@csrf_exempt
@session_required
async def revoke_then_fail(request: HttpRequest) -> HttpResponse:
    session = await get_session(request, session_required=True)
    await session.revoke()
    await session.get_session_data_from_database()  # raises UnauthorisedError: it is gone
    raise AssertionError("unreachable")  # pragma: no cover


@session_required
def sync_with_args(request: HttpRequest, number: int) -> JsonResponse:
    return JsonResponse({"user": request.asgi_session.user_id, "number": number})  # type: ignore[attr-defined]


@method_decorator(session_required, name="dispatch")  # type: ignore[arg-type]  # the stubs expect sync views
class Profile(View):
    async def get(self, request: HttpRequest) -> JsonResponse:
        session = await get_session(request, session_required=True)
        return JsonResponse({"user": session.user_id, "view": "class"})


@session_required
async def visits(request: HttpRequest) -> JsonResponse:
    """Django's own session (django.contrib.sessions) beside asgi-session's."""
    count = request.session.get("visits", 0) + 1
    request.session["visits"] = count
    return JsonResponse({"user": request.asgi_session.user_id, "visits": count})  # type: ignore[attr-defined]


urlpatterns = [
    path("", include("django_app.urls")),
    path("plain", plain),
    path("optional", optional),
    path("raises", raises),
    path("broken", broken),
    path("revoke-then-fail", revoke_then_fail),
    path("numbers/<int:number>", sync_with_args),
    path("profile", Profile.as_view()),
    path("visits", visits),
]
