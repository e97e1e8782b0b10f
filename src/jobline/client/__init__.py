"""The HTTP client of remote workers (Client) and the worker loop built on it (RemoteWorker)."""

from .client import Client

__all__ = ["Client"]
