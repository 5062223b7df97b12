"""`postback serve`: the HTTP API for routing systems, and the admin."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.core.settings import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Default: API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: API_PORT")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the HTTP API (uvicorn) for routing systems."""
    import uvicorn

    from crm_postback.observability.logging_setup import configure_logging

    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        "crm_postback.web.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,  # keep LOG_FORMAT / LOG_LEVEL from configure_logging
        server_header=False,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
