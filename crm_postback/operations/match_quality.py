"""The match-quality score of an event set: can TikTok match the events we build to a click,
a TikTok lead or a person?

In the spirit of Meta's Event Match Quality, but computed here, from the outbox, before the
data leaves. Over the window (today, UTC, and the days before it: 14 in all by default) it
counts the events built for the event set — every outbox row but `unmapped`, `no_match_key`
included: those carry the least — and from `postbacks.match_key_mask`:

* events per day, and the share carrying each key kind, overall, per event name and per day;
* a score from 0 to 10: the weights of `COMPONENTS` (one table, explained in
  docs/operations.md "Match quality"), each times the share of events carrying it — the
  average of every event's own score;
* the one change that would raise the score most: the (component, event name) pair whose
  missing events weigh most, as a sentence;
* the match keys dropped at the door (`triggers.dropped_keys`), by kind.

Three statements per call, for any number of event sets: one reading the event sets, one
over the postbacks grouped by event set (and, for the detailed report, event name and day),
one over the triggers' dropped keys (left out with `dropped_keys=False`, as /metrics does).
Read-only; in a session scoped to one workspace, each reads only its rows. None is served by
an index: each scans the window's rows (docs/operations.md "Match quality").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, literal_column, select, true
from sqlalchemy.orm import Session

from crm_postback.operations.diagnostics_scope import in_workspace
from crm_postback.tiktok.match_key_kinds import MatchKeyKind
from models import EventSet, EventSetKind, Postback, PostbackStatus, Trigger, utcnow
from models.workspace_scope import FILTERED

WINDOW_DAYS = 14

# The name of each key kind in reports: the match_keys field a caller passes.
KEY_NAMES: dict[MatchKeyKind, str] = {
    MatchKeyKind.LEAD_ID: "tiktok_lead_id",
    MatchKeyKind.TTCLID: "ttclid",
    MatchKeyKind.EMAIL: "email",
    MatchKeyKind.PHONE: "phone",
    MatchKeyKind.EXTERNAL_ID: "external_id",
    MatchKeyKind.TTP: "ttp",
    MatchKeyKind.IP: "ip",
    MatchKeyKind.USER_AGENT: "user_agent",
    MatchKeyKind.FIRST_NAME: "first_name",
    MatchKeyKind.LAST_NAME: "last_name",
    MatchKeyKind.ZIP_CODE: "zip_code",
    MatchKeyKind.CITY: "city",
    MatchKeyKind.STATE: "state",
    MatchKeyKind.COUNTRY: "country",
    MatchKeyKind.LOCALE: "locale",
    MatchKeyKind.PAGE_URL: "page_url",
}
# A CRM event carries no browser: its report leaves these kinds out.
WEB_ONLY_KINDS = (
    MatchKeyKind.TTP,
    MatchKeyKind.IP,
    MatchKeyKind.USER_AGENT,
    MatchKeyKind.LOCALE,
    MatchKeyKind.PAGE_URL,
)


@dataclass(frozen=True)
class Component:
    """One part of the score: an event earns `weight` when it carries any of `kinds`
    (or all of them, `all_of`)."""

    key: str
    label: str
    kinds: MatchKeyKind
    crm_weight: float
    web_weight: float
    lacking: str  # what an event without it lacks, after "have"
    crm_advice: str
    web_advice: str
    all_of: bool = False

    def weight(self, kind: str) -> float:
        return self.crm_weight if kind == EventSetKind.CRM else self.web_weight

    def advice(self, kind: str) -> str:
        return self.crm_advice if kind == EventSetKind.CRM else self.web_advice


# The score's weights: each kind's weights sum to 10. Why each weighs what it does is in
# docs/operations.md, "Match quality".
COMPONENTS: tuple[Component, ...] = (
    Component(
        "lead_or_click",
        "TikTok lead id or ttclid",
        MatchKeyKind.LEAD_ID | MatchKeyKind.TTCLID,
        4.0,
        3.0,
        "neither ttclid nor TikTok lead id",
        "pass the TikTok lead id of Instant Form leads (match_keys.tiktok_lead_id), or the "
        "ttclid captured on the landing page (match_keys.ttclid)",
        "send the ttclid captured on the landing page (match_keys.ttclid, or page.url with "
        "its ttclid parameter)",
    ),
    Component(
        "email",
        "email",
        MatchKeyKind.EMAIL,
        2.0,
        1.5,
        "no email",
        "pass match_keys.email with lead.submitted (it is hashed before it is stored)",
        "pass match_keys.email with the event (it is hashed before it is stored)",
    ),
    Component(
        "phone",
        "phone",
        MatchKeyKind.PHONE,
        2.0,
        1.5,
        "no phone",
        "pass match_keys.phone with lead.submitted, with its country code (+1 213 ...)",
        "pass match_keys.phone with the event, with its country code (+1 213 ...)",
    ),
    Component(
        "external_id",
        "external id",
        MatchKeyKind.EXTERNAL_ID,
        1.0,
        1.0,
        "no external id",
        "pass match_keys.external_id (the routing system's own stable id of the person)",
        "pass match_keys.external_id (the site's own stable id of the visitor)",
    ),
    Component(
        "ttp",
        "ttp cookie",
        MatchKeyKind.TTP,
        0.0,
        1.0,
        "no _ttp cookie",
        "",
        "pass the Pixel's _ttp cookie as match_keys.ttp",
    ),
    Component(
        "ip_user_agent",
        "ip and user agent",
        MatchKeyKind.IP | MatchKeyKind.USER_AGENT,
        0.0,
        1.0,
        "not both ip and user agent",
        "",
        "pass match_keys.ip and match_keys.user_agent from the visitor's request",
        all_of=True,
    ),
    Component(
        "name",
        "first and last name",
        MatchKeyKind.FIRST_NAME | MatchKeyKind.LAST_NAME,
        0.5,
        0.5,
        "no first and last name",
        "pass match_keys.first_name and match_keys.last_name (hashed at the door)",
        "pass match_keys.first_name and match_keys.last_name (hashed at the door)",
        all_of=True,
    ),
    Component(
        "zip_code",
        "zip code",
        MatchKeyKind.ZIP_CODE,
        0.3,
        0.3,
        "no zip code",
        "pass match_keys.zip_code (hashed at the door)",
        "pass match_keys.zip_code (hashed at the door)",
    ),
    Component(
        "region",
        "city, state or country",
        MatchKeyKind.CITY | MatchKeyKind.STATE | MatchKeyKind.COUNTRY,
        0.2,
        0.2,
        "no city, state or country",
        "pass match_keys.city, match_keys.state and match_keys.country",
        "pass match_keys.city, match_keys.state and match_keys.country",
    ),
)
MAX_SCORE = 10.0


@dataclass(frozen=True)
class Counts:
    """Events, and how many carry each key kind and each component (by key)."""

    events: int = 0
    no_match_key: int = 0
    unrecorded: int = 0  # built before the mask was recorded: left out of every share
    kinds: dict[str, int] = field(default_factory=dict)
    components: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.events + other.events,
            self.no_match_key + other.no_match_key,
            self.unrecorded + other.unrecorded,
            _added(self.kinds, other.kinds),
            _added(self.components, other.components),
        )


@dataclass(frozen=True)
class ComponentScore:
    key: str
    label: str
    weight: float
    share: float  # of the events carrying it

    @property
    def points(self) -> float:
        return self.weight * self.share


@dataclass(frozen=True)
class Suggestion:
    """The change that raises the score most: give `event_name`'s events the component."""

    component: str
    event_name: str
    missing_share: float  # of that event name's events, those without it
    missing: int
    gain: float  # points the score would gain
    text: str


