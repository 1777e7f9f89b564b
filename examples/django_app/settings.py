"""Django settings: only what the example needs (no database; sessions live in asgi-session's store)."""

from __future__ import annotations

import os

# A real project reads its secret from the environment; Django needs one even though nothing here signs with it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "django_app.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Django's CSRF protection stays on for the views that use Django's own forms; the JSON views below are
    # csrf_exempt and rely on asgi-session's anti-CSRF instead (SameSite cookies, or the rid / anti-csrf header).
    "django.middleware.csrf.CsrfViewMiddleware",
    # Last: turns a SessionError raised in a view into the protocol's 401 / 403 / 503 instead of Django's 500.
    "asgi_session.frameworks.django.SessionErrorMiddleware",
]
