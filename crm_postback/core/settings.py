"""All configuration in one typed object, read from the environment (and an optional .env)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".postback")
DEFAULT_RETRY_SCHEDULE = (10, 60, 300, 1800, 7200, 21600, 43200)
MAX_BATCH_LINGER_MS = 1000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    postback_data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Where the embedded defaults keep the SQLite file, broker folder and key.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL; empty means SQLite in the data dir. "
        "postgres:// and postgresql:// are rewritten to postgresql+psycopg://.",
    )
    database_pooler: Literal["none", "transaction"] = Field(
        "none",
        description="`transaction` when DATABASE_URL points at a pooler in transaction mode "
        "(PgBouncer `pool_mode = transaction`, or any pooler that may give each transaction "
        "another server connection): psycopg then never prepares statements on the server, "
        'which such a pooler cannot keep (`prepared statement "_pg3_0" does not exist`). '
        "PostgreSQL only; see docs/operations.md.",
    )
    broker_url: str = Field(
        "filesystem://",
        description="Celery broker; filesystem:// keeps messages in the data dir. Redis Sentinel: "
        "sentinel://host:26379;sentinel://host2:26379 (every sentinel, `;`-separated) with "
        "BROKER_SENTINEL_MASTER; see docs/operations.md.",
    )
    broker_sentinel_master: str = Field(
        "",
        description="The master name the sentinels monitor (`sentinel monitor <name> ...`); "
        "required when BROKER_URL is sentinel://, ignored otherwise.",
    )
    celery_queue: str = Field("postback", description="Queue the tasks are sent to and read from.")
    tiktok_api_base_url: str = Field(
        "https://business-api.tiktok.com",
        description="Events API host; point it at `postback simulate-tiktok` for local runs.",
    )
    token_encryption_key: str = Field(
        "",
        description="Fernet key for access tokens at rest; empty means a key file in the data dir.",
    )
    default_phone_region: str = Field(
        "US",
        description="Region used to read phone numbers written without a +country code.",
    )
    http_connect_timeout_seconds: float = 3.05
    http_read_timeout_seconds: float = 10.0
    # worker: answers of the Events API
    http_total_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest one request to the Events API may take in all, answer included "
        "(the connect and read timeouts bound each network wait, not their sum).",
    )
    retry_schedule_seconds: tuple[int, ...] = Field(
        DEFAULT_RETRY_SCHEDULE,
        description="Delay before each retry; after the last the postback is dead.",
    )
    retry_jitter_ratio: float = Field(0.2, ge=0, le=1)
    sweep_interval_seconds: float = Field(10.0, gt=0)
    sweep_batch_size: int = Field(1000, gt=0, le=1000)
    dispatch_lease_seconds: int = Field(
        120, gt=0, description="How long a queued or in-flight postback is reserved."
    )
    stale_trigger_seconds: int = Field(
        30, gt=0, description="A trigger not processed after this long is run by the sweeper."
    )
    batch_linger_ms: int = Field(
        100,
        ge=0,
        le=MAX_BATCH_LINGER_MS,
        description="A worker woken by new triggers waits this long before taking what is "
        "ready, so single triggers arriving together share one request (Redis broker only; "
        "not when it was woken because a full batch left more waiting). The process that "
        "stores the triggers decides: its wake-up carries its value, and after a wake-up it "
        "published itself it asks Redis for no other for that long.",
    )
    group_commit_wait_ms: float = Field(
        1.0,
        ge=0,
        le=50,
        description="Concurrent enqueue calls of one process share a commit; when the last "
        "one carried several callers, the next waits up to this long for as many to be "
        "queued (fewer commits under steady concurrency, at most this much more latency per "
        "call; a lone caller never waits; 0: never wait).",
    )
    tiktok_request_rate: str = Field(
        "",
        description="Pacing: at most this many requests to the Events API per access token "
        "(`limits` notation, e.g. 10/second, 600 per minute; empty, 0 or none: no pacing), "
        "counted in a moving window by all workers together (where "
        "TIKTOK_PACING_STORAGE_URL says), so event sets sharing a token share it. TikTok "
        "publishes no limit for event/track; see docs/tiktok-contract.md.",
    )
    tiktok_pacing_storage_url: str = Field(
        "",
        description="Where the pacing budget is counted: redis://host:6379/1 shares it "
        "between every worker process and host; empty means RATE_LIMIT_STORAGE_URL, and "
        "when that is empty too, each worker process counts its own (the rate is then per "
        "process). Redis unreachable: each process counts its own until it is back (logged).",
    )
    tiktok_pacing_max_wait_seconds: float = Field(
        1.0,
        ge=0,
        le=10,
        description="When a token's budget is spent, a worker waits at most this long in all "
        "for a free slot; a batch that would wait longer is deferred (`retrying`, no attempt "
        "counted) to when its window frees, and the worker moves on.",
    )
    throttle_pause_seconds: int = Field(
        30, ge=0, description="After TikTok throttles an event set, send nothing for it this long."
    )
    max_processing_attempts: int = Field(
        5, gt=0, description="Runs of one trigger before it is failed (a trigger killing workers)."
    )
    lead_wait_seconds: int = Field(
        3600, ge=0, description="How long a trigger for an unknown lead waits for that lead."
    )
    max_event_age_days: float | None = Field(
        None,
        gt=0,
        le=365,
        description="When set, the event age limit of every event set that has none of its "
        "own, for both event sources (instead of CRM_MAX_EVENT_AGE_DAYS and "
        "WEB_MAX_EVENT_AGE_DAYS). An operator's replay is sent whatever its age.",
    )
    crm_max_event_age_days: float = Field(
        28.0,
        gt=0,
        le=365,
        description="CRM event sets without a limit of their own: events older than this when "
        "due end `expired`, unsent (TikTok's 28-day click-through attribution window).",
    )
    web_max_event_age_days: float = Field(
        7.0,
        gt=0,
        le=365,
        description="Pixel (web) event sets without a limit of their own: events older than "
        "this when due end `expired`, unsent.",
    )
    max_attribute_bytes: int = Field(16_384, gt=0)
    max_request_bytes: int = Field(
        5_000_000, gt=0, description="Largest HTTP request body the API reads; larger is 413."
    )
    api_host: str = Field("127.0.0.1", description="Address `postback serve` listens on.")
    api_port: int = Field(8000, gt=0, lt=65536, description="Port `postback serve` listens on.")
    # postback serve: time and connection limits
    api_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A client must send a request's line and headers within this long of "
        "connecting (or of the answer to its previous request); a slower one is disconnected.",
    )
    api_body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="A request's body must have arrived this long after its headers; a "
        "slower one is disconnected.",
    )
    api_keep_alive_seconds: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this long."
    )
    api_max_connections: int = Field(
        1000,
        gt=0,
        description="Open connections and running requests `postback serve` allows at once; a "
        "request beyond them is answered 503.",
    )
    # postback serve: behind a reverse proxy
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="Addresses (comma-separated; networks like 172.16.0.0/12, or *) of the "
        "reverse proxies whose X-Forwarded-For and X-Forwarded-Proto `postback serve` "
        "believes: the client address (per-client login limits, logs) is then the one the "
        "proxy saw. Any other connection's own address is the client's.",
    )
    admin_username: str = Field(
        "",
        description="Bootstrap admin for /admin: this user is created (or its password reset) "
        "from ADMIN_PASSWORD when it logs in. More users: `postback admin user-add`.",
    )
    admin_password: str = Field(
        "",
        description="Password of ADMIN_USERNAME, in clear or as an argon2 hash ($argon2id$...).",
    )
    session_secret: str = Field(
        "",
        description="Signs the admin session cookie; empty means a key file in the data dir "
        "(set it when several hosts serve /admin).",
    )
    admin_session_idle_minutes: int = Field(
        120, gt=0, description="An admin session unused this long ends (log in again)."
    )
    admin_session_max_hours: int = Field(
        12, gt=0, description="An admin session ends this long after login, used or not."
    )
    admin_cookie_secure: bool = Field(
        False, description="Send the admin cookie over HTTPS only (set true behind TLS)."
    )
    # admin login and rate limits
    rate_limit_storage_url: str = Field(
        "",
        description="Where rate limits count: empty keeps the counts in each web process; "
        "redis://host:6379/1 shares them between processes and hosts.",
    )
    admin_login_rate_limit: str = Field(
        "10 per minute",
        description="Login attempts one client address may make (`limits` notation, e.g. "
        "10 per minute, 100 per hour, 5/second); more are answered 429 with Retry-After.",
    )
    ingest_key_rate_limit: str = Field(
        "3000 per second",
        description="Requests one API key may make to the ingest API, unless the key has its "
        "own limit (`limits` notation, e.g. 3000 per second, 100000 per minute; 0 or none: no "
        "limit); more are answered 429 with Retry-After. Counted where "
        "RATE_LIMIT_STORAGE_URL says.",
    )
    admin_login_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Logins checked at once per web process (each argon2 check takes 64 MiB).",
    )
    admin_login_queue: int = Field(
        8,
        ge=0,
        description="Logins that may wait for a check; more are answered 503 with Retry-After.",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address a worker serves its Prometheus metrics on (0.0.0.0 in a container).",
    )
    metrics_port: int = Field(
        9808,
        ge=0,
        lt=65536,
        description="Port a worker serves its Prometheus metrics on (all its pool processes "
        "together); 0 turns it off. The web app serves its own at /metrics.",
    )
    metrics_token: str = Field(
        "",
        description="When set, GET /metrics on the web app needs `Authorization: Bearer <it>`.",
    )
    metrics_max_workspaces: int = Field(
        100,
        ge=0,
        description="Metrics carry the workspace's name as the `workspace` label for the "
        "workspaces with an id up to this number; later ones share the label `other`, so the "
        "number of series stays bounded.",
    )
    retention_days: int = Field(
        90,
        gt=0,
        description="After this many days a lead's match keys and the stored event bodies are "
        "purged (daily, by beat); statuses, codes and counts are kept.",
    )
    flower_basic_auth: str = Field(
        "",
        description="user:password that `postback flower` (Celery's monitoring UI, which can "
        "revoke tasks) asks for; empty means no login.",
    )

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, value: str) -> str:
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("rate_limit_storage_url", "tiktok_pacing_storage_url")
    @classmethod
    def _redis_rate_limit_storage(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if value and scheme not in {"redis", "rediss", "redis+unix", "redis+sentinel"}:
            raise ValueError("must be empty or a redis://, rediss:// or redis+sentinel:// URL")
        return value

    @model_validator(mode="after")
    def _sentinel_broker_names_its_master(self) -> Settings:
        if self.broker_url.startswith("sentinel://") and not self.broker_sentinel_master.strip():
            raise ValueError(
                "broker_sentinel_master (BROKER_SENTINEL_MASTER) must name the Sentinel master "
                "when broker_url is sentinel://"
            )
        return self

    @field_validator("admin_login_rate_limit", "ingest_key_rate_limit", "tiktok_request_rate")
    @classmethod
    def _rate_in_limits_notation(cls, value: str, info: ValidationInfo) -> str:
        from limits import parse

        from crm_postback.core.rate_limits import rate_limit_disabled

        value = value.strip()
        if info.field_name == "tiktok_request_rate" and (not value or rate_limit_disabled(value)):
            return ""
        # The ingest limit may be turned off; the login limit, a guard on passwords, may not.
        if info.field_name == "ingest_key_rate_limit" and rate_limit_disabled(value):
            return value.lower()
        parse(value)  # ValueError names the setting
        return value

    @field_validator("max_event_age_days", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("default_phone_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @property
    def embedded_database_path(self) -> Path:
        return (self.postback_data_dir / "postback.db").resolve()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.embedded_database_path}"

    @property
    def broker_folder(self) -> Path:
        return (self.postback_data_dir / "broker").resolve()

    def event_age_limit_days(self, event_source: str, own_limit: float | None) -> float:
        """How old an event may be when due: the event set's own limit, else the default
        for its event source (`crm` or `web`)."""
        if own_limit is not None:
            return own_limit
        if self.max_event_age_days is not None:
            return self.max_event_age_days
        return self.crm_max_event_age_days if event_source == "crm" else self.web_max_event_age_days

    @property
    def effective_pacing_storage_url(self) -> str:
        return self.tiktok_pacing_storage_url or self.rate_limit_storage_url

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.http_connect_timeout_seconds, self.http_read_timeout_seconds)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
