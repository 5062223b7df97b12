"""Engine and sessions: one engine per process, sessions opened by tasks and commands."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from crm_postback.core.data_dir import ensure_private_file
from crm_postback.core.settings import get_settings
from models.bulk import tune_psycopg_connection

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the worker write while the CLI or web process reads.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def build_engine(url: str, *, one_shot: bool = False) -> Engine:
    """`one_shot` engines keep no pool: migrations and short CLI runs."""
    pooling: dict[str, Any] = {"poolclass": NullPool} if one_shot else {}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **pooling)
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    if not one_shot:
        pooling = {"pool_size": 5, "max_overflow": 5}
    engine = create_engine(url, **pooling)
    event.listen(engine, "connect", tune_psycopg_connection)
    if not one_shot:
        _ping_idle_connections(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """`pool_pre_ping`, except for a connection back in the pool for under a second.

    A ping is a round trip on every checkout; a one-trigger enqueue checks out a connection
    for a handful of round trips of work, so always pinging was a noticeable share of it
    (docs/performance.md). A server restart leaves pooled connections idle for longer than a
    second, and those are still pinged and replaced. A connection that dies within the second
    fails its statement instead and the pool is invalidated; `in_transaction` then runs the
    work once more on a fresh connection.
    """
    dialect = engine.dialect

    def known_alive_now(_dbapi_connection: Any, record: Any) -> None:
        # On checkin (it just worked) and on connect (just opened: nothing to check yet).
        record.info["returned_at"] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is not None and time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out a fresh one.
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error

    event.listen(engine.pool, "connect", known_alive_now)
    event.listen(engine.pool, "checkin", known_alive_now)
    event.listen(engine.pool, "checkout", on_checkout)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    if not settings.database_url:
        ensure_private_file(settings.embedded_database_path)
    return build_engine(settings.effective_database_url)


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that rolls back on error and always closes; the caller commits."""
    session = _session_factory()()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def in_transaction(work: Callable[[Session], Result]) -> Result:
    """`work(session)`, then commit. If the pooled connection turned out dead (see
    `_ping_idle_connections`), once more on a fresh one; so `work` must be safe to repeat
    even after a commit whose answer was lost (each caller says why it is)."""
    try:
        return _commit(work)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        log.warning(
            "database connection lost (%s); retrying once on a fresh connection",
            type(error.orig).__name__,
        )
        return _commit(work)


def _commit(work: Callable[[Session], Result]) -> Result:
    with session_scope() as session:
        result = work(session)
        session.commit()
        return result


def reset_engine() -> None:
    """Forget the engine (after fork, or when tests change settings)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
    get_engine.cache_clear()
    _session_factory.cache_clear()


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
