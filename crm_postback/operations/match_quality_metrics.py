"""The match-quality gauges of /metrics: the score and its event count per event set.

Handed to the scrape's outbox collector (observability.database_gauges reads them in its
session, with its `workspace` and `event_set` labels), as the score is computed here, a
layer above. It reads 14 days of postbacks, so it is computed at most once per
REFRESH_SECONDS per process and database, and served from memory in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session

from crm_postback.core.settings import get_settings
from crm_postback.observability.database_gauges import Series
from crm_postback.operations.match_quality import WINDOW_DAYS, MatchQuality, match_quality_of

REFRESH_SECONDS = 300.0

_lock = threading.Lock()
# (database url, monotonic time computed, the summaries by event set id)
_cache: tuple[str, float, dict[int, MatchQuality]] | None = None


def match_quality_gauges(
    session: Session, series: Series, now: datetime
) -> Iterator[GaugeMetricFamily]:
    """`postback_match_quality_score` and `postback_match_quality_events`; an event set
    without events has no score sample. Sets sharing a series (the workspaces beyond
    METRICS_MAX_WORKSPACES are all `other`) are weighted by their events: the score of
    their events together."""
    reports = _summaries(session, now)
    labels = ["workspace", "event_set"]
    score = GaugeMetricFamily(
        "postback_match_quality_score",
        f"Match-quality score (0-10) of the events built in the last {WINDOW_DAYS} days (see "
        "`postback diagnose`); no sample while the event set has none.",
        labels=labels,
    )
    events = GaugeMetricFamily(
        "postback_match_quality_events",
        f"Events the match-quality score is computed over (the last {WINDOW_DAYS} days).",
        labels=labels,
    )
    points: dict[tuple[str, str], float] = {}
    counted: dict[tuple[str, str], int] = dict.fromkeys(series.values(), 0)
    for set_id, report in reports.items():
        if set_id not in series:
            continue
        key = series[set_id]
        counted[key] += report.events
        if report.score is not None:
            points[key] = points.get(key, 0.0) + report.score * report.events
    for key, value in counted.items():
        events.add_metric(list(key), value)
        if key in points and value:
            score.add_metric(list(key), round(points[key] / value, 2))
    yield score
    yield events


def _summaries(session: Session, now: datetime) -> dict[int, MatchQuality]:
    global _cache
    url = get_settings().effective_database_url
    with _lock:
        cached = _cache
        if (
            cached is not None
            and cached[0] == url
            and time.monotonic() - cached[1] < REFRESH_SECONDS
        ):
            return cached[2]
        reports = match_quality_of(session, now=now, detail=False, dropped_keys=False)
        _cache = (url, time.monotonic(), reports)
        return reports


def forget_match_quality() -> None:
    """Compute the scores again at the next scrape (tests)."""
    global _cache
    with _lock:
        _cache = None
