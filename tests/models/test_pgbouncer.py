"""The service behind a real PgBouncer in transaction mode (DATABASE_POOLER=transaction).

A PgBouncer of the test's own (tests/conftest.py's `PgBouncer`, as the `through_pgbouncer`
tests' session one; a free port, its config and auth file in the test's tmp dir,
`default_pool_size = 2`, both opened at once and handed out in turn) sits between the service
and the shared PostgreSQL, so every server connection is shared by many client connections:
the intake's (threads of this process) and the workers' (a real `celery worker` subprocess).
Hundreds of triggers make each statement run well over psycopg's `prepare_threshold` (5) times
on one client connection.

With the setting, every event arrives. Without it, the same run fails with `prepared statement
"_pg3_N" does not exist` (or `... already exists`, or `bind message supplies 2 parameters, but
prepared statement "_pg3_0" requires 10`: another client's statement): the test can fail.
PgBouncer 1.21 and later can track protocol-level prepared statements
(`max_prepared_statements`); the test's PgBouncer sets it to 0 when it knows the option, so
both tests model a pooler that does not.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, make_url, select

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import Trigger, TriggerStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import (  # type: ignore[import-not-found]
    PgBouncer,
    WorkerProcess,
    apply_env,
    free_port,
    pgbouncer_binary,
    require_service,
    trigger_body,
    wait_for,
)

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]
THREADS = 8
TRIGGERS_PER_THREAD = 40  # 320 in all
# `... does not exist`, `... already exists`, or another client's statement of that name:
# `bind message supplies 2 parameters, but prepared statement "_pg3_0" requires 10`.
PREPARED_STATEMENT_ERROR = re.compile(r'prepared statement "_pg3_\d+"')


@pytest.fixture
def pgbouncer_url(pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test database's URL through a PgBouncer in transaction mode. Request it before
    `start_worker`, so the workers stop before it does."""
    require_service("pgbouncer", pgbouncer_binary)
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    server = make_url(pg_db)
    bouncer = PgBouncer(
        pgbouncer_binary(),
        folder,
        free_port(),
        server_host=server.host or "127.0.0.1",
        server_port=server.port or 5432,
        pool_size=2,
        # Without it, an idle pooler hands one client its last server connection again, and
        # whether a prepared statement meets the other one depends on the run's timing.
        rotate_servers=True,
    )
    try:
        bouncer.wait_listening()
        yield bouncer.url(pg_db)
    finally:
        # pg_db cleans up on the server itself, without the pooler.
        apply_env(monkeypatch, DATABASE_URL=pg_db, DATABASE_POOLER="none")
        bouncer.stop()


def _send_from_threads(prefix: str) -> list[BaseException]:
    """THREADS threads each enqueue TRIGGERS_PER_THREAD triggers; the errors they met."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send(thread: int) -> None:
        for number in range(TRIGGERS_PER_THREAD):
            lead = f"{prefix}-{thread}-{number}"
            body = trigger_body(
                "lead.submitted", lead, match_keys={"email": f"{lead.lower()}@example.org"}
            )
            try:
                enqueue_trigger(body)
            except Exception as error:
                with lock:
                    errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def _trigger_counts() -> dict[str, int]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows: Any = session.execute(
            select(Trigger.status, func.count()).group_by(Trigger.status)
        ).all()
    return {str(status): count for status, count in rows}


def _send_through_pgbouncer(
    pgbouncer_url: str,
    pooler: str,
    prefix: str,
    start_worker: StartWorker,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Any, list[BaseException]]:
    """A real worker and intake threads, all through PgBouncer with DATABASE_POOLER=`pooler`:
    the worker and the errors the threads met."""
    apply_env(monkeypatch, DATABASE_URL=pgbouncer_url, DATABASE_POOLER=pooler)
    make_event_set()
    worker = start_worker()
    return worker, _send_from_threads(prefix)


def test_every_event_arrives_through_pgbouncer_with_the_setting(
    pgbouncer_url: str,
    start_worker: StartWorker,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, errors = _send_through_pgbouncer(
        pgbouncer_url, "transaction", "PGB", start_worker, make_event_set, monkeypatch
    )

    assert errors == []
    total = THREADS * TRIGGERS_PER_THREAD
    simulator.wait_for_events(total, timeout=90)
    assert simulator.stats()["events_unique"] == total
    wait_for(
        lambda: _trigger_counts() == {str(TriggerStatus.RESOLVED): total},
        what="every trigger processed",
        timeout=30,
    )
    assert not PREPARED_STATEMENT_ERROR.search(worker.log())
    assert "Traceback" not in worker.log()


def test_without_the_setting_pgbouncer_loses_prepared_statements(
    pgbouncer_url: str,
    start_worker: StartWorker,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run above, with DATABASE_POOLER left at `none`: proves that test can fail."""
    worker, errors = _send_through_pgbouncer(
        pgbouncer_url, "none", "NOPGB", start_worker, make_event_set, monkeypatch
    )

    def failed_on_prepared_statements() -> bool:
        return any(PREPARED_STATEMENT_ERROR.search(str(e)) for e in errors) or bool(
            PREPARED_STATEMENT_ERROR.search(worker.log())
        )

    deadline = time.monotonic() + 30
    while not failed_on_prepared_statements() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert failed_on_prepared_statements(), (
        f"no prepared-statement error; intake errors: {errors[:3]}; worker log tail:\n"
        f"{worker.log()[-2000:]}"
    )


@pytest.mark.parametrize("one_shot", [False, True], ids=["pooled", "one-shot"])
@pytest.mark.parametrize(("pooler", "threshold"), [("transaction", None), ("none", 5)])
def test_the_setting_turns_off_server_side_prepare_on_every_engine(
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    one_shot: bool,
    pooler: str,
    threshold: int | None,
) -> None:
    """`build_engine` makes the service's engine and the migrations' (`one_shot`)."""
    from models.db import build_engine

    apply_env(monkeypatch, DATABASE_POOLER=pooler)
    engine = build_engine(postgres_url, one_shot=one_shot)
    try:
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert getattr(driver, "prepare_threshold", "missing") == threshold
    finally:
        engine.dispose()
