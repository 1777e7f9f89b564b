"""``python -m django_app`` (from the ``examples`` folder): serve the example on http://127.0.0.1:8000."""

from __future__ import annotations

import uvicorn

from .asgi import application

if __name__ == "__main__":
    # Django speaks no lifespan protocol: "off" spares the log line saying so; the store opens on first use.
    uvicorn.run(application, host="127.0.0.1", port=8000, lifespan="off")
