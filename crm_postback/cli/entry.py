"""`postback`: schema, workspaces, event sets, mappings, triggers, history, simulator, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from crm_postback.core.data_dir import ensure_private_file
from crm_postback.core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
db_app = typer.Typer(no_args_is_help=True, help="Create or upgrade the database schema.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations (creates the schema on a new database)."""
    from models.migrate import upgrade

    settings = get_settings()
    if not settings.database_url:
        ensure_private_file(settings.embedded_database_path)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"schema at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one known."""
    from models.db import get_engine
    from models.migrate import current_revision, head_revision

    typer.echo(f"database: {current_revision(get_engine())}  newest: {head_revision()}")


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
        kind: Literal["crm", "web"] = "crm"
        if len(parts) == 3 and parts[2] == "web":
            kind = "web"
        elif len(parts) == 3 and parts[2] != "crm":
            typer.secho(f"error: event_set: kind {parts[2]!r} is not crm/web", fg="red", err=True)
            raise typer.Exit(2)
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


def _register_groups() -> None:
    from crm_postback.cli import (
        admin_commands,
        api_key_commands,
        event_set_commands,
        mapping_commands,
        operations_commands,
        postback_commands,
        web_commands,
        workspace_commands,
    )

    app.add_typer(workspace_commands.workspace_app, name="workspace")
    app.add_typer(event_set_commands.event_set_app, name="event-set")
    app.add_typer(mapping_commands.mapping_app, name="mapping")
    postback_commands.register(app)
    web_commands.register(app)
    app.add_typer(api_key_commands.api_key_app, name="api-key")
    app.add_typer(admin_commands.admin_app, name="admin")
    operations_commands.register(app)


_register_groups()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
