"""CPU seconds per component of a run, read from /proc (no psutil needed).

A process's CPU is utime + stime of /proc/<pid>/stat; a process tree's is the sum over its
live processes of utime + stime + cutime + cstime, the last two being what the process's
reaped (waited-for) children used, so a pool child that exited and was reaped by its parent
during the run is still counted. A component's figure is the difference between the end and
the start of the measured window.

- workers: each worker main process and its prefork children; beat on its own row
- producers: the harness process (resource.getrusage(RUSAGE_SELF)): the producer threads plus
  the harness's polling and sampling threads, and the simulator when it runs in a thread
- simulator: its own process (the default); None when it is a thread of the harness
- PostgreSQL: the backends connected to the run's database, found in pg_stat_activity every
  `interval` seconds, each read from /proc and kept at its last reading (a backend that lives
  shorter than `interval` can be missed, and one that ends loses what it used after its last
  sample). The server's background processes (WAL writer, checkpointer, background writer,
  autovacuum launcher) and the postmaster are not in it; the whole server's CPU (every
  database, shared with whoever else uses it) is reported beside it, not in the total.
- Redis: the bench does not start one; the server's own INFO cpu counters are reported beside
  the total (shared with other users of the server), not in it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.rss import descendants

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
METHOD = (
    "CPU = utime+stime from /proc/<pid>/stat over the measured window (first enqueue call to "
    "last event received); process trees add live descendants and reaped children "
    "(cutime+cstime); PostgreSQL = backends of the run's database sampled from "
    "pg_stat_activity every {interval:g} s (misses WAL writer, checkpointer, bgwriter, the "
    "postmaster, and backends shorter than a sample); producers = the harness process "
    "(getrusage RUSAGE_SELF, incl. its polling threads{thread_sim}); shared servers are "
    "shown, not added"
)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    utime: int  # clock ticks
    stime: int
    cutime: int
    cstime: int
    starttime: int  # clock ticks after boot

    @property
    def own_seconds(self) -> float:
        return (self.utime + self.stime) / CLOCK_TICKS

    @property
    def with_reaped_seconds(self) -> float:
        return (self.utime + self.stime + self.cutime + self.cstime) / CLOCK_TICKS


def parse_stat(pid: int, text: str) -> ProcStat:
    """One /proc/<pid>/stat line; comm is in parentheses and may hold spaces or ')'."""
    head, _, rest = text.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()
    # fields[0] is field 3 (state) of proc(5): utime is field 14, starttime field 22.
    return ProcStat(
        pid=pid,
        comm=comm,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
        starttime=int(fields[19]),
    )


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(pid, Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def tree_seconds(roots: Sequence[int]) -> float:
    """CPU of every live process under `roots`, each with its reaped children's."""
    pids = {pid for root in roots for pid in descendants(root)}
    total = 0.0
    for pid in pids:
        stat = read_stat(pid)
        if stat is not None:
            total += stat.with_reaped_seconds
    return total


def self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def boot_ticks_now() -> int:
    """Now, in clock ticks after boot (the unit of ProcStat.starttime)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS)


@dataclass
class BackendSampler:
    """The CPU of the PostgreSQL backends of `database`, polled every `interval` seconds.

    Backends are keyed by (pid, starttime), so a reused pid is a new backend. A backend
    present at the first sample, or started before it, counts from its first reading; one
    born during the window counts from zero.
    """

    admin_url: str
    database: str
    interval: float = 0.25
    samples: int = 0
    visible: bool = True
    error: str | None = None
    postmaster_pid: int | None = None
    _first: dict[tuple[int, int], float] = field(default_factory=dict)
    _last: dict[tuple[int, int], float] = field(default_factory=dict)
    _started_ticks: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _conn: Any = None

    def start(self) -> BackendSampler:
        import psycopg

        try:
            self._conn = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
            row = self._conn.execute("SELECT pg_backend_pid()").fetchone()
            own = read_stat(int(row[0])) if row else None
            if own is None or own.comm != "postgres":
                self.visible = False  # the server is not in this machine's /proc
            else:
                parent = read_stat(own.ppid)
                if parent is not None and parent.comm == "postgres":
                    self.postmaster_pid = parent.pid
        except Exception as error:  # the bench's figures do not depend on this one
            self.visible, self.error = False, f"{type(error).__name__}: {error}"
        self._started_ticks = boot_ticks_now()
        if self.visible:
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="bench-cpu-pg", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.database,),
        ).fetchall()
        for (pid,) in rows:
            stat = read_stat(int(pid))
            if stat is None or stat.comm != "postgres":
                continue
            key = (stat.pid, stat.starttime)
            seconds = stat.own_seconds
            if key not in self._first:
                born_in_window = self.samples > 0 and stat.starttime >= self._started_ticks
                self._first[key] = 0.0 if born_in_window else seconds
            self._last[key] = seconds
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception as error:  # a failed poll loses one sample, not the run
                self.error = f"{type(error).__name__}: {error}"

    def stop(self) -> float | None:
        """The backends' CPU seconds over the window; None when they cannot be seen."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.visible and self._conn is not None:
            with contextlib.suppress(Exception):
                self._sample()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        if not self.visible:
            return None
        return sum(self._last[key] - self._first[key] for key in self._last)

    @property
    def backends_seen(self) -> int:
        return len(self._last)


