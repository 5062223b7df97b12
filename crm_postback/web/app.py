"""The FastAPI application. Later parts (the admin UI) mount their routers into the same app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from crm_postback.intake.trigger_schemas import TriggerIn
from crm_postback.web import health, ingest, lead_consent, prometheus
from crm_postback.web.access_log import install_access_log_filter
from crm_postback.web.admin import SecurityHeaders, create_admin_app
from crm_postback.web.body import BodySizeLimit
from crm_postback.web.errors import UnexpectedErrors, install_error_handlers
from crm_postback.web.shapes import LeadKeysIn

DESCRIPTION = """\
Lead lifecycle changes in, TikTok Events API (CRM) signals out.

Authenticate with `Authorization: Bearer <key>` (`postback api-key create SOURCE`). A key acts
in its workspace only, on the event sets and with the permissions it was given (a route it may
not use is 403; an event set or lead outside its workspace is answered as one that does not
exist), and at most at its rate limit (429 with Retry-After). A trigger answered 202 is
committed to the outbox before the answer and is delivered even if the queue is down at that
moment. Bad fields are answered with 422, a JSON pointer and a sentence; values sent are never
echoed.
"""
# Bodies are parsed by the routes themselves (item by item), so FastAPI does not see these
# models; they are added to the published schema here.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (TriggerIn, LeadKeysIn)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    app.openapi_schema = schema
    return schema


def create_app() -> FastAPI:
    install_access_log_filter()
    app = FastAPI(title="crm-postback", version="1", description=DESCRIPTION)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(UnexpectedErrors)  # around everything that may raise
    # Outermost: every answer under /admin carries the admin's protective headers, whatever
    # made it (the 413 above, the redirect from /admin to /admin/, a 500).
    app.add_middleware(SecurityHeaders, prefix="/admin")
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(lead_consent.router)
    app.include_router(prometheus.router)
    # The admin UI and its JSON API: a sub-app with its own session cookie and HTML errors.
    app.mount("/admin", create_admin_app())
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
