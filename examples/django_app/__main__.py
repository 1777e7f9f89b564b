"""``python -m django_app`` (from the ``examples`` folder): serve the example on http://127.0.0.1:8000."""

from __future__ import annotations

import uvicorn

from .asgi import application

if __name__ == "__main__":
    # Django speaks no lifespan protocol; SessionMiddleware answers it in Django's place (it opens the store and
    # runs the scheduled cleanup), so the lifespan stays on.
    uvicorn.run(application, host="127.0.0.1", port=8000, lifespan="on")
