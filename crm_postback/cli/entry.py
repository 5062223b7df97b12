"""`postback`: schema, event sets, mappings, sending triggers, history, status, simulator, demo."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
db_app = typer.Typer(no_args_is_help=True, help="Create or upgrade the database schema.")
event_set_app = typer.Typer(no_args_is_help=True, help="TikTok CRM event sets (or Pixels).")
mapping_app = typer.Typer(no_args_is_help=True, help="Trigger-to-event mappings.")
app.add_typer(db_app, name="db")
app.add_typer(event_set_app, name="event-set")
app.add_typer(mapping_app, name="mapping")


def _fail(error: InputRejected) -> None:
    for item in error.errors:
        typer.secho(f"error: {item}", fg="red", err=True)
    raise typer.Exit(2)


def _mapping_label(mapping_id: int | None, version: int | None) -> str:
    return f"mapping={mapping_id} v{version}" if mapping_id is not None else "mapping=-"


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations (creates the schema on a new database)."""
    from models.migrate import upgrade

    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.postback_data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"schema at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one known."""
    from models.db import get_engine
    from models.migrate import current_revision, head_revision

    typer.echo(f"database: {current_revision(get_engine())}  newest: {head_revision()}")


@event_set_app.command("add")
def event_set_add(
    name: Annotated[str, typer.Option(help="Your name for this advertiser destination")],
    event_set_id: Annotated[str, typer.Option(help="TikTok CRM event set ID (or pixel code)")],
    token: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="POSTBACK_NEW_TOKEN",
            help="Access token, or env:VARNAME to read it from the environment at send time",
        ),
    ],
    kind: Annotated[str, typer.Option(help="crm (CRM event set) or web (Pixel)")] = "crm",
    crm_name: Annotated[str, typer.Option(help="Sent as lead.lead_event_source")] = "crm-postback",
    test_event_code: Annotated[str | None, typer.Option()] = None,
    advertiser_id: Annotated[str | None, typer.Option()] = None,
    currency: Annotated[str | None, typer.Option(help="Default currency for values")] = None,
) -> None:
    """Add an event set. The token is encrypted at rest and never shown again."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.event_set_service import create_event_set
    from models.db import session_scope

    settings = get_settings()
    with session_scope() as session:
        try:
            event_set = create_event_set(
                session,
                settings,
                name=name,
                source_id=event_set_id,
                access_token=token,
                kind=kind,
                lead_event_source=crm_name,
                test_event_code=test_event_code,
                advertiser_id=advertiser_id,
                default_currency=currency,
                actor=cli_actor(),
            )
        except InputRejected as error:
            _fail(error)
        session.commit()
        typer.echo(
            f"event set {event_set.id} {event_set.name!r} ({event_set.kind} {event_set.source_id})"
        )


@event_set_app.command("list")
def event_set_list() -> None:
    """List event sets with their masked tokens and state."""
    from sqlalchemy import select

    from crm_postback.core.token_vault import token_hint
    from models import EventSet
    from models.db import session_scope

    settings = get_settings()
    with session_scope() as session:
        for es in session.scalars(select(EventSet).order_by(EventSet.id)):
            line = (
                f"{es.id:>3}  {es.name:<24} {es.kind:<4} {es.source_id:<22} "
                f"token {token_hint(es.sealed_token, settings):<14} {es.status}"
            )
            if es.test_event_code:
                line += f"  test_event_code={es.test_event_code}"
            if es.paused_reason:
                line += f"  ({es.paused_reason})"
            typer.echo(line)


@event_set_app.command("pause")
def event_set_pause(name: str, reason: str = "paused by operator") -> None:
    """Hold all postbacks of an event set (nothing is dropped)."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.event_set_service import get_event_set, pause
    from models.db import session_scope

    with session_scope() as session:
        try:
            pause(get_event_set(session, name), reason, actor=cli_actor())
        except InputRejected as error:
            _fail(error)
        session.commit()
    typer.echo(f"{name}: paused")


