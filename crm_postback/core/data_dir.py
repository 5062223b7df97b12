"""The embedded default's data dir: only its owner may read it (SQLite file, broker, keys)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

_warned: set[Path] = set()


def ensure_private_dir(path: Path) -> Path:
    """Create `path` if missing, and each missing folder above it, owner-only (`mkdir -p`
    would give those the umask's mode). What existed already is left as it is: see
    `_warn_if_open`."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        # Another process may make it first (with this mode too).
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    if not missing:
        _warn_if_open(path)
    return path


def ensure_private_file(path: Path) -> Path:
    """Create an empty owner-only file if missing (SQLite gives its -wal and -shm files the
    mode of the database file). An existing file is left as it is: see `_warn_if_open`."""
    ensure_private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        _warn_if_open(path)
    return path


def _warn_if_open(path: Path) -> None:
    """An existing path that group or others may read is the operator's choice (two users
    sharing a data dir, or a path owned by someone else, where a chmod would fail): it is
    not changed, and named once per process in a warning."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not mode & 0o077 or path in _warned:
        return
    _warned.add(path)
    log.warning(
        "%s is readable beyond its owner (mode %o); left as it is. "
        "chmod go= it unless other users must read it",
        path,
        mode & 0o777,
    )
