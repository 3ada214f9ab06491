"""Platform settings, read from environment variables (and `.env`)."""

import os
from functools import lru_cache
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.production import (
    DEVELOPMENT_EVENT_SIGNING_KEY,
    DEVELOPMENT_JWT_SECRET,
    refuse_unsafe,
)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # a cluster's nodes comma-separated (`amqp://u:p@node1:5672,node2:5672/`): tried in order
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # optional: a standby (streaming from the primary) that answers queries once its copy of
    # their read model is recent enough; everything that writes stays on DATABASE_URL
    database_read_url: str = ""
    database_schema: str = "public"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # `host:port,host:port` of Redis Sentinels: the master of REDIS_MASTER_NAME is asked of
    # them (REDIS_URL then gives only its password and database)
    redis_sentinels: str = ""
    redis_master_name: str = ""
    max_message_bytes: int = MAX_MESSAGE_BYTES  # a bus message's body, once decompressed
    redis_timeout: float = 0.1  # seconds any Redis call may take before it counts as failed
    jaeger_endpoint: str = ""
    elasticsearch_url: str = ""
    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_expiration: int = 300
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_private_key: str = ""
    jwt_public_key: str = ""
    # signs each event the relay publishes; receivers refuse events it did not sign
    event_signing_key: SecretStr = SecretStr(DEVELOPMENT_EVENT_SIGNING_KEY)
    # RS256: what a service (other than auth) trades with auth for its own access token
    service_credential: SecretStr | None = None
    # the first administrator, created by the auth service on its first start
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    log_level: str = "INFO"
    access_log: bool = True  # a `banyan.access` line per HTTP request
    # this process's own /health and /metrics (none if unset); `banyan up` gives each service
    # METRICS_PORT_BASE + its place in SERVICE_MODULES
    metrics_port: int | None = None
    metrics_port_base: int = 9400
    metrics_interval: float = 10.0  # seconds between metric snapshots shipped to Elasticsearch
    metrics_buffer_size: int = 10_000  # documents kept while Elasticsearch is unreachable
    metrics_index_prefix: str = "banyan-metrics"  # daily indices {prefix}-YYYY.MM.DD
    environment: Literal["development", "production"] = "development"
    development_auth_enabled: bool = False

    rabbitmq_management_url: str = ""
    rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"
    # deliveries of one message a quorum queue allows before it dead-letters it: a backstop
    # for a message that kills its consumer (the platform counts its own retries in headers)
    rabbitmq_delivery_limit: int = 20
    prefetch_count: int = 10
    event_prefetch_count: int = 5
    retry_attempts: int = 3
    # times a message may go back to its queue after an outage-like failure before it is taken
    # for the message's own fault and dead-lettered (while the database answers)
    max_redeliveries: int = 10
    retry_initial_delay: float = 1.0
    retry_max_delay: float = 30.0
    concurrency_retries: int = 3
    # seconds a command's idempotency record (its id and result) is kept; 0 keeps them forever
    command_result_retention: float = 7 * 24 * 3600.0
    # seconds a subscriber's record of a handled event id is kept; 0 keeps them forever
    processed_event_retention: float = 7 * 24 * 3600.0
    relay_enabled: bool = True
    relay_batch_size: int = 500
    relay_poll_interval: float = 0.5
    database_pool_size: int = 10
    # seconds a platform session may sit idle inside a transaction (or its host stay silent)
    # before PostgreSQL cuts it: a frozen appender holds readers back no longer than this
    append_stall_timeout: float = 10.0
    graceful_timeout: float = 15.0
    read_your_writes_timeout: float = 5.0
    heartbeat_interval: float = 10.0
    # seconds an unhealthy instance stays in discovery's registry after its last heartbeat;
    # 0 keeps them forever
    discovery_instance_retention: float = 3600.0
    announce_enabled: bool = True
    http_host: str = "127.0.0.1"  # auth's and discovery's HTTP (0.0.0.0 in containers)
    # proxies (comma-separated addresses or networks, `*` for any) whose X-Forwarded-For is
    # believed; by default none: a caller's address is the peer of the connection
    forwarded_allow_ips: str = ""
    auth_port: int = 3001
    discovery_port: int = 3002
    gateway_port: int = 3003
    command_timeout: float = 30.0
    breaker_cooldown: float = 5.0  # seconds a service's open breaker refuses before a probe
    query_timeout: float = 10.0
    rate_limit_per_user: int = 100  # requests per minute
    rate_limit_anonymous: int = 10
    # sign-in: failures of one email from one address before each further one makes that
    # address wait 2, 4, 8... seconds, up to the longest delay
    signin_free_failures: int = 3
    signin_max_delay: int = 300
    # seconds a just-replaced refresh token still gets the pair that replaced it (two tabs)
    refresh_token_grace: float = 10.0
    cors_origins: str = "*"  # comma-separated
    max_body_bytes: int = 1_048_576
    cache_prefix: str = "banyan"
    rebuild_batch_size: int = 5000
    # modules exposing a `service`: their migrations, projections and processes
    service_modules: str = "auth,discovery,examples.orders,examples.inventory,examples.fulfilment"

    @model_validator(mode="after")
    def _sentinels_name_their_master(self) -> "Settings":
        if self.redis_sentinels and not self.redis_master_name:
            raise ValueError("REDIS_SENTINELS needs REDIS_MASTER_NAME")
        return self

    def http_port(self, service: str, declared: int | None) -> int | None:
        """Where a service serves `/health`: `{NAME}_PORT` (`AUTH_PORT`; `LIBRARY_PORT` from the
        environment for a service the settings do not name), else the port it declares."""
        port = getattr(self, f"{service}_port", None)
        if port is None and (raw := os.environ.get(f"{service.upper().replace('-', '_')}_PORT")):
            port = int(raw)
        return declared if port is None else port


@lru_cache
def get_settings() -> Settings:
    """This process's settings; in production, unsafe ones stop it (`pipelines.production`)."""
    settings = Settings()
    refuse_unsafe(settings)
    return settings
