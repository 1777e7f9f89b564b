"""Session stores: the protocol, the built-in stores, and ``store_from_url``.

``RedisStore`` and ``PostgresStore`` live in ``asgi_session.stores.redis`` and ``asgi_session.stores.postgres``
and are imported by path only, so this package never imports an optional driver.
"""

from __future__ import annotations

from .base import KeyRecord, Rotation, SessionRecord, SessionStore, StoreLifecycle
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .url import store_from_url

__all__ = [
    "KeyRecord",
    "MemoryStore",
    "Rotation",
    "SQLiteStore",
    "SessionRecord",
    "SessionStore",
    "StoreLifecycle",
    "store_from_url",
]
