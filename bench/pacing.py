"""`bench.run pacing`: throttled requests without and with pacing."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "throttled requests without and with pacing toward a limited simulator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--triggers", type=int, default=1_000)
    parser.add_argument("--producers", type=int, default=1)


def run(
    ctx: Any, args: argparse.Namespace, workload: Any, result: dict[str, Any], *, log: Any
) -> tuple[str, bool]:
    """Adds its figures to `result`; returns the report text and whether every expected
    event arrived."""
    raise NotImplementedError
