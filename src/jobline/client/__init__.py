"""The HTTP client of remote workers (Client) and the worker loop built on it (RemoteWorker)."""

from ..errors import RateLimited
from .client import ClaimedTask, Client

__all__ = ["ClaimedTask", "Client", "RateLimited"]