@event_set_app.command("resume")
def event_set_resume(name: str) -> None:
    """Resume an event set; held postbacks are sent by the next sweep."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.event_set_service import get_event_set, resume
    from models.db import session_scope

    with session_scope() as session:
        try:
            resume(session, get_event_set(session, name), actor=cli_actor())
        except InputRejected as error:
            _fail(error)
        session.commit()
    typer.echo(f"{name}: active")


@event_set_app.command("set-token")
def event_set_token(
    name: str,
    token: Annotated[str, typer.Option(prompt=True, hide_input=True, envvar="POSTBACK_NEW_TOKEN")],
) -> None:
    """Replace the access token (resumes a set paused for token errors)."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.event_set_service import get_event_set, rotate_token
    from models.db import session_scope

    with session_scope() as session:
        try:
            rotate_token(
                session, get_settings(), get_event_set(session, name), token, actor=cli_actor()
            )
        except InputRejected as error:
            _fail(error)
        session.commit()
    typer.echo(f"{name}: token replaced")


@mapping_app.command("set")
def mapping_set(
    event_set: Annotated[str, typer.Option(help="Event set name or ID")],
    trigger: Annotated[str, typer.Option(help="e.g. lead.sold or buyer.accepted")],
    event: Annotated[
        str, typer.Option(help="Standard event (Lead, Purchase, ...) or a custom name")
    ],
    when: Annotated[
        list[str] | None, typer.Option(help="Condition, e.g. 'buyer_id == \"B17\"'")
    ] = None,
    value_from: Annotated[
        str | None, typer.Option(help="Attribute giving properties.value")
    ] = None,
    value: Annotated[float | None, typer.Option(help="Fixed properties.value")] = None,
    currency: Annotated[str | None, typer.Option(help="Fixed currency (TikTok's list)")] = None,
    order_id_from: Annotated[str | None, typer.Option(help="Attribute giving order_id")] = None,
    content_type: Annotated[str | None, typer.Option(help="product or product_group")] = None,
    mapping_id: Annotated[int | None, typer.Option("--id", help="Update this mapping")] = None,
    disabled: bool = False,
) -> None:
    """Create (or with --id, update) a mapping. Invalid mappings are refused with the reason."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_service import (
        add_mapping,
        describe_mapping,
        get_mapping,
        update_mapping,
    )
    from mappings.rules import parse_condition
    from models.db import session_scope

    try:
        conditions = [parse_condition(text) for text in when or []]
    except ValueError as error:
        typer.secho(f"error: when: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    rules: dict[str, Any] = {}
    if value_from is not None:
        rules["value_from"] = value_from
    if value is not None:
        rules.update(value=value, value_from=None)
    if currency is not None:
        rules["currency"] = currency
    if order_id_from is not None:
        rules["order_id_from"] = order_id_from
    if content_type is not None:
        rules["content_type"] = content_type
    with session_scope() as session:
        try:
            target = get_event_set(session, event_set)
            if mapping_id is None:
                mapping = add_mapping(
                    session,
                    target,
                    trigger_type=trigger,
                    event_name=event,
                    conditions=conditions,
                    properties=rules,
                    enabled=not disabled,
                    actor=cli_actor(),
                )
            else:
                mapping = update_mapping(
                    session,
                    get_mapping(session, mapping_id),
                    trigger_type=trigger,
                    event_name=event,
                    conditions=conditions,
                    properties=rules,
                    enabled=not disabled,
                    actor=cli_actor(),
                )
        except InputRejected as error:
            _fail(error)
        session.commit()
        typer.echo(f"mapping {mapping.id} v{mapping.version}: {describe_mapping(mapping)}")


@mapping_app.command("list")
def mapping_list(event_set: str) -> None:
    """List an event set's mappings."""
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_service import describe_mapping, list_mappings
    from models.db import session_scope

    with session_scope() as session:
        try:
            target = get_event_set(session, event_set)
        except InputRejected as error:
            _fail(error)
        for m in list_mappings(session, target):
            state = "" if m.enabled else " (disabled)"
            typer.echo(f"{m.id:>4} v{m.version}  {describe_mapping(m)}{state}")


