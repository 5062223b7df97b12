"""The run's own services: a private redis-server (or the run's own queue on a RabbitMQ
server), a private PostgreSQL cluster (or an external server) with a private PgBouncer in
front of it, and the throw-away chaos database in it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceUnavailable(RuntimeError):
    """A service the run needs is missing; the run cannot say pass or fail."""


class PrivateRedis:
    """A redis-server only this run uses, without persistence: a restart loses every message.

    Never the machine's shared Redis on 6379: restarting that would disturb everyone else.
    """

    def __init__(self, workdir: Path, log_path: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server is not on PATH")
        self.binary = binary
        self.workdir = workdir
        self.log_path = log_path
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        out = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=False
        )
        for part in out.stdout.split():
            if part.startswith("v="):
                return part[2:]
        return out.stdout.strip()

    def start(self, timeout: float = 15.0) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            log.write(f"\n=== chaos: starting redis-server at {time.time():.3f}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise ServiceUnavailable(f"redis-server did not start on port {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing is saved (persistence is off), every queued message is gone."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)


def libpq_url(url: str) -> str:
    """psycopg wants postgresql://; SQLAlchemy URLs may carry +psycopg."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class ChaosDatabase:
    """`postback_chaos_<random>` on the machine's PostgreSQL, created and dropped by the run.

    The shared server is never restarted. Its faults are confined to this database:
    `pg_terminate_backend` of every connection to it, and an outage during which it refuses
    new connections (`ALLOW_CONNECTIONS false`) and loses the existing ones.
    """

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = libpq_url(admin_url)
        self.name = name
        self.created = False

    @property
    def libpq_url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        return "postgresql+psycopg://" + self.libpq_url[len("postgresql://") :]

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def connect(self) -> psycopg.Connection[Any]:
        """A connection to the chaos database (for the harness's own reads)."""
        return psycopg.connect(self.libpq_url, autocommit=True, connect_timeout=5)

    def server_version(self) -> str:
        with self.admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def create(self) -> None:
        try:
            with self.admin() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        except psycopg.OperationalError as error:
            raise ServiceUnavailable(f"PostgreSQL at {self.admin_url}: {error}") from error
        self.created = True

    def migrate(self) -> None:
        from models.migrate import upgrade

        upgrade(self.sqlalchemy_url)

    def drop(self) -> None:
        if not self.created:
            return
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
        self.created = False

    def terminate_backends(self) -> int:
        """Kills every connection to the chaos database; returns how many."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return sum(1 for row in rows if row[0])

    def refuse_connections(self, refuse: bool) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(self.name), sql.SQL("false" if refuse else "true")
                )
            )

    def outage(self, seconds: float) -> int:
        """Like a database restart seen from the clients: connections die, new ones fail."""
        self.refuse_connections(True)
        try:
            killed = self.terminate_backends()
            time.sleep(seconds)
        finally:
            self.refuse_connections(False)
        return killed


# --- a private PostgreSQL cluster ---------------------------------------------------------

CRASH_RECOVERY_MARKERS = (
    "database system was interrupted",
    "database system was not properly shut down; automatic recovery in progress",
    "redo starts at",
    "redo done at",
)
SHUTDOWN_MARKER = "database system was shut down at"
CHILD_EXIT_TIMEOUT_SECONDS = 10.0


def postgres_bindir() -> Path:
    """Where initdb/postgres/pg_ctl live: $CHAOS_PG_BINDIR, `pg_config --bindir`, then the
    newest /usr/lib/postgresql/*/bin (Debian puts only the client tools on PATH)."""
    candidates: list[Path] = []
    if os.environ.get("CHAOS_PG_BINDIR"):
        candidates.append(Path(os.environ["CHAOS_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
    for name in ("initdb", "pg_ctl", "postgres"):
        if shutil.which(name):
            candidates.append(Path(shutil.which(name) or "").parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise ServiceUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: set CHAOS_PG_BINDIR "
        "or pass --pg-admin-url to use an external server"
    )


def _pid_state(pid: int) -> str | None:
    """The /proc state letter of `pid`, None once it is gone (a zombie is 'Z')."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@dataclass
class ClusterRecord:
    """What the cluster went through, read from its own server log."""

    starts: int = 0
    crashes: int = 0  # SIGKILL of the postmaster
    fast_restarts: int = 0
    crash_recoveries: int = 0  # starts whose log says the system was interrupted + redo
    clean_starts_after_shutdown: int = 0
    children_died_by_themselves: int = 0
    children_killed_by_us: int = 0  # left over after CHILD_EXIT_TIMEOUT_SECONDS: a finding
    recovery_lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class PrivateCluster:
    """A PostgreSQL cluster only this run uses: its own data dir, port and socket dir.

    `initdb` into the run's temp dir; the server listens on 127.0.0.1 only, with fsync on (a
    crash must need real WAL redo). The postmaster is this process's own child (not started by
    `pg_ctl start`, whose postmaster is reparented to PID 1): after a SIGKILL it is reaped here,
    so no zombie keeps its PID in postmaster.pid alive. Stopped with `pg_ctl -m fast stop`.
    As root (CI), initdb/postgres/pg_ctl run as the unprivileged `postgres` user via setpriv;
    they refuse to run as root.
    """

    MAX_CONNECTIONS = 120  # 2 workers x (main + 2 children) + beat + the harness, pools of 10

    def __init__(self, root: Path, log_path: Path, os_user: str = "postgres") -> None:
        self.bindir = postgres_bindir()
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log_path = log_path
        self.port = free_port()
        self.record = ClusterRecord()
        self._process: subprocess.Popen[bytes] | None = None
        self._uid_gid: tuple[int, int] | None = None
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                entry = pwd.getpwnam(os_user)
            except KeyError as error:
                raise ServiceUnavailable(
                    f"running as root and there is no '{os_user}' OS user for PostgreSQL"
                ) from error
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise ServiceUnavailable("running as root and setpriv is not on PATH")
            self._uid_gid = (entry.pw_uid, entry.pw_gid)
            self._run_as = [
                setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"
            ]  # fmt: skip

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _tool(self, name: str) -> list[str]:
        return [*self._run_as, str(self.bindir / name)]

    def _log(self, text: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"\n=== chaos: {text} at {time.time():.3f}\n")

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._uid_gid is not None:
            # The postgres user must reach its data dir inside root's 0700 mkdtemp directories.
            for parent in [self.root, *self.root.parents]:
                if parent == Path(tempfile.gettempdir()) or parent == parent.parent:
                    break
                parent.chmod(parent.stat().st_mode | 0o711)
            os.chown(self.root, *self._uid_gid)
            os.chown(self.socket_dir, *self._uid_gid)
        self._log("initdb")
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                [
                    *self._tool("initdb"),
                    "-D", str(self.data),
                    "-U", "postgres",
                    "-A", "trust",
                    "-E", "UTF8",
                    "--locale=C.UTF-8",
                ],
                stdout=log, stderr=subprocess.STDOUT, check=False, timeout=120, cwd=self.root,
            )  # fmt: skip
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed ({done.returncode}); see {self.log_path}")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.MAX_CONNECTIONS),
            "shared_buffers": "'32MB'",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] '",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# chaos suite\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bindir / "postgres"), "--version"], capture_output=True, text=True
        )
        return out.stdout.strip()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 60.0) -> str:
        """Starts the postmaster and waits for connections; returns what its log said
        ('crash recovery', 'clean start', 'first start')."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log(f"starting postgres (start #{self.record.starts + 1})")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*self._tool("postgres"), "-D", str(self.data)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        self.record.starts += 1
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return self._classify_start(offset)
            except psycopg.OperationalError as error:
                last_error = str(error).strip()
            time.sleep(0.1)
        raise ServiceUnavailable(
            f"private PostgreSQL did not start on port {self.port} ({last_error}); "
            f"see {self.log_path}"
        )

    def _classify_start(self, offset: int) -> str:
        if self.record.starts == 1:
            return "first start"
        with self.log_path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        if any(m in line for line in lines for m in CRASH_RECOVERY_MARKERS[:2]):
            self.record.crash_recoveries += 1
            self.record.recovery_lines.extend(
                line.strip() for line in lines if any(m in line for m in CRASH_RECOVERY_MARKERS)
            )
            return "crash recovery"
        if any(SHUTDOWN_MARKER in line for line in lines):
            self.record.clean_starts_after_shutdown += 1
            return "clean start"
        return "first start"

    def backend_pids(self) -> list[int]:
        from chaos.processes import child_pids

        return child_pids(self._process.pid) if self.running and self._process else []

    def crash(self) -> tuple[int, float]:
        """SIGKILL of the postmaster alone: its children notice and exit by themselves.

        Returns (children that were running, seconds until the last one was gone). Children
        still alive after CHILD_EXIT_TIMEOUT_SECONDS are SIGKILLed and counted as a finding:
        a new postmaster refuses to start while they hold the old shared memory.
        """
        process = self._process
        assert process is not None
        children = self.backend_pids()
        self._log(f"SIGKILL of the postmaster {process.pid} ({len(children)} children)")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.record.crashes += 1
        started = time.monotonic()
        alive = list(children)
        while alive and time.monotonic() - started < CHILD_EXIT_TIMEOUT_SECONDS:
            alive = [pid for pid in alive if _pid_state(pid) not in (None, "Z", "X")]
            if alive:
                time.sleep(0.05)
        took = time.monotonic() - started
        self.record.children_died_by_themselves += len(children) - len(alive)
        for pid in alive:
            self.record.children_killed_by_us += 1
            self.record.errors.append(f"postmaster child {pid} outlived it by {took:.0f} s")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(children), took

    def fast_stop(self, timeout: float = 60.0) -> None:
        """`pg_ctl -m fast stop`: backends are terminated, a shutdown checkpoint is written."""
        self._log("pg_ctl -m fast stop")
        with self.log_path.open("ab") as log:
            subprocess.run(
                [*self._tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                 "-t", str(int(timeout)), "stop"],
                stdout=log, stderr=subprocess.STDOUT, check=False, timeout=timeout + 10,
                cwd=self.root,
            )  # fmt: skip
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.record.errors.append("postmaster still running after pg_ctl stop")
                self._process.kill()
                self._process.wait()

    def cleanup(self, *, remove: bool = True) -> None:
        """Stops the server (fast, then SIGKILL of its whole session) and removes the cluster."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                self.fast_stop(timeout=20)
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self._process.wait(timeout=5)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


# --- a private PgBouncer in front of the private cluster ------------------------------------


def pgbouncer_binary() -> str | None:
    """`pgbouncer` on PATH, or Debian's /usr/sbin/pgbouncer (not on a normal user's PATH)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


@dataclass
class PgBouncerRecord:
    starts: int = 0
    kills: int = 0
    errors: list[str] = field(default_factory=list)


class PrivatePgBouncer:
    """A PgBouncer only this run uses, `pool_mode = transaction`, in front of the private
    cluster: its own port, config, auth file and log in the run's temp dir.

    The workers, beat and the pusher connect through it (with DATABASE_POOLER=transaction);
    the checks and the admin connections go to the cluster directly. `server_login_retry = 1`:
    after a server restart it tries to log in again after 1 s (the default waits 15 s).
    `max_prepared_statements = 0` where the version knows it: a pooler that tracks no
    prepared statements (as tests/models/test_pgbouncer.py). As root it drops to `nobody`
    (`-u`) once it has read its files; it refuses to run as root.
    """

    POOL_SIZE = 20  # PgBouncer's default; the cluster allows 120 connections

    def __init__(self, root: Path, log_path: Path, server_port: int) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise ServiceUnavailable("no pgbouncer binary on PATH or in /usr/sbin")
        self.binary = binary
        self.root = root
        self.log_path = log_path
        self.server_port = server_port
        self.port = free_port()
        self.record = PgBouncerRecord()
        self._process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "pgbouncer.ini"
        auth_file = root / "users.txt"
        auth_file.write_text('"postgres" ""\n')
        tracking = "max_prepared_statements = 0\n" if self.version_tuple() >= (1, 21) else ""
        self.config_path.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {auth_file}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.POOL_SIZE}\n"
            "max_client_conn = 500\n"
            "server_login_retry = 1\n"
            f"{tracking}"
        )

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return out.stdout.splitlines()[0].strip() if out.stdout else "?"

    def version_tuple(self) -> tuple[int, ...]:
        import re

        found = re.search(r"PgBouncer (\d+)\.(\d+)", self.version())
        return tuple(int(p) for p in found.groups()) if found else (0,)

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of `database` through this PgBouncer."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        self.record.starts += 1
        command = [
            self.binary,
            *(["-u", "nobody"] if os.geteuid() == 0 else []),
            str(self.config_path),
        ]
        with self.log_path.open("ab") as log:
            log.write(f"\n=== chaos: starting pgbouncer at {time.time():.3f}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise ServiceUnavailable(f"pgbouncer did not listen on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: every client connection and every server connection is cut."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
            self.record.kills += 1
        self._process.wait()


# --- RabbitMQ (the shared server, never restarted) -----------------------------------------

AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def on_amqp(url: str | None) -> bool:
    return bool(url) and str(url).startswith(AMQP_SCHEMES)


class RabbitQueue:
    """The run's own quorum queue (and its exchange of the same name) on a RabbitMQ server.

    The server is shared: it is never restarted; the run only deletes its own queue and
    exchange at the end (RabbitMQ answers delete-ok when they do not exist).
    """

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue

    def server_version(self) -> str:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
                properties = connection.connection.server_properties
                return str(properties.get("version", "?"))
        except Exception as error:
            raise ServiceUnavailable(f"RabbitMQ at {self.safe_url}: {error}") from error

    @property
    def safe_url(self) -> str:
        from kombu.utils.url import maybe_sanitize_url

        return str(maybe_sanitize_url(self.url))

    def peek(self, limit: int = 5000) -> list[bytes]:
        """What is left in the queue, without taking it: basic_get without ack, then the
        channel is closed, which puts every message back (not acked, so requeued)."""
        from kombu import Connection

        bodies: list[bytes] = []
        with Connection(self.url, connect_timeout=3) as connection:
            channel: Any = connection.channel()
            try:
                for _ in range(limit):
                    message = channel.basic_get(self.queue, no_ack=False)
                    if message is None:
                        break
                    body = message.body
                    bodies.append(body if isinstance(body, bytes) else str(body).encode())
                    bodies.append(json_dumps_headers(message))
            finally:
                with contextlib.suppress(Exception):
                    channel.close()  # the unacked messages go back to the queue
        return bodies

    def delete(self) -> None:
        from kombu import Connection

        with Connection(self.url, connect_timeout=3) as connection:
            channel: Any = connection.default_channel
            channel.queue_delete(self.queue)
            channel.exchange_delete(self.queue)


def json_dumps_headers(message: Any) -> bytes:
    import json

    return json.dumps(
        {"headers": getattr(message, "headers", {}), "properties": message.properties},
        default=str,
    ).encode()
