"""A real `postback serve` process through real PostgreSQL crashes (issue 16, item 5: "web,
workers and beat reconnect by themselves"): the chaos suite covers workers and beat, this
covers the web.

On a private cluster (chaos.services.PrivateCluster): a trigger is accepted (202); the
postmaster is SIGKILLed and a trigger sent while it is down is refused with the service's own
JSON error, which echoes nothing sent; after crash recovery the same web process (same PID,
never restarted) accepts triggers again within a few seconds. The same for a fast restart
(`pg_ctl -m fast stop`, start), and for a crash and recovery between two requests (the pool
then still holds the dead connections). Through a private PgBouncer (DATABASE_POOLER=transaction),
the same for a SIGKILL and restart of PgBouncer, and for the postmaster's crash and fast
restart behind it. At the end every trigger answered 202 is stored exactly once, and none of
those refused is stored (~12 s for both tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from chaos.services import (
    PrivateCluster,
    PrivatePgBouncer,
    ServiceUnavailable,
    pgbouncer_binary,
    postgres_bindir,
)
from tests.conftest import (  # type: ignore[import-not-found]
    apply_env,
    free_port,
    trigger_body,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

DATABASE = "postback"
RECOVERY_SECONDS = 10.0  # "within a few seconds": the web's pool pings an idle connection


def _unavailable(error: Exception | str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{error}; CI=true requires it")
    pytest.skip(str(error))


@pytest.fixture
def cluster(server_dir: Path) -> Iterator[PrivateCluster]:
    try:
        postgres_bindir()
    except ServiceUnavailable as error:
        _unavailable(error)
    cluster = PrivateCluster(server_dir / "postgres", server_dir / "postgres.log")
    try:
        yield cluster
    finally:
        cluster.cleanup()


@dataclass
class Web:
    """A `postback serve` subprocess and the answers it gave."""

    process: subprocess.Popen[bytes]
    url: str
    key: str
    log: Path
    accepted: list[str] = field(default_factory=list)  # idempotency keys answered 202
    refused: list[str] = field(default_factory=list)  # idempotency keys never answered 202
    outage_answers: list[tuple[int, str, str]] = field(default_factory=list)
    recoveries: dict[str, float] = field(default_factory=dict)

    def post(self, n: int) -> requests.Response:
        body = trigger_body(
            "lead.submitted",
            f"L-WEB-{n}",
            idempotency_key=f"web-{n}",
            match_keys={"email": f"crash-{n}@example.com"},
        )
        return requests.post(
            f"{self.url}/v1/triggers",
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=15,
        )

    def accept(self, n: int) -> None:
        answer = self.post(n)
        assert answer.status_code == 202, (answer.status_code, answer.text, self.tail())
        assert answer.json()["accepted"] == 1
        self.accepted.append(f"web-{n}")

    def refuse_while_down(self, n: int) -> None:
        """The database is down: 503 with Retry-After (retrying is safe), a JSON error of the
        service's own, nothing sent echoed back."""
        answer = self.post(n)
        assert answer.status_code == 503, (answer.status_code, answer.text)
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"].startswith("application/json"), answer.text
        errors = answer.json()["errors"]
        assert errors and all(e["message"] for e in errors), answer.text
        for sent in (f"crash-{n}", f"L-WEB-{n}", f"web-{n}", self.key):
            assert sent not in answer.text
        self.outage_answers.append(
            (answer.status_code, answer.headers["content-type"], answer.text)
        )
        self.refused.append(f"web-{n}")

    def recover(self, n: int, what: str) -> None:
        """Retries the same trigger (same idempotency key, as a client would) until 202."""
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < RECOVERY_SECONDS:
            assert self.alive(), f"postback serve exited after {what}:\n{self.tail()}"
            try:
                answer = self.post(n)
                if answer.status_code == 202:
                    self.recoveries[what] = time.monotonic() - started
                    self.accepted.append(f"web-{n}")
                    return
                last = f"{answer.status_code} {answer.text}"
            except requests.RequestException as error:
                last = repr(error)
            time.sleep(0.2)
        raise AssertionError(
            f"no 202 within {RECOVERY_SECONDS:.0f} s after {what} (last: {last}):\n{self.tail()}"
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def start_web(tmp_path: Path, isolated_settings: Path) -> Iterator[Callable[..., Web]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(database_url: str, key: str, **env: str) -> Web:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_postback.cli", "serve", "--port", str(port)],
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                # memory:// is per process; the web only needs to store and answer 202.
                "BROKER_URL": "filesystem://",
                "POSTBACK_DATA_DIR": str(isolated_settings),
                **env,
            },
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        web = Web(process, f"http://127.0.0.1:{port}", key, log)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{web.url}/healthz", timeout=1).ok:
                    return web
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"postback serve did not start:\n{web.tail()}")
            time.sleep(0.1)

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _prepare(
    cluster: PrivateCluster, monkeypatch: pytest.MonkeyPatch, make_event_set: Callable[..., int]
) -> tuple[str, str]:
    """The cluster started, its database migrated, an event set and an API key in it;
    returns (the database's SQLAlchemy URL on the cluster, the API key)."""
    from crm_postback.commands.manage_api_keys import CreateApiKey, create_api_key
    from crm_postback.commands.unit_of_work import Actor
    from models.db import reset_engine
    from models.migrate import upgrade

    cluster.init()
    assert cluster.start() == "first start"
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/{DATABASE}"
    upgrade(url)
    apply_env(monkeypatch, DATABASE_URL=url)
    make_event_set()
    key = create_api_key(CreateApiKey("crash-router"), Actor.cli()).key
    reset_engine()  # this process keeps no connection to the cluster
    return url, key


