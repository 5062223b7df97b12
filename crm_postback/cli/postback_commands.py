"""`postback send/lead-keys/history/status/replay`: a trigger or a lead's keys in, a lead's
history, counts, re-sends."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from crm_postback.core.timestamps import naive_means_utc
from models import DEFAULT_WORKSPACE_NAME, NOT_DELIVERED_STATUSES

# The final statuses whose postback never reached TikTok: the history gives the reason.


def _mapping_label(mapping_id: int | None, version: int | None) -> str:
    return f"mapping={mapping_id} v{version}" if mapping_id is not None else "mapping=-"


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


KEYS = "Match keys"  # the help panel of the match-key options

# Match-key options, shared by `send` and `lead-keys`. Personal keys are hashed before they
# are stored; nothing given is printed back.
Emails = Annotated[
    list[str] | None, typer.Option("--email", help="Repeat for more", rich_help_panel=KEYS)
]
Phones = Annotated[
    list[str] | None,
    typer.Option(
        "--phone",
        help="E.164, or national in the default region; repeat for more",
        rich_help_panel=KEYS,
    ),
]
ExternalIds = Annotated[
    list[str] | None,
    typer.Option("--external-id", help="Repeat for more", rich_help_panel=KEYS),
]


def _key(help: str | None = None) -> Any:
    return typer.Option(help=help, rich_help_panel=KEYS)


Key = Annotated[str | None, _key()]
Ttclid = Annotated[str | None, _key("TikTok click id (from the ad's URL)")]
Ttp = Annotated[str | None, _key("The _ttp cookie (Pixel)")]
TikTokLeadId = Annotated[str | None, _key("TikTok's lead id (Instant Forms)")]
Locale = Annotated[str | None, _key("BCP 47, e.g. en-US (web event sets)")]
PageUrl = Annotated[str | None, _key("The landing page's URL (web event sets)")]
PageReferrer = Annotated[str | None, _key("The page's referrer (web event sets)")]
LimitedDataUse = Annotated[
    bool | None,
    typer.Option(
        "--limited-data-use/--no-limited-data-use",
        help="TikTok's limited data use (default: the lead's, else the event set's)",
        show_default=False,
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="A match key that does not normalise refuses the call (default: it is dropped, "
        "with a warning).",
    ),
]


def _one_or_many(values: list[str] | None) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


# Options of one value each, named as the Python API's match_keys.
SINGLE_KEYS = (
    "ttclid",
    "ttp",
    "tiktok_lead_id",
    "ip",
    "user_agent",
    "first_name",
    "last_name",
    "city",
    "state",
    "country",
    "zip_code",
    "locale",
)


def match_keys(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Python API's `match_keys` from a command's match-key options (absent ones left
    out); `options` is the command's `locals()`."""
    keys: dict[str, Any] = {
        "email": _one_or_many(options["email"]),
        "phone": _one_or_many(options["phone"]),
        "external_id": _one_or_many(options["external_id"]),
        **{name: options[name] for name in SINGLE_KEYS},
        "page": {"url": options["page_url"], "referrer": options["page_referrer"]},
    }
    keys["page"] = {k: v for k, v in keys["page"].items() if v}
    return {k: v for k, v in keys.items() if v}


