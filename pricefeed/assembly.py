"""Building one worker's parts: every dependency passed to its constructor, nothing attached later.

The parts call back into the node for what only the node decides (where a tick goes,
whether the feed should run, how to adopt a catalogue): `NodeHooks`. Those callbacks
run only once the node has started, after every part exists.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import pybreaker

from pricefeed.breakers import new_breaker
from pricefeed.cluster.address_limits import AddressLimits
from pricefeed.cluster.bus import Bus
from pricefeed.cluster.fallback import FallbackChain
from pricefeed.cluster.host_address_counts import HostAddressCounts, HostAddressRates
from pricefeed.cluster.host_tier import HostTier
from pricefeed.cluster.lease import Election, Lease, LeaseTimings
from pricefeed.cluster.memory_bus import InProcessBus
from pricefeed.cluster.publisher import TickPublisher
from pricefeed.cluster.redis_address_counts import RedisAddressCounts
from pricefeed.cluster.redis_bus import RedisBus
from pricefeed.cluster.redis_client import redis_client
from pricefeed.config import Config
from pricefeed.delivery.admission import AdmissionGate
from pricefeed.delivery.flusher import Flusher
from pricefeed.delivery.history import PriceHistory
from pricefeed.delivery.hub import Hub
from pricefeed.delivery.load_shedder import LoadShedder, lag_bound
from pricefeed.exchange.access import AccessRefusals
from pricefeed.exchange.attempt_budget import HostAttemptBudget
from pricefeed.exchange.backoff import ReconnectPolicy
from pricefeed.exchange.catalogue import ExchangeCatalogue
from pricefeed.exchange.catalogue_reader import CatalogueReader
from pricefeed.exchange.feed_set import FeedSet
from pricefeed.exchange.request_weight import RequestWeight
from pricefeed.exchange.rest import RestPoller
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick


class NodeHooks(Protocol):
    """What the parts ask of the node."""

    @property
    def worker_id(self) -> str: ...
    def route_tick(self, tick: PriceTick) -> None: ...          # a tick of our feed or REST poller
    def take_sibling_tick(self, tick: PriceTick) -> None: ...   # a tick of the host's local-tier connection
    def sync_feed(self) -> None: ...                            # elected, demoted, catalogue settled
    def adopt_catalogue(self, catalogue: ExchangeCatalogue) -> None: ...
    def epoch_floor(self) -> int: ...
    def on_leader_heartbeat(self, heartbeat: dict) -> None: ...
    def oldest_unwritten(self) -> float | None: ...


@dataclass(frozen=True)
class Parts:
    """One worker's parts. Redis deployments only: `election`, `publisher`, `host_tier`."""

    catalog: PairCatalog
    hub: Hub
    history: PriceHistory               # the hub records every tick in it; /history reads it
    flusher: Flusher
    shedder: LoadShedder
    admission: AdmissionGate
    breakers: dict[str, pybreaker.CircuitBreaker]
    access: AccessRefusals
    feed: FeedSet
    rest_weight: RequestWeight
    catalogue: CatalogueReader
    rest: RestPoller
    bus: Bus
    election: Election | None
    publisher: TickPublisher | None     # publishing off the feed's loop
    host_tier: HostTier | None          # one local-tier connection per host
    fallback: FallbackChain


