"""Engine and sessions: one engine per process, sessions opened by tasks and commands."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from crm_postback.core.data_dir import PRIVATE_FILE_MODE, ensure_private_file
from crm_postback.core.settings import get_settings
from models.bulk import tune_psycopg_connection
from models.workspace_scope import WorkspaceScope, scope_session

log = logging.getLogger(__name__)
Result = TypeVar("Result")


SQLITE_BUSY_TIMEOUT_MS = 30_000
# A checkpoint that waits for readers holds every new writer back meanwhile.
CHECKPOINT_BUSY_TIMEOUT_MS = 1_000


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own BEGIN comes only before INSERT/UPDATE/DELETE, and DEFERRED: a claim's
    # SELECT ... FOR UPDATE ran outside any transaction, so two workers claimed the same
    # rows. `_begin_immediate_before_locking` emits the BEGIN instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the worker write while the CLI or web process reads.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # Deleted and overwritten content is zeroed, not left in free space: an erased lead's
    # raw IP or user agent, or an old copy of a row that held them (docs/operations.md).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


# Matched at the start only: every statement passes here, and an upper-cased copy of a large
# one was the whole SQL again.
_WRITING = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE|SAVEPOINT)", re.IGNORECASE)


def _begin_immediate_before_locking(
    _connection: Any,
    cursor: Any,
    statement: str,
    _parameters: Any,
    context: Any,
    _executemany: bool,
) -> None:
    """On SQLite, a transaction takes the database's write lock (`BEGIN IMMEDIATE`) at its
    first write or `SELECT ... FOR UPDATE`, and holds it until it ends.

    SQLite has no row locks: `FOR UPDATE SKIP LOCKED` is dropped from the SQL. Taking the
    write lock where PostgreSQL would lock rows makes every claim exclusive: a second worker
    waits (busy_timeout) for the first to commit, then sees the rows already claimed.
    Statements before that, and transactions that only read, run as they did (no lock).
    """
    if cursor.connection.in_transaction:
        return
    compiled = getattr(context, "compiled", None)
    locking = (
        compiled is not None and getattr(compiled.statement, "_for_update_arg", None) is not None
    )
    writing = context is not None and (context.isinsert or context.isupdate or context.isdelete)
    if locking or writing or _WRITING.match(statement):
        cursor.execute("BEGIN IMMEDIATE")


def _private_sqlite_file(url: str) -> None:
    """A SQLite file that does not exist yet is created owner-only before SQLite opens it
    (its -wal and -shm files take its mode). Its folder is left as it is: for the embedded
    default, `get_engine` and `postback db upgrade` make the data dir private."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    # Already there, or no such folder (SQLite then says so itself).
    with suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))


def build_engine(url: str, *, one_shot: bool = False) -> Engine:
    """`one_shot` engines keep no pool: migrations and short CLI runs.

    `hide_parameters`: a database error carries its SQL but never the values bound to it (a
    lead's raw IP, user agent, ids), in its text or in a log line.
    """
    pooling: dict[str, Any] = {"poolclass": NullPool} if one_shot else {}
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **pooling)
        event.listen(engine, "connect", _tune_sqlite)
        event.listen(engine, "before_cursor_execute", _begin_immediate_before_locking)
        return engine
    if not one_shot:
        pooling = {"pool_size": 5, "max_overflow": 5}
    engine = create_engine(
        url, connect_args=_psycopg_connect_args(), hide_parameters=True, **pooling
    )
    event.listen(engine, "connect", tune_psycopg_connection)
    if not one_shot:
        _ping_idle_connections(engine)
    return engine


def _psycopg_connect_args() -> dict[str, Any]:
    """Behind a pooler in transaction mode (DATABASE_POOLER=transaction), psycopg prepares
    nothing on the server (`prepare_threshold=None`).

    psycopg prepares a statement on a connection after running it `prepare_threshold` (5)
    times there, and from then on executes it by name. Behind such a pooler each transaction
    may run on another server connection, one that never saw the PREPARE (`prepared statement
    "_pg3_0" does not exist`) or already has another client's statement of that name
    (`prepared statement "_pg3_0" already exists`). Nothing else the service does keeps state
    on a server connection beyond a transaction (docs/operations.md).
    """
    if get_settings().database_pooler == "transaction":
        return {"prepare_threshold": None}
    return {}


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
def session_scope(*, workspace: WorkspaceScope) -> Iterator[Session]:
    """A session that rolls back on error and always closes; the caller commits.

    `workspace`: the one workspace whose rows it reads and writes (every query is filtered,
    `models.workspace_scope`), or `ALL_WORKSPACES` for the worker, the beat and maintenance.
    """
    session = scope_session(_session_factory()(), workspace)
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def in_transaction(work: Callable[[Session], Result], *, workspace: WorkspaceScope) -> Result:
    """`work(session)`, then commit. If the pooled connection turned out dead (see
    `_ping_idle_connections`), once more on a fresh one; so `work` must be safe to repeat
    even after a commit whose answer was lost (each caller says why it is)."""
    try:
        return _commit(work, workspace)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        log.warning(
            "database connection lost (%s); retrying once on a fresh connection",
            type(error.orig).__name__,
        )
        return _commit(work, workspace)


def _commit(work: Callable[[Session], Result], workspace: WorkspaceScope) -> Result:
    with session_scope(workspace=workspace) as session:
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


def truncate_sqlite_log() -> bool | None:
    """On SQLite, copies what the write-ahead log holds into the database file and empties
    the log (`PRAGMA wal_checkpoint(TRUNCATE)`): after an erasure, the old pages that still
    held the erased values are in no file. Waits up to CHECKPOINT_BUSY_TIMEOUT_MS for other
    connections' transactions (new writers wait while it does). True when the log was
    emptied, False when another connection kept it from completing, None on PostgreSQL
    (nothing to do)."""
    engine = get_engine()
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as connection:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_TIMEOUT_MS}")
        try:
            busy, _frames, _copied = connection.exec_driver_sql(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).one()
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return not busy