@dataclass(frozen=True)
class Day:
    day: date
    events: int
    shares: dict[str, float]  # by component key


@dataclass(frozen=True)
class EventNameQuality:
    event_name: str
    events: int
    score: float
    coverage: dict[str, float]  # by key kind


@dataclass(frozen=True)
class MatchQuality:
    event_set_id: int
    kind: str
    window_days: int
    since: datetime
    events: int
    no_match_key: int
    unrecorded: int
    score: float | None  # None without events
    coverage: dict[str, float]  # by key kind, over every event
    components: list[ComponentScore]
    by_event: list[EventNameQuality]  # most events first
    days: list[Day]  # every day of the window, oldest first (empty for a summary)
    dropped: dict[str, int]  # key kinds dropped at the door, most first
    suggestion: Suggestion | None

    @property
    def summary(self) -> str:
        """One sentence: the score and the suggestion, or why there is none."""
        if self.score is None:
            return f"no events in the last {self.window_days} days: nothing to score"
        if self.suggestion is None:
            return f"{self.score:.1f}/10: every weighted key is on every event"
        return f"{self.score:.1f}/10; {self.suggestion.text}"


def window_start(now: datetime, days: int) -> datetime:
    """Midnight (UTC) of the window's first day: today is its last."""
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    return datetime.combine(first, time(), tzinfo=UTC)


