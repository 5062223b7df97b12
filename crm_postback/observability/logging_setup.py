"""Logging: plain text or one JSON object per line. Messages carry ids and hashes, never PII.

Structured fields are passed with `extra=` (`log.info("...", extra={"request_id": ...})`); the
JSON format writes each of STRUCTURED_FIELDS that a record carries as its own key, and the text
format appends them as `key=value`. Only these names are written, so a library's `extra`
(Celery passes task arguments that way) never reaches the output by accident.

One record is one line in text format too: control characters in the message, its arguments
and the fields (a lead id or a TikTok message with a newline) are written escaped (`\n`,
`\x1b`, `\u2028`), so no value can start a line that reads as a record of its own; a
traceback keeps its lines, each indented.
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


# C0 and C1 controls, DEL, and the two Unicode line breaks: everything str.splitlines() (or a
# terminal) could take as the end of a line or a command.
_ESCAPES: dict[int, str] = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))
} | {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}
# A field value with these is written as a JSON string, so it cannot pose as another field.
_QUOTE_IF = frozenset(' "[]=')


def one_line(text: str) -> str:
    """`text` with every control character escaped: it prints as one line."""
    return text.translate(_ESCAPES)


def _field_value(value: Any) -> str:
    text = str(value)
    if _QUOTE_IF.intersection(text):
        return json.dumps(text, ensure_ascii=False).translate(_ESCAPES)
    return one_line(text)


def _indented(text: str) -> str:
    return "\n".join("  " + one_line(line) for line in text.rstrip("\n").split("\n"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Not the base class's: it would append a traceback cached on the record unescaped.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info:
            text += "\n" + _indented(self.formatException(record.exc_info))
        if record.stack_info:
            text += "\n" + _indented(self.formatStack(record.stack_info))
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = one_line(super().formatMessage(record))
        fields = structured_fields(record)
        if fields:
            line += " [" + " ".join(f"{k}={_field_value(v)}" for k, v in fields.items()) + "]"
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
