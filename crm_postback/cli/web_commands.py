"""`postback serve`: the HTTP API for routing systems, and the admin.

uvicorn with limits on what one client can hold (crm_postback.web.http_limits: deadlines for
a request's headers and body; idle keep-alive connections closed; at most
API_MAX_CONNECTIONS at once; a request head over h11's default of 16 KiB is refused). It
still belongs behind a reverse proxy for TLS and the rest (docs/operations.md, "Behind a
reverse proxy"); FORWARDED_ALLOW_IPS names the proxies whose X-Forwarded-For it believes.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from crm_postback.core.settings import get_settings


def is_loopback(host: str) -> bool:
    """Only this machine can connect (a name other than localhost may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str | None, typer.Option(help="Default: API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: API_PORT")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the HTTP API (uvicorn) for routing systems.

    Beyond loopback (--host 0.0.0.0) it needs METRICS_TOKEN, so that /metrics is not open
    to every client that reaches the port.
    """
    import uvicorn

    from crm_postback.observability.logging_setup import configure_logging
    from crm_postback.web.http_limits import BoundedH11Protocol

    settings = get_settings()
    bind = host or settings.api_host
    if not settings.metrics_token and not is_loopback(bind):
        typer.secho(
            f"error: METRICS_TOKEN: /metrics would be open to every client that reaches "
            f"{bind}; set METRICS_TOKEN (Prometheus sends it as a bearer token) or listen "
            "on 127.0.0.1",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging(settings)
    uvicorn.run(
        "crm_postback.web.app:create_app",
        factory=True,
        host=bind,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,  # keep LOG_FORMAT / LOG_LEVEL from configure_logging
        server_header=False,
        http=BoundedH11Protocol,
        timeout_keep_alive=settings.api_keep_alive_seconds,  # type: ignore[arg-type]
        limit_concurrency=settings.api_max_connections,
        ws="none",  # no websockets: every request goes through BoundedH11Protocol's timers
        # The client address (per-client login limits, logs) from X-Forwarded-For, only when
        # the connection comes from one of these proxies.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