def _stored(cluster: PrivateCluster) -> dict[str, int]:
    with psycopg.connect(cluster.admin_url.rsplit("/", 1)[0] + f"/{DATABASE}") as conn:
        rows = conn.execute(
            "SELECT idempotency_key, count(*) FROM triggers GROUP BY idempotency_key"
        ).fetchall()
    return {str(key): int(count) for key, count in rows}


def _check_nothing_lost(cluster: PrivateCluster, web: Web) -> None:
    stored = _stored(cluster)
    assert len(set(web.accepted)) == len(web.accepted)
    assert {key: stored.get(key, 0) for key in web.accepted} == dict.fromkeys(web.accepted, 1)
    assert not set(web.refused) & set(stored), "a trigger answered with an error was stored"
    assert set(stored) == set(web.accepted)


@pytest.mark.timeout(90)
def test_a_web_process_reconnects_after_postgresql_crashes_and_restarts(
    cluster: PrivateCluster,
    monkeypatch: pytest.MonkeyPatch,
    make_event_set: Callable[..., int],
    start_web: Callable[..., Web],
) -> None:
    url, key = _prepare(cluster, monkeypatch, make_event_set)
    web = start_web(url, key)
    pid = web.process.pid
    web.accept(1)
    web.accept(2)

    children, _ = cluster.crash()  # SIGKILL of the postmaster
    assert children >= 1 and not cluster.running
    assert cluster.record.children_killed_by_us == 0
    web.refuse_while_down(3)
    web.refuse_while_down(4)
    assert web.alive()
    assert cluster.start() == "crash recovery"
    web.recover(5, "crash recovery")
    web.accept(6)

    cluster.fast_stop()
    assert not cluster.running
    web.refuse_while_down(7)
    assert cluster.start() == "clean start"
    web.recover(8, "fast restart")
    web.accept(9)

    # A crash no request sees: the pool still holds the dead connections, unpinged if they
    # were used within the last second, so the first request after it meets them.
    cluster.crash()
    assert cluster.start() == "crash recovery"
    web.recover(10, "a crash no request saw")
    web.accept(11)

    assert web.alive() and web.process.pid == pid, web.tail()
    assert len({answer[0] for answer in web.outage_answers}) == 1  # one answer for an outage
    log = web.log.read_text(errors="replace")
    assert "database unavailable (" in log and "Traceback" not in log, web.tail()
    _check_nothing_lost(cluster, web)
    print(f"\noutage answer: {web.outage_answers[0]}\nrecovered in: {web.recoveries}")


@pytest.mark.timeout(90)
def test_a_web_process_behind_pgbouncer_reconnects_after_its_crashes(
    cluster: PrivateCluster,
    server_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_event_set: Callable[..., int],
    start_web: Callable[..., Web],
) -> None:
    if pgbouncer_binary() is None:
        _unavailable("no pgbouncer binary on PATH or in /usr/sbin")
    _, key = _prepare(cluster, monkeypatch, make_event_set)
    pgbouncer = PrivatePgBouncer(
        server_dir / "pgbouncer", server_dir / "pgbouncer.log", cluster.port
    )
    pgbouncer.start()
    try:
        web = start_web(pgbouncer.url_for(DATABASE), key, DATABASE_POOLER="transaction")
        pid = web.process.pid
        # Past psycopg's prepare_threshold (5): a prepared statement would break here.
        for n in range(1, 8):
            web.accept(n)

        pgbouncer.kill()  # every client and server connection cut; nothing listens
        web.refuse_while_down(10)
        pgbouncer.start()
        web.recover(11, "PgBouncer restart")
        web.accept(12)

        # Behind PgBouncer the web's own connections survive; PgBouncer's to the server die.
        # (No request while the server is down: PgBouncer would hold it until the server is
        # back, query_wait_timeout, rather than refuse it.)
        cluster.crash()
        assert cluster.start() == "crash recovery"
        web.recover(13, "crash recovery behind PgBouncer")
        web.accept(14)

        cluster.fast_stop()
        assert cluster.start() == "clean start"
        web.recover(15, "fast restart behind PgBouncer")
        web.accept(16)

        assert web.alive() and web.process.pid == pid, web.tail()
        _check_nothing_lost(cluster, web)
        print(f"\noutage answer: {web.outage_answers[0]}\nrecovered in: {web.recoveries}")
    finally:
        pgbouncer.kill()
