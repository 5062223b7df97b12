"""The baseline: postbacks the way the lead platform's postback page shows them.

One Celery task per trigger, carrying the whole postback as JSON (raw email and phone
included: that is how this design works, and it only ever touches the bench's own database
and Redis queue). The task does one SQL statement (lead.submitted inserts the lead row, later
triggers look it up by lead id), hashes what needs hashing and POSTs one event in one request
with `requests`. Same delivery settings as the product's app: JSON, acks_late, prefetch 1,
reject on worker loss. It is given every advantage the product has that does not change the
design: a pooled keep-alive HTTP session and a pooled database connection per process.

Configured from the environment (BENCH_NAIVE_*), so the worker and the harness agree.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from typing import Any

import requests
from celery import Celery, Task
from celery.signals import setup_logging, worker_process_init
from sqlalchemy import Engine, create_engine, text

from crm_postback.core.privacy import hash_email, hash_phone

TRACK_PATH = "/open_api/v1.3/event/track/"
TIMEOUT = (3.05, 10.0)

SCHEMA = """
CREATE TABLE IF NOT EXISTS naive_leads (
    lead_id text PRIMARY KEY,
    email_sha256 text,
    phone_sha256 text,
    ttclid text,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT_LEAD = text(
    "INSERT INTO naive_leads (lead_id, email_sha256, phone_sha256, ttclid) "
    "VALUES (:lead_id, :email, :phone, :ttclid) "
    "ON CONFLICT (lead_id) DO UPDATE SET email_sha256 = excluded.email_sha256, "
    "phone_sha256 = excluded.phone_sha256, ttclid = excluded.ttclid "
    "RETURNING email_sha256, phone_sha256, ttclid"
)
SELECT_LEAD = text(
    "SELECT email_sha256, phone_sha256, ttclid FROM naive_leads WHERE lead_id = :lead_id"
)

app = Celery("bench_naive")


def configure(broker_url: str, queue: str) -> None:
    app.conf.update(
        broker_url=broker_url,
        task_default_queue=queue,
        broker_transport_options={"visibility_timeout": 900},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=120,
        task_soft_time_limit=100,
        worker_hijack_root_logger=False,
    )


configure(
    os.environ.get("BENCH_NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("BENCH_NAIVE_QUEUE", "bench-naive"),
)


@setup_logging.connect
def _logging(**_: Any) -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))


@lru_cache(maxsize=1)
def _postbacks() -> dict[str, dict[str, Any]]:
    """Per postback: event_source_id, access_token, lead_event_source, events by trigger."""
    loaded: dict[str, dict[str, Any]] = json.loads(os.environ.get("BENCH_NAIVE_POSTBACKS", "{}"))
    return loaded


@lru_cache(maxsize=1)
def _engine() -> Engine:
    # hide_parameters: like the project's engines, no bound value in an error or a log line.
    return create_engine(
        os.environ["BENCH_NAIVE_DATABASE_URL"], pool_size=1, max_overflow=1, hide_parameters=True
    )


@lru_cache(maxsize=1)
def _http() -> requests.Session:
    return requests.Session()


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    _engine.cache_clear()
    _http.cache_clear()


def create_schema(database_url: str) -> None:
    engine = create_engine(database_url, hide_parameters=True)
    with engine.begin() as connection:
        connection.execute(text(SCHEMA))
    engine.dispose()


def _lead(postback: dict[str, Any]) -> Any:
    """The one statement per postback: store the lead on submission, else look it up."""
    with _engine().begin() as connection:
        if postback["trigger"] == "lead.submitted":
            return connection.execute(
                INSERT_LEAD,
                {
                    "lead_id": postback["lead_id"],
                    "email": hash_email(postback["email"]) if postback.get("email") else None,
                    "phone": hash_phone(postback["mobile"], "US")
                    if postback.get("mobile")
                    else None,
                    "ttclid": postback.get("ttclid"),
                },
            ).one()
        return connection.execute(SELECT_LEAD, {"lead_id": postback["lead_id"]}).one_or_none()


def build_body(postback: dict[str, Any], config: dict[str, Any], lead: Any) -> dict[str, Any]:
    user: dict[str, Any] = {}
    if lead.email_sha256:
        user["email"] = [lead.email_sha256]
    if lead.phone_sha256:
        user["phone"] = [lead.phone_sha256]
    if lead.ttclid:
        user["ttclid"] = lead.ttclid
    event: dict[str, Any] = {
        "event": config["events"][postback["trigger"]],
        "event_time": postback["utc_timestamp"],
        "event_id": postback["transaction_id"],
        "user": user,
    }
    if postback.get("revenue") is not None:
        event["properties"] = {"value": postback["revenue"], "currency": postback["currency"]}
        if postback.get("offer_id"):
            event["properties"].update(order_id=postback["offer_id"], content_type="product")
    return {
        "event_source": "crm",
        "event_source_id": config["event_source_id"],
        "data": [event],
    }


@app.task(name="naive.fire_postback", bind=True, acks_late=True, max_retries=30)
def fire_postback(self: Task, postback: dict[str, Any]) -> str:
    config = _postbacks()[postback["postback"]]
    lead = _lead(postback)
    if lead is None:  # the lead's submission has not been processed yet
        raise self.retry(countdown=1)
    response = _http().post(
        os.environ["BENCH_NAIVE_API_BASE_URL"].rstrip("/") + TRACK_PATH,
        json=build_body(postback, config, lead),
        headers={"Access-Token": config["access_token"]},
        timeout=TIMEOUT,
    )
    code = response.json().get("code") if response.ok else None
    if code != 0:
        raise self.retry(countdown=5)
    return str(postback["transaction_id"])
