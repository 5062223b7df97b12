"""Bearer API keys: who calls, what it may do, and how often.

401 without a known key, 403 for a revoked one or for a route the key has no permission for
(independent of any id, so it tells nothing about what exists), 429 with Retry-After once the
key made more requests than its rate limit allows. Every authenticated request counts one hit.

The dependency is a plain function, so FastAPI runs it in its thread pool: the key lookup
(a database round trip) and the rate-limit hit (a Redis round trip when the counts are
shared) never hold up the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm_postback.commands.authentication import identify_api_key
from crm_postback.configuration.api_keys import (
    READ_POSTBACKS,
    SEND_TRIGGERS,
    WRITE_LEADS,
    Caller,
    KeyRevoked,
)
from crm_postback.core.rate_limits import RateLimit, rate_limit_disabled
from crm_postback.core.settings import get_settings
from crm_postback.web.errors import RequestRejected
from crm_postback.web.shapes import Problem

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer pbk_…`, a key made with `postback api-key create SOURCE`",
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crm-postback"'}
INGEST_RATE_LIMIT = "ingest-key"


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> RequestRejected:
    problem = Problem(pointer=None, field="Authorization", message=message)
    return RequestRejected(status, [problem], _CHALLENGE if status == 401 else headers)


class IngestRateLimits:
    """One `RateLimit` per rate in use (the setting's, and each key's own), parsed once; each
    key counts under its own id. Made again when the storage setting changes (tests)."""

    def __init__(self, storage_url: str) -> None:
        self.storage_url = storage_url
        self._limits: dict[str, RateLimit] = {}
        self._lock = threading.Lock()

    def of(self, rate: str) -> RateLimit:
        limit = self._limits.get(rate)
        if limit is None:
            with self._lock:
                limit = self._limits.get(rate)
                if limit is None:
                    limit = self._limits[rate] = RateLimit(
                        INGEST_RATE_LIMIT, rate, self.storage_url
                    )
        return limit


_state_lock = threading.Lock()


def ingest_rate_limits(request: Request) -> IngestRateLimits:
    """The app's limiters (two apps in one process count apart, unless they share Redis)."""
    storage_url = get_settings().rate_limit_storage_url
    limits: IngestRateLimits | None = getattr(request.app.state, "ingest_rate_limits", None)
    if limits is None or limits.storage_url != storage_url:
        with _state_lock:
            limits = getattr(request.app.state, "ingest_rate_limits", None)
            if limits is None or limits.storage_url != storage_url:
                limits = request.app.state.ingest_rate_limits = IngestRateLimits(storage_url)
    return limits


def _count(request: Request, caller: Caller) -> None:
    rate = caller.rate_limit or get_settings().ingest_key_rate_limit
    if rate_limit_disabled(rate):
        return
    verdict = ingest_rate_limits(request).of(rate).hit(str(caller.key_id))
    if not verdict.allowed:
        seconds = verdict.retry_after_seconds
        raise _refuse(
            429,
            f"this API key made more requests than its rate limit allows; retry in {seconds} s",
            {"Retry-After": str(seconds)},
        )


def authenticated_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    """The key's caller, its request counted against its rate limit."""
    if credentials is None:
        raise _refuse(401, "send an API key: Authorization: Bearer <key>")
    try:
        caller = identify_api_key(credentials.credentials)
    except KeyRevoked:
        raise _refuse(403, "this API key has been revoked") from None
    if caller is None:
        raise _refuse(401, "unknown API key")
    _count(request, caller)
    return caller


def require_permission(permission: str) -> Callable[..., Caller]:
    """A dependency: an authenticated, counted caller whose key has `permission`."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = authenticated_caller(request, credentials)
        if not caller.may(permission):
            raise _refuse(403, f"this API key lacks the {permission} permission")
        return caller

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency


SenderDep = Annotated[Caller, Depends(require_permission(SEND_TRIGGERS))]
LeadWriterDep = Annotated[Caller, Depends(require_permission(WRITE_LEADS))]
HistoryReaderDep = Annotated[Caller, Depends(require_permission(READ_POSTBACKS))]
