"""asgi-session."""
