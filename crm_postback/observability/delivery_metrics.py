"""What the worker records about its deliveries, once per batch.

A batch of 1,000 results costs a few dictionary operations: it is grouped by (workspace, event
set, status, code) and each group is one `inc(n)`. Everything recorded comes with the results
(the event set's name, its workspace and the row's facts were read when the rows were
claimed), so recording sends no statement to the database inside the delivery transaction;
the workspace's label is the process's cached one (`workspace_labels`, which the worker
fills before it records).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from crm_postback.observability import metric_definitions
from crm_postback.observability.metric_definitions import never_raises
from crm_postback.observability.workspace_labels import known_labels
from crm_postback.tiktok.response_outcomes import Answer
from models import PostbackStatus

log = logging.getLogger(__name__)

# A status of the outbox row after an answer; a token error holds the event as `pending`.
_STATUS_LABELS: dict[str, str] = {PostbackStatus.PENDING: "held"}
_FAILED_LOG_LIMIT = 50  # per batch: a systemic error must not flood the log


class SentRow(Protocol):
    """What latency and failure logs need about the outbox row an event was sent from."""

    @property
    def created_at(self) -> datetime | None: ...

    @property
    def replays(self) -> int: ...

    @property
    def lead_ref(self) -> str | None: ...

    @property
    def event_id(self) -> str | None: ...


class SentEvent(Protocol):
    """One event's answer (a `worker.delivery.EventResult`)."""

    @property
    def postback_id(self) -> int: ...

    @property
    def event_set_name(self) -> str: ...

    @property
    def workspace_id(self) -> int: ...

    @property
    def answer(self) -> Answer: ...

    @property
    def item(self) -> SentRow: ...


@never_raises("triggers processed")
def record_triggers_processed(count: int) -> None:
    if count:
        metric_definitions.metrics().triggers_processed.inc(count)


@never_raises("a paced request")
def record_paced(workspace_id: int, event_set_name: str, action: str) -> None:
    """One request pacing held back: `waited` for a slot, or `deferred` unsent."""
    workspace = known_labels([workspace_id])[workspace_id]
    metric_definitions.metrics().requests_paced.labels(workspace, event_set_name, action).inc()


def record_delivery(results: Sequence[SentEvent], statuses: Sequence[str], now: datetime) -> None:
    """Once per `worker.delivery.record()` batch: outcome counters, request counters and
    durations, delivery latency, and one warning per event that ended failed or dead (with
    its lead id and event id). `statuses[i]` is the status results[i] left its row in."""
    if not results:
        return
    try:
        _record_delivery(results, statuses, now)
    except Exception:
        log.warning("metrics: could not record a delivery batch", exc_info=True)


def _label(value: object) -> str:
    return "none" if value is None else str(value)


def _record_delivery(results: Sequence[SentEvent], statuses: Sequence[str], now: datetime) -> None:
    m = metric_definitions.metrics()
    workspaces = known_labels(result.workspace_id for result in results)
    events: dict[tuple[str, str, str, str], int] = defaultdict(int)
    requests: dict[object, SentEvent] = {}
    latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
    failed: list[tuple[SentEvent, str]] = []
    for result, status in zip(results, statuses, strict=True):
        answer = result.answer
        workspace = workspaces[result.workspace_id]
        name = result.event_set_name
        status_label = _STATUS_LABELS.get(status, str(status))
        events[(workspace, name, status_label, _label(answer.code))] += 1
        # Events of one request share its answer; TikTok's request_id names the request.
        requests.setdefault(answer.request_id or id(answer), result)
        if status == PostbackStatus.DELIVERED:
            row = result.item
            if row.created_at is not None and not row.replays:
                latency = max((now - row.created_at).total_seconds(), 0.0)
                latencies[(workspace, name)].append(latency)
        elif status in (PostbackStatus.FAILED, PostbackStatus.DEAD):
            failed.append((result, str(status)))
    for (workspace, name, status, code), count in events.items():
        m.events.labels(workspace, name, status, code).inc(count)
    for result in requests.values():
        answer = result.answer
        workspace, name = workspaces[result.workspace_id], result.event_set_name
        m.requests.labels(workspace, name, answer.outcome.value, _label(answer.http_status)).inc()
        if answer.duration_ms is not None:
            m.request_duration.labels(workspace, name).observe(answer.duration_ms / 1000)
    for (workspace, name), values in latencies.items():
        observe_many(m.delivery_latency.labels(workspace, name), values)
    _log_failures(failed)


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


def _log_failures(failed: Sequence[tuple[SentEvent, str]]) -> None:
    for result, status in failed[:_FAILED_LOG_LIMIT]:
        answer = result.answer
        log.warning(
            "postback %s %s: TikTok code %s: %s",
            result.postback_id,
            status,
            _label(answer.code),
            answer.message[:300],
            extra={
                "postback_id": result.postback_id,
                "lead_id": result.item.lead_ref,
                "event_id": result.item.event_id,
                "event_set": result.event_set_name,
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
