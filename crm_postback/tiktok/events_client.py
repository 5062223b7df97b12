"""HTTP to the Events API: one pooled requests.Session per process, always with timeouts.

Every request has a total deadline (HTTP_TOTAL_TIMEOUT_SECONDS) on top of requests' connect
and read timeouts, which bound each socket operation but not their sum: an answer trickling a
byte at a time would otherwise hold a worker as long as it likes. The body is read in chunks
against the deadline, at most MAX_ANSWER_BYTES of it, and a watchdog shuts the connection's
socket when the deadline passes, wherever the exchange waits (a proxy's CONNECT answer, the TLS
handshake, headers, a chunk's size line). Every connection pool the adapter makes, directly or
through a proxy (HTTP(S)_PROXY), is watched; one thread per process keeps every deadline.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.poolmanager import PoolManager, ProxyManager

from crm_postback.core import jsontext
from crm_postback.core.settings import get_settings
from crm_postback.tiktok.response_outcomes import (
    MAX_ANSWER_BYTES,
    Answer,
    classify_answer,
    classify_deadline,
    classify_network_error,
)

TRACK_PATH = "/open_api/v1.3/event/track/"
CRM_LIST_PATH = "/open_api/v1.3/crm/list/"
_CHUNK_BYTES = 65_536

log = logging.getLogger(__name__)

_session: requests.Session | None = None
_session_pid: int | None = None


def http_session() -> requests.Session:
    """The process's session; a forked child gets its own so sockets are never shared."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        session = requests.Session()
        adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _session, _session_pid = session, os.getpid()
    return _session


class DeadlineExceeded(requests.Timeout):
    """The exchange did not finish within its total deadline."""


@dataclass(frozen=True)
class Exchange:
    """What came back: the status, at most `limit` bytes of the body, and whether that is
    all of it (`complete`)."""

    http_status: int
    body: bytes
    complete: bool
    content_type: str | None
    response: requests.Response


class EventsApiClient:
    def __init__(
        self,
        base_url: str,
        timeout: tuple[float, float],
        total_timeout: float | None = None,
    ) -> None:
        """`timeout`: (connect, read) per socket operation; `total_timeout`: the whole
        exchange (default: the HTTP_TOTAL_TIMEOUT_SECONDS setting)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.total_timeout = (
            get_settings().http_total_timeout_seconds if total_timeout is None else total_timeout
        )

    def track(self, access_token: str, body: dict[str, Any]) -> Answer:
        data = jsontext.dumps_bytes(body)
        started = time.monotonic()
        try:
            answer = self.exchange(
                "POST",
                TRACK_PATH,
                data=data,
                headers={"Access-Token": access_token, "Content-Type": "application/json"},
            )
        except DeadlineExceeded as error:
            status = error.response.status_code if error.response is not None else None
            return classify_deadline(self.total_timeout, status, _elapsed_ms(started))
        except requests.RequestException as error:
            return classify_network_error(error, _elapsed_ms(started))
        except Exception as error:
            # A bug here or in a library must not end the task with its rows left `sending`
            # until their lease runs out: no answer, retried like a network error. Named by
            # its type and where it was raised only; its text may quote the request or answer.
            where = traceback.extract_tb(error.__traceback__)[-1]
            log.error(
                "Events API request failed unexpectedly: %s at %s:%s in %s",
                type(error).__name__,
                os.path.basename(where.filename),
                where.lineno,
                where.name,
            )
            return classify_network_error(error, _elapsed_ms(started))
        return classify_answer(
            answer.http_status,
            answer.body,
            content_type=answer.content_type,
            complete=answer.complete,
            duration_ms=_elapsed_ms(started),
        )

    def list_crm_event_sets(self, access_token: str, advertiser_id: str) -> dict[str, Any]:
        """TikTok's answer as a JSON object. Raises requests.HTTPError for a 4xx/5xx,
        another requests.RequestException when there is no (timely) answer, ValueError when
        the answer is not a JSON object."""
        answer = self.exchange(
            "GET",
            CRM_LIST_PATH,
            params={"advertiser_id": advertiser_id},
            headers={"Access-Token": access_token},
        )
        answer.response.raise_for_status()
        if not answer.complete:
            raise ValueError(f"the answer is over {MAX_ANSWER_BYTES:,} bytes")
        result = jsontext.loads(answer.body)
        if not isinstance(result, dict):
            raise ValueError("the answer is not a JSON object")
        return result

    def exchange(
        self, method: str, path: str, *, limit: int = MAX_ANSWER_BYTES, **options: Any
    ) -> Exchange:
        """One request under the total deadline. Raises DeadlineExceeded, or another
        requests.RequestException for a failed connection or a broken answer."""
        deadline = time.monotonic() + self.total_timeout
        with _Watchdog(self.total_timeout) as watchdog:
            try:
                response = http_session().request(
                    method, self.base_url + path, timeout=self.timeout, stream=True, **options
                )
            except requests.RequestException:
                if watchdog.expired:
                    raise DeadlineExceeded("the total deadline passed") from None
                raise
            with response:
                try:
                    body, complete = _read_body(response, limit, deadline)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                    if watchdog.expired:
                        raise DeadlineExceeded(
                            "the total deadline passed", response=response
                        ) from None
                    if isinstance(error, requests.RequestException):
                        raise
                    # Reading raw, urllib3's errors arrive unwrapped; callers expect requests'.
                    raise requests.ConnectionError(error, response=response) from error
            if watchdog.expired:  # the shut socket may have looked like the body's end
                raise DeadlineExceeded("the total deadline passed", response=response)
            return Exchange(
                response.status_code, body, complete, response.headers.get("Content-Type"), response
            )


def _read_body(response: requests.Response, limit: int, deadline: float) -> tuple[bytes, bool]:
    """At most `limit` bytes of the (decoded) body, and whether that was all of it. read1()
    returns what one socket read brings, so the deadline is checked between small reads."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() >= deadline:
            raise DeadlineExceeded("the total deadline passed", response=response)
        chunk = response.raw.read1(min(_CHUNK_BYTES, limit + 1 - size), decode_content=True)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], False


