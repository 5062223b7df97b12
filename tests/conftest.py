"""Shared fixtures.

Unit and service tests run on SQLite in a temp dir with Celery eager. Integration tests use the
real PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) and a real `celery worker`
subprocess; when those services are absent they skip, except under CI=true where they fail.

A real worker's broker is `broker_url`: Redis unless the test is marked `on_both_brokers`,
which runs it once on Redis and once on RabbitMQ (TEST_RABBITMQ_URL, default the local
server as guest), both selected by URL as the service selects its broker.

A test marked `through_pgbouncer` runs once more with its database (`pg_db`) reached through
a private PgBouncer in transaction mode (one for the session, `pgbouncer`) and
DATABASE_POOLER=transaction: ids `[direct]`/`[pgbouncer]`; with `on_both_brokers` as well,
`[redis]`, `[rabbitmq]` and `[redis-pgbouncer]` (PgBouncer with Redis only, not four runs).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_postback.core.settings import get_settings, reset_settings_cache
from crm_postback.simulator import SimulatorControl, SimulatorServer
from models.db import reset_engine
from worker import wakeups

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
BROKERS = ("redis", "rabbitmq")
DATABASE_ROUTES = ("direct", "pgbouncer")
# The test once per broker; `start_worker` and `broker_url` give it that broker's URL.
on_both_brokers = pytest.mark.on_both_brokers
# The test once more with `pg_db` through PgBouncer (transaction mode, DATABASE_POOLER set).
through_pgbouncer = pytest.mark.through_pgbouncer
OUR_ENV = (
    "POSTBACK_DATA_DIR",
    "DATABASE_URL",
    "DATABASE_POOLER",
    "BROKER_URL",
    "TIKTOK_API_BASE_URL",
    "CELERY_QUEUE",
    "TOKEN_ENCRYPTION_KEY",
    "RETRY_SCHEDULE_SECONDS",
    "SWEEP_INTERVAL_SECONDS",
    "LEAD_WAIT_SECONDS",
    "STALE_TRIGGER_SECONDS",
    "DEFAULT_PHONE_REGION",
    "LOG_FORMAT",
)
EVENT_SET_ID = "7300000000000000001"
TOKEN = "test-token-abcdef-123456"
RUN_ID = uuid.uuid4().hex[:8]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "on_both_brokers: the real-worker test once on Redis and once on RabbitMQ"
    )
    config.addinivalue_line(
        "markers",
        "through_pgbouncer: the test once more with its database through a real PgBouncer in "
        "transaction mode (DATABASE_POOLER=transaction)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    both_brokers = metafunc.definition.get_closest_marker("on_both_brokers") is not None
    pooled = (
        metafunc.definition.get_closest_marker("through_pgbouncer") is not None
        and "pg_db" in metafunc.fixturenames
    )
    if both_brokers and pooled:
        metafunc.parametrize(
            ("broker_url", "pg_db"),
            [("redis", "direct"), ("rabbitmq", "direct"), ("redis", "pgbouncer")],
            ids=["redis", "rabbitmq", "redis-pgbouncer"],
            indirect=True,
        )
    elif both_brokers:
        metafunc.parametrize("broker_url", BROKERS, ids=BROKERS, indirect=True)
    elif pooled:
        metafunc.parametrize("pg_db", DATABASE_ROUTES, ids=DATABASE_ROUTES, indirect=True)


def apply_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Sets settings env vars and makes every cached object pick them up."""
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    reset_engine()
    from crm_postback.observability.workspace_labels import forget_labels
    from worker.app import app, apply_settings

    forget_labels()  # another database, other workspace names

    apply_settings(app, get_settings())


def require_service(name: str, reachable: Callable[[], Any]) -> None:
    try:
        reachable()
    except Exception as error:
        message = f"{name} is not reachable ({type(error).__name__}: {error})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(f"{message}; integration test skipped")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in OUR_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    apply_env(
        monkeypatch,
        POSTBACK_DATA_DIR=str(data_dir),
        DATABASE_URL="",
        BROKER_URL="memory://",
        CELERY_QUEUE=f"postback-test-{RUN_ID}",
        TIKTOK_API_BASE_URL="http://127.0.0.1:9",
    )
    from worker.app import app

    app.conf.task_always_eager = False
    yield data_dir
    app.conf.task_always_eager = False
    reset_engine()
    reset_settings_cache()
    wakeups.forget_lingering_wakeups()


@pytest.fixture
def sqlite_db() -> str:
    from models.migrate import upgrade

    url = get_settings().effective_database_url
    upgrade(url)
    return url


