"""No raw PII or token in any log line, at DEBUG, in JSON, across a whole lifecycle.

A known raw email, phone, TikTok access token and API key go through intake (HTTP and Python
API), delivery to the simulator, a TikTok rejection of one event (a failed event) and a token
error (the event set paused). Everything logged is captured: in-process (caplog, our JSON
handler, the process's stderr) for an eager run on SQLite, and the log files of a real
`celery worker` and a real `postback serve` on PostgreSQL and Redis. None of the raw values may
appear; the structured fields (lead id, event id, event set, TikTok code, request id) must.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from crm_postback.configuration.api_keys import create_key
from crm_postback.configuration.audit import SYSTEM_ACTOR
from crm_postback.configuration.event_set_service import get_event_set, pause, resume
from crm_postback.core.settings import get_settings
from crm_postback.observability.logging_setup import JsonFormatter, configure_logging
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, EventSet, Postback
from models.db import session_scope
from tests.conftest import TOKEN, WorkerProcess, apply_env, free_port, wait_for  # type: ignore[import-not-found]

RAW_EMAIL = "Jane.Secret+Leads@Example.COM"
RAW_PHONE = "(213) 373-4253"
PHONE_FORMS = (RAW_PHONE, "2133734253", "+12133734253", "213 373 4253", "373-4253")
BAD_EMAIL = "john.private@@example"  # rejected: must not be echoed either
BAD_PHONE = "call 213 373 9999 now"
FORBIDDEN_BASE = (RAW_EMAIL, RAW_EMAIL.lower(), *PHONE_FORMS, BAD_EMAIL, "213 373 9999", TOKEN)


def forbidden(api_key: str) -> tuple[str, ...]:
    return (*FORBIDDEN_BASE, api_key)


def assert_clean(text: str, api_key: str, where: str) -> None:
    leaked = [value for value in forbidden(api_key) if value in text]
    assert not leaked, f"{where} logged {leaked}"


def occurred(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def submitted(lead: str) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred(30),
        "match_keys": {"email": RAW_EMAIL, "phone": RAW_PHONE, "ttclid": "E.C.P.nopii"},
    }


def later(kind: str, lead: str, minutes_ago: float) -> dict[str, Any]:
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred(minutes_ago),
        "attributes": {"value": 12.5},
    }


def rejected_items() -> list[dict[str, Any]]:
    return [
        {**submitted("L-BAD-1"), "match_keys": {"email": BAD_EMAIL}},
        {**submitted("L-BAD-2"), "match_keys": {"phone": BAD_PHONE}},
    ]


def poison_next_pending(lead: str) -> None:
    """TikTok will reject this event (40062): its email is not a hash. No PII in it."""
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        row = session.scalars(
            select(Postback).where(Postback.lead_ref == lead, Postback.status == "pending")
        ).one()
        row.payload = {**(row.payload or {}), "user": {"email": ["not-a-sha256-hash"]}}
        session.commit()


def set_paused(paused: bool) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        event_set = get_event_set(session, "acme")
        if paused:
            pause(event_set, "held for the test", actor=SYSTEM_ACTOR)
        else:
            resume(session, event_set, actor=SYSTEM_ACTOR)
        session.commit()


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


@pytest.fixture
def json_debug_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging as a process does it (JSON, DEBUG), into a buffer; pytest's own
    handlers (caplog) stay attached."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    apply_env(monkeypatch, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    configure_logging(get_settings())
    buffer = io.StringIO()
    ours = root.handlers[0]
    assert isinstance(ours, logging.StreamHandler)
    ours.setStream(buffer)
    root.handlers.extend(saved_handlers)
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_in_process_lifecycle_logs_no_pii(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    json_debug_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from crm_postback.api import enqueue_trigger
    from crm_postback.web.app import create_app
    from worker.tasks import sweep_due_postbacks

    caplog.set_level(logging.DEBUG)
    make_event_set()  # its token is TOKEN, sealed at rest
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        api_key = create_key(session, "router").key
        session.commit()

    with TestClient(create_app()) as client:
        headers = {"Authorization": f"Bearer {api_key}"}
        answer = client.post(
            "/v1/triggers?strict=true", json=[submitted("L-1"), *rejected_items()], headers=headers
        )
        assert answer.status_code == 202, answer.text
        assert [i["status"] for i in answer.json()["items"]] == ["accepted", "rejected", "rejected"]
        # Not strict: the bad keys are dropped with a warning (no key left: the triggers wait).
        lenient = client.post("/v1/triggers", json=rejected_items(), headers=headers)
        assert [len(i["warnings"]) for i in lenient.json()["items"]] == [1, 1]
        put = client.put(
            "/v1/leads/L-1", json={"match_keys": {"phone": RAW_PHONE}}, headers=headers
        )
        assert put.status_code == 200
        assert client.get("/v1/leads/L-1/postbacks", headers=headers).status_code == 200
        assert client.get("/metrics").status_code == 200
    enqueue_trigger(submitted("L-2"))  # the Python API too

    set_paused(True)  # a failed event: TikTok rejects what we send
    enqueue_trigger(later("lead.sold", "L-1", 20))
    poison_next_pending("L-1")
    set_paused(False)
    sweep_due_postbacks()

    simulator.set_faults(auth_error_rate=1.0)  # a token error pauses the event set
    enqueue_trigger(later("lead.sold", "L-2", 10))
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        statuses = dict(session.execute(select(Postback.id, Postback.status)).all())
        event_set = session.scalars(select(EventSet)).one()
    assert sorted(statuses.values()) == ["delivered", "delivered", "failed", "pending"]
    assert event_set.status == "paused"

    records = caplog.records
    formatter = JsonFormatter()
    formatted = "\n".join(formatter.format(record) for record in records)
    captured = capfd.readouterr()
    for where, text in (
        ("the JSON handler", json_debug_logs.getvalue()),
        ("caplog", caplog.text),
        ("a record, formatted", formatted),
        ("stderr", captured.err),
        ("stdout", captured.out),
    ):
        assert_clean(text, api_key, where)

    lines = json_lines(json_debug_logs.getvalue())
    assert lines, "nothing was logged at all"
    failure = next(x for x in lines if x.get("tiktok_code") == 40062 and "lead_id" in x)
    assert failure["lead_id"] == "L-1" and len(failure["event_id"]) == 40
    assert failure["event_set"] == "acme" and failure["request_id"]
    assert any(line.get("request_id") and line.get("outcome") == "delivered" for line in lines)
    assert any("pausing event set" in line["message"] for line in lines)
    assert any(line.get("lead_id") == "L-2" and line.get("trigger_id") for line in lines)


# --- real processes -----------------------------------------------------------------------


class ServeProcess:
    def __init__(self, env: dict[str, str], log_path: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crm_postback.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"postback serve did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def postback_statuses(lead: str) -> list[str]:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        return list(
            session.scalars(
                select(Postback.status).where(Postback.lead_ref == lead).order_by(Postback.id)
            )
        )


@pytest.mark.integration
def test_real_worker_and_web_processes_log_no_pii(
    start_worker: Callable[..., WorkerProcess],
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_event_set()
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        api_key = create_key(session, "router").key
        session.commit()
    apply_env(monkeypatch, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    worker = start_worker(METRICS_PORT=str(free_port()))
    web = ServeProcess(dict(os.environ), isolated_settings / "serve.log", free_port())
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        answer = requests.post(
            web.url + "/v1/triggers",
            json=[submitted("L-1"), *rejected_items()],
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        wait_for(lambda: postback_statuses("L-1") == ["delivered"], "the first delivery")
        assert (
            requests.put(
                web.url + "/v1/leads/L-1",
                json={"match_keys": {"phone": RAW_PHONE, "email": RAW_EMAIL}},
                headers=headers,
                timeout=10,
            ).status_code
            == 200
        )

        set_paused(True)  # the next event is built, held, poisoned, then sent: 40062
        requests.post(
            web.url + "/v1/triggers",
            json=later("lead.sold", "L-1", 20),
            headers=headers,
            timeout=10,
        ).raise_for_status()
        wait_for(lambda: "pending" in postback_statuses("L-1"), "the held event")
        poison_next_pending("L-1")
        set_paused(False)
        wait_for(lambda: postback_statuses("L-1") == ["delivered", "failed"], "the rejection")

        simulator.set_faults(auth_error_rate=1.0)
        requests.post(
            web.url + "/v1/triggers",
            json=later("lead.sold", "L-1", 10),
            headers=headers,
            timeout=10,
        ).raise_for_status()

        def paused() -> bool:
            with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
                return session.scalar(select(EventSet.status)) == "paused"

        wait_for(paused, "the token error to pause the event set")
        requests.get(web.url + "/v1/leads/L-1/postbacks", headers=headers, timeout=10)
        requests.get(web.url + "/metrics", timeout=10)
    finally:
        web.stop()
        worker.stop()

    worker_log, web_log = worker.log(), web.log()
    assert_clean(worker_log, api_key, "the worker")
    assert_clean(web_log, api_key, "postback serve")
    assert "Traceback" not in worker_log and "Traceback" not in web_log

    worker_lines = json_lines(worker_log)
    failure = next(x for x in worker_lines if x.get("tiktok_code") == 40062 and "lead_id" in x)
    assert failure["lead_id"] == "L-1" and failure["event_id"] and failure["request_id"]
    assert any(
        line.get("request_id") and line.get("outcome") == "delivered" for line in worker_lines
    )
    assert any("pausing event set" in line["message"] for line in worker_lines)
    assert any(line.get("logger") == "crm_postback.api" for line in json_lines(web_log))
    with session_scope(
        workspace=DEFAULT_WORKSPACE_ID
    ) as session:  # the poisoned row is the only failure
        session.execute(update(EventSet).values(status="active"))
        session.commit()
