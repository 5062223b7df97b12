"""The Prometheus metric families this service records, created once per process.

Every family with an `event_set` label has a `workspace` label too (event set names are per
workspace); its values are bounded (`workspace_labels`).

They are created on first use, not at import: a worker's main process must switch
prometheus_client to multiprocess mode (see `worker_metrics_server`) before any metric exists,
whatever imported this module first.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import ParamSpec

log = logging.getLogger(__name__)

Params = ParamSpec("Params")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds, from a sub-second API answer to a day-long retry ladder.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 7200, 21600, 86400)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

METRIC_NAMES = (
    "postback_triggers_received_total",
    "postback_triggers_processed_total",
    "postback_events_total",
    "postback_tiktok_requests_total",
    "postback_tiktok_request_duration_seconds",
    "postback_tiktok_requests_paced_total",
    "postback_delivery_latency_seconds",
    "postback_sweeper_stale_triggers_total",
    "postback_sweeper_tasks_queued_total",
    "postback_retention_purged_total",
    "postback_match_keys_dropped_total",
    # read from the database when the web app is scraped (see `database_gauges`)
    "postback_outbox_due",
    "postback_outbox_open",
    "postback_outbox_oldest_pending_age_seconds",
    "postback_event_set_paused",
    "postback_event_set_throttled",
    "postback_triggers_open",
    "postback_triggers_oldest_open_age_seconds",
    "postback_database_up",
    "postback_match_quality_score",
    "postback_match_quality_events",
)


class MetricFamilies:
    """The process's counters and histograms, in their own registry."""

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
            "Triggers handed to the intake (HTTP API, Python API, CLI), by workspace and result: "
            "accepted, duplicate (idempotency key seen before) or rejected (a bad field, or an "
            "event set the caller does not have).",
            ["workspace", "result"],
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
            ["workspace", "event_set", "status", "code"],
            registry=r,
        )
        self.requests = Counter(
            "postback_tiktok_requests",
            "HTTP requests to the Events API, by event set, outcome class (delivered, "
            "throttled, transient, auth, invalid; not_tiktok: an answer without TikTok's "
            "envelope, so a wrong address or a proxy, and the event set is paused) and HTTP "
            "status (`none`: no answer).",
            ["workspace", "event_set", "outcome", "http_status"],
            registry=r,
        )
        self.requests_paced = Counter(
            "postback_tiktok_requests_paced",
            "Requests to the Events API that pacing (TIKTOK_REQUEST_RATE) held back, by event "
            "set and action: `waited` (sent after a short wait for a free slot of its access "
            "token) or `deferred` (not sent: its rows wait, no attempt counted, until the "
            "token's window frees).",
            ["workspace", "event_set", "action"],
            registry=r,
        )
        self.request_duration = Histogram(
            "postback_tiktok_request_duration_seconds",
            "Round trip of one HTTP request to the Events API.",
            ["workspace", "event_set"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "postback_delivery_latency_seconds",
            "From the event entering the outbox to TikTok accepting it (delivered events; "
            "an operator's replays are left out).",
            ["workspace", "event_set"],
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
            "`payload` (stored event bodies), by workspace.",
            ["workspace", "kind"],
            registry=r,
        )
        self.match_keys_dropped = Counter(
            "postback_match_keys_dropped",
            "Match keys dropped at the door because they did not normalise (the trigger or "
            "lead upsert was accepted without them), by workspace and kind (email, phone, "
            "ttclid, first_name, page_url, ...).",
            ["workspace", "kind"],
            registry=r,
        )


_lock = threading.Lock()
_families: MetricFamilies | None = None


def metrics() -> MetricFamilies:
    global _families
    if _families is None:
        with _lock:
            if _families is None:
                _families = MetricFamilies()
    return _families


def reset_metrics() -> None:
    """Forget the metric objects (the multiprocess setup makes new ones)."""
    global _families
    with _lock:
        _families = None


def never_raises(what: str) -> Callable[[Callable[Params, None]], Callable[Params, None]]:
    """Metrics never break the work they describe: an error is logged, not raised."""

    def decorate(function: Callable[Params, None]) -> Callable[Params, None]:
        @functools.wraps(function)
        def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> None:
            try:
                function(*args, **kwargs)
            except Exception:
                log.warning("metrics: could not record %s", what, exc_info=True)

        return wrapper

    return decorate
