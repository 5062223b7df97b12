"""Prometheus metrics: definitions, a small recording API for the worker and the intake, and
the exposition for the web app (`/metrics`) and for workers (their own port).

Counters are recorded where things happen (intake, the worker's `record()` step, the sweeper)
and cost a few dictionary operations per *batch*: a batch of 1,000 results is grouped by
(event set, status, code) and each group is one `inc(n)`. Gauges about the outbox (due rows,
oldest pending age, paused event sets) are read from the database when the web app is scraped,
so they are right whichever process changed the rows.

Workers run Celery's prefork pool: tasks run in child processes that come and go. They use
prometheus_client's multiprocess mode: the worker's main process creates an empty directory,
sets PROMETHEUS_MULTIPROC_DIR before any metric exists, and serves the sum of every pool
process's files on METRICS_HOST:METRICS_PORT. A child that is replaced leaves its file behind,
so its counts are not lost. prometheus_client is imported lazily so that this works whatever
imported this module first.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from crm_postback.core.settings import Settings
from models import EventSet, EventSetStatus, Postback, PostbackStatus, Trigger, TriggerStatus

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds, from a sub-second API answer to a day-long retry ladder.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 7200, 21600, 86400)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A status of the outbox row after an answer; a token error holds the event as `pending`.
_STATUS_LABELS = {PostbackStatus.PENDING: "held"}
_FAILED_LOG_LIMIT = 50  # per batch: a systemic error must not flood the log
_NAME_TTL_SECONDS = 60.0

METRIC_NAMES = (
    "postback_triggers_received_total",
    "postback_triggers_processed_total",
    "postback_events_total",
    "postback_tiktok_requests_total",
    "postback_tiktok_request_duration_seconds",
    "postback_delivery_latency_seconds",
    "postback_sweeper_stale_triggers_total",
    "postback_sweeper_tasks_queued_total",
    "postback_retention_purged_total",
    # read from the database when the web app is scraped
    "postback_outbox_due",
    "postback_outbox_open",
    "postback_outbox_oldest_pending_age_seconds",
    "postback_event_set_paused",
    "postback_event_set_throttled",
    "postback_triggers_open",
    "postback_triggers_oldest_open_age_seconds",
    "postback_database_up",
)


class _Metrics:
    """The process's metric objects, created on first use (after multiprocess setup)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # no `*_created` series: Prometheus does not need them
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.triggers_received = Counter(
            "postback_triggers_received",
            "Triggers handed to the intake (HTTP API, Python API, CLI), by result: accepted, "
            "duplicate (idempotency key seen before) or rejected (a bad field).",
            ["result"],
            registry=r,
        )
        self.triggers_processed = Counter(
            "postback_triggers_processed",
            "Triggers a worker resolved into outbox rows (or found waiting for their lead).",
            registry=r,
        )
        self.events = Counter(
            "postback_events",
            "Events after a delivery attempt, by event set, the outbox status the answer led to "
            "(delivered, retrying, failed, dead, held by a token error) and TikTok's code "
            "(`none` for a network error or an answer without a TikTok body).",
            ["event_set", "status", "code"],
            registry=r,
        )
        self.requests = Counter(
            "postback_tiktok_requests",
            "HTTP requests to the Events API, by event set, outcome class (delivered, "
            "throttled, transient, auth, invalid) and HTTP status (`none`: no answer).",
            ["event_set", "outcome", "http_status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "postback_tiktok_request_duration_seconds",
            "Round trip of one HTTP request to the Events API.",
            ["event_set"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "postback_delivery_latency_seconds",
            "From the event entering the outbox to TikTok accepting it (delivered events; "
            "an operator's replays are left out).",
            ["event_set"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sweeper_stale = Counter(
            "postback_sweeper_stale_triggers",
            "Triggers the beat sweeper had to run because no task did (broker lost or down).",
            registry=r,
        )
        self.sweeper_tasks = Counter(
            "postback_sweeper_tasks_queued",
            "Delivery tasks the beat sweeper queued for due retries and recovered rows.",
            registry=r,
        )
        self.retention = Counter(
            "postback_retention_purged",
            "Rows whose personal data the retention purge cleared: `lead` (match keys) and "
            "`payload` (stored event bodies).",
            ["kind"],
            registry=r,
        )


_lock = threading.Lock()
_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def _reset_metrics() -> None:
    """Forget the metric objects (the multiprocess setup makes new ones)."""
    global _metrics
    with _lock:
        _metrics = None


# --- recording ---------------------------------------------------------------------------


def _safely(what: str) -> Any:
    """Metrics never break the work they describe: an error is logged, not raised."""

    def decorate(function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                function(*args, **kwargs)
            except Exception:
                log.warning("metrics: could not record %s", what, exc_info=True)

        wrapper.__name__ = function.__name__
        wrapper.__doc__ = function.__doc__
        return wrapper

    return decorate


@_safely("triggers received")
def record_triggers_received(accepted: int = 0, duplicate: int = 0, rejected: int = 0) -> None:
    counter = metrics().triggers_received
    for result, count in (("accepted", accepted), ("duplicate", duplicate), ("rejected", rejected)):
        if count:
            counter.labels(result).inc(count)


_intake_log = logging.getLogger("crm_postback.api")


@_safely("the intake")
def record_intake(triggers: Sequence[Any], outcomes: Sequence[Any]) -> None:
    """After an intake commit: the counter by result, and a DEBUG line per trigger with its
    ids (never its match keys)."""
    from crm_postback.intake.trigger_intake import AcceptedTrigger

    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    debug = _intake_log.isEnabledFor(logging.DEBUG)
    for trigger, outcome in zip(triggers, outcomes, strict=True):
        if isinstance(outcome, AcceptedTrigger):
            result = "duplicate" if outcome.duplicate else "accepted"
            trigger_id = outcome.trigger_id
        else:
            result, trigger_id = "rejected", None
        counts[result] += 1
        if debug:
            _intake_log.debug(
                "trigger %s %s: %s",
                trigger_id if trigger_id is not None else "-",
                result,
                trigger.type,
                extra={
                    "trigger_id": trigger_id,
                    "lead_id": trigger.lead_id,
                    "event_set": trigger.event_set,
                    "status": result,
                },
            )
    record_triggers_received(**counts)


@_safely("triggers processed")
def record_triggers_processed(count: int) -> None:
    if count:
        metrics().triggers_processed.inc(count)


@_safely("the sweep")
def record_sweep(stale_triggers: int, tasks_queued: int) -> None:
    m = metrics()
    if stale_triggers:
        m.sweeper_stale.inc(stale_triggers)
    if tasks_queued:
        m.sweeper_tasks.inc(tasks_queued)


@_safely("the retention purge")
def record_purge(leads: int, payloads: int) -> None:
    m = metrics()
    if leads:
        m.retention.labels("lead").inc(leads)
    if payloads:
        m.retention.labels("payload").inc(payloads)


_names: dict[int, tuple[str, float]] = {}


def event_set_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Event set names for metric labels, cached a minute (one small query for new ids)."""
    now = time.monotonic()
    wanted = set(ids)
    missing = [i for i in wanted if i not in _names or _names[i][1] < now]
    if missing:
        for set_id, name in session.execute(
            select(EventSet.id, EventSet.name).where(EventSet.id.in_(missing))
        ):
            _names[set_id] = (name, now + _NAME_TTL_SECONDS)
    return {i: _names[i][0] if i in _names else str(i) for i in wanted}


def _label(value: object) -> str:
    return "none" if value is None else str(value)


def observe_many(histogram_child: Any, values: Sequence[float]) -> None:
    """Histogram.observe for a batch: one increment per bucket instead of one per value."""
    if not values:
        return
    try:
        bounds = histogram_child._upper_bounds
        buckets = histogram_child._buckets
        total = histogram_child._sum
    except AttributeError:  # prometheus_client changed its internals: the slow, public way
        for value in values:
            histogram_child.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        for index, bound in enumerate(bounds):
            if value <= bound:
                counts[index] += 1
                break
    total.inc(sum(values))
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)


def record_delivery(
    session: Session, results: Sequence[Any], statuses: Sequence[str], now: datetime
) -> None:
    """Once per `worker.delivery.record()` batch: outcome counters, request counters and
    durations, delivery latency, and one warning per event that ended failed or dead (with
    its lead id and event id). `statuses[i]` is the status results[i] left its row in."""
    if not results:
        return
    try:
        _record_delivery(session, results, statuses, now)
    except Exception:
        log.warning("metrics: could not record a delivery batch", exc_info=True)


def _record_delivery(
    session: Session, results: Sequence[Any], statuses: Sequence[str], now: datetime
) -> None:
    m = metrics()
    names = event_set_names(session, {r.event_set_id for r in results})
    events: dict[tuple[str, str, str], int] = defaultdict(int)
    requests: dict[object, Any] = {}
    delivered: list[int] = []
    failed: list[tuple[Any, str]] = []
    for result, status in zip(results, statuses, strict=True):
        answer = result.answer
        name = names[result.event_set_id]
        events[(name, _STATUS_LABELS.get(status, str(status)), _label(answer.code))] += 1
        # Events of one request share its answer; TikTok's request_id names the request.
        requests.setdefault(answer.request_id or id(answer), result)
        if status == PostbackStatus.DELIVERED:
            delivered.append(result.postback_id)
        elif status in (PostbackStatus.FAILED, PostbackStatus.DEAD):
            failed.append((result, str(status)))
    for (name, status, code), count in events.items():
        m.events.labels(name, status, code).inc(count)
    for result in requests.values():
        answer = result.answer
        name = names[result.event_set_id]
        m.requests.labels(name, answer.outcome.value, _label(answer.http_status)).inc()
        if answer.duration_ms is not None:
            m.request_duration.labels(name).observe(answer.duration_ms / 1000)

    wanted = delivered + [result.postback_id for result, _ in failed[:_FAILED_LOG_LIMIT]]
    if not wanted:
        return
    rows = _row_facts(session, results, wanted)
    latencies: dict[str, list[float]] = defaultdict(list)
    by_set = {r.postback_id: r.event_set_id for r in results}
    for postback_id in delivered:
        row = rows.get(postback_id)
        if row is not None and row.created_at is not None and not row.replays:
            latency = max((now - row.created_at).total_seconds(), 0.0)
            latencies[names[by_set[postback_id]]].append(latency)
    for name, values in latencies.items():
        observe_many(m.delivery_latency.labels(name), values)
    _log_failures(failed, rows, names)


@dataclass(frozen=True)
class _RowFacts:
    created_at: datetime | None
    replays: int
    lead_ref: str | None
    event_id: str | None


def _row_facts(session: Session, results: Sequence[Any], wanted: list[int]) -> dict[int, _RowFacts]:
    """What latency and failure logs need about rows: carried by the results when they were
    claimed by this worker, read from the database otherwise."""
    facts: dict[int, _RowFacts] = {}
    for result in results:
        item = getattr(result, "item", None)
        if item is not None and item.created_at is not None:
            facts[result.postback_id] = _RowFacts(
                item.created_at, item.replays, item.lead_ref, item.payload.get("event_id")
            )
    missing = [postback_id for postback_id in wanted if postback_id not in facts]
    if missing:
        table = Postback.__table__
        for row in session.execute(
            select(
                table.c.id, table.c.created_at, table.c.replays, table.c.lead_ref, table.c.event_id
            ).where(table.c.id.in_(missing))
        ):
            facts[row.id] = _RowFacts(row.created_at, row.replays, row.lead_ref, row.event_id)
    return facts


def _log_failures(
    failed: Sequence[tuple[Any, str]], rows: dict[int, _RowFacts], names: dict[int, str]
) -> None:
    for result, status in failed[:_FAILED_LOG_LIMIT]:
        answer = result.answer
        row = rows.get(result.postback_id)
        log.warning(
            "postback %s %s: TikTok code %s: %s",
            result.postback_id,
            status,
            _label(answer.code),
            answer.message[:300],
            extra={
                "postback_id": result.postback_id,
                "lead_id": row.lead_ref if row is not None else None,
                "event_id": row.event_id if row is not None else None,
                "event_set": names[result.event_set_id],
                "tiktok_code": answer.code,
                "http_status": answer.http_status,
                "request_id": answer.request_id,
                "status": status,
            },
        )
    if len(failed) > _FAILED_LOG_LIMIT:
        log.warning(
            "%d more postbacks of this batch ended failed or dead (see `postback diagnose`)",
            len(failed) - _FAILED_LOG_LIMIT,
        )


# --- gauges read from the database at scrape time ----------------------------------------


class OutboxCollector:
    """Due rows, open rows and their age, paused and throttled event sets, open triggers.

    Each query reads only open rows through the (status, ...) indexes; no full-table count.
    """

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from models import utcnow
        from models.db import session_scope

        up = GaugeMetricFamily(
            "postback_database_up", "1 when the outbox gauges could be read from the database."
        )
        try:
            with session_scope() as session:
                families = list(_outbox_families(session, self._now or utcnow()))
        except Exception as error:
            log.warning("metrics: outbox gauges unavailable (%s)", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


_OPEN_STATUSES = (PostbackStatus.PENDING, PostbackStatus.RETRYING, PostbackStatus.SENDING)
_OPEN_TRIGGERS = (TriggerStatus.RECEIVED, TriggerStatus.WAITING_FOR_LEAD)


def _outbox_families(session: Session, now: datetime) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    sets = session.execute(
        select(EventSet.id, EventSet.name, EventSet.status, EventSet.throttled_until)
    ).all()
    names = {row.id: row.name for row in sets}
    paused = GaugeMetricFamily(
        "postback_event_set_paused",
        "1 while an event set is paused (a token error or an operator); its events are held.",
        labels=["event_set"],
    )
    throttled = GaugeMetricFamily(
        "postback_event_set_throttled",
        "1 while TikTok's throttling holds an event set back (THROTTLE_PAUSE_SECONDS).",
        labels=["event_set"],
    )
    for row in sets:
        paused.add_metric([row.name], 1 if row.status == EventSetStatus.PAUSED else 0)
        held = row.throttled_until is not None and row.throttled_until > now
        throttled.add_metric([row.name], 1 if held else 0)
    yield paused
    yield throttled

    table = Postback.__table__
    due_rows = session.execute(
        select(table.c.event_set_id, func.count())
        .where(
            or_(
                (table.c.status.in_((PostbackStatus.PENDING, PostbackStatus.RETRYING)))
                & (table.c.next_attempt_at <= now),
                (table.c.status == PostbackStatus.SENDING) & (table.c.lease_until < now),
            )
        )
        .group_by(table.c.event_set_id)
    ).all()
    due = GaugeMetricFamily(
        "postback_outbox_due",
        "Events due to be sent now (pending or retrying whose time has come, or sending past "
        "its lease); stays high when workers or beat are not keeping up.",
        labels=["event_set"],
    )
    due_by_set = dict(due_rows)
    for set_id, name in names.items():
        due.add_metric([name], due_by_set.get(set_id, 0))
    yield due

    open_rows = session.execute(
        select(table.c.event_set_id, table.c.status, func.count(), func.min(table.c.created_at))
        .where(table.c.status.in_(_OPEN_STATUSES))
        .group_by(table.c.event_set_id, table.c.status)
    ).all()
    open_family = GaugeMetricFamily(
        "postback_outbox_open",
        "Events not yet final, by status (pending, sending, retrying).",
        labels=["event_set", "status"],
    )
    oldest = GaugeMetricFamily(
        "postback_outbox_oldest_pending_age_seconds",
        "Age of the oldest event not yet final (0 when none).",
        labels=["event_set"],
    )
    counts: dict[tuple[int, str], int] = {}
    first: dict[int, datetime] = {}
    for set_id, status, count, created in open_rows:
        counts[(set_id, status)] = count
        created = _aware(created)
        if created is not None and (set_id not in first or created < first[set_id]):
            first[set_id] = created
    for set_id, name in names.items():
        for status in _OPEN_STATUSES:
            open_family.add_metric([name, str(status)], counts.get((set_id, status), 0))
        age = (now - first[set_id]).total_seconds() if set_id in first else 0.0
        oldest.add_metric([name], max(age, 0.0))
    yield open_family
    yield oldest

    triggers = Trigger.__table__
    trigger_rows = session.execute(
        select(triggers.c.status, func.count(), func.min(triggers.c.received_at))
        .where(triggers.c.status.in_(_OPEN_TRIGGERS))
        .group_by(triggers.c.status)
    ).all()
    open_triggers = GaugeMetricFamily(
        "postback_triggers_open",
        "Triggers not processed yet: received (waiting for a worker) or waiting_for_lead.",
        labels=["status"],
    )
    trigger_age = GaugeMetricFamily(
        "postback_triggers_oldest_open_age_seconds",
        "Age of the oldest trigger in that status (0 when none).",
        labels=["status"],
    )
    by_status = {status: (count, _aware(received)) for status, count, received in trigger_rows}
    for status in _OPEN_TRIGGERS:
        count, received = by_status.get(status, (0, None))
        open_triggers.add_metric([str(status)], count)
        age = (now - received).total_seconds() if received is not None else 0.0
        trigger_age.add_metric([str(status)], max(age, 0.0))
    yield open_triggers
    yield trigger_age


def _aware(value: datetime | None) -> datetime | None:
    """A naive datetime from an aggregate means UTC (all columns are UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# --- exposition -------------------------------------------------------------------------


def _counter_registry() -> CollectorRegistry:
    """This process's counters, or with multiprocess mode on, every process's files."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return registry
    return metrics().registry


def render(include_outbox: bool = True, now: datetime | None = None) -> tuple[bytes, str]:
    """The text exposition: counters and histograms, then the outbox gauges."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    metrics()  # the families exist (at zero) before anything was recorded
    body = generate_latest(_counter_registry())
    if include_outbox:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(OutboxCollector(now))
        body += generate_latest(registry)
    return body, CONTENT_TYPE_LATEST


class WorkerMetrics:
    """What `start_worker_metrics` set up, so shutdown can undo it."""

    def __init__(self, directory: Path, owned: bool, server: Any) -> None:
        self.directory = directory
        self.owned = owned
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_worker_metrics(settings: Settings) -> WorkerMetrics | None:
    """In a worker's main process, before the pool forks: multiprocess mode and the server.

    Uses PROMETHEUS_MULTIPROC_DIR when set (its old *.db files are removed: counters restart
    with the worker, as Prometheus expects), else a new temporary directory.
    """
    if not settings.metrics_port:
        return None
    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="postback-metrics-"))
        os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks the value class when it is imported; whatever imported it
    # before this point, metrics created from now on write to the shared directory.
    values.ValueClass = values.get_value_class()
    _reset_metrics()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    try:
        server, _ = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as error:
        log.warning(
            "metrics: cannot listen on %s:%s (%s); this worker's metrics are not served "
            "(set METRICS_PORT to a free port, or 0)",
            settings.metrics_host,
            settings.metrics_port,
            error.strerror or type(error).__name__,
        )
        return WorkerMetrics(directory, owned=not given, server=None)
    log.info(
        "metrics: serving the pool's metrics on http://%s:%s/metrics",
        settings.metrics_host,
        settings.metrics_port,
    )
    return WorkerMetrics(directory, owned=not given, server=server)


def mark_process_dead(pid: int) -> None:
    """A pool process exited: its live gauges (none today) stop counting; counters stay."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)
