"""What every command does the same way with refused input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from crm_postback.core.errors import InputRejected


def fail(error: InputRejected) -> NoReturn:
    """Each refused field on stderr, exit status 2."""
    for item in error.errors:
        typer.secho(f"error: {item}", fg="red", err=True)
    raise typer.Exit(2)


@contextmanager
def refused_input_exits() -> Iterator[None]:
    """Around a command (or a lookup): refused input, an unknown name included, is `fail`ed."""
    try:
        yield
    except InputRejected as error:
        fail(error)