def match_quality(
    session: Session,
    event_set_id: int,
    *,
    now: datetime | None = None,
    window_days: int = WINDOW_DAYS,
) -> MatchQuality:
    """The detailed report of one event set (per event name and per day). Raises KeyError
    for an event set the session does not see."""
    return match_quality_of(session, [event_set_id], now=now, window_days=window_days)[event_set_id]


def match_quality_of(
    session: Session,
    event_set_ids: Iterable[int] | None = None,
    *,
    now: datetime | None = None,
    window_days: int = WINDOW_DAYS,
    detail: bool = True,
    dropped_keys: bool = True,
) -> dict[int, MatchQuality]:
    """The reports of these event sets (None: every one the session sees), in three
    statements however many there are. Without `detail`, only the totals (no days, no event
    names, no suggestion's event name: the one change is over every event); without
    `dropped_keys`, no read of the triggers (`dropped` stays empty): /metrics, where the
    counter postback_match_keys_dropped covers them."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    now = now or utcnow()
    since = window_start(now, window_days)
    query = select(EventSet.id, EventSet.kind).order_by(EventSet.id)
    if event_set_ids is not None:
        query = query.where(EventSet.id.in_(list(event_set_ids)))
    kinds = {row.id: row.kind for row in session.execute(query)}
    if not kinds:
        return {}
    counts = _postback_counts(session, list(kinds), since, window_days, detail)
    dropped = _dropped_keys(session, list(kinds), since) if dropped_keys else {}
    return {
        set_id: _report(
            set_id,
            kind,
            window_days,
            since,
            counts.get(set_id, {}),
            dropped.get(set_id, {}),
            detail,
        )
        for set_id, kind in kinds.items()
    }


# --- the statements ----------------------------------------------------------------------------

_postbacks = Postback.__table__
_triggers = Trigger.__table__


def _carries(mask: Any, component: Component) -> ColumnElement[bool]:
    masked = mask.op("&")(int(component.kinds))
    return masked == int(component.kinds) if component.all_of else masked != 0


def _has_bit(mask: Any, kind: MatchKeyKind) -> ColumnElement[bool]:
    return mask.op("&")(int(kind)) != 0


def _day_index(since: datetime, days: int) -> ColumnElement[int]:
    """SQL: the window's day (0 the first) a row was created on, by comparing with each
    midnight: the same on every backend and in any session time zone."""
    created = _postbacks.c.created_at
    whens = [(created >= since + timedelta(days=day), day) for day in range(days - 1, 0, -1)]
    return case(*whens, else_=0) if whens else literal(0)


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _postback_counts(
    session: Session, set_ids: list[int], since: datetime, days: int, detail: bool
) -> dict[int, dict[tuple[str, int], Counts]]:
    """(event name, day) -> counts per event set; ("", 0) for every key without detail."""
    # The rows of the window in a subquery, grouped outside it: a day computed with bound
    # parameters is then one column, the same in GROUP BY as in the select list.
    rows = (
        select(
            _postbacks.c.event_set_id,
            _postbacks.c.event_name,
            _day_index(since, days).label("day"),
            _postbacks.c.match_key_mask,
            _postbacks.c.status,
        )
        .where(
            *in_workspace(session, _postbacks),
            _postbacks.c.event_set_id.in_(set_ids),
            _postbacks.c.created_at >= since,
            _postbacks.c.status != PostbackStatus.UNMAPPED,
        )
        .subquery("window_rows")
    )
    mask = rows.c.match_key_mask
    no_match = rows.c.status == PostbackStatus.NO_MATCH_KEY
    recorded = mask.isnot(None) | no_match
    kind_columns = [_count_if(_has_bit(mask, kind)) for kind in KEY_NAMES]
    component_columns = [_count_if(_carries(mask, component)) for component in COMPONENTS]
    groups: list[Any] = [rows.c.event_set_id]
    if detail:
        groups += [rows.c.event_name, rows.c.day]
    statement = select(
        *groups,
        _count_if(recorded),
        _count_if(no_match),
        _count_if(~recorded),
        *kind_columns,
        *component_columns,
    ).group_by(*groups)
    found: dict[int, dict[tuple[str, int], Counts]] = {}
    width = len(groups)
    for row in session.execute(statement, execution_options=FILTERED):
        set_id = row[0]
        key = (row[1] or "?", int(row[2])) if detail else ("", 0)
        values = [int(value) for value in row[width:]]
        events, no_match_key, unrecorded = values[:3]
        kinds = dict(zip(KEY_NAMES.values(), values[3 : 3 + len(KEY_NAMES)], strict=True))
        components = dict(
            zip((c.key for c in COMPONENTS), values[3 + len(KEY_NAMES) :], strict=True)
        )
        by_key = found.setdefault(set_id, {})
        counts = Counts(events, no_match_key, unrecorded, kinds, components)
        by_key[key] = by_key[key] + counts if key in by_key else counts
    return found


def _dropped_keys(
    session: Session, set_ids: list[int], since: datetime
) -> dict[int, dict[str, int]]:
    """Per event set, the kinds of match key dropped at the door in the window, by kind."""
    # Most rows hold JSON null; what is not a list becomes an empty one inside the function's
    # argument, so the statement is safe whatever order the planner evaluates it in.
    column = _triggers.c.dropped_keys
    if session.get_bind().dialect.name == "postgresql":
        as_list = case(
            (func.jsonb_typeof(column) == "array", column), else_=literal_column("'[]'::jsonb")
        )
        elements = func.jsonb_array_elements_text(as_list).table_valued("value")
    else:
        # json_type raises on text that is not JSON: json_valid is asked first.
        as_list = case(
            (func.json_valid(column) == 0, literal("[]")),
            (func.json_type(column) == "array", column),
            else_=literal("[]"),
        )
        elements = func.json_each(as_list).table_valued("value")
    statement = (
        select(_triggers.c.event_set_id, elements.c.value, func.count())
        .select_from(_triggers)
        .join(elements, true())
        .where(
            *in_workspace(session, _triggers),
            _triggers.c.event_set_id.in_(set_ids),
            _triggers.c.received_at >= since,
        )
        .group_by(_triggers.c.event_set_id, elements.c.value)
    )
    found: dict[int, dict[str, int]] = {}
    for set_id, kind, count in session.execute(statement, execution_options=FILTERED):
        found.setdefault(set_id, {})[str(kind)] = int(count)
    return {
        set_id: dict(sorted(kinds.items(), key=lambda item: (-item[1], item[0])))
        for set_id, kinds in found.items()
    }


# --- from counts to a report -------------------------------------------------------------------


def _report(
    set_id: int,
    kind: str,
    days: int,
    since: datetime,
    groups: dict[tuple[str, int], Counts],
    dropped: dict[str, int],
    detail: bool,
) -> MatchQuality:
    total = sum(groups.values(), Counts())
    by_name: dict[str, Counts] = {}
    by_day: dict[int, Counts] = {}
    for (name, day), counts in groups.items():
        by_name[name] = by_name[name] + counts if name in by_name else counts
        by_day[day] = by_day[day] + counts if day in by_day else counts
    shown = _shown_kinds(kind)
    day_list = (
        [
            Day(
                (since + timedelta(days=day)).date(),
                by_day.get(day, Counts()).events,
                _component_shares(by_day.get(day, Counts())),
            )
            for day in range(days)
        ]
        if detail
        else []
    )
    names = sorted(
        (name for name in by_name if by_name[name].events),
        key=lambda name: (-by_name[name].events, name),
    )
    return MatchQuality(
        event_set_id=set_id,
        kind=kind,
        window_days=days,
        since=since,
        events=total.events,
        no_match_key=total.no_match_key,
        unrecorded=total.unrecorded,
        score=_score(kind, total),
        coverage=_kind_shares(total, shown),
        components=[
            ComponentScore(c.key, c.label, c.weight(kind), _share(total.components, c.key, total))
            for c in COMPONENTS
            if c.weight(kind)
        ],
        by_event=[
            EventNameQuality(
                name,
                by_name[name].events,
                _score(kind, by_name[name]) or 0.0,
                _kind_shares(by_name[name], shown),
            )
            for name in names
        ]
        if detail
        else [],
        days=day_list,
        dropped=dropped,
        suggestion=_suggestion(kind, total, by_name if detail else {"": total}, days),
    )


def _shown_kinds(kind: str) -> list[str]:
    if kind == EventSetKind.CRM:
        return [name for bit, name in KEY_NAMES.items() if bit not in WEB_ONLY_KINDS]
    return list(KEY_NAMES.values())


def _share(counts: dict[str, int], key: str, of: Counts) -> float:
    return counts.get(key, 0) / of.events if of.events else 0.0


def _kind_shares(counts: Counts, shown: list[str]) -> dict[str, float]:
    return {name: _share(counts.kinds, name, counts) for name in shown}


def _component_shares(counts: Counts) -> dict[str, float]:
    return {c.key: _share(counts.components, c.key, counts) for c in COMPONENTS}


def _score(kind: str, counts: Counts) -> float | None:
    if not counts.events:
        return None
    points = sum(c.weight(kind) * _share(counts.components, c.key, counts) for c in COMPONENTS)
    return round(min(points, MAX_SCORE), 1)


def _suggestion(
    kind: str, total: Counts, by_name: dict[str, Counts], days: int
) -> Suggestion | None:
    """The (component, event name) whose missing events cost the most points; ties go to
    the heavier component (the table's order), then to the event name sorted first."""
    if not total.events:
        return None
    best: tuple[float, int, str] | None = None
    chosen: tuple[Component, str, Counts] | None = None
    for order, component in enumerate(COMPONENTS):
        weight = component.weight(kind)
        if not weight:
            continue
        for name in sorted(by_name):
            counts = by_name[name]
            missing = counts.events - counts.components.get(component.key, 0)
            if missing <= 0:
                continue
            gain = weight * missing / total.events
            rank = (-gain, order, name)
            if best is None or rank < best:
                best, chosen = rank, (component, name, counts)
    if chosen is None:
        return None
    component, name, counts = chosen
    missing = counts.events - counts.components.get(component.key, 0)
    share = missing / counts.events
    gain = component.weight(kind) * missing / total.events
    events = f"{name} events" if name else "events"
    text = (
        f"{share:.0%} of {events} in the last {days} days have {component.lacking}: "
        f"{component.advice(kind)} (up to +{gain:.1f} points)"
    )
    return Suggestion(component.key, name, share, missing, round(gain, 2), text)


def _added(one: dict[str, int], other: dict[str, int]) -> dict[str, int]:
    return {key: one.get(key, 0) + other.get(key, 0) for key in one.keys() | other.keys()}
