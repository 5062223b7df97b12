"""HTTP to the Events API: one pooled requests.Session per process, always with timeouts."""

from __future__ import annotations

import os
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from crm_postback.core import jsontext
from crm_postback.tiktok.response_outcomes import Answer, classify_network_error, classify_response

TRACK_PATH = "/open_api/v1.3/event/track/"
CRM_LIST_PATH = "/open_api/v1.3/crm/list/"

_session: requests.Session | None = None
_session_pid: int | None = None


def http_session() -> requests.Session:
    """The process's session; a forked child gets its own so sockets are never shared."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _session, _session_pid = session, os.getpid()
    return _session


class EventsApiClient:
    def __init__(self, base_url: str, timeout: tuple[float, float]) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def track(self, access_token: str, body: dict[str, Any]) -> Answer:
        data = jsontext.dumps_bytes(body)
        started = time.perf_counter()
        try:
            response = http_session().post(
                self.base_url + TRACK_PATH,
                data=data,
                headers={"Access-Token": access_token, "Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            return classify_network_error(error, _elapsed_ms(started))
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = None
        return classify_response(response.status_code, parsed, _elapsed_ms(started))

    def list_crm_event_sets(self, access_token: str, advertiser_id: str) -> dict[str, Any]:
        response = http_session().get(
            self.base_url + CRM_LIST_PATH,
            params={"advertiser_id": advertiser_id},
            headers={"Access-Token": access_token},
            timeout=self.timeout,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