@pytest.fixture
def eager() -> Iterator[None]:
    """Tasks run inline in this process: the same code the worker runs, without a broker."""
    from celery.result import allow_join_result

    from worker.app import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    # A test that started a worker in this process (the CLI's `worker`) leaves Celery
    # believing it runs inside one, where waiting for a result is refused.
    with allow_join_result():
        yield
    app.conf.task_always_eager = False


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorControl]:
    server = SimulatorServer(port=0)
    server.start()
    control = SimulatorControl(server.url)
    control.register_event_set(EVENT_SET_ID, TOKEN, kind="crm", advertiser_id="7000000001")
    apply_env(monkeypatch, TIKTOK_API_BASE_URL=server.url)
    yield control
    server.stop()


@pytest.fixture
def make_event_set() -> Callable[..., int]:
    from crm_postback.configuration.audit import SYSTEM_ACTOR
    from crm_postback.configuration.event_set_service import create_event_set
    from crm_postback.configuration.mapping_service import add_mapping
    from models import DEFAULT_WORKSPACE_ID
    from models.db import session_scope

    def make(
        name: str = "acme",
        source_id: str = EVENT_SET_ID,
        token: str = TOKEN,
        mappings: tuple[dict[str, Any], ...] = (
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"currency": "USD"},
            },
        ),
        workspace_id: int = DEFAULT_WORKSPACE_ID,
        **options: Any,
    ) -> int:
        with session_scope(workspace=workspace_id) as session:
            event_set = create_event_set(
                session,
                get_settings(),
                name=name,
                source_id=source_id,
                access_token=token,
                actor=SYSTEM_ACTOR,
                **options,
            )
            for mapping in mappings:
                add_mapping(session, event_set, **mapping, actor=SYSTEM_ACTOR)
            session.commit()
            return event_set.id

    return make


# --- real services ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    from models.migrate import upgrade

    def connect() -> None:
        with create_engine(PG_ADMIN_URL).connect() as connection:
            connection.execute(text("select 1"))

    require_service(f"PostgreSQL at {PG_ADMIN_URL}", connect)
    name = f"postback_test_{RUN_ID}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    require_service(f"Redis at {REDIS_URL}", lambda: redis.Redis.from_url(REDIS_URL).ping())
    return REDIS_URL


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    from kombu import Connection

    def connect() -> None:
        with Connection(RABBITMQ_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)

    require_service(f"RabbitMQ at {_without_password(RABBITMQ_URL)}", connect)
    return RABBITMQ_URL


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':', 1)[0]}{at}{host}" if at else url


@pytest.fixture
def broker_url(request: pytest.FixtureRequest) -> str:
    """The real worker's broker: Redis (`redis_url`, which a module may override), or the one
    `on_both_brokers` names for this run of the test."""
    name = getattr(request, "param", "redis")
    if name not in BROKERS:
        raise ValueError(f"unknown broker {name!r}; one of {BROKERS}")
    url: str = request.getfixturevalue("redis_url" if name == "redis" else "rabbitmq_url")
    return url


def on_amqp(url: str) -> bool:
    return url.startswith(AMQP_SCHEMES)


def unreachable_broker_url(url: str) -> str:
    """A URL of the same kind as `url` on which nothing listens: this process cannot publish."""
    return "amqp://guest:guest@127.0.0.1:1//" if on_amqp(url) else "redis://127.0.0.1:1/0"


