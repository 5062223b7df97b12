"""Gauges about the outbox read from the database when the web app is scraped: due rows,
open rows and their age, paused and throttled event sets, open triggers; and the gauges per
event set a higher layer adds (`SeriesGauges`: the match-quality score of
crm_postback.operations.match_quality_metrics), in the same session with the same labels.

Read at scrape time, they are right whichever process changed the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_postback.core.timestamps import naive_means_utc
from crm_postback.observability.workspace_labels import known_labels
from models import (
    OPEN_STATUSES,
    OPEN_TRIGGER_STATUSES,
    EventSet,
    EventSetStatus,
    Postback,
    Trigger,
    is_due,
    status_is_one_of,
    utcnow,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

log = logging.getLogger(__name__)


# (workspace label, event set name) per event set id
Series = dict[int, tuple[str, str]]


class SeriesGauges(Protocol):
    """More gauges per event set, read in the scrape's session, labelled by `series`."""

    def __call__(
        self, session: Session, series: Series, now: datetime
    ) -> Iterable[GaugeMetricFamily]: ...


class OutboxCollector:
    """The outbox gauges, one scrape's worth of queries.

    Its own queries read only open rows through the (status, ...) indexes; no full-table
    count. The `per_event_set` gauges cost what they say: the match-quality score scans the
    last 14 days of postbacks (no index narrows it) and is cached for 5 minutes per process
    (`operations.match_quality_metrics`), so most scrapes do not run it.
    """

    def __init__(
        self, now: datetime | None = None, per_event_set: Sequence[SeriesGauges] = ()
    ) -> None:
        self._now = now
        self._per_event_set = tuple(per_event_set)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "postback_database_up", "1 when the outbox gauges could be read from the database."
        )
        try:
            with session_scope(workspace=ALL_WORKSPACES) as session:
                families = list(
                    _outbox_families(session, self._now or utcnow(), self._per_event_set)
                )
        except Exception as error:
            log.warning("metrics: outbox gauges unavailable (%s)", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _outbox_families(
    session: Session, now: datetime, per_event_set: Sequence[SeriesGauges] = ()
) -> Iterator[GaugeMetricFamily]:
    sets = session.execute(
        select(
            EventSet.id,
            EventSet.workspace_id,
            EventSet.name,
            EventSet.status,
            EventSet.throttled_until,
        )
    ).all()
    workspaces = known_labels(row.workspace_id for row in sets)
    # (workspace label, event set name) per set: the workspaces beyond
    # METRICS_MAX_WORKSPACES share the label `other`, so their sets of one name share a series.
    series = {row.id: (workspaces[row.workspace_id], row.name) for row in sets}
    labels = ["workspace", "event_set"]
    paused = GaugeMetricFamily(
        "postback_event_set_paused",
        "1 while an event set is paused (a token error or an operator); its events are held.",
        labels=labels,
    )
    throttled = GaugeMetricFamily(
        "postback_event_set_throttled",
        "1 while TikTok's throttling holds an event set back (THROTTLE_PAUSE_SECONDS).",
        labels=labels,
    )
    paused_by: dict[tuple[str, str], int] = {}
    throttled_by: dict[tuple[str, str], int] = {}
    for row in sets:
        key = series[row.id]
        held = row.throttled_until is not None and row.throttled_until > now
        paused_by[key] = max(paused_by.get(key, 0), 1 if row.status == EventSetStatus.PAUSED else 0)
        throttled_by[key] = max(throttled_by.get(key, 0), 1 if held else 0)
    for key, value in paused_by.items():
        paused.add_metric(list(key), value)
    for key, value in throttled_by.items():
        throttled.add_metric(list(key), value)
    yield paused
    yield throttled

    table = Postback.__table__
    due_rows = session.execute(
        select(table.c.event_set_id, func.count()).where(is_due(now)).group_by(table.c.event_set_id)
    ).all()
    due = GaugeMetricFamily(
        "postback_outbox_due",
        "Events due to be sent now (pending or retrying whose time has come, or sending past "
        "its lease); stays high when workers or beat are not keeping up.",
        labels=labels,
    )
    due_by: dict[tuple[str, str], int] = dict.fromkeys(series.values(), 0)
    for set_id, count in due_rows:
        if set_id in series:
            due_by[series[set_id]] += count
    for key, value in due_by.items():
        due.add_metric(list(key), value)
    yield due

    open_rows = session.execute(
        select(table.c.event_set_id, table.c.status, func.count(), func.min(table.c.created_at))
        .where(status_is_one_of(table.c.status, OPEN_STATUSES))
        .group_by(table.c.event_set_id, table.c.status)
    ).all()
    open_family = GaugeMetricFamily(
        "postback_outbox_open",
        "Events not yet final, by status (pending, sending, retrying).",
        labels=[*labels, "status"],
    )
    oldest = GaugeMetricFamily(
        "postback_outbox_oldest_pending_age_seconds",
        "Age of the oldest event not yet final (0 when none).",
        labels=labels,
    )
    counts: dict[tuple[tuple[str, str], str], int] = {}
    first: dict[tuple[str, str], datetime] = {}
    for set_id, status, count, created in open_rows:
        if set_id not in series:
            continue
        key = series[set_id]
        counts[(key, status)] = counts.get((key, status), 0) + count
        created = naive_means_utc(created)
        if created is not None and (key not in first or created < first[key]):
            first[key] = created
    for key in dict.fromkeys(series.values()):
        for status in OPEN_STATUSES:
            open_family.add_metric([*key, str(status)], counts.get((key, status), 0))
        age = (now - first[key]).total_seconds() if key in first else 0.0
        oldest.add_metric(list(key), max(age, 0.0))
    yield open_family
    yield oldest

    triggers = Trigger.__table__
    trigger_rows = session.execute(
        select(triggers.c.status, func.count(), func.min(triggers.c.received_at))
        .where(status_is_one_of(triggers.c.status, OPEN_TRIGGER_STATUSES))
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
    by_status = {
        status: (count, naive_means_utc(received)) for status, count, received in trigger_rows
    }
    for status in OPEN_TRIGGER_STATUSES:
        count, received = by_status.get(status, (0, None))
        open_triggers.add_metric([str(status)], count)
        age = (now - received).total_seconds() if received is not None else 0.0
        trigger_age.add_metric([str(status)], max(age, 0.0))
    yield open_triggers
    yield trigger_age

    for gauges in per_event_set:
        yield from gauges(session, series, now)
