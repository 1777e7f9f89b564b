"""A minimal Django project with asgi-session (ASGI only): settings, urls, views, asgi.

Run it from the ``examples`` folder with ``python -m django_app`` (``pip install 'asgi-session[django,demo]'``):
it serves http://127.0.0.1:8000 with uvicorn, and keeps sessions in ``./asgi_session.db`` (or
``ASGI_SESSION_STORE_URL``). Any ASGI server works: ``uvicorn django_app.asgi:application``.
"""
