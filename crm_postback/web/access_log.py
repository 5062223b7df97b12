"""The server's access log names routes, never the values in them.

uvicorn writes each request's path and query string to the `uvicorn.access` logger. A lead id
is in the path of /v1/leads/<id>... and a query string can hold anything a caller typed; both
may be personal data. This filter rewrites each record before any handler formats it: the
lead id becomes `<redacted>`, a query string `?<redacted>`, and so does any other segment
shaped like an email address or a phone number.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from crm_postback.core.privacy import looks_like_email, looks_like_phone
from crm_postback.core.settings import get_settings

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "<redacted>"
_LEADS = "/v1/leads/"
_POSTBACKS = "/postbacks"
_PATH_ARGUMENT = 2  # uvicorn's arguments: client, method, path with query, HTTP version, status


def redact_target(target: str) -> str:
    """A request target as it may be logged: no lead id, no query string, and no segment
    shaped like an email address or a phone number on any other path (a mistyped route)."""
    path, question, _ = target.partition("?")
    if path.startswith(_LEADS):
        # A lead id may hold "/" (sent as %2F); ".../postbacks" is the history route.
        suffix = _POSTBACKS if path[len(_LEADS) :].endswith(_POSTBACKS) else ""
        path = _LEADS + REDACTED + suffix
    else:
        region = get_settings().default_phone_region
        path = "/".join(
            REDACTED
            if looks_like_email(unquote(segment)) or looks_like_phone(unquote(segment), region)
            else segment
            for segment in path.split("/")
        )
    return path + ("?" + REDACTED if question else "")


class RedactTargets(logging.Filter):
    """Rewrites the path argument of uvicorn's access records (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > _PATH_ARGUMENT:
            target = args[_PATH_ARGUMENT]
            if isinstance(target, str):
                redacted = redact_target(target)
                if redacted != target:
                    record.args = (*args[:_PATH_ARGUMENT], redacted, *args[_PATH_ARGUMENT + 1 :])
        return True


def install_access_log_filter() -> None:
    """Once per process, however many apps are created."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactTargets) for existing in logger.filters):
        logger.addFilter(RedactTargets())
