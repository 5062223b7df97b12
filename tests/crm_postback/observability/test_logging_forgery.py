"""A log record is one physical line in text format, whatever its message, args and fields hold.

A lead id or a TikTok message with a newline must not start a line of its own (a forged
`... CRITICAL crm_postback.admin: ...` entry), so the text formatter escapes control characters.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from crm_postback.core.settings import get_settings
from crm_postback.observability.logging_setup import TextFormatter, configure_logging
from tests.conftest import apply_env  # type: ignore[import-not-found]

FORGED = "\n2026-01-01 00:00:00,000 CRITICAL crm_postback.admin: admin password reset"
# Every character str.splitlines() breaks on, and other C0/C1 controls.
BREAKERS = "\n\r\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00\x1b[31m\x07\x7f\x9b\t"


@pytest.fixture
def text_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The process's logging as `configure_logging` sets it up, writing to a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    apply_env(monkeypatch, LOG_FORMAT="text", LOG_LEVEL="DEBUG")
    configure_logging(get_settings())
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_a_forged_line_in_the_message_args_and_fields_stays_on_one_line(
    text_log: io.StringIO,
) -> None:
    log = logging.getLogger("crm_postback.worker.delivery")
    log.warning(
        "postback %s failed: TikTok said %s" + FORGED,
        "L-1" + FORGED,
        "bad value" + BREAKERS,
        extra={"lead_id": "L-1" + FORGED, "request_id": "r" + BREAKERS, "events": 3},
    )
    output = text_log.getvalue()
    assert output.endswith("\n")
    [line] = output.splitlines()
    assert "CRITICAL" in line  # kept, but as text inside the one line
    assert line.split(" ", 3)[2] == "WARNING"
    for character in BREAKERS:
        if not character.isprintable():
            assert character not in line, repr(character)
    assert "\\n2026-01-01" in line and "\\u2028" in line and "\\x1b" in line
    assert "events=3" in line


def test_a_forged_line_in_an_exception_cannot_start_a_line_of_its_own(
    text_log: io.StringIO,
) -> None:
    log = logging.getLogger("crm_postback.worker.delivery")
    try:
        raise ValueError("TikTok answered" + FORGED + "\r\u2028x")
    except ValueError:
        log.exception("could not record a batch")
    output = text_log.getvalue()
    lines = output.splitlines()
    assert lines[0].endswith("could not record a batch")
    # The traceback keeps its lines, each indented, so none starts like a record of its own;
    # only \n breaks them (splitlines() finds no other breaker).
    assert len(lines) > 2 and lines == output.rstrip("\n").split("\n")
    assert all(line.startswith("  ") for line in lines[1:])
    assert "\\r\\u2028x" in output


def test_plain_messages_are_unchanged() -> None:
    record = logging.LogRecord(
        "crm_postback.api", logging.INFO, __file__, 1, "stored %d trigger(s)", (3,), None
    )
    record.event_set = "acme"
    line = TextFormatter().format(record)
    assert line.endswith("INFO crm_postback.api: stored 3 trigger(s) [event_set=acme]")


def test_a_field_cannot_pose_as_another_field() -> None:
    record = logging.LogRecord("crm_postback.api", logging.INFO, __file__, 1, "m", (), None)
    record.lead_id = "L-1] [status=delivered"
    line = TextFormatter().format(record)
    assert line.endswith(f"[lead_id={json.dumps('L-1] [status=delivered')}]")
