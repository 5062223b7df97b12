"""The Celery app. At-least-once settings per shared/reference/reliability-and-style.md A1."""

from __future__ import annotations

import gc
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    celeryd_init,
    setup_logging,
    worker_init,
    worker_process_init,
    worker_shutdown,
)
from kombu import transport as kombu_transport

from crm_postback.core.data_dir import ensure_private_dir
from crm_postback.core.settings import Settings, get_settings
from crm_postback.observability.logging_setup import configure_logging
from models.db import reset_engine

# Longer than any task may run (time limit 120 s), so Redis never re-delivers a running task.
VISIBILITY_TIMEOUT_SECONDS = 900
FILESYSTEM_POLLING_SECONDS = 0.1
SENTINEL_SOCKET_TIMEOUT_SECONDS = 2


def broker_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_folder
        ensure_private_dir(settings.postback_data_dir)
        for sub in ("queue", "processed", "control"):
            ensure_private_dir(folder / sub)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # How long a worker sleeps when it may not take a message (its prefetch is in
            # use) or finds none: kombu's 1 s made each task wait up to a second after the
            # one before it. A look at the folder is one directory listing.
            "polling_interval": FILESYSTEM_POLLING_SECONDS,
        }
    if _on_amqp(settings):
        # The publish returns once RabbitMQ has taken the message (publisher confirms).
        return {"confirm_publish": True}
    if settings.broker_url.startswith("sentinel://"):
        return {
            "master_name": settings.broker_sentinel_master,
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            # For the sentinels only (the master's connections keep kombu's defaults, so the
            # BRPOP is not cut short): a dead or unreachable sentinel is skipped after this
            # long instead of holding up the discovery of the master.
            "sentinel_kwargs": {
                "socket_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
                "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
            },
        }
    return {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}


def _on_amqp(settings: Settings) -> bool:
    return settings.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def queue_type(settings: Settings) -> str:
    """Quorum queues on RabbitMQ: replicated, and they refuse nothing this app sends (no task
    has an ETA or a priority)."""
    return "quorum" if _on_amqp(settings) else "classic"


# Redis channels that survive a broker restart (worker/broker_transport.py says why), registered
# under kombu's own schemes rather than named as `broker_transport`: kombu resolves a URL's
# scheme through TRANSPORT_ALIASES each time a Connection is built or `switch()`es to its next
# `;`-separated URL (a failover re-parses that URL's scheme and would drop an explicit class),
# and its logs keep showing `redis://` / `sentinel://`. For `rediss://` kombu itself applies its
# TLS default, since the scheme stays visible. Any other broker keeps kombu's transport.
REDIS_TRANSPORTS = {
    "redis": "worker.broker_transport:RedisTransport",
    "rediss": "worker.broker_transport:RedisTransport",
    "sentinel": "worker.broker_transport:SentinelTransport",
}


def register_redis_transports() -> None:
    """Points kombu's redis, rediss and sentinel schemes at the project's transports (in this
    process; idempotent), forgetting any class kombu resolved for them before."""
    for scheme, path in REDIS_TRANSPORTS.items():
        kombu_transport.TRANSPORT_ALIASES[scheme] = path
        # kombu's cache of resolved names (private; not in the type stubs).
        kombu_transport._transport_cache.pop(scheme, None)  # type: ignore[attr-defined]


register_redis_transports()


def create_app(settings: Settings) -> Celery:
    app = Celery("crm_postback", include=["worker.tasks", "worker.retention_tasks"])
    apply_settings(app, settings)
    return app


def apply_settings(app: Celery, settings: Settings) -> None:
    """(Re)configures the app from settings; used at import and when a process changes them."""
    app.conf.update(
        broker_url=settings.broker_url,
        task_default_queue=settings.celery_queue,
        task_default_queue_type=queue_type(settings),
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=120,
        task_soft_time_limit=100,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # SIGTERM: finish in-flight postbacks; unfinished messages go back to the broker.
        worker_soft_shutdown_timeout=30,
        worker_enable_soft_shutdown_on_idle=True,
        # No task here uses an ETA (delays live in the database); this guards against any
        # future countdown filling worker memory.
        worker_eta_task_limit=100,
        worker_hijack_root_logger=False,
        # Fail fast when the broker is down: the outbox row is already committed and the
        # sweeper will dispatch it, so a caller must not hang on a dead broker.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        broker_connection_timeout=3,
        beat_schedule={
            "sweep-due-postbacks": {
                "task": "postback.sweep_due_postbacks",
                "schedule": settings.sweep_interval_seconds,
            },
            # Daily, at a quiet hour (UTC): match keys and event bodies past RETENTION_DAYS.
            "purge-expired-personal-data": {
                "task": "postback.purge_expired_data",
                "schedule": crontab(hour=3, minute=17),
            },
        },
        beat_schedule_filename=str(settings.postback_data_dir / "celerybeat-schedule"),
    )
    # Forget connections and queue routing built from earlier settings (Celery caches both).
    app.__dict__["_pool"] = None  # `_pool` is private: not in the type stubs
    app.__dict__.pop("amqp", None)


app = create_app(get_settings())


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    configure_logging(get_settings())


@worker_init.connect
def _freeze_long_lived_objects(**_: Any) -> None:
    """What exists once the worker is set up (Celery, SQLAlchemy, every module) lives as long
    as the process: moved out of the cyclic collector's sight, so the collections a batch's
    thousands of short-lived rows trigger scan only those (docs/performance.md has the
    measured effect). Done before the pool forks, so its processes inherit it without the
    collector ever writing to the pages they share with this one."""
    gc.collect()
    gc.freeze()


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    reset_engine()
    gc.freeze()  # what this pool process built while starting; no collection (see above)


# Metrics: the main process serves every pool process's counters (prometheus_client
# multiprocess mode), set up before the pool forks. See
# crm_postback/observability/worker_metrics_server.py.
_worker_metrics: list[Any] = []


@celeryd_init.connect
def _serve_metrics(**_: Any) -> None:
    from crm_postback.observability.worker_metrics_server import start_worker_metrics

    _worker_metrics.append(start_worker_metrics(get_settings()))


@worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    for served in _worker_metrics:
        if served is not None:
            served.stop()
    _worker_metrics.clear()
