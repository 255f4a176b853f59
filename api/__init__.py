"""The HTTP API (FastAPI), versioned under ``/api/v1``: ``create_app(settings, store)``.

Thin routes over :mod:`nas` (jobs run in a runner process, never in a request handler),
token auth with scopes for anything that writes, pagination everywhere, and one place that
maps errors to 4xx responses whose message says what to fix.
"""

from .app import create_app
from .settings import Settings

__all__ = ["create_app", "Settings"]
