"""A database error names its SQL, never the values bound to it: not in the exception's text,
not in a log line, not in the HTTP answer. On both backends, the database itself refuses every
new lead row (a trigger raising an error), and a trigger with raw match keys is sent through
the Python API and over HTTP."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from crm_postback.api import enqueue_trigger
from crm_postback.configuration.api_keys import create_key
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID
from models.db import get_engine, session_scope
from tests.conftest import app_in_thread  # type: ignore[import-not-found]

LEAD_ID = "L-hidden-4711"
RAW = (LEAD_ID, "E.C.P.hidden-click", "198.51.100.23", "HiddenAgent/1.0", "hidden@example.org")
REFUSAL = "refused by the test"

SQLITE_TRIGGER = (
    "CREATE TRIGGER refuse_leads BEFORE INSERT ON leads "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
)
PG_TRIGGER = (
    "CREATE FUNCTION refuse_leads() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$",
    "CREATE TRIGGER refuse_leads BEFORE INSERT ON leads "
    "FOR EACH ROW EXECUTE FUNCTION refuse_leads()",
)
PG_CLEANUP = (
    "DROP TRIGGER IF EXISTS refuse_leads ON leads",
    "DROP FUNCTION IF EXISTS refuse_leads",
)


@pytest.fixture(params=["sqlite_db", "pg_db"])
def refusing_database(
    request: pytest.FixtureRequest, make_event_set: Callable[..., int]
) -> Iterator[str]:
    request.getfixturevalue(request.param)
    make_event_set()
    engine = get_engine()
    statements = PG_TRIGGER if engine.dialect.name == "postgresql" else (SQLITE_TRIGGER,)
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    yield engine.dialect.name
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for statement in PG_CLEANUP:
                connection.exec_driver_sql(statement)


def submitted() -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": LEAD_ID,
        "event_set": "acme",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "match_keys": {
            "ttclid": RAW[1],
            "ip": RAW[2],
            "user_agent": RAW[3],
            "email": RAW[4],
        },
    }


def assert_no_value(text: str) -> None:
    assert REFUSAL in text  # the error seen is the one provoked
    for raw in RAW:
        assert raw not in text


def test_python_api_error_text_and_logs_hold_no_value(
    refusing_database: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DBAPIError) as raised:
        enqueue_trigger(submitted())
    error = raised.value
    written = capfd.readouterr()
    assert_no_value(
        "\n".join(
            [
                str(error),
                repr(error),
                "".join(traceback.format_exception(error)),
                caplog.text,
                written.out,
                written.err,
            ]
        )
    )


def test_http_answer_and_server_log_hold_no_value(
    refusing_database: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        key = create_key(session, "router").key
        session.commit()
    with app_in_thread(create_app()) as url:
        answer = httpx.post(
            f"{url}/v1/triggers", json=submitted(), headers={"Authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 500
    written = capfd.readouterr()
    for raw in RAW:
        assert raw not in answer.text
    # The server logged the error (unhandled, with its traceback), without the values.
    assert_no_value("\n".join([caplog.text, written.out, written.err]))


def test_every_engine_in_the_code_hides_parameters() -> None:
    """The standing defence: any `create_engine(...)` outside the tests passes
    `hide_parameters=True` (the project's own go through `models.db.build_engine`)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    calls = []
    for package in ("crm_postback", "worker", "models", "mappings", "bench", "chaos"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ("create_engine", "engine_from_config", "create_async_engine"):
                    hidden = any(
                        k.arg == "hide_parameters"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is True
                        for k in node.keywords
                    )
                    calls.append((f"{path.relative_to(root)}:{node.lineno}", hidden))
    assert len(calls) >= 3  # models/db.py (two), bench/naive.py
    assert [where for where, hidden in calls if not hidden] == []
