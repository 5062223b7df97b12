"""`postback mapping set/list/remove/export/import/preset`: trigger-to-event mappings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from crm_postback.core.errors import FieldError
from models import DEFAULT_WORKSPACE_NAME

mapping_app = typer.Typer(no_args_is_help=True, help="Trigger-to-event mappings.")


def warn(warnings: Sequence[FieldError]) -> None:
    """Saved, with something to say (a legacy name on a CRM event set): on stderr, exit 0."""
    for item in warnings:
        typer.secho(f"warning: {item}", fg="yellow", err=True)


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
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Create (or with --id, update) a mapping. Invalid mappings are refused with the reason."""
    from crm_postback.commands.manage_mappings import (
        AddMapping,
        MappingInput,
        UpdateMapping,
        add_mapping,
        update_mapping,
    )
    from mappings.rules import parse_condition

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
    wanted = MappingInput(trigger, event, conditions, rules, enabled=not disabled)
    actor = cli_actor(workspace)
    with refused_input_exits():
        if mapping_id is None:
            saved = add_mapping(AddMapping(event_set, wanted), actor)
        else:
            wanted_update = UpdateMapping(
                mapping_id, wanted, event_set=event_set, must_belong=False
            )
            saved = update_mapping(wanted_update, actor)
    typer.echo(f"mapping {saved.mapping.id} v{saved.mapping.version}: {saved.summary}")
    warn(saved.warnings)


@mapping_app.command("list")
def mapping_list(event_set: str, workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """List an event set's mappings."""
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_service import describe_mapping, list_mappings
    from models.db import session_scope

    with session_scope(workspace=workspace_id(workspace)) as session:
        with refused_input_exits():
            target = get_event_set(session, event_set)
        for m in list_mappings(session, target):
            state = "" if m.enabled else " (disabled)"
            typer.echo(f"{m.id:>4} v{m.version}  {describe_mapping(m)}{state}")


@mapping_app.command("remove")
def mapping_remove(mapping_id: int, workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """Delete a mapping. Postbacks it already produced are kept and still delivered."""
    from crm_postback.commands.manage_mappings import DeleteMapping, delete_mapping

    actor = cli_actor(workspace)
    with refused_input_exits():
        delete_mapping(DeleteMapping(mapping_id), actor)
    typer.echo(f"mapping {mapping_id} removed")


@mapping_app.command("export")
def mapping_export(
    event_set: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Write an event set's mappings as YAML (review them in git)."""
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_service import list_mappings
    from crm_postback.configuration.mapping_yaml import export_mappings
    from models.db import session_scope

    with session_scope(workspace=workspace_id(workspace)) as session:
        with refused_input_exits():
            target = get_event_set(session, event_set)
        text = export_mappings(target, list_mappings(session, target))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"{event_set}: mappings written to {output}")


@mapping_app.command("import")
def mapping_import(
    file: Annotated[Path, typer.Argument(help="YAML from `postback mapping export`")],
    event_set: Annotated[
        str | None, typer.Option(help="Default: the event_set named in the file")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only say what would change")] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Make an event set's mappings equal to the file (create, update, delete), audited."""
    from crm_postback.commands.manage_mappings import ImportMappingYaml, import_mapping_yaml
    from crm_postback.configuration.mapping_yaml import MAX_FILE_BYTES

    actor = cli_actor(workspace)
    with file.open("rb") as handle:  # never more than the limit in memory
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        typer.secho(f"error: file: is larger than {MAX_FILE_BYTES} bytes", fg="red", err=True)
        raise typer.Exit(2)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        typer.secho("error: file: must be UTF-8 YAML", fg="red", err=True)
        raise typer.Exit(2) from None
    with refused_input_exits():
        result = import_mapping_yaml(
            ImportMappingYaml(text, event_set=event_set, dry_run=dry_run), actor
        )
    prefix = "dry run: would be " if dry_run else ""
    typer.echo(f"{result.event_set}: {prefix}{result.summary}")
    warn(result.warnings)


@mapping_app.command("preset")
def mapping_preset(
    preset: Annotated[str, typer.Argument(help="lead-generation")],
    event_set: Annotated[str, typer.Option(help="Event set name or ID")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Create the mappings TikTok recommends for a funnel (lead-generation: submitted,
    qualified, sold, offer conversion). Running it again creates nothing; a trigger of the
    preset already mapped to another event is refused (nothing is created)."""
    from crm_postback.commands.manage_mappings import ApplyPreset, apply_preset

    actor = cli_actor(workspace)
    with refused_input_exits():
        result = apply_preset(ApplyPreset(event_set, preset), actor)
    for saved in result.created:
        typer.echo(f"mapping {saved.mapping.id} v{saved.mapping.version}: {saved.summary}")
    for saved in result.present:
        typer.echo(f"mapping {saved.mapping.id} already there: {saved.summary}")
    typer.echo(f"{result.event_set}: preset {result.preset}: {result.summary}")
