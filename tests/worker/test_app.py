"""What a pool process does once forked: fresh database connections, and the objects that
live as long as the process frozen out of the cyclic collector's scans."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from celery.signals import worker_init, worker_process_init

from models.db import get_engine


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_worker_start_freezes_what_exists(sqlite_db: str, unfrozen: None) -> None:
    import worker.app  # noqa: F401  (connects the signal handlers)

    assert gc.get_freeze_count() == 0
    worker_init.send(sender=None)
    assert gc.get_freeze_count() > 10_000  # every module, Celery, SQLAlchemy...


def test_pool_process_gets_its_own_engine_and_freezes_what_it_built(
    sqlite_db: str, unfrozen: None
) -> None:
    import worker.app  # noqa: F401

    engine = get_engine()
    worker_process_init.send(sender=None)
    assert get_engine() is not engine
    assert gc.get_freeze_count() > 0
