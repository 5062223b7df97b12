"""The configuration reference in docs/configuration.md, generated from `Settings`.

`python -m crm_postback.core.settings_reference` rewrites the table between the two markers in
docs/configuration.md; `--check` exits 1 when the file differs from a fresh generation (a
setting added, removed, renamed, retyped, or with another default or description). The prose
around the markers is written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from crm_postback.core.settings import Settings

BEGIN_MARKER = "<!-- settings-reference:begin: generated, do not edit by hand -->"
END_MARKER = "<!-- settings-reference:end -->"
MODULE = "crm_postback.core.settings_reference"
REFERENCE_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# What a setting does, for the fields of `Settings` that carry no `description` yet. A field
# that has one must not be listed here (the test says so), so there is one source per setting.
DESCRIPTIONS_NOT_IN_SETTINGS: dict[str, str] = {
    "http_connect_timeout_seconds": "Connect timeout of each request to TikTok.",
    "http_read_timeout_seconds": "Read timeout of each request to TikTok.",
    "retry_jitter_ratio": "Each retry delay is moved by up to this share of it, either way.",
    "sweep_interval_seconds": "How often beat runs the sweeper.",
    "sweep_batch_size": "Rows one sweep claims.",
    "max_attribute_bytes": "Largest JSON size of a trigger's attributes.",
    "log_level": "Level of the root logger; `sqlalchemy.engine` and `urllib3` stay at WARNING "
    "whatever this says.",
    "log_format": "`json` for one JSON object per line on stderr.",
}


def env_name(settings: type[BaseSettings], field_name: str) -> str:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def description(field_name: str, field: FieldInfo) -> str:
    if field.description:
        return field.description
    return DESCRIPTIONS_NOT_IN_SETTINGS.get(field_name, "")


def type_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (tuple, list):
        (item, *_rest) = get_args(annotation)
        return f"list of {type_text(item)} (JSON)"
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in get_args(annotation))
    if annotation is type(None):
        return "none"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def bounds_text(field: FieldInfo) -> str:
    parts: list[str] = []
    for rule in field.metadata:
        if isinstance(rule, Gt):
            parts.append(f"> {rule.gt}")
        elif isinstance(rule, Ge):
            parts.append(f"≥ {rule.ge}")
        elif isinstance(rule, Lt):
            parts.append(f"< {rule.lt}")
        elif isinstance(rule, Le):
            parts.append(f"≤ {rule.le}")
    return ", ".join(parts)


def default_text(value: Any) -> str:
    """The default as one would write it in the environment."""
    if value == "" or value is None:
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (tuple, list)):
        return f"`{json.dumps(list(value), separators=(',', ':'))}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows(settings: type[BaseSettings] = Settings) -> Iterator[tuple[str, str, str, str]]:
    """(variable, type, default, what it does) per setting, in the class's order."""
    for name, field in settings.model_fields.items():
        kind = type_text(field.annotation)
        bounds = bounds_text(field)
        yield (
            f"`{env_name(settings, name)}`",
            f"{kind}, {bounds}" if bounds else kind,
            default_text(field.default),
            description(name, field),
        )


def render_table(settings: type[BaseSettings] = Settings) -> str:
    lines = ["| variable | type | default | what it does |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows(settings)]
    return "\n".join(lines)


def with_fresh_table(document: str, settings: type[BaseSettings] = Settings) -> str:
    """`document` with the text between the markers replaced by a fresh table."""
    head, begin, rest = document.partition(BEGIN_MARKER)
    _old, end, tail = rest.partition(END_MARKER)
    if not begin or not end:
        raise ValueError(f"{BEGIN_MARKER!r} and {END_MARKER!r} must both be in the document")
    return f"{head}{BEGIN_MARKER}\n{render_table(settings)}\n{END_MARKER}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--path", type=Path, default=REFERENCE_PATH)
    args = parser.parse_args(argv)
    current = args.path.read_text(encoding="utf-8")
    fresh = with_fresh_table(current)
    if args.check:
        if fresh != current:
            sys.stderr.write(f"{args.path} is stale: run python -m {MODULE}\n")
            return 1
        return 0
    if fresh != current:
        args.path.write_text(fresh, encoding="utf-8")
        sys.stdout.write(f"{args.path}: table regenerated\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
