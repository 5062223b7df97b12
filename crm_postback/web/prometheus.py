"""GET /metrics: Prometheus text format (see crm_postback/observability/ for what is in it).

This process's counters (triggers received over the HTTP API) plus the outbox gauges read from
the database at scrape time. With METRICS_TOKEN set, a scrape needs that bearer token; and
`postback serve` refuses to listen beyond loopback without it (cli.web_commands), so an open
/metrics is reachable from this machine only.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from crm_postback.core.settings import get_settings
from crm_postback.observability.metrics_exposition import render
from crm_postback.operations.match_quality_metrics import match_quality_gauges
from crm_postback.web.errors import RequestRejected
from crm_postback.web.shapes import Problem

router = APIRouter(tags=["operations"])


def _authorized(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@router.get("/metrics", include_in_schema=False)
def get_metrics(request: Request) -> Response:
    # A plain `def`: FastAPI runs it in the thread pool, so the database reads do not block.
    token = get_settings().metrics_token
    if token and not _authorized(request, token):
        problem = Problem(
            pointer=None,
            field="Authorization",
            message="metrics need Authorization: Bearer <METRICS_TOKEN>",
        )
        raise RequestRejected(401, [problem], {"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = render(per_event_set=(match_quality_gauges,))
    return Response(body, media_type=content_type)
