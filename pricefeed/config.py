"""Config: the settings of one PriceFeed instance, one group per subsystem (pricefeed/settings/).

    config = Config.load(app.config)          # app.config wins over PRICEFEED_* environment variables
    config.upstream.upstream_url, config.cluster.redis_url, config.delivery.min_update_interval, ...

Each part of the code reads its own group. Loading only parses and checks: an invalid value
stops start-up with a ConfigError that names the variable. The reference of every variable is
docs/configuration.md, generated from the declarations (`python -m pricefeed.settings.reference`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pricefeed.settings.cluster import ClusterSettings
from pricefeed.settings.declaration import PREFIX, ConfigError, Setting, SettingsGroup
from pricefeed.settings.delivery import DeliverySettings
from pricefeed.settings.endpoint import EndpointSettings
from pricefeed.settings.observability import ObservabilitySettings
from pricefeed.settings.restart import RestartSettings
from pricefeed.settings.upstream import UpstreamSettings
from pricefeed.settings.websocket import WebSocketSettings
from pricefeed.shown_urls import reduce_url

__all__ = ["Config", "ConfigError", "PREFIX", "SETTINGS", "GROUPS", "Setting", "reduce_url"]

GROUPS: tuple[type[SettingsGroup], ...] = (UpstreamSettings, ClusterSettings, DeliverySettings, EndpointSettings,
                                           RestartSettings, WebSocketSettings, ObservabilitySettings)
# Every declaration, group by group (each knows its variable, group and attribute).
SETTINGS: tuple[Setting, ...] = tuple(declared for group in GROUPS for declared in group.settings())


@dataclass(frozen=True)
class Config:
    """Validated settings for one PriceFeed instance: the groups, each read by its own subsystem."""

    upstream: UpstreamSettings = dataclasses.field(default_factory=UpstreamSettings)
    cluster: ClusterSettings = dataclasses.field(default_factory=ClusterSettings)
    delivery: DeliverySettings = dataclasses.field(default_factory=DeliverySettings)
    endpoint: EndpointSettings = dataclasses.field(default_factory=EndpointSettings)
    restart: RestartSettings = dataclasses.field(default_factory=RestartSettings)
    websocket: WebSocketSettings = dataclasses.field(default_factory=WebSocketSettings)
    observability: ObservabilitySettings = dataclasses.field(default_factory=ObservabilitySettings)

    def __post_init__(self) -> None:
        # Checks across groups; each group checks its own in its __post_init__.
        if self.websocket.ws_idle_timeout <= self.delivery.heartbeat_interval:
            raise ConfigError("PRICEFEED_WS_IDLE_TIMEOUT must be above PRICEFEED_HEARTBEAT_INTERVAL "
                              "(a client answers the server's pings; it need not send anything else)")

    @classmethod
    def load(cls, app_config: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Config:
        """Build from `app_config` (wins) and then the environment (default: os.environ), validating
        every value. Tests build a config with overrides the same way: `Config.load({...}, environ={})`."""
        # One keyword per group, in GROUPS' order (so the first invalid variable is the one named).
        return cls(upstream=UpstreamSettings.load(app_config, environ),
                   cluster=ClusterSettings.load(app_config, environ),
                   delivery=DeliverySettings.load(app_config, environ),
                   endpoint=EndpointSettings.load(app_config, environ),
                   restart=RestartSettings.load(app_config, environ),
                   websocket=WebSocketSettings.load(app_config, environ),
                   observability=ObservabilitySettings.load(app_config, environ))

    def public(self) -> dict[str, Any]:
        """The settings safe to show in /health (no credentials), by attribute name."""
        shown = {declared.attribute: getattr(getattr(self, declared.group), declared.attribute)
                 for declared in SETTINGS}
        # The sentinels' password is not shown at all: "set" or not is all /health needs to say.
        del shown["redis_sentinel_password"]
        for name in ("redis_url", "upstream_url", "rest_url"):
            shown[name] = reduce_url(shown[name])
        shown["admin_token"] = "set" if shown["admin_token"] else None
        shown["trusted_proxies"] = [str(network) for network in shown["trusted_proxies"]]
        return shown
