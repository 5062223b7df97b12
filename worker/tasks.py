"""Celery entry points: they take ids, open sessions, call services and commit. Nothing else."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from celery import Task
from sqlalchemy.orm import Session

from crm_postback.core.pacing import request_pacer
from crm_postback.core.settings import MAX_BATCH_LINGER_MS, Settings, get_settings
from crm_postback.observability.delivery_metrics import record_triggers_processed
from crm_postback.observability.maintenance_metrics import record_sweep
from crm_postback.observability.workspace_labels import known_labels
from crm_postback.tiktok.event_catalogue import MAX_EVENTS_PER_REQUEST
from crm_postback.tiktok.events_client import EventsApiClient
from models import utcnow
from models.db import in_transaction, session_scope
from models.workspace_scope import ALL_WORKSPACES
from worker import delivery, processing, wakeups
from worker.app import app
from worker.claim_planning import OutgoingBatch

log = logging.getLogger(__name__)

# A paced row's follow-up task runs this long after its window frees, so the row is due;
# one whose window frees later than PACED_FOLLOW_UP_MAX_SECONDS is left to the sweeper.
PACED_MARGIN = 0.05
PACED_FOLLOW_UP_MAX_SECONDS = 5.0


def _client() -> EventsApiClient:
    settings = get_settings()
    return EventsApiClient(
        settings.tiktok_api_base_url, settings.http_timeout, settings.http_total_timeout_seconds
    )


def deliver(postback_ids: list[int]) -> dict[str, int]:
    settings = get_settings()
    batches = in_transaction(
        lambda session: delivery.claim(session, postback_ids, settings, utcnow()),
        workspace=ALL_WORKSPACES,
    )
    return _send_and_record(batches)


def _send_and_record(batches: list[OutgoingBatch]) -> dict[str, int]:
    """The HTTP calls happen here, between transactions: no row lock is held meanwhile."""
    settings = get_settings()
    # The metrics' workspace labels, read now (once per process and workspace), not inside
    # the recording transaction.
    known_labels(batch.workspace_id for batch in batches)
    pacer = request_pacer(settings.tiktok_request_rate, settings.effective_pacing_storage_url)
    sent = delivery.send_all(_client(), batches, pacer, settings.tiktok_pacing_max_wait_seconds)

    # Repeated after a lost COMMIT answer, this writes the same outcomes and at worst lists
    # an attempt twice; not recording would send the events again after the lease.
    def record(session: Session) -> dict[str, int]:
        now = utcnow()
        counts = delivery.record(session, sent.results, settings, now)
        paced = delivery.defer(session, sent.deferred, settings, now)
        return {**counts, "paced": paced} if paced else counts

    counts = in_transaction(record, workspace=ALL_WORKSPACES)
    _deliver_when_free(sent.deferred)
    return counts


def _deliver_when_free(deferred: list[delivery.Deferred]) -> None:
    """Paced rows are due again when their token's window frees. The rows due within a few
    seconds go in one task due when the last of them is; later ones (and these, if the
    message is lost) are the sweeper's, like any due row. The countdown is short, so it
    stays far inside Redis' visibility timeout and the worker's ETA task limit."""
    soon = [paced for paced in deferred if paced.retry_in <= PACED_FOLLOW_UP_MAX_SECONDS]
    if not soon:
        return
    wait = max(paced.retry_in for paced in soon)
    ids = [item.postback_id for paced in soon for item in paced.batch.items]
    wakeups.publish_or_leave_for_sweeper(
        lambda: deliver_postbacks.apply_async((ids,), countdown=wait + PACED_MARGIN),
        "paced postbacks",
    )


@app.task(name="postback.process_triggers", bind=True, acks_late=True, ignore_result=True)
def process_triggers(
    self: Task, trigger_ids: list[int], linger_ms: int | None = None
) -> dict[str, Any]:
    """`linger_ms`: how long the publisher was told this task waits before taking the ready
    triggers (it stores more meanwhile without publishing); None, from a publisher that did
    not say, waits this worker's BATCH_LINGER_MS."""
    settings = get_settings()
    also_ready = max(settings.sweep_batch_size - len(trigger_ids), 0)
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    if redelivered:
        # A worker died running this message: count the run before trying again, so a
        # trigger that kills workers is capped (the first delivery skips this commit). This
        # run takes only its own triggers; those stored meanwhile, which published nothing
        # because of this message (its flag, or its linger at their publisher), are woken
        # for once it has stored its own.
        with session_scope(workspace=ALL_WORKSPACES) as session:
            trigger_ids = processing.begin_attempt(session, trigger_ids, settings, utcnow())
            session.commit()
        also_ready = 0
        wakeups.release_wakeup(settings)
    elif wakeups.shared(settings):
        # Triggers stored while we linger find the flag still set, or their publisher knows
        # this task is still lingering, and publish nothing: they ride along in this batch.
        # A wake-up without ids comes from a full batch (`_wake_again`): a backlog is
        # waiting, so there is nothing to wait for. Only Redis brokers linger.
        linger = _linger_seconds(settings, linger_ms)
        if linger and trigger_ids and wakeups.on_redis(settings):
            time.sleep(linger)
        wakeups.release_wakeup(settings)

    def resolve_and_claim(
        session: Session,
    ) -> tuple[processing.ResolvedTriggers, list[OutgoingBatch]]:
        now = utcnow()
        resolved = processing.resolve_triggers(
            session,
            trigger_ids,
            settings,
            now,
            also_ready=also_ready,
            # A full batch: more may be waiting. Another worker takes the next one while this
            # one builds, stores and sends its own.
            wake_early=lambda: _wake_again(settings),
        )
        return resolved, processing.insert_claimed(session, resolved, settings, now)

    resolved, batches = in_transaction(resolve_and_claim, workspace=ALL_WORKSPACES)
    record_triggers_processed(resolved.taken)
    if redelivered or (resolved.full and not resolved.woke_early):
        _wake_again(settings)
    postbacks = sum(len(batch.items) for batch in batches)
    return {"triggers": resolved.taken, "postbacks": postbacks, "sent": _send_and_record(batches)}


