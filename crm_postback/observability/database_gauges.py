"""Gauges about the outbox read from the database when the web app is scraped: due rows,
open rows and their age, paused and throttled event sets, open triggers.

Read at scrape time, they are right whichever process changed the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from crm_postback.core.timestamps import naive_means_utc
from models import (
    EventSet,
    EventSetStatus,
    Postback,
    PostbackStatus,
    Trigger,
    TriggerStatus,
    utcnow,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

log = logging.getLogger(__name__)


class OutboxCollector:
    """The outbox gauges, one scrape's worth of queries.

    Each query reads only open rows through the (status, ...) indexes; no full-table count.
    """

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "postback_database_up", "1 when the outbox gauges could be read from the database."
        )
        try:
            with session_scope(workspace=ALL_WORKSPACES) as session:
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


def _outbox_families(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
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
    due_by_set: dict[int, int] = {row[0]: row[1] for row in due_rows}
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
        created = naive_means_utc(created)
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
    by_status = {
        status: (count, naive_means_utc(received)) for status, count, received in trigger_rows
    }
    for status in _OPEN_TRIGGERS:
        count, received = by_status.get(status, (0, None))
        open_triggers.add_metric([str(status)], count)
        age = (now - received).total_seconds() if received is not None else 0.0
        trigger_age.add_metric([str(status)], max(age, 0.0))
    yield open_triggers
    yield trigger_age
