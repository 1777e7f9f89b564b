"""Framework integrations: the idiom of each web framework on top of :class:`~asgi_session.SessionMiddleware`.

Each module is imported by path and imports its framework when it is imported; this package itself imports
nothing, so ``import asgi_session`` never pulls in a web framework.

- :mod:`asgi_session.frameworks.starlette`: the ``requires_session`` decorator and ``get_session(request)``.
- :mod:`asgi_session.frameworks.fastapi`: the ``verify_session()`` dependency, the ``SessionDep`` alias and the
  OpenAPI security schemes (``pip install 'asgi-session[fastapi]'``).
- :mod:`asgi_session.frameworks.quart`: ``install(app, manager)``, ``get_session()``, ``create_new_session()`` and
  the ``session_required`` decorator (``pip install 'asgi-session[quart]'``).
- :mod:`asgi_session.frameworks.django`: ``SessionErrorMiddleware``, ``get_session(request)`` and the
  ``session_required`` decorator, for Django under ASGI (``pip install 'asgi-session[django]'``).
- :mod:`asgi_session.frameworks.litestar`: ``SessionPlugin(manager)``, the ``session`` dependency, ``SessionGuard``
  and ``get_session(request)`` (``pip install 'asgi-session[litestar]'``).

The Starlette module also holds ``SessionAuthBackend``, for Starlette's ``AuthenticationMiddleware``.

For any other ASGI app, wrap the protected part in :func:`asgi_session.require_session`.
"""
