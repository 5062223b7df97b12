"""Logging: plain text or one JSON object per line. Messages carry ids and hashes, never PII.

Structured fields are passed with `extra=` (`log.info("...", extra={"request_id": ...})`); the
JSON format writes each of STRUCTURED_FIELDS that a record carries as its own key, and the text
format appends them as `key=value`. Only these names are written, so a library's `extra`
(Celery passes task arguments that way) never reaches the output by accident.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from crm_postback.core.settings import Settings

STRUCTURED_FIELDS = (
    "lead_id",
    "trigger_id",
    "postback_id",
    "event_id",
    "event_set",
    "event_set_id",
    "tiktok_code",
    "http_status",
    "request_id",
    "outcome",
    "status",
    "events",
)


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: getattr(record, name)
        for name in STRUCTURED_FIELDS
        if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **structured_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = structured_fields(record)
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return line


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # urllib3 logs full URLs at DEBUG; keep it quiet so nothing sensitive leaks by accident.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # SQL parameters and result rows hold hashes and event bodies: never in the logs.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
