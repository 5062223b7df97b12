"""Liveness (the process answers) and readiness (the database and the broker answer)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from crm_postback.web.shapes import Health, Readiness
from models.db import get_engine

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


def _database() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))


def _broker() -> None:
    from worker.app import app as celery_app

    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)


def _check(probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception as error:
        # The type only: messages can carry URLs with passwords.
        log.warning("readiness: %s failed (%s)", probe.__name__, type(error).__name__)
        return f"error: {type(error).__name__}"
    return "ok"


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the broker are reachable",
    responses={503: {"model": Readiness, "description": "One of them is not"}},
)
async def readyz() -> JSONResponse:
    checks = {
        "database": await run_in_threadpool(_check, _database),
        "broker": await run_in_threadpool(_check, _broker),
    }
    ready = all(v == "ok" for v in checks.values())
    answer = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(answer.model_dump(), status_code=200 if ready else 503)
