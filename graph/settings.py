"""Settings, read once from the environment and a `.env` file. No other module reads os.environ."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.limits import Limits

_LIMITS = Limits()


class Settings(BaseSettings):
    """Everything the service can be told from outside."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./vajra.db", validation_alias="DATABASE_URL"
    )
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="REDIS_URL")
    crawler_token: str | None = Field(default=None, validation_alias="VAJRA_CRAWLER_TOKEN")
    admin_token: str | None = Field(default=None, validation_alias="VAJRA_ADMIN_TOKEN")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    demo_threats: int = Field(default=20_000, ge=0, validation_alias="VAJRA_DEMO_THREATS")
    # What one GraphQL document may ask (graph/limits.py says why these defaults).
    graphql_max_depth: int = Field(
        default=_LIMITS.max_depth, ge=1, le=100, validation_alias="GRAPHQL_MAX_DEPTH"
    )
    graphql_max_aliases: int = Field(
        default=_LIMITS.max_aliases, ge=0, le=100_000, validation_alias="GRAPHQL_MAX_ALIASES"
    )
    graphql_max_tokens: int = Field(
        default=_LIMITS.max_tokens, ge=200, le=100_000, validation_alias="GRAPHQL_MAX_TOKENS"
    )
    graphql_max_directives: int = Field(
        default=_LIMITS.max_directives, ge=0, le=100_000, validation_alias="GRAPHQL_MAX_DIRECTIVES"
    )
    graphql_max_cost: int = Field(
        default=_LIMITS.max_cost, ge=1, le=10**9, validation_alias="GRAPHQL_MAX_COST"
    )
    graphql_max_document_bytes: int = Field(
        default=_LIMITS.max_document_bytes,
        ge=2_048,
        le=32 * 1024 * 1024,
        validation_alias="GRAPHQL_MAX_DOCUMENT_BYTES",
    )
    graphql_max_variable_values: int = Field(
        default=_LIMITS.max_variable_values,
        ge=1_000,
        le=10_000_000,
        validation_alias="GRAPHQL_MAX_VARIABLE_VALUES",
    )
    cache_enabled: bool = Field(default=True, validation_alias="CACHE_ENABLED")
    cache_namespace: str = Field(
        default="vajra", pattern=r"^[A-Za-z0-9_.-]{1,32}$", validation_alias="CACHE_NAMESPACE"
    )
    cache_timeout_ms: int = Field(default=100, ge=1, le=5_000, validation_alias="CACHE_TIMEOUT_MS")
    cache_ttl_stats: int = Field(default=60, ge=0, validation_alias="CACHE_TTL_STATS")
    cache_ttl_threats: int = Field(default=120, ge=0, validation_alias="CACHE_TTL_THREATS")
    cache_ttl_charts: int = Field(default=180, ge=0, validation_alias="CACHE_TTL_CHARTS")
    cache_fallback_entries: int = Field(default=0, ge=0, validation_alias="CACHE_FALLBACK_ENTRIES")
    cache_operations: bool = Field(default=True, validation_alias="CACHE_OPERATIONS")
    cache_local_mb: int = Field(default=64, ge=0, validation_alias="CACHE_LOCAL_MB")
    cache_epoch_poll_ms: int = Field(
        default=1000, ge=100, le=60_000, validation_alias="CACHE_EPOCH_POLL_MS"
    )
    # Refresh on write: the hottest entries (and as many whole operations) recomputed after
    # the writes that make them stale, rounds at least EVERY_MS apart; 0 entries: off.
    cache_refresh_entries: int = Field(
        default=256, ge=0, le=10_000, validation_alias="CACHE_REFRESH_ENTRIES"
    )
    cache_refresh_every_ms: int = Field(
        default=500, ge=0, le=60_000, validation_alias="CACHE_REFRESH_EVERY_MS"
    )
    # X-Cache-Debug shows keys and skips the whole-operation cache: the admin's alone, unless
    # this is a development server.
    cache_debug_header: bool = Field(default=False, validation_alias="CACHE_DEBUG_HEADER")
    # x-cache-node names the host and process id that answered (benchmarks tell workers apart).
    cache_node_header: bool = Field(default=False, validation_alias="CACHE_NODE_HEADER")
    # Automatic registration (bounded), or a safelist: a manifest of the only queries that run.
    persisted_queries: Literal["auto", "safelist"] = Field(
        default="auto", validation_alias="PERSISTED_QUERIES"
    )
    persisted_queries_file: str | None = Field(
        default=None, validation_alias="PERSISTED_QUERIES_FILE"
    )
    # Redis holds at most MAX x MAX_BYTES of them (32 MiB), each process as much.
    persisted_queries_max: int = Field(
        default=2_000, ge=1, le=1_000_000, validation_alias="PERSISTED_QUERIES_MAX"
    )
    persisted_queries_max_bytes: int = Field(
        default=16_384, ge=256, le=2**20, validation_alias="PERSISTED_QUERIES_MAX_BYTES"
    )
    # Twice a 1,000-threat batch with 4,000-character descriptions and 10 indicators (5 MiB).
    max_body_bytes: int = Field(
        default=10 * 2**20, ge=1024, le=2**30, validation_alias="MAX_BODY_BYTES"
    )
    # What the HTTP server (graph/protocol.py) takes of one connection before the app sees it:
    # the request line and headers together; how long their first byte may wait for the
    # last, and a body between two reads; how many connections at once (503 past it).
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, le=2**20, validation_alias="MAX_HEADER_BYTES"
    )
    request_header_timeout: float = Field(
        default=10.0, gt=0, le=3600, validation_alias="REQUEST_HEADER_TIMEOUT"
    )
    request_body_timeout: float = Field(
        default=10.0, gt=0, le=3600, validation_alias="REQUEST_BODY_TIMEOUT"
    )
    max_connections: int = Field(
        default=1000, ge=1, le=1_000_000, validation_alias="MAX_CONNECTIONS"
    )

    # One line per request on the `vajra.access` logger (`vajra serve --access-log` sets it).
    access_log: bool = Field(default=False, validation_alias="VAJRA_ACCESS_LOG")
    # Operation names /metrics labels requests with, per process; later ones are "(other)".
    metrics_max_operations: int = Field(
        default=100, ge=0, le=10_000, validation_alias="METRICS_MAX_OPERATIONS"
    )
    # Where every worker writes its metrics (prometheus-client's multiprocess mode);
    # `vajra serve` sets it to a fresh directory of its own when unset.
    prometheus_multiproc_dir: str | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )

    environment: Literal["development", "production"] = Field(
        default="development", validation_alias="VAJRA_ENV"
    )
    cors_origins: str = Field(default="", validation_alias="CORS_ORIGINS")

    @property
    def production(self) -> bool:
        """No introspection, no GraphiQL, no debug output (see SECURITY.md)."""
        return self.environment == "production"

    @property
    def allowed_origins(self) -> list[str]:
        """`CORS_ORIGINS`, comma-separated: the browser origins that may call the API."""
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @field_validator("environment", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("crawler_token", "admin_token")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _safelist_has_a_file(self) -> Settings:
        if self.persisted_queries == "safelist" and not self.persisted_queries_file:
            raise ValueError("PERSISTED_QUERIES=safelist needs PERSISTED_QUERIES_FILE (a manifest)")
        return self

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Accept the URLs people already have and pick the async driver for them.
        for plain, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                return driver + value[len(plain) :]
        return value

    @property
    def limits(self) -> Limits:
        """What one GraphQL document may ask."""
        return Limits(
            max_depth=self.graphql_max_depth,
            max_aliases=self.graphql_max_aliases,
            max_tokens=self.graphql_max_tokens,
            max_directives=self.graphql_max_directives,
            max_cost=self.graphql_max_cost,
            max_document_bytes=self.graphql_max_document_bytes,
            max_variable_values=self.graphql_max_variable_values,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use."""
    return Settings()