def _linger_seconds(settings: Settings, linger_ms: object) -> float:
    if linger_ms is None:
        return settings.batch_linger_ms / 1000
    if not isinstance(linger_ms, int) or isinstance(linger_ms, bool):
        return 0.0  # not from this project's publishers: take what is ready now
    return min(max(linger_ms, 0), MAX_BATCH_LINGER_MS) / 1000


def _wake_again(settings: Settings) -> None:
    wakeups.wake(settings, lambda: process_triggers.delay([]), "the remaining triggers")


@app.task(name="postback.deliver_postbacks", acks_late=True, ignore_result=True)
def deliver_postbacks(postback_ids: list[int], sweep_next: bool = False) -> dict[str, Any]:
    sent = deliver(postback_ids)
    if sweep_next:
        # The sweep that queued this found more due rows than one batch: the next one runs
        # once this batch is sent, so a long backlog drains batch after batch without
        # filling the queue ahead of other work.
        wakeups.publish_or_leave_for_sweeper(sweep_due_postbacks.delay, "the due postbacks")
    return {"postbacks": len(postback_ids), "sent": sent}


@app.task(name="postback.sweep_due_postbacks", acks_late=True, ignore_result=True)
def sweep_due_postbacks() -> dict[str, Any]:
    settings = get_settings()
    now = utcnow()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stale = processing.stale_trigger_ids(
            session,
            now,
            timedelta(seconds=settings.stale_trigger_seconds),
            settings.sweep_batch_size,
        )
        runnable = processing.begin_attempt(session, stale, settings, now)
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        processed = processing.process_triggers(session, runnable, settings, now)
        session.commit()
    ready = processed.ready
    if len(stale) >= settings.sweep_batch_size:
        # A backlog whose wake-ups were lost: the processing tasks drain it in full batches,
        # fairly across event sets, far faster than a batch per sweep.
        _wake_again(settings)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        groups = delivery.reserve_due(session, settings, now)
        session.commit()
    groups.extend(
        ready[i : i + MAX_EVENTS_PER_REQUEST] for i in range(0, len(ready), MAX_EVENTS_PER_REQUEST)
    )
    more_due = sum(map(len, groups)) >= settings.sweep_batch_size
    for n, group in enumerate(groups, start=1):
        deliver_postbacks.delay(group, sweep_next=more_due and n == len(groups))
    record_sweep(len(stale), len(groups))
    if stale or groups:
        log.info("sweep: %d stale triggers, %d delivery tasks queued", len(stale), len(groups))
    return {"stale_triggers": len(stale), "queued": len(groups)}
