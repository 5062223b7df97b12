"""Fixtures of the chaos tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A folder for a private server's files (a PostgreSQL cluster, a PgBouncer) outside
    pytest's temp folders: as root these servers run as another user, who must reach the
    folder through its parents, and every pytest session that starts sets pytest's own root
    folder back to owner-only, which would lock a running server out of its files."""
    folder = Path(tempfile.mkdtemp(prefix="postback-test-server-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