@mapping_app.command("remove")
def mapping_remove(mapping_id: int) -> None:
    """Delete a mapping. Postbacks it already produced are kept and still delivered."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.mapping_service import delete_mapping, get_mapping
    from models.db import session_scope

    with session_scope() as session:
        try:
            delete_mapping(session, get_mapping(session, mapping_id), actor=cli_actor())
        except InputRejected as error:
            _fail(error)
        session.commit()
    typer.echo(f"mapping {mapping_id} removed")


@app.command("send")
def send(
    event_set: Annotated[str, typer.Option(help="Event set name or ID")],
    lead_id: Annotated[str, typer.Option(help="The routing system's lead id")],
    trigger: Annotated[str, typer.Option("--type", help="lead.submitted, lead.sold, ...")],
    occurred_at: Annotated[str | None, typer.Option(help="ISO 8601; default now")] = None,
    attr: Annotated[
        list[str] | None, typer.Option(help="key=value (value parsed as JSON if it can be)")
    ] = None,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    external_id: Annotated[str | None, typer.Option()] = None,
    ttclid: Annotated[str | None, typer.Option()] = None,
    tiktok_lead_id: Annotated[str | None, typer.Option()] = None,
    ip: Annotated[str | None, typer.Option()] = None,
    user_agent: Annotated[str | None, typer.Option()] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Store and queue one trigger (what a routing system does through the Python API)."""
    from crm_postback.api import enqueue_trigger

    attributes: dict[str, Any] = {}
    for pair in attr or []:
        key, _, raw = pair.partition("=")
        try:
            attributes[key] = json.loads(raw)
        except json.JSONDecodeError:
            attributes[key] = raw
    keys = {
        "email": email,
        "phone": phone,
        "external_id": external_id,
        "ttclid": ttclid,
        "tiktok_lead_id": tiktok_lead_id,
        "ip": ip,
        "user_agent": user_agent,
    }
    keys = {k: v for k, v in keys.items() if v}
    payload: dict[str, Any] = {
        "type": trigger,
        "lead_id": lead_id,
        "event_set": event_set,
        "occurred_at": occurred_at or datetime.now(UTC).isoformat(),
        "attributes": attributes,
        "idempotency_key": idempotency_key,
    }
    if keys:
        payload["match_keys"] = keys
    try:
        accepted = enqueue_trigger(payload)
    except InputRejected as error:
        _fail(error)
    note = " (duplicate: already accepted, nothing new queued)" if accepted.duplicate else ""
    typer.echo(f"trigger {accepted.trigger_id} accepted{note}")


