"""The example's routes; the protocol endpoints (``/auth/session/refresh``, ``/auth/signout``) are served by
``SessionMiddleware`` before Django sees the request."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("signin", views.signin),
    path("me", views.me),
    path("account", views.account),
    path("hello", views.hello),
    path("report", views.report),
    path("signout", views.signout),
    path("signout-everywhere", views.signout_everywhere),
]
