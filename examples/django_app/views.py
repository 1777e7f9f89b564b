"""The example's views: sign in, protected views (async and sync), an optional session, sign out (everywhere)."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from asgi_session import SessionManager, create_new_session
from asgi_session.frameworks.django import get_session, session_required

manager: SessionManager | None = None
"""The application's manager, set by ``asgi.create_app`` (the views revoke other devices' sessions through it)."""


@csrf_exempt
@require_POST
async def signin(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    user = body.get("user") if isinstance(body, dict) else None
    if not isinstance(user, str) or not user:
        return JsonResponse({"error": 'send {"user": "<name>"}'}, status=400)
    session = await create_new_session(request, user)  # the middleware writes the tokens to this response
    return JsonResponse({"user": session.user_id, "handle": session.handle})


@session_required
async def me(request: HttpRequest) -> JsonResponse:
    session = await get_session(request, session_required=True)
    return JsonResponse({"user": session.user_id, "tenant": session.tenant_id})


@session_required(check_database=True)  # also refuses a token whose session was revoked elsewhere
async def account(request: HttpRequest) -> JsonResponse:
    session = await get_session(request, session_required=True)
    return JsonResponse({"user": session.user_id, "data": await session.get_session_data_from_database()})


async def hello(request: HttpRequest) -> JsonResponse:
    session = await get_session(request)  # optional: None without a session
    return JsonResponse({"user": session.user_id if session is not None else None})


@session_required
def report(request: HttpRequest) -> JsonResponse:  # a sync view: runs in Django's thread after the check
    session = request.asgi_session  # type: ignore[attr-defined]
    return JsonResponse({"user": session.user_id, "kind": "sync"})


@csrf_exempt
@require_POST
@session_required
async def signout(request: HttpRequest) -> JsonResponse:
    session = await get_session(request, session_required=True)
    await session.revoke()  # the response clears the tokens
    return JsonResponse({"status": "OK"})


@csrf_exempt
@require_POST
@session_required
async def signout_everywhere(request: HttpRequest) -> JsonResponse:
    session = await get_session(request, session_required=True)
    await session.revoke()  # this device: revoked and its tokens cleared in this response
    if manager is None:
        raise RuntimeError("build the application with django_app.asgi.create_app()")
    others = await manager.revoke_all_sessions_for_user(session.user_id)  # every other device, every tenant
    return JsonResponse({"revoked": len(others) + 1})
