"""What a pool process does once forked: fresh database connections, and the objects that
live as long as the process frozen out of the cyclic collector's scans."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from celery.signals import worker_process_init

from models.db import get_engine


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_pool_process_init_freezes_what_exists_and_forgets_the_engine(
    sqlite_db: str, unfrozen: None
) -> None:
    import worker.app  # noqa: F401  (connects the signal handlers)

    engine = get_engine()
    assert gc.get_freeze_count() == 0
    worker_process_init.send(sender=None)
    assert gc.get_freeze_count() > 10_000  # every module, Celery, SQLAlchemy...
    assert get_engine() is not engine
