"""Every setting the services read, parsed from environment variables in one place.

Each service calls `Settings.from_env()` once at start. Secrets have no
defaults; ports and URLs default to what `make run` uses on one machine.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from services.common.errors import ConfigError


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off (1/0, true/false), got {raw!r}")


def to_sqlalchemy_url(database_url: str) -> str:
    """postgresql://... (what libpq, compose and pgserver give) -> the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


@dataclass(frozen=True)
class Settings:
    # PostgreSQL, SQLAlchemy URL form (postgresql+psycopg://...). A plain
    # postgresql:// URL is accepted and given the psycopg driver.
    database_url: str
    # redis://host:port/db or unix:///path/to/socket
    redis_url: str
    # The admin key; compared in constant time, never logged.
    admin_key: str

    host: str = "127.0.0.1"
    vote_port: int = 50051
    ranking_port: int = 50052
    reputation_port: int = 50053
    # Where services reach each other (host:port). Default: this host.
    vote_target: str = ""
    ranking_target: str = ""
    reputation_target: str = ""

    # Deadline for every internal call, seconds.
    internal_deadline_s: float = 2.0
    # How long an in-process cache keeps a verified key or an existing item.
    # Changes (rotation, tier, flag, deletion) are pushed to the caches over
    # Redis pub/sub, and every entry is re-checked on its next use whenever
    # a subscription is (re)made, so the TTL only bounds staleness if a
    # message is lost while subscribed; a short TTL costs an internal RPC per
    # agent and item (made in the background: callers get the cached answer).
    auth_cache_ttl_s: float = 60.0
    item_cache_ttl_s: float = 60.0
    # How long past its TTL a cached key or item is still served while it is
    # re-checked in the background (services/common/caches.py).
    cache_grace_s: float = 600.0
    # Seconds the server waits for in-flight calls on SIGTERM.
    shutdown_grace_s: float = 5.0
    # How often health re-checks PostgreSQL and Redis.
    health_interval_s: float = 1.0
    db_pool_size: int = 10
    log_level: str = "INFO"
    # Daily vote quotas per tier (UTC days); enterprise is unlimited.
    quota_free: int = 100
    quota_pro: int = 1000
    # Suspicious-agent rules (API.md "Suspicious agents"): more than
    # abuse_max_votes in abuse_window_s; abuse_one_direction_min or more in
    # abuse_window_s all one way; more than abuse_burst_max in abuse_burst_window_s.
    abuse_window_s: int = 300
    abuse_max_votes: int = 50
    abuse_one_direction_min: int = 20
    abuse_burst_window_s: int = 10
    abuse_burst_max: int = 10
    # Time between reconciliation passes, and the cached counts each pass
    # sweeps (besides those it rechecks): a pass costs about one page.
    reconcile_interval_s: float = 5.0
    reconcile_page_size: int = 500
    # Trending: a vote's influence halves every half-life.
    trending_half_life_h: float = 24.0
    # How often trending is rebuilt from the vote projection (drift repair),
    # and how often finished days' charts are frozen into snapshots.
    trending_rebuild_interval_s: float = 300.0
    snapshot_interval_s: float = 60.0
    # How often the reputation service recomputes every agent (drift correction).
    reputation_recompute_interval_s: float = 300.0
    # Prometheus /metrics port for this process; 0 = off.
    metrics_port: int = 0
    # This process's name in Redis consumer groups; stable across restarts
    # is best, but entries a vanished consumer left are claimed anyway.
    consumer_name: str = ""
    # Largest gRPC message a service accepts (bytes).
    max_message_bytes: int = 256 * 1024
    # OpenTelemetry collector (OTLP over gRPC, e.g. http://collector:4317);
    # empty: tracing off (services/common/tracing.py).
    otlp_endpoint: str = ""
    # How long a vote-path Redis command may take before Redis is taken for
    # hung: the vote falls back to PostgreSQL and the circuit breaker opens.
    redis_hot_path_timeout_s: float = 0.25
    # The vote event stream is trimmed below the slowest consumer group's
    # position; past this many entries (a group stopped for long, or
    # abandoned) it is trimmed anyway, with an error, to bound Redis's memory.
    stream_max_len: int = 5_000_000
    # The credential internal calls carry (auth.service_credential); empty:
    # derived from the admin key.
    service_token: str = ""

    def __repr__(self) -> str:  # keep the admin key and passwords out of logs
        ports = f"vote_port={self.vote_port}, ranking_port={self.ranking_port}, reputation_port={self.reputation_port}"
        return f"Settings(host={self.host!r}, {ports})"

    @property
    def sqlalchemy_url(self) -> str:
        return to_sqlalchemy_url(self.database_url)

    def target(self, service: str) -> str:
        explicit = getattr(self, f"{service}_target")
        return explicit or f"127.0.0.1:{getattr(self, f'{service}_port')}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, service: str = "") -> Settings:
        env = dict(os.environ if env is None else env)
        missing = [n for n in ("DATABASE_URL", "REDIS_URL", "AIMUSICSTORE_ADMIN_KEY") if not env.get(n)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")
        if len(env["AIMUSICSTORE_ADMIN_KEY"]) < 16:
            raise ConfigError("AIMUSICSTORE_ADMIN_KEY must be at least 16 characters")
        return cls(
            database_url=env["DATABASE_URL"],
            redis_url=env["REDIS_URL"],
            admin_key=env["AIMUSICSTORE_ADMIN_KEY"],
            host=env.get("AIMUSICSTORE_BIND_HOST", "127.0.0.1"),
            vote_port=_int(env, "AIMUSICSTORE_VOTE_PORT", 50051, 1),
            ranking_port=_int(env, "AIMUSICSTORE_RANKING_PORT", 50052, 1),
            reputation_port=_int(env, "AIMUSICSTORE_REPUTATION_PORT", 50053, 1),
            vote_target=env.get("AIMUSICSTORE_VOTE_TARGET", ""),
            ranking_target=env.get("AIMUSICSTORE_RANKING_TARGET", ""),
            reputation_target=env.get("AIMUSICSTORE_REPUTATION_TARGET", ""),
            internal_deadline_s=_float(env, "AIMUSICSTORE_INTERNAL_DEADLINE_S", 2.0),
            auth_cache_ttl_s=_float(env, "AIMUSICSTORE_AUTH_CACHE_TTL_S", 60.0),
            item_cache_ttl_s=_float(env, "AIMUSICSTORE_ITEM_CACHE_TTL_S", 60.0),
            cache_grace_s=_float(env, "AIMUSICSTORE_CACHE_GRACE_S", 600.0),
            shutdown_grace_s=_float(env, "AIMUSICSTORE_SHUTDOWN_GRACE_S", 5.0),
            health_interval_s=_float(env, "AIMUSICSTORE_HEALTH_INTERVAL_S", 1.0),
            db_pool_size=_int(env, "AIMUSICSTORE_DB_POOL_SIZE", 10, 1),
            log_level=env.get("AIMUSICSTORE_LOG_LEVEL", "INFO").upper(),
            quota_free=_int(env, "AIMUSICSTORE_QUOTA_FREE", 100),
            quota_pro=_int(env, "AIMUSICSTORE_QUOTA_PRO", 1000),
            abuse_window_s=_int(env, "AIMUSICSTORE_ABUSE_WINDOW_S", 300, 1),
            abuse_max_votes=_int(env, "AIMUSICSTORE_ABUSE_MAX_VOTES", 50, 1),
            abuse_one_direction_min=_int(env, "AIMUSICSTORE_ABUSE_ONE_DIRECTION_MIN", 20, 1),
            abuse_burst_window_s=_int(env, "AIMUSICSTORE_ABUSE_BURST_WINDOW_S", 10, 1),
            abuse_burst_max=_int(env, "AIMUSICSTORE_ABUSE_BURST_MAX", 10, 1),
            reconcile_interval_s=_float(env, "AIMUSICSTORE_RECONCILE_INTERVAL_S", 5.0),
            reconcile_page_size=_int(env, "AIMUSICSTORE_RECONCILE_PAGE_SIZE", 500, 1),
            trending_half_life_h=_float(env, "AIMUSICSTORE_TRENDING_HALF_LIFE_H", 24.0),
            trending_rebuild_interval_s=_float(env, "AIMUSICSTORE_TRENDING_REBUILD_INTERVAL_S", 300.0),
            snapshot_interval_s=_float(env, "AIMUSICSTORE_SNAPSHOT_INTERVAL_S", 60.0),
            reputation_recompute_interval_s=_float(env, "AIMUSICSTORE_REPUTATION_RECOMPUTE_INTERVAL_S", 300.0),
            metrics_port=_int(env, f"AIMUSICSTORE_{service.upper()}_METRICS_PORT", 0) if service else 0,
            consumer_name=env.get("AIMUSICSTORE_CONSUMER_NAME") or socket.gethostname(),
            max_message_bytes=_int(env, "AIMUSICSTORE_MAX_MESSAGE_BYTES", 256 * 1024, 1024),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            redis_hot_path_timeout_s=_float(env, "AIMUSICSTORE_REDIS_HOT_PATH_TIMEOUT_S", 0.25),
            stream_max_len=_int(env, "AIMUSICSTORE_STREAM_MAX_LEN", 5_000_000, 1000),
            service_token=env.get("AIMUSICSTORE_SERVICE_TOKEN", ""),
        )


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway (Envoy and its sidecar) needs: where everything listens."""

    gateway_host: str = "0.0.0.0"
    gateway_port: int = 8080
    # The gateway's internal transcoding listener (loopback only).
    api_port: int = 8081
    sidecar_host: str = "127.0.0.1"
    sidecar_grpc_port: int = 50061
    sidecar_http_port: int = 50062
    vote_target: str = "127.0.0.1:50051"
    ranking_target: str = "127.0.0.1:50052"
    reputation_target: str = "127.0.0.1:50053"
    # Where the sidecar is reached from Envoy (host), e.g. "gateway-sidecar" in compose.
    sidecar_target_host: str = "127.0.0.1"
    max_request_bytes: int = 64 * 1024
    health_deadline_s: float = 1.0
    # Envoy's circuit breakers: requests in flight to one service at once
    # (beyond it a request is refused at once with 503 and Retry-After,
    # rather than queueing without bound), and live event streams open at
    # once, counted apart so that watchers can never use up the vote path.
    max_requests_per_service: int = 1024
    max_live_streams: int = 10_000
    # Envoy's admin interface (stats, clusters) on loopback; 0: off.
    admin_port: int = 0
    # Envoy's Prometheus stats, on a listener of their own (never the public
    # port, never the admin interface itself); 0: off.
    metrics_port: int = 9901
    # One JSON line per public request on Envoy's stdout, with the request id
    # the services log.
    access_log: bool = True
    # OpenTelemetry collector (OTLP/gRPC); Envoy starts each request's trace.
    otlp_endpoint: str = ""

    def targets(self) -> dict[str, str]:
        return {"vote": self.vote_target, "ranking": self.ranking_target, "reputation": self.reputation_target}

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GatewaySettings:
        env = dict(os.environ if env is None else env)

        def target(service: str, default_port: int) -> str:
            port = _int(env, f"AIMUSICSTORE_{service.upper()}_PORT", default_port, 1)
            return env.get(f"AIMUSICSTORE_{service.upper()}_TARGET") or f"127.0.0.1:{port}"

        return cls(
            gateway_host=env.get("AIMUSICSTORE_GATEWAY_HOST", "0.0.0.0"),
            gateway_port=_int(env, "AIMUSICSTORE_GATEWAY_PORT", 8080, 1),
            api_port=_int(env, "AIMUSICSTORE_GATEWAY_API_PORT", 8081, 1),
            sidecar_host=env.get("AIMUSICSTORE_SIDECAR_HOST", "127.0.0.1"),
            sidecar_grpc_port=_int(env, "AIMUSICSTORE_SIDECAR_GRPC_PORT", 50061, 1),
            sidecar_http_port=_int(env, "AIMUSICSTORE_SIDECAR_HTTP_PORT", 50062, 1),
            vote_target=target("vote", 50051),
            ranking_target=target("ranking", 50052),
            reputation_target=target("reputation", 50053),
            sidecar_target_host=env.get("AIMUSICSTORE_SIDECAR_TARGET_HOST", "127.0.0.1"),
            max_request_bytes=_int(env, "AIMUSICSTORE_MAX_REQUEST_BYTES", 64 * 1024, 1024),
            health_deadline_s=_float(env, "AIMUSICSTORE_HEALTH_DEADLINE_S", 1.0),
            max_requests_per_service=_int(env, "AIMUSICSTORE_GATEWAY_MAX_REQUESTS", 1024, 1),
            max_live_streams=_int(env, "AIMUSICSTORE_GATEWAY_MAX_STREAMS", 10_000, 1),
            admin_port=_int(env, "AIMUSICSTORE_GATEWAY_ADMIN_PORT", 0, 0),
            metrics_port=_int(env, "AIMUSICSTORE_GATEWAY_METRICS_PORT", 9901, 0),
            access_log=_bool(env, "AIMUSICSTORE_GATEWAY_ACCESS_LOG", True),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        )
