"""store_from_url: build a session store from a URL such as ``sqlite:///sessions.db``.

Supported URLs:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://:memory:`` (or
  ``sqlite:///:memory:``), with optional query parameters ``busy_timeout`` (seconds) and
  ``synchronous`` (``NORMAL`` or ``FULL``), e.g. ``sqlite:///s.db?busy_timeout=5&synchronous=FULL``.
  The path is percent-decoded (``%20`` for a space, ``%25`` for ``%``).
- ``memory://``: a :class:`~asgi_session.stores.MemoryStore`.
- ``redis://``, ``rediss://``: ``RedisStore.from_url(url)`` (extra ``[redis]``).
- ``redis+cluster://``, ``rediss+cluster://``: a ``RedisStore`` on a Redis Cluster, reached through the one node the
  URL names (redis-py's URL form otherwise: credentials, query parameters, database 0 only).
- ``postgresql://``, ``postgres://``: ``PostgresStore.from_url(url)`` (extra ``[postgres]``).

The optional stores are imported only when their scheme is asked for. Error messages never repeat
the URL's credentials.
"""

from __future__ import annotations

import importlib
import re
from typing import Literal
from urllib.parse import parse_qsl, unquote

from ..exceptions import ConfigurationError
from .base import SessionStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["store_from_url"]

# scheme -> (module, class, pip extra)
_OPTIONAL = {
    "redis": ("asgi_session.stores.redis", "RedisStore", "redis"),
    "rediss": ("asgi_session.stores.redis", "RedisStore", "redis"),
    "redis+cluster": ("asgi_session.stores.redis", "RedisStore", "redis"),
    "rediss+cluster": ("asgi_session.stores.redis", "RedisStore", "redis"),
    "postgresql": ("asgi_session.stores.postgres", "PostgresStore", "postgres"),
    "postgres": ("asgi_session.stores.postgres", "PostgresStore", "postgres"),
}
_SUPPORTED = (
    "sqlite://, memory://, redis://, rediss://, redis+cluster://, rediss+cluster://, postgresql://, postgres://"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
_SQLITE_PARAMS = ("busy_timeout", "synchronous")


def store_from_url(url: str) -> SessionStore:
    """Build the store a URL names; the store is returned unopened.

    Args:
        url: ``sqlite:///path.db``, ``sqlite://:memory:``, ``memory://``, ``redis://...``,
            ``rediss://...``, ``redis+cluster://...``, ``rediss+cluster://...``, ``postgresql://...`` or
            ``postgres://...``.

    Returns:
        The store, not yet opened (the manager, or ``async with store:``, opens it).

    Raises:
        ConfigurationError: the URL is malformed, its scheme unsupported, or the optional
            dependencies for its scheme are not installed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise ConfigurationError(f"a store URL looks like scheme://...; supported schemes: {_SUPPORTED}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _sqlite(rest)
    if scheme == "memory":
        if rest not in ("", "/"):
            raise ConfigurationError("memory:// takes no host, path or parameters")
        return MemoryStore()
    if scheme in _OPTIONAL:
        return _optional(scheme, url)
    raise ConfigurationError(f"unsupported store URL scheme {scheme!r}; supported: {_SUPPORTED}")


def _sqlite(rest: str) -> SQLiteStore:
    location, _, query = rest.partition("?")
    if location in (":memory:", "/:memory:"):
        path = ":memory:"
    elif location.startswith("/") and len(location) > 1:
        path = unquote(location[1:])
    else:
        raise ConfigurationError(
            "a SQLite URL has no host: use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:"
        )
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError("the SQLite URL's query string is malformed") from exc
    params = dict(pairs)
    unknown = sorted(set(params) - set(_SQLITE_PARAMS))
    if unknown or len(params) != len(pairs):
        raise ConfigurationError(f"SQLite URL parameters may be {', '.join(_SQLITE_PARAMS)}, each at most once")
    busy_timeout = 5.0
    if "busy_timeout" in params:
        try:
            busy_timeout = float(params["busy_timeout"])
        except ValueError as exc:
            raise ConfigurationError("busy_timeout must be a number of seconds, e.g. 5") from exc
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    if "synchronous" in params:
        mode = params["synchronous"].upper()
        if mode == "FULL":
            synchronous = "FULL"
        elif mode != "NORMAL":
            raise ConfigurationError("synchronous must be NORMAL or FULL")
    return SQLiteStore(path, busy_timeout=busy_timeout, synchronous=synchronous)


def _optional(scheme: str, url: str) -> SessionStore:
    module_name, class_name, extra = _OPTIONAL[scheme]
    try:
        # The store module may import its driver at the top or only inside from_url.
        store_class = getattr(importlib.import_module(module_name), class_name, None)
        if store_class is None:
            raise ConfigurationError(f"{module_name} has no {class_name}; reinstall asgi-session")
        store = store_class.from_url(url)
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// stores need the optional dependencies: "
            f"pip install 'asgi-session[{extra}]' (could not import {exc.name or module_name})"
        ) from exc
    except (TypeError, ValueError) as exc:
        # The driver's own message may quote the URL, password included: keep only its type.
        raise ConfigurationError(
            f"{class_name}.from_url refused the URL ({type(exc).__name__}); check its format"
        ) from exc
    if not isinstance(store, SessionStore):
        raise ConfigurationError(f"{class_name}.from_url did not return a SessionStore")
    return store
