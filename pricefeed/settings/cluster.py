"""Cluster: Redis (or Sentinel), the lease that elects one leader, and the bus."""
from __future__ import annotations

from dataclasses import dataclass

from pricefeed.settings import parsers
from pricefeed.settings.declaration import OPERATOR, ConfigError, SettingsGroup, setting


@dataclass(frozen=True)
class ClusterSettings(SettingsGroup):
    TITLE = "Cluster: Redis, the lease and the bus"
    SUMMARY = ("How workers and hosts share one exchange connection (cluster/): Redis or Sentinel, the key "
               "prefix, the lease's timings, the bus heartbeat, and when a leader yields.")
    ATTRIBUTE = "cluster"

    redis_url: str | None = setting(
        parsers.redis_url, None,
        "Redis for the shared lease, bus and price cache (`redis://`, `rediss://`, `unix://` or "
        "`redis+sentinel://[user:password@]h1:26379[,h2:26379]/<master>[/<db>]`; a Sentinel URL's credentials "
        "are the master's). Unset: single-host in-process bus.", kind=OPERATOR)
    redis_prefix: str = setting(
        parsers.text_or("pricefeed"), "pricefeed",
        "Prefix of every Redis key and channel (run several deployments on one Redis).", kind=OPERATOR)
    redis_sentinel_username: str | None = setting(
        parsers.optional_text, None,
        "Username for the sentinels themselves (redis+sentinel:// URLs; the URL's credentials are the master's).",
        kind=OPERATOR)
    redis_sentinel_password: str | None = setting(
        parsers.optional_text, None,
        "Password for the sentinels themselves (redis+sentinel:// URLs). Never shown: /health leaves it out.",
        kind=OPERATOR)
    lease_ttl: float = setting(
        float, 2.0, "Seconds the upstream lease lives without renewal.", minimum=0.3, maximum=300)
    lease_renew_interval: float = setting(
        float, 0.5, "Seconds between lease renewals (and standby attempts).", minimum=0.05, maximum=100)
    lease_renew_deadline: float = setting(
        float, 1.5, "Seconds without a successful renewal after which the leader demotes itself (< TTL).",
        minimum=0.1, maximum=299)
    bus_heartbeat_interval: float = setting(
        float, 1.0, "Seconds between the leader's heartbeats on the bus.", minimum=0.05, maximum=30)
    leader_yield_after: float = setting(
        float, 30.0,
        "Seconds a leader's exchange connection may stay down (while Redis works) before it yields the "
        "lease so another host, whose route may work, tries. 0: never yield.", minimum=0, maximum=3600)

    def __post_init__(self) -> None:
        if not self.lease_renew_interval < self.lease_renew_deadline < self.lease_ttl:
            raise ConfigError("PRICEFEED_LEASE_RENEW_INTERVAL < PRICEFEED_LEASE_RENEW_DEADLINE < "
                              "PRICEFEED_LEASE_TTL must hold")
