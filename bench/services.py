"""The machine's PostgreSQL and Redis: a throw-away database per run, the run's Redis keys.

Nothing here restarts or reconfigures a shared server; other people use both.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import redis
from psycopg import sql

DEFAULT_PG_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DEFAULT_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class ServiceUnavailable(RuntimeError):
    """PostgreSQL or Redis is not reachable: the bench cannot run."""


def libpq_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class Database:
    """`name` on the admin URL's server, created empty and dropped WITH (FORCE)."""

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = libpq_url(admin_url)
        self.name = name
        self.created = False

    @property
    def url(self) -> str:
        """For SQLAlchemy (psycopg 3 driver)."""
        return "postgresql+psycopg://" + self.libpq_url[len("postgresql://") :]

    @property
    def libpq_url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def create(self) -> Database:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True
        return self

    def drop(self) -> None:
        if not self.created:
            return
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
        self.created = False

    def wal_position(self) -> int:
        """Bytes of WAL the server has written so far, every database's: the figure assumes no
        other writer on the server during a run. Unlike CPU time, the difference over a run
        does not move with the machine's load."""
        with self._admin() as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        return int(row[0]) if row else 0

    def size_bytes(self) -> int:
        with self._admin() as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (self.name,)).fetchone()
        return int(row[0]) if row else 0


def check_services(pg_admin_url: str, redis_url: str) -> dict[str, str]:
    """Server versions; ServiceUnavailable naming what is missing."""
    try:
        with psycopg.connect(libpq_url(pg_admin_url), connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            postgres = str(row[0]) if row else "?"
    except psycopg.Error as error:
        raise ServiceUnavailable(f"PostgreSQL at {pg_admin_url}: {error}") from error
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]  # sync client
        client.close()
    except redis.RedisError as error:
        raise ServiceUnavailable(f"Redis at {redis_url}: {error}") from error
    return {"postgres": postgres, "redis": str(info.get("redis_version", "?"))}


def delete_queue_keys(redis_url: str, queue: str) -> int:
    """The run's queue (and kombu's priority lists and binding for it) and its wake-up flag.

    Only keys containing the run's unique queue name: kombu's shared `unacked` hash is left
    alone (a clean worker shutdown empties our part of it).
    """
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = set(client.scan_iter(match=f"*{queue}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()
