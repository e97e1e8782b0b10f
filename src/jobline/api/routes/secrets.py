"""Secrets over HTTP: a user keeps their own API keys and tokens (seed 003's per-user OAuth
tokens), which calls made for that user's jobs use as ``{{owner_secret:NAME}}``.

A user lists, sets and removes only their own secrets; naming another owner is 403. The service
acts on the operator's secrets, or on a user's with ``?owner=``. A value is write-only: it is
encrypted in this process (which needs JOBLINE_MASTER_KEY to set one) and no route ever returns
it. See docs/howto/secrets.md for where a reference is resolved.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ... import vault
from ...auth import Principal
from ...errors import ConfigError
from ..errors import ApiError
from ..models import ErrorOut, SecretIn, SecretListOut, SecretOut, SecretRemovedOut
from ..security import api_state, principal
from .tasks import AUTH_ERRORS

NamePath = Annotated[str, Path(min_length=1, max_length=200, description="The secret's name: letters, digits, _ . -")]
OwnerQuery = Annotated[str | None, Query(min_length=1, max_length=200,
                                         description="The service: a user's secrets instead of the operator's; "
                                                     "a user: only their own id")]
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such secret of this owner"}}

router = APIRouter(tags=["secrets"])


@router.get("/api/secrets", response_model=None, responses={200: {"model": SecretListOut}, **AUTH_ERRORS})
async def list_secrets(request: Request, caller: Principal = Depends(principal),
                       owner: OwnerQuery = None) -> JSONResponse:
    """The caller's secrets by name (never their values)."""
    listed = await api_state(request).ops.secrets.list(caller, owner=owner)
    return JSONResponse({"secrets": [info.to_dict() for info in listed]})


@router.put("/api/secrets/{name}", response_model=None, responses={
    200: {"model": SecretOut, "description": "Set (created, or its value replaced)"},
    **AUTH_ERRORS, 409: {"model": ErrorOut, "description": f"The user holds {vault.MAX_PER_USER} secrets already"},
    503: {"model": ErrorOut, "description": "This server has no master key"}})
async def set_secret(request: Request, name: NamePath, body: SecretIn, caller: Principal = Depends(principal),
                     owner: OwnerQuery = None) -> JSONResponse:
    """Set the secret ``name`` (replacing its value if it exists)."""
    secrets = api_state(request).ops.secrets
    try:
        secrets.master_keys()
    except ConfigError:
        raise ApiError(503, "vault_unavailable", "this server holds no master key (JOBLINE_MASTER_KEY), so it "
                                                 "cannot store secrets") from None
    info = await secrets.set(caller, name, body.value, owner=owner)
    return JSONResponse(info.to_dict())


@router.delete("/api/secrets/{name}", response_model=None,
               responses={200: {"model": SecretRemovedOut}, **AUTH_ERRORS, **NOT_FOUND})
async def remove_secret(request: Request, name: NamePath, caller: Principal = Depends(principal),
                        owner: OwnerQuery = None) -> JSONResponse:
    """Remove the secret ``name``; calls that reference it then fail, naming it."""
    whose = await api_state(request).ops.secrets.remove(caller, name, owner=owner)
    return JSONResponse({"name": name, "owner": whose, "removed": True})
