"""The ASGI entry point: Django's ASGI application wrapped in ``SessionMiddleware``.

``uvicorn django_app.asgi:application`` (from the ``examples`` folder) serves it. Django does not speak the ASGI
lifespan protocol; the middleware answers it in Django's place: it opens the store at startup, runs the scheduled
cleanup, and closes the store at shutdown.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")

from django.core.asgi import get_asgi_application

from asgi_session import SessionManager, SessionMiddleware

from . import views


def create_app(manager: SessionManager | None = None) -> SessionMiddleware:
    """Build the application; without a manager it uses the SQLite default."""
    views.manager = manager or SessionManager()
    return SessionMiddleware(get_asgi_application(), manager=views.manager)


application = create_app()