# --- the watchdog ---------------------------------------------------------------------------

_current = threading.local()


class _Watchdog:
    """Shuts the socket of this thread's exchange when its deadline passes: a blocked read
    then returns at once, and the connection is not reused."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._seconds = seconds
        self._connection: HTTPConnection | None = None
        self.done = False
        self.expired = False

    def __enter__(self) -> _Watchdog:
        _current.watchdog = self
        _deadlines().add(time.monotonic() + self._seconds, self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _current.watchdog = None
        with self._lock:
            self.done = True
            self._connection = None

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            if self.done:
                return
            self._connection = connection
            if self.expired:
                _shut(connection)

    def release(self, connection: HTTPConnection) -> bool:
        """`connection` goes back to the pool, where another thread may take it: never shut it
        from now on. True when the deadline passed (its socket may be shut)."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
            return self.expired

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            if self._connection is not None:
                _shut(self._connection)


class _Deadlines:
    """One thread for the deadlines of every exchange in this process (a heap of them), rather
    than a timer thread started for each request."""

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._order = itertools.count()
        thread = threading.Thread(target=self._run, name="events-api-deadlines", daemon=True)
        thread.start()

    def add(self, when: float, watchdog: _Watchdog) -> None:
        with self._wake:
            heapq.heappush(self._heap, (when, next(self._order), watchdog))
            if self._heap[0][2] is watchdog:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            due: list[_Watchdog] = []
            with self._wake:
                now = time.monotonic()
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].done):
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            for watchdog in due:
                watchdog.expire()  # a no-op when the exchange is done


_deadlines_lock = threading.Lock()
_deadlines_of: tuple[int, _Deadlines] | None = None


def _deadlines() -> _Deadlines:
    """The process's deadline thread; a forked child starts its own."""
    global _deadlines_of
    pid = os.getpid()
    with _deadlines_lock:
        if _deadlines_of is None or _deadlines_of[0] != pid:
            _deadlines_of = (pid, _Deadlines())
        return _deadlines_of[1]


def _after_fork_in_child() -> None:
    global _deadlines_lock, _deadlines_of
    _deadlines_lock, _deadlines_of = threading.Lock(), None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is None:
        return
    # socket.socket's own shutdown, also for an SSLSocket: it leaves the TLS object alone for
    # the thread that is reading. An OSError: it is closed already.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(connection: HTTPConnection) -> None:
    watchdog: _Watchdog | None = getattr(_current, "watchdog", None)
    if watchdog is not None:
        watchdog.watch(connection)


class _WatchedConnection(HTTPConnection):
    """Watched from connect() (a proxy's CONNECT, the TLS handshake) and from request() (a
    connection reused from the pool). Mixed in before the pool's own connection class."""

    def connect(self) -> None:
        _watched(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self)
        super().request(*args, **kwargs)


class _WatchedPool(HTTPConnectionPool):
    """Mixed in before the manager's pool class: a connection going back to the pool (urllib3
    does it at the body's end, before the exchange is over) is no longer watched."""

    def _put_conn(self, conn: Any) -> None:
        watchdog: _Watchdog | None = getattr(_current, "watchdog", None)
        if conn is not None and watchdog is not None and watchdog.release(conn):
            conn.close()  # its socket may be shut: not for the next request
        super()._put_conn(conn)


_watched_pools: dict[type[HTTPConnectionPool], type[HTTPConnectionPool]] = {}
_watched_pools_lock = threading.Lock()


def _watched_pool(pool_class: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """`pool_class` with _WatchedPool and _WatchedConnection mixed in (plain, TLS or SOCKS)."""
    if issubclass(pool_class, _WatchedPool):
        return pool_class
    with _watched_pools_lock:
        watched = _watched_pools.get(pool_class)
        if watched is None:
            connection = type(
                f"Watched{pool_class.ConnectionCls.__name__}",
                (_WatchedConnection, pool_class.ConnectionCls),
                {},
            )
            watched = type(
                f"Watched{pool_class.__name__}",
                (_WatchedPool, pool_class),
                {"ConnectionCls": connection},
            )
            _watched_pools[pool_class] = watched
        return watched


def _watch_pools(manager: PoolManager) -> None:
    manager.pool_classes_by_scheme = {
        scheme: _watched_pool(pool_class)
        for scheme, pool_class in manager.pool_classes_by_scheme.items()
    }


class _WatchedAdapter(HTTPAdapter):
    """Every pool it makes is watched: the direct ones and those through a proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> ProxyManager:
        manager: ProxyManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
