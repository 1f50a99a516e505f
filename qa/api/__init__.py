"""The HTTP service: a thin FastAPI layer over :class:`qa.engine.Engine` (see docs/API.md).

Run it with ``qa serve`` or ``python -m uvicorn --factory qa.api:create_app``.
"""

from qa.api.app import create_app, serving_app, worker_app

__all__ = ["create_app", "serving_app", "worker_app"]