@app.command("history")
def history(lead_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What we sent for a lead, when, and what TikTok answered."""
    from dataclasses import asdict

    from crm_postback.operations.postback_reports import lead_history
    from models.db import session_scope

    with session_scope() as session:
        report = lead_history(session, lead_id)
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2, default=_json_default))
        return
    typer.echo(f"lead {lead_id}: {'known' if report.known else 'no match keys stored'}")
    for key, value in report.match_keys.items():
        typer.echo(f"  {key}: {value}")
    for t in report.triggers:
        typer.echo(
            f"- trigger {t.id} {t.trigger_type} at {t.occurred_at:%Y-%m-%d %H:%M:%S} "
            f"-> {t.event_set}: {t.status}" + (f" ({t.error})" if t.error else "")
        )
        for p in t.postbacks:
            typer.echo(
                f"    postback {p.id} {p.event_name or '-'} event_id={p.event_id or '-'} "
                f"{p.status} attempts={p.attempts} "
                f"{_mapping_label(p.mapping_id, p.mapping_version)}"
            )
            for a in p.history:
                typer.echo(
                    f"      {a.attempted_at:%H:%M:%S} {a.outcome} http={a.http_status} "
                    f"code={a.code} request_id={a.request_id} {a.message or ''}"
                )
            if p.status in ("failed", "dead", "expired", "unmapped") and p.last_message:
                typer.echo(f"      reason: {p.last_message}")


@app.command("status")
def status() -> None:
    """Postback counts by event set and status, and trigger counts."""
    from crm_postback.operations.postback_reports import status_counts, trigger_counts
    from models.db import session_scope

    with session_scope() as session:
        counts = status_counts(session)
        triggers = trigger_counts(session)
    typer.echo(
        "triggers: " + (", ".join(f"{k}={v}" for k, v in sorted(triggers.items())) or "none")
    )
    for name, by_status in sorted(counts.items()):
        typer.echo(f"{name}: " + ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())))


@app.command("replay")
def replay_command(
    postback_id: Annotated[list[int] | None, typer.Option("--id", help="Postback id")] = None,
    lead_id: Annotated[str | None, typer.Option(help="All of one lead's postbacks")] = None,
    event_set: Annotated[str | None, typer.Option(help="Event set name or ID")] = None,
    code: Annotated[int | None, typer.Option(help="Last TikTok code, e.g. 40002")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="dead, failed, expired (default: all three)")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before (ISO 8601)")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every replayable postback")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be replayed")] = False,
) -> None:
    """Re-queue dead, failed or expired postbacks (same event_id, refreshed match keys)."""
    from crm_postback.operations.replay import (
        REPLAYABLE,
        ReplaySelection,
        count_replayable,
        replay,
        replayable_ids,
    )
    from models import utcnow
    from models.db import session_scope

    selection = ReplaySelection(
        ids=postback_id or [],
        lead_ref=lead_id,
        event_set=event_set,
        code=code,
        statuses=status or list(REPLAYABLE),
        since=_aware(since),
        until=_aware(until),
    )
    if selection.is_empty() and not everything:
        typer.secho(
            "error: name what to replay (--id, --lead-id, --event-set, --code, "
            "--since/--until) or pass --all",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    try:
        with session_scope() as session:
            total = count_replayable(session, selection)
            ids = [] if dry_run else replayable_ids(session, selection)
    except (InputRejected, ValueError) as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    if dry_run:
        typer.echo(f"{total} postback(s) would be replayed")
        return
    queued: list[int] = []
    chunks = [ids[i : i + REPLAY_CHUNK] for i in range(0, len(ids), REPLAY_CHUNK)]
    with typer.progressbar(chunks, label="replaying", length=len(chunks)) as progress:
        for chunk in progress:
            with session_scope() as session:
                queued_now = replay(session, chunk, utcnow())
                session.commit()
            _dispatch_deliveries(queued_now)
            queued.extend(queued_now)
    not_possible = len(ids) - len(queued)
    typer.echo(
        f"{len(queued)} postback(s) re-queued"
        + (f", {not_possible} could not be rebuilt (see history)" if not_possible else "")
    )


REPLAY_CHUNK = 500


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _dispatch_deliveries(postback_ids: list[int]) -> None:
    """Best effort: if the broker is down, the sweeper sends the re-queued rows."""
    if not postback_ids:
        return
    from worker.tasks import deliver_postbacks

    try:
        deliver_postbacks.delay(postback_ids)
    except Exception as error:
        typer.secho(
            f"broker unavailable ({type(error).__name__}); the sweeper will send them",
            fg="yellow",
            err=True,
        )


@app.command("simulate-tiktok")
def simulate_tiktok(
    host: str = "127.0.0.1",
    port: int = 9400,
    event_set: Annotated[
        list[str] | None,
        typer.Option(help="ID:TOKEN[:crm|web] to register (repeatable)"),
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="Append accepted events as JSON lines")
    ] = None,
) -> None:
    """Run the local Events API simulator (enforces the contract, answers like TikTok)."""
    from crm_postback.simulator import RegisteredEventSet, run

    registered = []
    for spec in event_set or []:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            typer.secho(f"error: event_set: {spec!r} is not ID:TOKEN[:kind]", fg="red", err=True)
            raise typer.Exit(2)
        kind = parts[2] if len(parts) == 3 else "crm"
        registered.append(RegisteredEventSet(parts[0], parts[1], kind, "", ""))
    run(host, port, event_sets=registered, record_path=record)


@app.command("worker")
def worker(
    beat: Annotated[bool, typer.Option(help="Also run the beat scheduler (exactly one!)")] = False,
    concurrency: Annotated[int, typer.Option()] = 2,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo")] = "prefork",
) -> None:
    """Run a Celery worker (same as `celery -A worker.app worker`)."""
    from worker.app import app as celery_app

    argv = ["worker", f"--concurrency={concurrency}", f"--pool={pool}", "--loglevel=INFO"]
    if beat:
        argv.append("--beat")
    celery_app.worker_main(argv)


@app.command("beat")
def beat() -> None:
    """Run the beat scheduler that sweeps due postbacks. Run exactly one."""
    from worker.app import app as celery_app

    celery_app.start(["beat", "--loglevel=INFO"])


@app.command("demo")
def demo() -> None:
    """Run the whole flow on the embedded defaults and show what TikTok received."""
    from crm_postback.cli.demo import run_demo

    sys.exit(run_demo())


from crm_postback.cli.operations_commands import register as _register_ops  # noqa: E402
from crm_postback.cli.web_commands import register as _register_web  # noqa: E402

_register_web(app)

from crm_postback.cli.admin_commands import register as _register_admin  # noqa: E402

_register_admin(app, event_set_app=event_set_app, mapping_app=mapping_app)
_register_ops(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