def _warn(warnings: Iterable[object]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def send(
    event_set: Annotated[str, typer.Option(help="Event set name or ID")],
    lead_id: Annotated[str, typer.Option(help="The routing system's lead id")],
    trigger: Annotated[str, typer.Option("--type", help="lead.submitted, lead.sold, ...")],
    occurred_at: Annotated[str | None, typer.Option(help="ISO 8601; default now")] = None,
    attr: Annotated[
        list[str] | None, typer.Option(help="key=value (value parsed as JSON if it can be)")
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option(help="The event id your Pixel used for the same conversion (deduplication)"),
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    limited_data_use: LimitedDataUse = None,
    email: Emails = None,
    phone: Phones = None,
    external_id: ExternalIds = None,
    ttclid: Ttclid = None,
    ttp: Ttp = None,
    tiktok_lead_id: TikTokLeadId = None,
    ip: Key = None,
    user_agent: Key = None,
    first_name: Key = None,
    last_name: Key = None,
    city: Key = None,
    state: Key = None,
    country: Key = None,
    zip_code: Key = None,
    locale: Locale = None,
    page_url: PageUrl = None,
    page_referrer: PageReferrer = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
    strict: Strict = False,
) -> None:
    """Store and queue one trigger (what a routing system does through the Python API)."""
    from crm_postback.api import IntakeScope, enqueue_trigger

    scope = IntakeScope(workspace_id(workspace))
    attributes: dict[str, Any] = {}
    for pair in attr or []:
        key, _, raw = pair.partition("=")
        try:
            attributes[key] = json.loads(raw)
        except json.JSONDecodeError:
            attributes[key] = raw
    keys = match_keys(locals())
    payload: dict[str, Any] = {
        "type": trigger,
        "lead_id": lead_id,
        "event_set": event_set,
        "occurred_at": occurred_at or datetime.now(UTC).isoformat(),
        "attributes": attributes,
        "idempotency_key": idempotency_key,
        "event_id": event_id,
        "limited_data_use": limited_data_use,
    }
    if keys:
        payload["match_keys"] = keys
    with refused_input_exits():
        accepted = enqueue_trigger(payload, workspace=scope, strict=strict)
    note = " (duplicate: already accepted, nothing new queued)" if accepted.duplicate else ""
    typer.echo(f"trigger {accepted.trigger_id} accepted{note}")
    _warn(accepted.warnings)


def lead_keys(
    lead_id: Annotated[str, typer.Argument(help="The routing system's lead id")],
    limited_data_use: LimitedDataUse = None,
    email: Emails = None,
    phone: Phones = None,
    external_id: ExternalIds = None,
    ttclid: Ttclid = None,
    ttp: Ttp = None,
    tiktok_lead_id: TikTokLeadId = None,
    ip: Key = None,
    user_agent: Key = None,
    first_name: Key = None,
    last_name: Key = None,
    city: Key = None,
    state: Key = None,
    country: Key = None,
    zip_code: Key = None,
    locale: Locale = None,
    page_url: PageUrl = None,
    page_referrer: PageReferrer = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
    strict: Strict = False,
) -> None:
    """Add or merge a lead's match keys, or set its limited data use, without a trigger (e.g.
    the ttclid arrives later); triggers waiting for the lead go out at the next sweep."""
    from crm_postback.api import IntakeScope, upsert_lead_keys

    keys = match_keys(locals())
    if not keys and limited_data_use is None:
        typer.secho(
            "error: give at least one match key (or --limited-data-use/--no-limited-data-use)",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    scope = IntakeScope(workspace_id(workspace))
    with refused_input_exits():
        stored = upsert_lead_keys(
            lead_id, keys, workspace=scope, limited_data_use=limited_data_use, strict=strict
        )
    _warn(stored.warnings)
    if stored.stored:
        typer.echo(f"lead {stored.lead_id}: stored")
    else:
        typer.echo(f"lead {stored.lead_id}: nothing stored (see the warnings)")


def history(
    lead_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """What we sent for a lead of the workspace, when, and what TikTok answered."""
    from dataclasses import asdict

    from crm_postback.operations.postback_reports import lead_history
    from models.db import session_scope

    with session_scope(workspace=workspace_id(workspace)) as session:
        report = lead_history(session, lead_id)
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2, default=_json_default))
        return
    typer.echo(f"lead {lead_id}: {'known' if report.known else 'no match keys stored'}")
    if report.consent_withdrawn_at is not None:
        typer.echo(f"  consent withdrawn at {report.consent_withdrawn_at:%Y-%m-%d %H:%M:%S} UTC")
    for key, value in report.match_keys.items():
        typer.echo(f"  {key}: {value}")
    for t in report.triggers:
        typer.echo(
            f"- trigger {t.id} {t.trigger_type} at {t.occurred_at:%Y-%m-%d %H:%M:%S} "
            f"-> {t.event_set}: {t.status}" + (f" ({t.error})" if t.error else "")
        )
        if t.event_id:
            typer.echo(f"    caller's event_id={t.event_id}")
        if t.dropped_keys:
            typer.echo(f"    dropped at intake: {', '.join(t.dropped_keys)}")
        for p in t.postbacks:
            typer.echo(
                f"    postback {p.id} {p.event_name or '-'} event_id={p.event_id or '-'} "
                f"{p.status} attempts={p.attempts} "
                f"{_mapping_label(p.mapping_id, p.mapping_version)}"
            )
            if p.match_keys:
                typer.echo(f"      keys: {', '.join(p.match_keys)}")
            for a in p.history:
                typer.echo(
                    f"      {a.attempted_at:%H:%M:%S} {a.outcome} http={a.http_status} "
                    f"code={a.code} request_id={a.request_id} {a.message or ''}"
                )
            if p.status in NOT_DELIVERED_STATUSES and p.last_message:
                typer.echo(f"      reason: {p.last_message}")


def status(workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """The workspace's postback counts by event set and status, and trigger counts."""
    from crm_postback.operations.postback_reports import status_counts, trigger_counts
    from models.db import session_scope

    with session_scope(workspace=workspace_id(workspace)) as session:
        counts = status_counts(session)
        triggers = trigger_counts(session)
    typer.echo(
        "triggers: " + (", ".join(f"{k}={v}" for k, v in sorted(triggers.items())) or "none")
    )
    for name, by_status in sorted(counts.items()):
        typer.echo(f"{name}: " + ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())))


def replay_command(
    postback_id: Annotated[list[int] | None, typer.Option("--id", help="Postback id")] = None,
    lead_id: Annotated[str | None, typer.Option(help="All of one lead's postbacks")] = None,
    event_set: Annotated[str | None, typer.Option(help="Event set name or ID")] = None,
    code: Annotated[int | None, typer.Option(help="Last TikTok code, e.g. 40002")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="dead, failed, expired, no_match_key (default: all four)"),
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before (ISO 8601)")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every replayable postback")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be replayed")] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Re-queue dead, failed, expired or no_match_key postbacks of the workspace (same event_id,
    refreshed match keys)."""
    from crm_postback.commands.replay_postbacks import (
        ReplayPostbacks,
        count_replay,
        replay_postbacks,
    )
    from crm_postback.operations.replay import ReplaySelection
    from models import REPLAYABLE_STATUSES

    selection = ReplaySelection(
        ids=postback_id or [],
        lead_ref=lead_id,
        event_set=event_set,
        code=code,
        statuses=status or list(REPLAYABLE_STATUSES),
        since=naive_means_utc(since),
        until=naive_means_utc(until),
    )
    if selection.is_empty() and not everything:
        typer.secho(
            "error: name what to replay (--id, --lead-id, --event-set, --code, "
            "--since/--until) or pass --all",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    actor = cli_actor(workspace)
    with refused_input_exits():
        total = count_replay(selection, actor)
        if dry_run:
            typer.echo(f"{total} postback(s) would be replayed")
            return
        with typer.progressbar(length=total, label="replaying") as progress:
            outcome = replay_postbacks(
                ReplayPostbacks(selection, everything=everything),
                actor,
                on_chunk=lambda chunk: progress.update(chunk.requested),
            )
    if outcome.left_for_sweeper:
        typer.secho(
            f"broker unavailable; the sweeper will send {outcome.left_for_sweeper} of them",
            fg="yellow",
            err=True,
        )
    typer.echo(
        f"{len(outcome.requeued)} postback(s) re-queued"
        + (
            f", {outcome.not_rebuilt} could not be rebuilt (see history)"
            if outcome.not_rebuilt
            else ""
        )
    )


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("lead-keys")(lead_keys)
    app.command("history")(history)
    app.command("status")(status)
    app.command("replay")(replay_command)
