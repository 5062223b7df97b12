"""The run's own services: a private redis-server and a throw-away PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
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
