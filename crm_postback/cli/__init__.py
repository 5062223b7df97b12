"""The `postback` command line: one module per group of commands, `entry` assembles them."""

from crm_postback.cli.entry import app, main

__all__ = ["app", "main"]