def redis_cpu_seconds(redis_url: str) -> float | None:
    """The Redis server's INFO cpu (main + children), or None if it cannot be read."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]  # sync client
        finally:
            client.close()
        return sum(
            float(info.get(key, 0.0))
            for key in (
                "used_cpu_sys",
                "used_cpu_user",
                "used_cpu_sys_children",
                "used_cpu_user_children",
            )
        )
    except Exception:
        return None


COMPONENTS = ("postgres_backends", "workers", "beat", "producers", "simulator")
SHARED = ("postgres_server_total", "redis_server")


@dataclass
class CpuMeter:
    """Start before the first enqueue call, stop after the last event arrived (workers alive)."""

    worker_pids: Sequence[int]
    beat_pids: Sequence[int]
    simulator_pid: int | None
    pg_admin_url: str
    database: str
    redis_url: str
    interval: float = 0.25
    _start: dict[str, float | None] = field(default_factory=dict)
    _pg: BackendSampler | None = None
    _started_at: float = 0.0
    _by_root: dict[int, float] = field(default_factory=dict)

    def _readings(self) -> dict[str, float | None]:
        pg_server = None
        if self._pg is not None and self._pg.postmaster_pid is not None:
            pg_server = tree_seconds([self._pg.postmaster_pid])
        return {
            "workers": tree_seconds(self.worker_pids),
            "beat": tree_seconds(self.beat_pids) if self.beat_pids else None,
            "producers": self_seconds(),
            "simulator": (
                tree_seconds([self.simulator_pid]) if self.simulator_pid is not None else None
            ),
            "postgres_server_total": pg_server,
            "redis_server": redis_cpu_seconds(self.redis_url),
        }

    def start(self) -> CpuMeter:
        self._pg = BackendSampler(self.pg_admin_url, self.database, self.interval).start()
        self._start = self._readings()
        self._by_root = {pid: tree_seconds([pid]) for pid in self.worker_pids}
        self._started_at = time.monotonic()
        return self

    def stop(self, triggers: int) -> dict[str, Any]:
        assert self._pg is not None, "start() first"
        end = self._readings()
        by_root = {
            str(pid): round(max(tree_seconds([pid]) - before, 0.0), 3)
            for pid, before in self._by_root.items()
        }
        window = time.monotonic() - self._started_at
        backends = self._pg.stop()

        def delta(key: str) -> float | None:
            before, after = self._start.get(key), end.get(key)
            return None if before is None or after is None else max(after - before, 0.0)

        seconds: dict[str, float | None] = {key: delta(key) for key in COMPONENTS}
        seconds["postgres_backends"] = backends
        shared = {key: delta(key) for key in SHARED}
        return cpu_figures(
            seconds,
            shared,
            triggers,
            window_seconds=window,
            extra={
                "worker_seconds_by_main_pid": by_root,
                "postgres_backends_seen": self._pg.backends_seen,
                "postgres_samples": self._pg.samples,
                "postgres_visible": self._pg.visible,
                "postgres_error": self._pg.error,
                "simulator_in_harness": self.simulator_pid is None,
                "method": METHOD.format(
                    interval=self.interval,
                    thread_sim=" and the simulator thread" if self.simulator_pid is None else "",
                ),
            },
        )


def cpu_figures(
    seconds: dict[str, float | None],
    shared: dict[str, float | None],
    triggers: int,
    *,
    window_seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seconds and µs per trigger per component; the total adds the measured components."""

    def per_trigger(value: float | None) -> float | None:
        return None if value is None else round(value / triggers * 1e6, 1)

    measured = [value for value in seconds.values() if value is not None]
    total = sum(measured) if measured else None
    return {
        "window_seconds": round(window_seconds, 3),
        "seconds": {key: None if v is None else round(v, 3) for key, v in seconds.items()},
        "us_per_trigger": {key: per_trigger(v) for key, v in seconds.items()},
        "total_seconds": None if total is None else round(total, 3),
        "total_us_per_trigger": per_trigger(total),
        "shared_seconds": {key: None if v is None else round(v, 3) for key, v in shared.items()},
        "shared_us_per_trigger": {key: per_trigger(v) for key, v in shared.items()},
        # Cores kept busy on average by the measured components over the window.
        "cores_busy": round(total / window_seconds, 2) if total and window_seconds > 0 else None,
        **(extra or {}),
    }
