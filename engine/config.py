"""LinkRift settings: the one place every process reads its configuration from.

Standard service URLs keep their conventional names (DATABASE_URL, REDIS_URL, KAFKA_BROKER,
CLICKHOUSE_URL, GEOIP_DB, SMTP_URL); everything else is LINKRIFT_*.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the environment variable."""


# Production refuses secrets that are defaults, placeholders or too short to be random.
MIN_SECRET_LENGTH = 32
_PLACEHOLDER_MARKERS = (
    "change-me", "changeme", "change_me", "insecure", "placeholder", "example", "replace", "your-", "xxxx",
)  # fmt: skip
# Passwords nobody should run a public stack with (the old compose defaults among them).
_WEAK_PASSWORDS = frozenset(
    {"", "linkrift", "postgres", "password", "admin", "clickhouse", "default", "secret"}
)


def placeholder_problem(value: str, *, min_length: int = MIN_SECRET_LENGTH) -> str | None:
    """Why `value` cannot be a production secret, or None when it can."""
    lowered = value.lower()
    marker = next((m for m in _PLACEHOLDER_MARKERS if m in lowered), None)
    if marker is not None:
        return f"looks like a placeholder (contains {marker!r})"
    if len(value) < min_length:
        return f"must be at least {min_length} characters in production"
    if len(set(value)) < 8:
        return "is not random enough (fewer than 8 distinct characters)"
    return None


