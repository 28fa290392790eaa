"""The safetext HTTP service (``safetext serve``): FastAPI app, auth and size guards, bounded queue."""

from safetext.service.admission import GenerationPool, Overloaded, QueueState
from safetext.service.app import create_app
from safetext.service.guards import TOKEN_ENV, load_token
from safetext.service.limits import ServiceLimits
from safetext.service.server import BackgroundServer

__all__ = [
    "BackgroundServer",
    "GenerationPool",
    "Overloaded",
    "QueueState",
    "ServiceLimits",
    "TOKEN_ENV",
    "create_app",
    "load_token",
]
