"""The HTTP API (`jobline serve`): see docs/reference/http.md.

>>> from jobline import App
>>> from jobline.api import create_app
>>> server = create_app(App())   # an ASGI application; `jobline serve` runs it under uvicorn
"""

from .app import create_app, uvicorn_options

__all__ = ["create_app", "uvicorn_options"]