@pytest.fixture
def pg_db(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The session's PostgreSQL database, emptied after the test; the URL the service uses.
    For `through_pgbouncer`'s second run, that URL goes through the session's PgBouncer with
    DATABASE_POOLER=transaction (the worker subprocesses inherit both)."""
    from sqlalchemy import text

    from models import Base
    from models.db import get_engine

    route = getattr(request, "param", "direct")
    if route not in DATABASE_ROUTES:
        raise ValueError(f"unknown database route {route!r}; one of {DATABASE_ROUTES}")
    if route == "pgbouncer":
        url: str = request.getfixturevalue("pgbouncer")
        apply_env(monkeypatch, DATABASE_URL=url, DATABASE_POOLER="transaction")
    else:
        url = postgres_url
        apply_env(monkeypatch, DATABASE_URL=url)
    yield url
    # On the server itself, without the pooler.
    apply_env(monkeypatch, DATABASE_URL=postgres_url, DATABASE_POOLER="none")
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine().begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # As the migration left it: the default workspace, id 1.
        connection.execute(
            text("INSERT INTO workspaces (name, created_at) VALUES ('default', now())")
        )
    reset_engine()


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise FileNotFoundError("no pgbouncer binary on PATH or in /usr/sbin")
    return found


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"PgBouncer (\d+)\.(\d+)", output.stdout)
    assert found, output.stdout
    return tuple(int(part) for part in found.groups())


class PgBouncer:
    """A private PgBouncer in transaction mode on `port` in front of `server_host:server_port`
    (every database name), trusting every user; its config, auth file and log in `folder`."""

    def __init__(
        self,
        binary: str,
        folder: Path,
        port: int,
        server_host: str = "127.0.0.1",
        server_port: int = 5432,
        pool_size: int = 4,
        rotate_servers: bool = False,
    ) -> None:
        """`rotate_servers`: every server connection opened from the start and each
        transaction given the next one in turn (instead of the last one used), so a client's
        consecutive transactions run on different server connections."""
        self.port = port
        self.log_path = folder / "pgbouncer.log"
        auth_file = folder / "users.txt"
        auth_file.write_text('"postgres" ""\n')
        tracking = (
            # 1.21+: tracks prepared statements itself when this is above 0; 0 is the
            # default there and models the common setup (and every older PgBouncer).
            "max_prepared_statements = 0\n" if pgbouncer_version(binary) >= (1, 21) else ""
        )
        config = folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {auth_file}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 200\n"
            f"{tracking}"
            + (f"server_round_robin = 1\nmin_pool_size = {pool_size}\n" if rotate_servers else "")
        )
        # PgBouncer refuses to run as root; `-u` drops to another user once it has read its
        # files (it logs to stderr, a file this process opened).
        command = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(config)]
        self.process = subprocess.Popen(
            command, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self) -> None:
        wait_for(
            lambda: "listening on 127.0.0.1" in self.log() or self.process.poll() is not None,
            what="pgbouncer to listen",
            timeout=10,
        )
        assert self.process.poll() is None, f"pgbouncer exited:\n{self.log()}"

    def url(self, server_url: str) -> str:
        """`server_url` with this PgBouncer as its host and port."""
        from sqlalchemy import make_url

        through = make_url(server_url).set(host="127.0.0.1", port=self.port)
        return through.render_as_string(hide_password=False)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def pgbouncer(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's database through a PgBouncer of its own in transaction mode (pool size 4)
    in front of the test PostgreSQL; stopped before that database is dropped."""
    from sqlalchemy import make_url

    require_service("pgbouncer", pgbouncer_binary)
    server = make_url(postgres_url)
    bouncer = PgBouncer(
        pgbouncer_binary(),
        tmp_path_factory.mktemp("pgbouncer"),
        free_port(),
        server_host=server.host or "127.0.0.1",
        server_port=server.port or 5432,
    )
    try:
        bouncer.wait_listening()
        yield bouncer.url(postgres_url)
    finally:
        bouncer.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> str:
    """The test once on SQLite and once on PostgreSQL: the database URL."""
    url: str = request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
    return url


def trigger_body(kind: str, lead: str, event_set: str = "acme", **extra: Any) -> dict[str, Any]:
    """A trigger of `lead` that happened five minutes ago; `extra` adds or replaces fields."""
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        **extra,
    }


def wait_for(condition: Callable[[], bool], what: str = "", *, timeout: float = 40) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, beat: bool) -> None:
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=INFO",
            f"--hostname=test-{uuid.uuid4().hex[:6]}@%h",
        ]
        if beat:
            command.append("--beat")
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"worker did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def start_worker(
    broker_url: str,
    pg_db: str,
    simulator: SimulatorControl,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts real `celery worker` processes on the broker (`broker_url`: Redis unless the test
    is `on_both_brokers`) and PostgreSQL, posting to the simulator."""
    apply_env(
        monkeypatch,
        BROKER_URL=broker_url,
        SWEEP_INTERVAL_SECONDS="1",
        STALE_TRIGGER_SECONDS="2",
        RETRY_SCHEDULE_SECONDS="[1,1,1]",
    )
    started: list[WorkerProcess] = []

    def start(beat: bool = True, **extra_env: str) -> WorkerProcess:
        env = {**os.environ, **extra_env}
        worker = WorkerProcess(env, isolated_settings / f"worker-{len(started)}.log", beat)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
    _purge_queue(broker_url)


def _purge_queue(url: str) -> None:
    """Empties the run's queue. On RabbitMQ it deletes it (and its exchange): every test run
    has its own queue name, and the shared server must not collect them; the next worker
    declares them again."""
    queue = get_settings().celery_queue
    if on_amqp(url):
        from kombu import Connection

        with Connection(url, connect_timeout=3) as connection:
            channel = connection.default_channel
            # RabbitMQ answers delete-ok for a queue or exchange that does not exist.
            channel.queue_delete(queue)
            channel.exchange_delete(queue)
        return
    import redis

    client = redis.Redis.from_url(url)
    client.delete(queue)


@contextmanager
def app_in_thread(app: Any) -> Iterator[str]:
    """An ASGI app on a real uvicorn server in a thread of this process; yields its URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
