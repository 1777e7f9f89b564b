"""asgi-session: revocable server-side sessions for any ASGI app, speaking the SuperTokens session protocol.

The public names are re-exported here; everything else is an implementation detail. Importing this package never
imports a web framework or an optional store driver.
"""

from __future__ import annotations

from ._clock import Clock, SystemClock
from ._context import create_new_session, get_session
from ._error_handlers import ErrorHandlers
from ._require import require_session
from .config import SessionConfig
from .exceptions import (
    ConfigurationError,
    InvalidClaimsError,
    InvalidPayloadError,
    SessionError,
    StoreError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from .hooks import SessionEvent, SessionHooks
from .manager import SessionManager
from .middleware import SessionMiddleware
from .session import Session, SessionInformation

__version__ = "0.1.0.dev0"

__all__ = [
    "Clock",
    "ConfigurationError",
    "ErrorHandlers",
    "InvalidClaimsError",
    "InvalidPayloadError",
    "Session",
    "SessionConfig",
    "SessionError",
    "SessionEvent",
    "SessionHooks",
    "SessionInformation",
    "SessionManager",
    "SessionMiddleware",
    "StoreError",
    "SystemClock",
    "TokenTheftDetectedError",
    "TryRefreshTokenError",
    "UnauthorisedError",
    "__version__",
    "create_new_session",
    "get_session",
    "require_session",
]
