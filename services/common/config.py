"""Every setting the services and the gateway read: each declared once, with
its environment variable, type, default and meaning, and parsed in one place.

A service reads its own section (VoteSettings, RankingSettings,
ReputationSettings) plus the shared one (Settings); the gateway reads
GatewaySettings. The README's configuration table is generated from these
declarations (`python -m services.common.config`, checked by
tests/unit/test_settings_doc.py). Secrets have no defaults; ports and URLs
default to what `make run` uses on one machine.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from services.common.errors import ConfigError

# A web origin as browsers send it in `Origin`: scheme, host, optional port.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def setting(
    env: str,
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    minimum: float | None = None,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declares one setting. `env` may hold `{SERVICE}` (the service's name,
    upper case); `minimum` bounds numbers (floats must be positive unless
    given); `shown` is the default as the README says it, when the value
    itself would mislead (a host name, a derived value)."""
    metadata = {"env": env, "doc": doc, "minimum": minimum, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def to_sqlalchemy_url(database_url: str) -> str:
    """postgresql://... (what libpq, compose and pgserver give) -> the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


def _parse(kind: str, name: str, raw: str, minimum: float | None) -> Any:
    if kind == "str":
        return raw
    if kind == "bool":
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be on or off (1/0, true/false), got {raw!r}")
    try:
        number: int | float = int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'a whole number' if kind == 'int' else 'a number'}, got {raw!r}") from None
    if kind == "float" and minimum is None and number <= 0:
        raise ConfigError(f"{name} must be positive, got {number}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {number}")
    return number


@dataclass(frozen=True, kw_only=True)
class _Section:
    # The service whose section this is ('' for shared ones): fills {SERVICE}.
    service: ClassVar[str] = ""

    @classmethod
    def env_name(cls, f: dataclasses.Field[Any]) -> str:
        return str(f.metadata["env"]).replace("{SERVICE}", cls.service.upper() or "{SERVICE}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        missing = []
        for f in dataclasses.fields(cls):
            if "env" not in f.metadata:
                continue
            name = cls.env_name(f)
            raw = env.get(name, "")
            if raw != "":
                values[f.name] = _parse(str(f.type), name, raw, f.metadata["minimum"])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                missing.append(name)
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")
        return cls(**values)._checked(env)

    def _checked(self, env: Mapping[str, str]) -> Self:
        """Checks and values that span several settings."""
        return self


@dataclass(frozen=True, kw_only=True)
class Settings(_Section):
    """Shared by every service."""

    database_url: str = setting("DATABASE_URL", doc="PostgreSQL, `postgresql://user:pass@host:port/db`")
    redis_url: str = setting("REDIS_URL", doc="Redis, `redis://host:port/db` or `unix:///path`")
    admin_key: str = setting("AIMUSICSTORE_ADMIN_KEY", doc="admin bearer key (at least 16 characters); never logged")

    host: str = setting("AIMUSICSTORE_BIND_HOST", "127.0.0.1", "address the services listen on (0.0.0.0 in containers)")
    vote_port: int = setting("AIMUSICSTORE_VOTE_PORT", 50051, "vote service gRPC port", minimum=1)
    ranking_port: int = setting("AIMUSICSTORE_RANKING_PORT", 50052, "ranking service gRPC port", minimum=1)
    reputation_port: int = setting("AIMUSICSTORE_REPUTATION_PORT", 50053, "reputation service gRPC port", minimum=1)
    vote_target: str = setting(
        "AIMUSICSTORE_VOTE_TARGET",
        "",
        "where the others reach the vote service (`host:port`; for the gateway, several comma-separated "
        "addresses are balanced round robin)",
        shown="`127.0.0.1:<port>`",
    )
    ranking_target: str = setting(
        "AIMUSICSTORE_RANKING_TARGET", "", "where the others reach the ranking service", shown="`127.0.0.1:<port>`"
    )
    reputation_target: str = setting(
        "AIMUSICSTORE_REPUTATION_TARGET",
        "",
        "where the others reach the reputation service",
        shown="`127.0.0.1:<port>`",
    )
    internal_deadline_s: float = setting(
        "AIMUSICSTORE_INTERNAL_DEADLINE_S", 2.0, "deadline on every service-to-service call"
    )
    # Changes (rotation, tier, flag, deletion) are pushed to the caches over
    # Redis pub/sub, and every entry is re-checked on its next use whenever a
    # subscription is (re)made, so the TTL only bounds staleness if a message
    # is lost while subscribed; a short TTL costs an internal RPC per agent
    # and item (made in the background: callers get the cached answer).
    auth_cache_ttl_s: float = setting(
        "AIMUSICSTORE_AUTH_CACHE_TTL_S",
        60.0,
        "in-process cache of verified keys, each entry ±20% so they do not expire together (changes are pushed "
        "over pub/sub; the TTL bounds staleness only if a message is lost)",
    )
    cache_grace_s: float = setting(
        "AIMUSICSTORE_CACHE_GRACE_S",
        600.0,
        "how long past its TTL a cached key or item is still served while it is re-checked in the background "
        '(docs/operations.md, "Cached answers from other services")',
    )
    shutdown_grace_s: float = setting("AIMUSICSTORE_SHUTDOWN_GRACE_S", 5.0, "time in-flight calls get on SIGTERM")
    health_interval_s: float = setting(
        "AIMUSICSTORE_HEALTH_INTERVAL_S", 1.0, "how often a service checks PostgreSQL and Redis"
    )
    db_pool_size: int = setting(
        "AIMUSICSTORE_DB_POOL_SIZE", 10, "PostgreSQL connections per service (as many again on overflow)", minimum=1
    )
    log_level: str = setting("AIMUSICSTORE_LOG_LEVEL", "INFO", "JSON logs on stderr at this level")
    metrics_port: int = setting(
        "AIMUSICSTORE_{SERVICE}_METRICS_PORT",
        0,
        "Prometheus `/metrics` of each service (`make run`: 9101-9103; tests: free ports)",
        minimum=0,
        shown="off",
    )
    # Stable across restarts is best, but entries a vanished consumer left
    # are claimed anyway.
    consumer_name: str = setting(
        "AIMUSICSTORE_CONSUMER_NAME",
        doc="this process's name in Redis consumer groups",
        factory=socket.gethostname,
        shown="host name",
    )
    max_message_bytes: int = setting(
        "AIMUSICSTORE_MAX_MESSAGE_BYTES", 256 * 1024, "largest gRPC message a service accepts", minimum=1024
    )
    otlp_endpoint: str = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        'OTLP/gRPC collector: turns on tracing in Envoy and every service (docs/operations.md, "Tracing")',
        shown="off",
    )
    redis_hot_path_timeout_s: float = setting(
        "AIMUSICSTORE_REDIS_HOT_PATH_TIMEOUT_S",
        0.25,
        "how long a vote-path Redis command may take before Redis is taken for hung: the vote falls back to "
        "PostgreSQL and a circuit breaker skips Redis until the health check sees it answer",
    )
    # Read by the reputation service (it publishes weights) and the ranking
    # service (an agent with no published weight yet is a new one).
    probation_weight: float = setting(
        "AIMUSICSTORE_PROBATION_WEIGHT",
        0.25,
        "what one vote of an agent on probation counts in every ranking (trusted agents count 1, flagged 0; "
        "docs/integrity.md)",
    )
    service_token: str = setting(
        "AIMUSICSTORE_SERVICE_TOKEN",
        "",
        "the credential internal methods (key verification, flagging) require of their callers; the gateway "
        "never forwards it",
        shown="derived from the admin key",
    )

    def __repr__(self) -> str:  # keep the admin key and passwords out of logs
        ports = f"vote_port={self.vote_port}, ranking_port={self.ranking_port}, reputation_port={self.reputation_port}"
        return f"{type(self).__name__}(host={self.host!r}, {ports})"

    def _checked(self, env: Mapping[str, str]) -> Self:
        if len(self.admin_key) < 16:
            raise ConfigError("AIMUSICSTORE_ADMIN_KEY must be at least 16 characters")
        return dataclasses.replace(self, log_level=self.log_level.upper())

    @property
    def sqlalchemy_url(self) -> str:
        return to_sqlalchemy_url(self.database_url)

    def target(self, service: str) -> str:
        explicit = getattr(self, f"{service}_target")
        return explicit or f"127.0.0.1:{getattr(self, f'{service}_port')}"


@dataclass(frozen=True, kw_only=True)
class VoteSettings(Settings):
    service: ClassVar[str] = "vote"

    item_cache_ttl_s: float = setting(
        "AIMUSICSTORE_ITEM_CACHE_TTL_S", 60.0, "in-process cache of existing catalog items (as the key cache)"
    )
    quota_free: int = setting("AIMUSICSTORE_QUOTA_FREE", 100, "votes per UTC day for the free tier", minimum=0)
    quota_pro: int = setting(
        "AIMUSICSTORE_QUOTA_PRO", 1000, "votes per UTC day for the pro tier (enterprise: unlimited)", minimum=0
    )
    # The abuse rules (services/vote/rules.py) name their settings here.
    abuse_window_s: int = setting(
        "AIMUSICSTORE_ABUSE_WINDOW_S", 300, "window of the volume and one-way abuse rules, seconds", minimum=1
    )
    abuse_max_votes: int = setting(
        "AIMUSICSTORE_ABUSE_MAX_VOTES", 50, "volume rule: more than this many votes in the window", minimum=1
    )
    abuse_one_direction_min: int = setting(
        "AIMUSICSTORE_ABUSE_ONE_DIRECTION_MIN",
        20,
        "one-way rule: this many votes in a row in the window, all one way",
        minimum=1,
    )
    abuse_burst_window_s: int = setting(
        "AIMUSICSTORE_ABUSE_BURST_WINDOW_S", 10, "window of the burst rule, seconds", minimum=1
    )
    abuse_burst_max: int = setting(
        "AIMUSICSTORE_ABUSE_BURST_MAX", 10, "burst rule: more than this many votes in its window", minimum=1
    )
    feed_resume_window_s: float = setting(
        "AIMUSICSTORE_FEED_RESUME_WINDOW_S",
        300.0,
        "live feed: the event stream keeps at least this many seconds of events, so a watcher that lost its "
        "connection resumes without a gap (within AIMUSICSTORE_STREAM_MAX_LEN)",
    )
    # 4 was measured against 1 (docs/benchmarks.md): no gain for batches, and
    # half the single-vote throughput (smaller micro-batches, more round trips).
    vote_batches_in_flight: int = setting(
        "AIMUSICSTORE_VOTE_BATCHES_IN_FLIGHT",
        1,
        "micro-batches of votes (up to 256 votes each, from any calls) stored at once by one vote-service process",
        minimum=1,
    )
    vote_queue_max: int = setting(
        "AIMUSICSTORE_VOTE_QUEUE_MAX",
        5000,
        "votes waiting to be stored in one vote-service process at most (about 1.5 s of work at full batch load); "
        "past it a vote or batch is refused at once with 503 and Retry-After: 1",
        minimum=1,
    )
    batch_max_votes: int = setting(
        "AIMUSICSTORE_BATCH_MAX_VOTES", 100, "votes one BatchCastVotes call may carry (API.md: 100)", minimum=1
    )
    bulk_votes_per_s: float = setting(
        "AIMUSICSTORE_BULK_VOTES_PER_S",
        2000.0,
        "votes a second one agent may cast through batches and streams, per vote-service process (beyond: "
        "`rate_limited`); the daily quota and the abuse rules apply besides",
    )
    bulk_votes_burst: int = setting(
        "AIMUSICSTORE_BULK_VOTES_BURST", 2000, "votes one agent may cast at once through batches and streams", minimum=1
    )
    stream_votes_in_flight: int = setting(
        "AIMUSICSTORE_STREAM_VOTES_IN_FLIGHT",
        200,
        "votes of one StreamVotes call read ahead of their results; past it the stream is not read (flow control)",
        minimum=1,
    )
    stream_idle_s: float = setting(
        "AIMUSICSTORE_STREAM_IDLE_S", 60.0, "a StreamVotes call with no vote for this long is closed"
    )
    watch_resume_max_events: int = setting(
        "AIMUSICSTORE_WATCH_RESUME_MAX_EVENTS",
        50_000,
        "live feed: a watch resumed after an event id replays at most this many events since it (else 400)",
        minimum=1,
    )
    # Coordinated-voting detection (services/vote/rings.py; docs/integrity.md, "Coordinated voting").
    ring_interval_s: float = setting(
        "AIMUSICSTORE_RING_INTERVAL_S", 15.0, "coordinated voting: how often the recent votes are searched for rings"
    )
    ring_lookback_s: int = setting(
        "AIMUSICSTORE_RING_LOOKBACK_S",
        7200,
        "coordinated voting: how far back each pass reads votes (the agents' recent votes, the items' history)",
        minimum=60,
    )
    ring_max_votes: int = setting(
        "AIMUSICSTORE_RING_MAX_VOTES",
        20_000,
        "coordinated voting: at most this many of the newest votes are read per pass (bounds its memory and CPU)",
        minimum=100,
    )
    ring_window_s: float = setting(
        "AIMUSICSTORE_RING_WINDOW_S", 300.0, "coordinated voting: the longest burst of votes on one item, seconds"
    )
    ring_settle_s: float = setting(
        "AIMUSICSTORE_RING_SETTLE_S",
        30.0,
        "coordinated voting: a burst is judged once this long has passed after it (the votes after it are part of "
        "the evidence)",
    )
    ring_after_s: float = setting(
        "AIMUSICSTORE_RING_AFTER_S",
        90.0,
        "coordinated voting: how long after a burst its item's votes, and its agents' silence, are taken into account",
    )
    ring_judge_s: float = setting(
        "AIMUSICSTORE_RING_JUDGE_S",
        300.0,
        "coordinated voting: a burst is judged again on every pass for this long after it settled",
    )
    ring_min_size: int = setting(
        "AIMUSICSTORE_RING_MIN_SIZE", 5, "coordinated voting: fewest agents in a burst, and in a ring", minimum=2
    )
    ring_min_lift: float = setting(
        "AIMUSICSTORE_RING_MIN_LIFT",
        2.5,
        "coordinated voting: a burst takes at least this many times the item's share of the votes around it",
    )
    ring_max_chance: float = setting(
        "AIMUSICSTORE_RING_MAX_CHANCE",
        1e-16,
        "coordinated voting: a group is a ring when the chance of its least likely burst is below this",
    )
    ring_evidence_votes: float = setting(
        "AIMUSICSTORE_RING_EVIDENCE_VOTES",
        50.0,
        "coordinated voting: a burst of more votes weighs as this many would (honest votes are not independent)",
    )
    ring_prior_share: float = setting(
        "AIMUSICSTORE_RING_PRIOR_SHARE",
        0.1,
        "coordinated voting: the share of the votes an item with no history is assumed to take",
    )
    ring_prior_votes: float = setting(
        "AIMUSICSTORE_RING_PRIOR_VOTES",
        20.0,
        "coordinated voting: how many votes of history that assumption weighs as",
    )
    ring_member_share: float = setting(
        "AIMUSICSTORE_RING_MEMBER_SHARE",
        0.5,
        "coordinated voting: an agent of a ring is flagged when the ring's items are at least this share of its "
        "recent votes (votes on crowded items aside)",
    )
    ring_crowd_voters: int = setting(
        "AIMUSICSTORE_RING_CROWD_VOTERS",
        10,
        "coordinated voting: an item voted by at least this many agents outside a ring, and by the crowd share of "
        "the others, is crowded: votes on it neither clear nor convict a member",
        minimum=1,
    )
    ring_crowd_share: float = setting(
        "AIMUSICSTORE_RING_CROWD_SHARE",
        0.1,
        "coordinated voting: the share of the recently active agents outside a ring that make an item crowded",
    )
    ring_max_items: int = setting(
        "AIMUSICSTORE_RING_MAX_ITEMS",
        12,
        "a group of bursts over more items than this is a crowd moving through the catalogue, not a ring",
        minimum=1,
    )
    ring_session_gap_s: float = setting(
        "AIMUSICSTORE_RING_SESSION_GAP_S",
        300.0,
        "coordinated voting: an agent silent longer than this starts a new session (a woken sleeper is new again)",
    )
    reconcile_interval_s: float = setting(
        "AIMUSICSTORE_RECONCILE_INTERVAL_S", 5.0, "time between passes that check cached counts against the votes table"
    )
    reconcile_page_size: int = setting(
        "AIMUSICSTORE_RECONCILE_PAGE_SIZE",
        500,
        "cached items each reconciliation pass sweeps (plus the ones it rechecks); all are covered within "
        "(cached items / page size) passes",
        minimum=1,
    )
    stream_max_len: int = setting(
        "AIMUSICSTORE_STREAM_MAX_LEN",
        5_000_000,
        "the event stream is trimmed below the slowest consumer group; past this many entries it is trimmed "
        'anyway, with an error (docs/operations.md, "Stream retention")',
        minimum=1000,
    )


@dataclass(frozen=True, kw_only=True)
class RankingSettings(Settings):
    service: ClassVar[str] = "ranking"

    trending_half_life_h: float = setting(
        "AIMUSICSTORE_TRENDING_HALF_LIFE_H", 24.0, "a vote's trending influence halves every this many hours"
    )
    trending_rebuild_interval_s: float = setting(
        "AIMUSICSTORE_TRENDING_REBUILD_INTERVAL_S", 300.0, "how often trending is rebuilt from the vote projection"
    )
    snapshot_interval_s: float = setting(
        "AIMUSICSTORE_SNAPSHOT_INTERVAL_S", 60.0, "how often finished days' charts are frozen into snapshots"
    )
    # Today's charts are read from the live windows, which take the votes'
    # changes in folds (services/ranking/store/live_charts.py): a chart is
    # at most this plus one fold (a few ms) behind the votes, before the 1 s
    # answer cache (docs/benchmarks.md, docs/integrity.md).
    # Charts of past dates are read from the frozen tops the freezer keeps
    # (services/ranking/rankings/freezer.py): a finished day is frozen, and a
    # past day whose tallies changed (a late vote, a re-weigh, a repair)
    # frozen again, within about this interval plus a pass.
    chart_freeze_interval_s: float = setting(
        "AIMUSICSTORE_CHART_FREEZE_INTERVAL_S",
        5.0,
        "how often the freezer looks for finished days to freeze into the charts of past dates, or past days "
        "whose votes changed (past charts are at most this much plus one pass behind the votes)",
        minimum=0.1,
    )
    chart_freeze_days_per_pass: int = setting(
        "AIMUSICSTORE_CHART_FREEZE_DAYS_PER_PASS",
        31,
        "most days the freezer computes in one pass (a backfill or an old re-weigh takes several passes)",
        minimum=1,
    )
    chart_on_demand_concurrency: int = setting(
        "AIMUSICSTORE_CHART_ON_DEMAND_CONCURRENCY",
        2,
        "charts summed from the tallies at once per ranking replica (filtered charts of past dates, days not "
        "frozen yet); more wait their turn",
        minimum=1,
    )
    chart_fold_interval_s: float = setting(
        "AIMUSICSTORE_CHART_FOLD_INTERVAL_S",
        0.5,
        "how often the votes' pending changes are added to the live chart windows today's charts are read from "
        "(today's charts are at most this much behind the votes, plus one fold)",
        minimum=0.05,
    )
    # The daily song quota (services/ranking/submission_quota.py; docs/integrity.md).
    song_quota_free: int = setting(
        "AIMUSICSTORE_SONG_QUOTA_FREE",
        20,
        "songs an agent may submit per UTC day on the free tier (past it: RESOURCE_EXHAUSTED, HTTP 429)",
        minimum=0,
    )
    song_quota_pro: int = setting(
        "AIMUSICSTORE_SONG_QUOTA_PRO",
        200,
        "songs an agent may submit per UTC day on the pro tier (enterprise and the admin key: unlimited)",
        minimum=0,
    )
    # Reconciliation of the item counts with the votes table (services/ranking/store/reconcile.py).
    count_reconcile_interval_s: float = setting(
        "AIMUSICSTORE_COUNT_RECONCILE_INTERVAL_S",
        30.0,
        "time between passes that check a page of the ranking service's item counts against the votes table",
    )
    count_reconcile_page_size: int = setting(
        "AIMUSICSTORE_COUNT_RECONCILE_PAGE_SIZE",
        500,
        "items each of those passes checks (songs then tools, in id order, resuming where the last stopped); "
        "at most 1,000 are asked of the vote service at once",
        minimum=1,
    )
    # Reconciliation of the vote projection (rows, daily tallies, live windows,
    # trending) with the votes table (services/ranking/store/vote_reconcile.py).
    projection_reconcile_interval_s: float = setting(
        "AIMUSICSTORE_PROJECTION_RECONCILE_INTERVAL_S",
        30.0,
        "time between passes that check a page of agents' votes in the ranking service's projection against the "
        "votes table",
    )
    projection_reconcile_page_size: int = setting(
        "AIMUSICSTORE_PROJECTION_RECONCILE_PAGE_SIZE",
        200,
        "agents each of those passes checks (those with a projected vote or a tombstone, or a vote in the votes "
        "table, in id order, resuming where the last stopped); at most 1,000 are asked of the vote service at once",
        minimum=1,
    )


@dataclass(frozen=True, kw_only=True)
class ReputationSettings(Settings):
    service: ClassVar[str] = "reputation"

    reputation_recompute_interval_s: float = setting(
        "AIMUSICSTORE_REPUTATION_RECOMPUTE_INTERVAL_S",
        300.0,
        "how often every agent's reputation is recomputed and agents on probation are checked for trust",
    )
    # The graduation rule (services/reputation/standing.py, docs/integrity.md
    # "Standing and weights"): an agent on probation becomes trusted once it
    # meets all four. Age and activity spread over days are what a
    # mass-registered ring cannot produce in minutes.
    trust_min_age_days: int = setting(
        "AIMUSICSTORE_TRUST_MIN_AGE_DAYS", 7, "trust needs an account at least this many days old", minimum=0
    )
    trust_min_votes: int = setting(
        "AIMUSICSTORE_TRUST_MIN_VOTES",
        20,
        "trust needs at least this many live votes (one per item, so as many distinct items), cast while unflagged",
        minimum=0,
    )
    trust_min_active_days: int = setting(
        "AIMUSICSTORE_TRUST_MIN_ACTIVE_DAYS",
        3,
        "trust needs those votes cast on at least this many distinct UTC days",
        minimum=0,
    )
    trust_flag_cooldown_days: int = setting(
        "AIMUSICSTORE_TRUST_FLAG_COOLDOWN_DAYS",
        7,
        "an agent whose flag was cleared stays on probation at least this many days after the clearing",
        minimum=0,
    )
    # Registrations from one client address (services/reputation/registrations.py,
    # docs/integrity.md "Registrations from one address"): agents registered
    # from an address that already registered several within the window
    # share a probation weight, so a swarm from one machine weighs little
    # even where the registration rate limit is raised.
    registration_crowd_free: int = setting(
        "AIMUSICSTORE_REGISTRATION_CROWD_FREE",
        3,
        "agents one client address may register within the window at the full probation weight; the n-th beyond "
        "weighs that many n-ths of it while on probation",
        minimum=1,
    )
    registration_crowd_window_h: float = setting(
        "AIMUSICSTORE_REGISTRATION_CROWD_WINDOW_H",
        24.0,
        "how far back registrations from the same client address are counted (hours)",
    )
    registration_crowd_exempt: str = setting(
        "AIMUSICSTORE_REGISTRATION_CROWD_EXEMPT",
        "127.0.0.0/8,::1/128",
        "comma-separated networks whose registrations are not counted per address (the client address is "
        "unknown there: a proxy not declared in AIMUSICSTORE_XFF_TRUSTED_HOPS, a test harness on loopback)",
    )
    address_hash_key: str = setting(
        "AIMUSICSTORE_ADDRESS_HASH_KEY",
        "",
        "secret mixed into the hash of registration addresses, which is all that is stored of them",
        shown="derived from the admin key",
    )
    # Reconciliation of the vote projection with the votes table (services/reputation/store/reconcile.py).
    vote_reconcile_interval_s: float = setting(
        "AIMUSICSTORE_VOTE_RECONCILE_INTERVAL_S",
        30.0,
        "time between passes that check a page of agents' projected votes against the votes table",
    )
    vote_reconcile_page_size: int = setting(
        "AIMUSICSTORE_VOTE_RECONCILE_PAGE_SIZE",
        200,
        "agents each of those passes checks (registered, or with a vote in the votes table, in id order, resuming "
        "where the last stopped); at most 1,000 are asked of the vote service at once",
        minimum=1,
    )


SERVICE_SETTINGS: dict[str, type[Settings]] = {
    "vote": VoteSettings,
    "ranking": RankingSettings,
    "reputation": ReputationSettings,
}


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(_Section):
    """What the gateway (Envoy and its sidecar) needs: where everything listens."""

    gateway_host: str = setting("AIMUSICSTORE_GATEWAY_HOST", "0.0.0.0", "where Envoy listens")
    gateway_port: int = setting("AIMUSICSTORE_GATEWAY_PORT", 8080, "the one public port (JSON and gRPC)", minimum=1)
    api_port: int = setting(
        "AIMUSICSTORE_GATEWAY_API_PORT",
        8081,
        "the gateway's loopback listener that transcodes the edge-cached reads",
        minimum=1,
    )
    sidecar_host: str = setting("AIMUSICSTORE_SIDECAR_HOST", "127.0.0.1", "where the gateway sidecar listens")
    sidecar_grpc_port: int = setting(
        "AIMUSICSTORE_SIDECAR_GRPC_PORT", 50061, "gateway sidecar gRPC port (health, reflection)", minimum=1
    )
    sidecar_http_port: int = setting("AIMUSICSTORE_SIDECAR_HTTP_PORT", 50062, "gateway sidecar HTTP port", minimum=1)
    # Filled from the services' ports when not given (see _checked).
    vote_target: str = setting("AIMUSICSTORE_VOTE_TARGET", "", shown="`127.0.0.1:<port>`")
    ranking_target: str = setting("AIMUSICSTORE_RANKING_TARGET", "", shown="`127.0.0.1:<port>`")
    reputation_target: str = setting("AIMUSICSTORE_REPUTATION_TARGET", "", shown="`127.0.0.1:<port>`")
    sidecar_target_host: str = setting(
        "AIMUSICSTORE_SIDECAR_TARGET_HOST",
        "127.0.0.1",
        "where Envoy finds the sidecar (e.g. `gateway-sidecar` in compose)",
    )
    max_request_bytes: int = setting(
        "AIMUSICSTORE_MAX_REQUEST_BYTES", 64 * 1024, "largest JSON body the gateway accepts (413 beyond)", minimum=1024
    )
    health_deadline_s: float = setting("AIMUSICSTORE_HEALTH_DEADLINE_S", 1.0, "the sidecar's deadline per health check")
    # Envoy's circuit breakers: beyond them a request is refused at once
    # with 503 and Retry-After, rather than queueing without bound; live
    # streams are counted apart so that watchers can never use up the vote path.
    max_requests_per_service: int = setting(
        "AIMUSICSTORE_GATEWAY_MAX_REQUESTS",
        1024,
        "requests in flight to one service through the gateway; past it a request is refused at once with 503, "
        '`Retry-After: 1` and "the service is at capacity" (gRPC: UNAVAILABLE)',
        minimum=1,
    )
    max_live_streams: int = setting(
        "AIMUSICSTORE_GATEWAY_MAX_STREAMS",
        10_000,
        "live event streams (`/api/v1/events`, `WatchVotes`) open at once; counted apart from other requests",
        minimum=1,
    )
    max_sse_streams: int = setting(
        "AIMUSICSTORE_GATEWAY_MAX_SSE_STREAMS",
        1000,
        "browsers' live feeds (`/api/v1/events` as Server-Sent Events, served by the sidecar) open at once; "
        "past it 503 with `Retry-After: 1`",
        minimum=1,
    )
    sse_keepalive_s: float = setting(
        "AIMUSICSTORE_SSE_KEEPALIVE_S",
        15.0,
        "how often a quiet Server-Sent Events stream gets a comment line, so proxies keep it open",
    )
    cors_allowed_origins: str = setting(
        "AIMUSICSTORE_CORS_ALLOWED_ORIGINS",
        "",
        "other sites' origins (comma-separated, as `https://example.com`; `*` for any) whose pages may read "
        "the public GETs and the live feed (CORS)",
        shown="none (the service's own pages only)",
    )
    admin_port: int = setting(
        "AIMUSICSTORE_GATEWAY_ADMIN_PORT",
        0,
        "Envoy's admin interface (stats, clusters), on 127.0.0.1 only; `make bench` turns it on",
        minimum=0,
        shown="off",
    )
    metrics_port: int = setting(
        "AIMUSICSTORE_GATEWAY_METRICS_PORT",
        9901,
        "Envoy's Prometheus stats at `/stats/prometheus`, on a listener of their own (0: off)",
        minimum=0,
    )
    access_log: bool = setting(
        "AIMUSICSTORE_GATEWAY_ACCESS_LOG",
        True,
        "one JSON access-log line per public request on Envoy's stdout, with the request id the services log",
        shown="on",
    )
    otlp_endpoint: str = setting("OTEL_EXPORTER_OTLP_ENDPOINT", "", shown="off")
    # Rate limits per client address (gateway/rate_limits.py; docs/integrity.md,
    # "Rate limits", says why these numbers): each replica of the gateway
    # counts on its own. Test suites and benchmarks raise them here.
    xff_trusted_hops: int = setting(
        "AIMUSICSTORE_XFF_TRUSTED_HOPS",
        0,
        "proxies in front of the gateway that append to `X-Forwarded-For`: with N, the client address (rate "
        "limits, access log) is the N-th entry from the right; with 0 it is the connection's peer and the header "
        "is never trusted",
        minimum=0,
    )
    rate_limit_registrations_per_min: int = setting(
        "AIMUSICSTORE_RATE_LIMIT_REGISTRATIONS_PER_MIN",
        10,
        "agent registrations a minute per client address (as many at once); past it 429 with `Retry-After`",
        minimum=1,
    )
    rate_limit_submissions_per_min: int = setting(
        "AIMUSICSTORE_RATE_LIMIT_SUBMISSIONS_PER_MIN",
        30,
        "song and tool submissions a minute per client address (as many at once)",
        minimum=1,
    )
    rate_limit_votes_per_min: int = setting(
        "AIMUSICSTORE_RATE_LIMIT_VOTES_PER_MIN",
        600,
        "votes and retractions a minute per client address (as many at once)",
        minimum=1,
    )
    rate_limit_reads_per_min: int = setting(
        "AIMUSICSTORE_RATE_LIMIT_READS_PER_MIN",
        6000,
        "requests of any kind a minute per client address, edge-cached reads included (writes count here too, "
        "besides their own limit)",
        minimum=1,
    )
    rate_limit_addresses: int = setting(
        "AIMUSICSTORE_RATE_LIMIT_ADDRESSES",
        10_000,
        "client addresses each limit tracks at once; the least recently seen one is forgotten past it",
        minimum=1,
    )

    def targets(self) -> dict[str, str]:
        return {"vote": self.vote_target, "ranking": self.ranking_target, "reputation": self.reputation_target}

    def cors_origins(self) -> list[str]:
        """The allowed CORS origins, each `scheme://host[:port]` (or `*`)."""
        return [o.strip().rstrip("/") for o in self.cors_allowed_origins.split(",") if o.strip()]

    def _checked(self, env: Mapping[str, str]) -> Self:
        # A service not given a target is on this host, at its port setting.
        def target(service: str) -> str:
            port = next(f for f in dataclasses.fields(Settings) if f.name == f"{service}_port")
            raw = env.get(Settings.env_name(port), "")
            return f"127.0.0.1:{_parse('int', Settings.env_name(port), raw, 1) if raw else port.default}"

        for origin in self.cors_origins():
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"AIMUSICSTORE_CORS_ALLOWED_ORIGINS: {origin!r} is not an origin (scheme://host[:port], or *)"
                )
        return dataclasses.replace(
            self,
            vote_target=self.vote_target or target("vote"),
            ranking_target=self.ranking_target or target("ranking"),
            reputation_target=self.reputation_target or target("reputation"),
        )


# -- the README's table -----------------------------------------------------------


def _shown_default(f: dataclasses.Field[Any]) -> str:
    if f.metadata["shown"] is not None:
        return str(f.metadata["shown"])
    if f.default is dataclasses.MISSING:
        return "required"
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    return f"`{f.default}`" if f.default != "" else "empty"


def markdown_table() -> str:
    """Every setting as a README table row: variable, default, meaning (the
    first declaration of a variable wins: the gateway repeats some)."""
    rows = ["| variable | read by | default | meaning |", "|---|---|---|---|"]
    seen: set[str] = set()
    sections: list[tuple[str, type[_Section]]] = [
        ("every service", Settings),
        *[(name, cls) for name, cls in SERVICE_SETTINGS.items()],
        ("gateway", GatewaySettings),
    ]
    for reader, cls in sections:
        own = {f.name for f in dataclasses.fields(cls)} - (
            {f.name for f in dataclasses.fields(Settings)} if cls in SERVICE_SETTINGS.values() else set()
        )
        for f in dataclasses.fields(cls):
            env = str(f.metadata.get("env", ""))
            if not env or f.name not in own or env in seen or not f.metadata["doc"]:
                continue
            seen.add(env)
            rows.append(f"| `{env}` | {reader} | {_shown_default(f)} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