def assemble(config: Config, hooks: NodeHooks, clock: Callable[[], float],
             max_clients: Callable[[], int]) -> Parts:
    """Every part of one worker. `max_clients` is asked at each connect: the web layer knows
    the worker's connection pool only once gunicorn's worker serves the app, after this ran."""
    upstream, cluster, delivery, endpoint = config.upstream, config.cluster, config.delivery, config.endpoint
    catalog = PairCatalog(upstream.pairs, upstream.stable_quote)
    pairs = [pair.name for pair in catalog.configured]
    history = PriceHistory(pairs, window_ms=int(delivery.history_window * 1000))
    hub = Hub(pairs, max_clients, delivery.stale_after, delivery.resume_window, delivery.min_update_interval, clock,
              history=history)
    shedder = LoadShedder(lag_bound(delivery.lag_bound, delivery.min_update_interval),
                          delivery.shed_after_flushes, delivery.shed_retry_after, delivery.shed_retry_jitter,
                          clock, hooks.oldest_unwritten, delivery.shed_after_seconds)
    flusher = Flusher(hub, shedder, clock=clock, min_write_spacing=delivery.min_write_spacing)
    breakers: dict[str, pybreaker.CircuitBreaker] = {
        # Short: the backoff (with the server's Retry-After) already paces attempts; the
        # breaker only stops a run of doomed handshakes and shows it in /health.
        "upstream": new_breaker("upstream", fail_max=5, reset_timeout=5),
        "rest": new_breaker("rest", fail_max=3, reset_timeout=30),
    }
    # What the exchange refuses us (451/403), and the REST weight the catalogue and the REST
    # tier share; the catalogue says which pairs it lists, under which symbols, in which status.
    access = AccessRefusals(upstream.refused_retry_interval, clock)
    rest_weight = RequestWeight(clock=clock)
    feed = _feed_set(config, catalog, hooks, clock, breakers["upstream"], access)
    catalogue = CatalogueReader(upstream.rest_url, hooks.adopt_catalogue, refresh=upstream.catalogue_refresh,
                                breaker=breakers["rest"], weight=rest_weight, access=access, clock=clock,
                                on_settled=hooks.sync_feed)
    rest = RestPoller(upstream.rest_url, catalog, hooks.route_tick, breaker=breakers["rest"], clock=clock,
                      max_body_bytes=upstream.rest_max_body_bytes, weight=rest_weight, access=access,
                      is_trading=catalogue.is_trading)
    host_counts, host_rates = HostAddressCounts(cluster.redis_prefix), HostAddressRates(cluster.redis_prefix)
    shared: dict[str, Any] = dict(bus=InProcessBus(), election=None, publisher=None, host_tier=None)
    redis_counts = None
    if cluster.redis_url:
        # Two breakers, because pybreaker holds its lock for the whole call: per-tick
        # publishing must never queue the lease renewal behind it.
        breakers["redis_lease"] = new_breaker("redis_lease", fail_max=3, reset_timeout=2)
        breakers["redis_bus"] = new_breaker("redis_bus", fail_max=3, reset_timeout=2)
        client = redis_client(cluster.redis_url, sentinel_username=cluster.redis_sentinel_username,
                              sentinel_password=cluster.redis_sentinel_password)
        lease = Lease(client, cluster.redis_prefix,
                      LeaseTimings(cluster.lease_ttl, cluster.lease_renew_interval, cluster.lease_renew_deadline),
                      clock)
        election = Election(lease, on_elected=hooks.sync_feed, on_demoted=hooks.sync_feed,
                            epoch_floor=hooks.epoch_floor, breaker=breakers["redis_lease"])
        bus = RedisBus(client, cluster.redis_prefix, lease, cluster.bus_heartbeat_interval, clock,
                       breaker=breakers["redis_bus"], max_clock_skew_ms=int(upstream.max_clock_skew * 1000) or None,
                       on_release=election.wake, on_heartbeat=hooks.on_leader_heartbeat)
        shared = dict(bus=bus, election=election,
                  publisher=TickPublisher(bus.publish_many, on_failed=hub.publish_local),
                  host_tier=HostTier(cluster.redis_prefix, deliver=hooks.take_sibling_tick, clock=clock))
        redis_counts = RedisAddressCounts(client, cluster.redis_prefix, lambda: hooks.worker_id)
    admission = AdmissionGate(delivery.new_streams_per_second, delivery.new_streams_burst, delivery.new_stream_max_wait,
                              clock, address_share=endpoint.new_streams_share_per_ip,
                              # The cap counts for the whole deployment (Redis), else the host.
                              streams=AddressLimits(endpoint.max_streams_per_ip, host_counts, redis_counts,
                                                    clock=clock, host_rates=host_rates))
    return Parts(catalog=catalog, hub=hub, history=history, flusher=flusher, shedder=shedder, admission=admission,
                 breakers=breakers, access=access, feed=feed, rest_weight=rest_weight, catalogue=catalogue,
                 rest=rest, fallback=FallbackChain(clock), **shared)


def _feed_set(config: Config, catalog: PairCatalog, hooks: NodeHooks, clock: Callable[[], float],
              breaker: pybreaker.CircuitBreaker, access: AccessRefusals) -> FeedSet:
    """As many exchange connections as the pairs need (stream_plan.py); one for ~200 pairs."""
    upstream = config.upstream
    host = urlsplit(upstream.upstream_url).netloc.rpartition("@")[2]
    return FeedSet(
        upstream.upstream_url, catalog, hooks.route_tick,
        max_streams=upstream.upstream_max_streams_per_connection,
        max_target_chars=upstream.upstream_max_target_length,
        silence_timeout=upstream.upstream_silence_timeout,
        connect_timeout=upstream.upstream_connect_timeout,
        rotate_after=upstream.upstream_rotate_after,
        policy=ReconnectPolicy(upstream.upstream_backoff_base, upstream.upstream_backoff_cap,
                               upstream.upstream_max_attempts_per_5min,
                               host_budget=HostAttemptBudget(upstream.upstream_attempt_budget_dir, host,
                                                             upstream.upstream_max_attempts_per_5min)),
        force_simulated=upstream.simulated, clock=clock, breaker=breaker, access=access,
        # Probed before its prices would turn stale: a quiet market stays current.
        probe_after=min(upstream.upstream_silence_timeout, config.delivery.stale_after / 2),
        probe_timeout=upstream.upstream_probe_timeout, max_frame_bytes=upstream.upstream_max_frame_bytes,
        max_clock_skew_ms=int(upstream.max_clock_skew * 1000) or None)
