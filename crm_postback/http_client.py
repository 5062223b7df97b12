"""The old import path of the ingest API's HTTP client, kept working for existing callers.
It lives in `crm_postback.intake.ingest_http_client`."""

from crm_postback.intake.ingest_http_client import (
    ItemResult,
    PostbackClient,
    PostbackError,
    TriggerRejected,
)

__all__ = ["ItemResult", "PostbackClient", "PostbackError", "TriggerRejected"]