def weak_url_password(url: str) -> str | None:
    """Why the password in a service URL is unacceptable in production, or None."""
    parts = urlsplit(url)
    if parts.scheme in ("chdb", "unix"):
        return None
    password = parts.password or ""
    if password.lower() in _WEAK_PASSWORDS:
        return "has no password or a well-known default one"
    lowered = password.lower()
    if any(m in lowered for m in _PLACEHOLDER_MARKERS):
        return "has a placeholder password"
    return None


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINKRIFT_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/linkrift", validation_alias=_env("DATABASE_URL")
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    kafka_broker: str = Field("kafka://127.0.0.1:9092", validation_alias=_env("KAFKA_BROKER"))
    clickhouse_url: str = Field("chdb:///./.linkrift/clickhouse", validation_alias=_env("CLICKHOUSE_URL"))
    geoip_db: str | None = Field(None, validation_alias=_env("GEOIP_DB"))
    smtp_url: str | None = Field(None, validation_alias=_env("SMTP_URL"))

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Path(".linkrift")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    base_url: str | None = None
    default_domain: str = "localhost:8080"
    secret_key: str = "dev-insecure-change-me"  # noqa: S105 - dev default; production must set it
    # Prefix for Kafka topics, the Faust app id and Redis keys, so tests and tenants of one
    # cluster never collide.
    namespace: str = Field("linkrift", pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    topic_partitions: int = Field(8, ge=1, le=1024)
    # Idempotent producers need InitProducerId, which Apache Kafka/Redpanda support and the
    # embedded tansu broker does not; the worker drops duplicate click ids either way.
    kafka_idempotence: bool = False
    # The api's click producer: librdkafka (confluent-kafka; ~1 µs of the api's CPU a click) or
    # aiokafka (pure Python, ~15 µs a click). docs/performance.md has the measurement.
    click_producer: Literal["librdkafka", "aiokafka"] = "librdkafka"
    # Connections the api's public port accepts at once (the front and aiohttp together).
    max_connections: int = Field(10_000, ge=1)
    # Faust worker web server (also serves the chDB analytics proxy in embedded mode).
    worker_host: str = "127.0.0.1"
    worker_port: int = Field(6066, ge=1, le=65535)
    worker_url: str | None = None
    internal_token: str = "dev-internal-token"  # noqa: S105 - dev default; `linkrift dev` generates one
    # With embedded chDB only one process may open the data directory: normally the worker, and
    # the api asks it by query name. False lets the api own chDB itself (tests without a worker).
    analytics_via_worker: bool = True
    # Seconds between SSE heartbeat comments on the live click stream.
    sse_heartbeat_seconds: float = Field(15.0, gt=0)
    # Link previews (title, description, favicon, og:image) fetched from destinations: `production`
    # refuses non-public addresses (SSRF), `allow_private` does not (local test servers), `off`.
    metadata_fetch: Literal["off", "production", "allow_private"] = "production"
    store_ip: bool = True
    pg_clicks_retention_days: int = Field(400, ge=1)
    link_cache_ttl: int = Field(300, ge=1)
    lru_ttl_seconds: float = Field(5.0, ge=0)
    # Destination hosts no link may point to (comma-separated; subdomains are blocked too),
    # checked when a link is written and again at every redirect.
    blocked_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Read the client address from X-Forwarded-For: only behind a proxy that sets it. The
    # rightmost hop that is not in trusted_proxies (CIDRs, comma-separated) is the client.
    trust_proxy_headers: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    not_found_rate_limit: int = Field(60, ge=1)  # unknown-code 404s per IP per minute
    password_rate_limit: int = Field(10, ge=1)  # link password attempts per IP per minute
    sink_batch_size: int = Field(5000, ge=1)
    sink_batch_seconds: float = Field(0.5, gt=0)
    # Accounts: token lifetimes, mail sender, rate limits (0 disables a limit).
    smtp_from: str = "LinkRift <no-reply@linkrift.local>"
    access_token_ttl: int = Field(900, ge=30, le=86400)
    refresh_token_ttl_days: int = Field(30, ge=1, le=365)
    email_token_ttl_hours: int = Field(24, ge=1, le=720)
    password_reset_ttl_minutes: int = Field(60, ge=5, le=1440)
    invitation_ttl_days: int = Field(7, ge=1, le=90)
    rate_limit_ip_per_minute: int = Field(600, ge=0)
    rate_limit_auth_per_minute: int = Field(20, ge=0)
    api_key_usage_flush_seconds: float = Field(5.0, gt=0)
    # Custom domains: DNS server for TXT verification ("ip" or "ip:port"; unset = the system's),
    # lookup timeout, and how often the periodic re-check revisits a domain.
    dns_nameserver: str | None = None
    # The IPv4 address custom domains point an A record at (apex domains cannot use a CNAME to
    # the default domain); shown in each domain's routing instructions when set.
    domain_a_record: str | None = None
    dns_timeout: float = Field(3.0, gt=0, le=30)
    domain_recheck_seconds: int = Field(3600, ge=60)
    # Webhooks: private/loopback targets are refused unless allowed (tests, trusted intranets).
    webhook_allow_private: bool = False
    webhook_max_failures: int = Field(20, ge=1)
    # Seconds before each retry; a delivery gets len(schedule) + 1 attempts, then goes dead.
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [30.0, 120.0, 600.0, 3600.0, 21600.0, 43200.0]
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    # How long an attempt holds its delivery row (next_attempt_at moved ahead) before another worker
    # may take it: a worker killed mid-attempt delays that delivery by this much. Must exceed the
    # timeout, or a slow attempt still in flight could be sent a second time.
    webhook_lease_seconds: float = Field(60.0, gt=0)
    webhook_click_batch_seconds: float = Field(5.0, gt=0)
    webhook_click_batch_size: int = Field(100, ge=1, le=1000)
    # Billing (Stripe). An empty secret key disables checkout/portal (503).
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    stripe_price_pro: str = "price_pro"
    stripe_price_business: str = "price_business"
    stripe_price_enterprise: str = "price_enterprise"
    stripe_meter_event_name: str = "linkrift_clicks"
    billing_usage_interval_seconds: float = Field(3600.0, gt=0)
    log_level: str = "INFO"
    log_format: Literal["json", "kv"] = "kv"
    # Share of api requests written to the `linkrift.access` log (0 = none, 1 = every request).
    access_log_sample: float = Field(0.0, ge=0.0, le=1.0)
    # How often the worker measures consumer lag (log end - next offset not yet sunk), and after
    # how long without progress while clicks wait its health check fails.
    consumer_lag_interval_seconds: float = Field(2.0, gt=0, le=60)
    worker_stall_seconds: float = Field(120.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _pg_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis:// URL")
        return v

    @field_validator("blocked_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        if isinstance(v, str):
            return [item.strip().lower().rstrip(".") for item in v.split(",") if item.strip()]
        return v

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _float_list(cls, v: object) -> object:
        if isinstance(v, str):
            return [float(item) for item in v.split(",") if item.strip()]
        return v

    @field_validator("webhook_lease_seconds")
    @classmethod
    def _lease_exceeds_timeout(cls, v: float, info: ValidationInfo) -> float:
        timeout = info.data.get("webhook_timeout_seconds")
        if timeout is not None and v <= timeout:
            raise ValueError(f"must be greater than LINKRIFT_WEBHOOK_TIMEOUT_SECONDS ({timeout:g})")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return v

    @field_validator("domain_a_record")
    @classmethod
    def _ipv4(cls, v: str | None) -> str | None:
        return None if not v else str(ipaddress.IPv4Address(v))  # ValueError names the bad value

    @field_validator("kafka_broker")
    @classmethod
    def _kafka_url(cls, v: str) -> str:
        hosts = v.split("://", 1)[-1]
        if not hosts or any(":" not in h for h in hosts.split(",")):
            raise ValueError("must be host:port[,host:port] optionally prefixed by kafka://")
        return v if "://" in v else f"kafka://{v}"

    @field_validator("clickhouse_url")
    @classmethod
    def _ch_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("chdb", "http", "https", "clickhouse"):
            raise ValueError("must be chdb:///path or http(s)://host:port")
        return v

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        """LINKRIFT_ENV=production refuses default, placeholder or short secrets and well-known
        database passwords, so a stack cannot go live with the values from an example file."""
        if self.env != "production":
            return self
        for name in ("secret_key", "internal_token"):
            problem = placeholder_problem(getattr(self, name))
            if problem:
                raise ValueError(f"{env_name(name)} {problem}")
        for name in ("database_url", "clickhouse_url"):
            problem = weak_url_password(getattr(self, name))
            if problem:
                raise ValueError(f"{env_name(name)} {problem}")
        return self

    @property
    def kafka_bootstrap(self) -> str:
        """Broker list without the kafka:// scheme, as aiokafka expects it."""
        return self.kafka_broker.split("://", 1)[-1]

    @property
    def clickhouse_embedded(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    @property
    def chdb_path(self) -> Path:
        # chdb:///abs/path is absolute; chdb:///./rel (as in the docs) is relative to the cwd.
        raw = self.clickhouse_url.removeprefix("chdb://")
        if raw.startswith("/./"):
            raw = raw[1:]
        return Path(raw).resolve()

    @property
    def public_base_url(self) -> str:
        return self.base_url or f"http://{self.default_domain}"

    @property
    def internal_worker_url(self) -> str:
        return self.worker_url or f"http://{self.worker_host}:{self.worker_port}"


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "kafka_broker": "KAFKA_BROKER",
    "clickhouse_url": "CLICKHOUSE_URL",
    "geoip_db": "GEOIP_DB",
    "smtp_url": "SMTP_URL",
}


def env_name(field: str) -> str:
    """The environment variable that sets a settings field (field name or alias)."""
    if field.upper() in _ENV_NAMES.values():
        return field.upper()
    return _ENV_NAMES.get(field, f"LINKRIFT_{field.upper()}")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across fields (production secrets): the message names the variable
            raise SettingsError(str(err["msg"]).removeprefix("Value error, ")) from None
        field = str(err["loc"][0])
        raise SettingsError(f"{env_name(field)}: {err['msg']} (got {err.get('input')!r})") from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
