"""A thin client of the HTTP API for routing systems written in Python.

    from crm_postback.http_client import PostbackClient
    client = PostbackClient("https://postback.example.com", api_key="pbk_…")
    answer = client.send_trigger({"type": "lead.sold", "lead_id": "L-1001", ...})

Connection errors, timeouts, 429 (a key over its rate limit) and 5xx are retried with
exponential backoff (Retry-After is honoured, up to MAX_RETRY_AFTER_SECONDS). 401, 403 (a
revoked key, or one without the route's permission) and 404 are raised at once. A retry
resends the same body, so it carries the same idempotency key: the trigger's own
`idempotency_key`, or the one the server derives from lead, type and occurred_at. The
server answers a retried trigger with its original trigger_id and sends nothing new.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

MAX_BATCH = 1000
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class ItemResult:
    index: int
    status: str  # accepted | duplicate | rejected
    trigger_id: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Match keys dropped because they did not normalise; the trigger was kept without them.
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("accepted", "duplicate")


class PostbackError(Exception):
    """The API refused the request (or stayed unreachable); `errors` are its problems."""

    def __init__(self, status: int | None, errors: list[dict[str, Any]], message: str = "") -> None:
        text = message or "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
        super().__init__(f"HTTP {status}: {text}" if status else text)
        self.status = status
        self.errors = errors


class TriggerRejected(PostbackError):
    """`send_trigger`'s trigger was rejected; `errors` name each bad field."""


class PostbackClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff_seconds: float = 0.5,
        generate_idempotency_keys: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        """`generate_idempotency_keys` gives each trigger sent without a key a random one
        (uuid4, reused on that call's retries). Off by default: a random key makes the same
        change reported twice (by a second call, or via another path) two events, where the
        derived key would recognise it."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.generate_idempotency_keys = generate_idempotency_keys
        self.session = session or requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {api_key}", "User-Agent": "crm-postback-client/1"}
        )

    def send_trigger(self, trigger: Mapping[str, Any], *, strict: bool = False) -> ItemResult:
        """Sends one trigger; raises TriggerRejected naming each bad field. A match key that
        does not normalise is dropped and named in `.warnings`; `strict` refuses instead."""
        answer = self._request(
            "POST", _triggers_path(strict), self._keyed(trigger), expect_items=True
        )
        item = _items(answer)[0]
        if not item.ok:
            raise TriggerRejected(422, item.errors)
        return item

    def send_triggers(
        self, triggers: Sequence[Mapping[str, Any]], *, strict: bool = False
    ) -> list[ItemResult]:
        """Sends any number of triggers in batches of 1,000; one answer per trigger, in order.
        Rejected items are answers, not exceptions: check `.ok`, `.errors` and `.warnings`."""
        results: list[ItemResult] = []
        for start in range(0, len(triggers), MAX_BATCH):
            chunk = [self._keyed(t) for t in triggers[start : start + MAX_BATCH]]
            answer = self._request("POST", _triggers_path(strict), chunk, expect_items=True)
            for item in _items(answer):
                results.append(
                    ItemResult(
                        item.index + start, item.status, item.trigger_id, item.errors, item.warnings
                    )
                )
        return results

    def upsert_lead(
        self,
        lead_id: str,
        match_keys: Mapping[str, Any],
        *,
        limited_data_use: bool | None = None,
        strict: bool = False,
    ) -> list[dict[str, Any]]:
        """Adds or merges a lead's match keys (hashed by the server before storing); returns
        the warnings of the keys dropped (`strict`: raises PostbackError instead)."""
        body: dict[str, Any] = {"match_keys": match_keys}
        if limited_data_use is not None:
            body["limited_data_use"] = limited_data_use
        path = f"/v1/leads/{quote(lead_id, safe='')}" + ("?strict=true" if strict else "")
        answer = self._request("PUT", path, body)
        warnings: list[dict[str, Any]] = (answer or {}).get("warnings", [])
        return warnings

    def withdraw_consent(self, lead_id: str) -> dict[str, Any]:
        """Records that the lead withdrew consent: nothing more is sent for it. A lead the key's
        workspace does not have raises PostbackError with status 404."""
        answer: dict[str, Any] = self._request(
            "POST", f"/v1/leads/{quote(lead_id, safe='')}/consent-withdrawal", None
        )
        return answer

    def postbacks(self, lead_id: str) -> dict[str, Any]:
        """The lead's history: triggers, postbacks, attempts with TikTok codes. A lead the key's
        workspace does not have raises PostbackError with status 404."""
        answer: dict[str, Any] = self._request(
            "GET", f"/v1/leads/{quote(lead_id, safe='')}/postbacks", None
        )
        return answer

    def _keyed(self, trigger: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(trigger)
        if self.generate_idempotency_keys and not body.get("idempotency_key"):
            body["idempotency_key"] = str(uuid.uuid4())
        return body

    def _request(self, method: str, path: str, body: Any, *, expect_items: bool = False) -> Any:
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            last_try = attempt == self.retries
            try:
                response = self.session.request(method, url, json=body, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                if last_try:
                    raise PostbackError(None, [], f"unreachable: {type(error).__name__}") from None
                self._sleep(attempt, None)
                continue
            if response.status_code in RETRY_STATUSES and not last_try:
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            return _answer(response, expect_items)
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_seconds * 2**attempt * random.uniform(0.8, 1.2)
        # Retry-After in seconds is honoured (capped); an HTTP date is left to the backoff.
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_SECONDS))
        time.sleep(delay)


def _answer(response: requests.Response, expect_items: bool) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.ok:
        return body
    if expect_items and response.status_code == 422 and isinstance(body, dict) and "items" in body:
        return body  # every item rejected: the per-item answers say why
    errors = body.get("errors", []) if isinstance(body, dict) else []
    raise PostbackError(response.status_code, errors, "" if errors else response.reason or "")


def _triggers_path(strict: bool) -> str:
    return "/v1/triggers?strict=true" if strict else "/v1/triggers"


def _items(answer: dict[str, Any]) -> list[ItemResult]:
    return [
        ItemResult(
            item["index"],
            item["status"],
            item.get("trigger_id"),
            item.get("errors", []),
            item.get("warnings", []),
        )
        for item in answer["items"]
    ]
