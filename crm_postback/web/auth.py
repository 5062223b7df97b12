"""Bearer API keys: 401 without a known key, 403 for a revoked one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm_postback.commands.authentication import identify_api_key
from crm_postback.configuration.api_keys import Caller, KeyRevoked
from crm_postback.web.errors import RequestRejected
from crm_postback.web.shapes import Problem

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer pbk_…`, a key made with `postback api-key create NAME`",
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crm-postback"'}


def _refuse(status: int, message: str) -> RequestRejected:
    problem = Problem(pointer=None, field="Authorization", message=message)
    return RequestRejected(status, [problem], _CHALLENGE if status == 401 else None)


def require_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None:
        raise _refuse(401, "send an API key: Authorization: Bearer <key>")
    try:
        caller = identify_api_key(credentials.credentials)
    except KeyRevoked:
        raise _refuse(403, "this API key has been revoked") from None
    if caller is None:
        raise _refuse(401, "unknown API key")
    return caller


CallerDep = Annotated[Caller, Depends(require_caller)]
