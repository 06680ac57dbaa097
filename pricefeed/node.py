"""Node: one worker's pricefeed — wires upstream → bus → hub and walks the fallback chain.

The node owns the per-worker greenlets: the election (with Redis), the bus
subscription, the exchange feed (while this worker leads, or runs the local
tier), REST polling (while that feed cannot connect), and one monitor that
derives the mode and staleness, tells clients when either changes, has the
leader's heartbeat published (never waiting for Redis itself) and sends the
stream pings. One timer for all clients, never one per client.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable
from urllib.parse import urlsplit

import gevent
import pybreaker

from pricefeed.cluster.address_limits import AddressLimits
from pricefeed.cluster.host_address_counts import HostAddressCounts, HostAddressRates
from pricefeed.cluster.redis_address_counts import RedisAddressCounts
from pricefeed.delivery.admission import AdmissionGate
from pricefeed.exchange.attempt_budget import HostAttemptBudget
from pricefeed.exchange.backoff import ReconnectPolicy
from pricefeed.breakers import new_breaker
from pricefeed.cluster.bus import Bus
from pricefeed.cluster.memory_bus import InProcessBus
from pricefeed.config import Config, reduce_url
from pricefeed.cluster.fallback import DEGRADED, LIVE, LOCAL, REDIS, FallbackChain, Observation
from pricefeed.delivery.drain import close_spread, farewell_retry, wait_for_successor
from pricefeed.delivery.flusher import Flusher
from pricefeed.delivery.history import PriceHistory
from pricefeed.delivery.hub import Hub
from pricefeed.delivery.load_shedder import LoadShedder, lag_bound
from pricefeed.cluster.lease import Election, Lease, LeaseTimings
from pricefeed.pairs import PairCatalog
from pricefeed.cluster.host_tier import HostTier
from pricefeed.cluster.publisher import TickPublisher
from pricefeed.cluster.redis_bus import RedisBus
from pricefeed.cluster.redis_client import redis_client
from pricefeed.exchange.rest import RestPoller
from pricefeed.exchange.access import AccessRefusals
from pricefeed.exchange.catalogue import TRADING, ExchangeCatalogue
from pricefeed.exchange.catalogue_reader import CatalogueReader
from pricefeed.exchange.listing_log import adopt_listing
from pricefeed.exchange.request_weight import RequestWeight
from pricefeed.ticks import PriceTick
from pricefeed.exchange.feed_set import FeedSet

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 0.25
# A leader stepping down waits this long for its exchange connection to close before
# releasing the lease, so the successor's connection never overlaps it.
HANDOVER_CLOSE_WAIT_SECONDS = 1.5
# The WebSocket must have been down this long before REST polling starts.
REST_AFTER_SECONDS = 5.0
# At start, the exchange connection waits this long at most for the first catalogue read.
CATALOGUE_START_WAIT_SECONDS = 3.0

REFUSAL_DETAIL = {
    "region_not_served": "the exchange does not serve this server's region (HTTP 451): no live data",
    "blocked_by_exchange_firewall": "the exchange's firewall blocks this server (HTTP 403): no live data",
}
MODE_DETAIL = {
    LIVE: "live prices from the exchange",
    REDIS: "no live ticks; serving the last prices known to Redis",
    LOCAL: "Redis unreachable; this server runs its own exchange connection",
    DEGRADED: "no live data from the exchange",
}


class Node:
    """This worker's share of the service."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.catalog = PairCatalog(config.upstream.pairs, config.upstream.stable_quote)
        self._clock = clock
        self.hub = Hub((p.name for p in self.catalog.configured), config.delivery.max_clients,
                       config.delivery.stale_after, config.delivery.resume_window,
                       config.delivery.min_update_interval, clock)
        # The open-files limit, worker_connections and client cap in force (capacity.py), set by
        # the web layer once gunicorn's numbers are known; /health shows them.
        self.capacity: dict = {}
        self.hub.history = PriceHistory((p.name for p in self.catalog.configured),
                                        window_ms=int(config.delivery.history_window * 1000))
        self.flusher = Flusher(self.hub, clock=clock)
        self.shedder = LoadShedder(lag_bound(config.delivery.lag_bound, config.delivery.min_update_interval),
                                   config.delivery.shed_after_flushes, config.delivery.shed_retry_after,
                                   config.delivery.shed_retry_jitter,
                                   clock, self._oldest_unwritten, config.delivery.shed_after_seconds)
        self.flusher.shedder = self.shedder
        self.admission = AdmissionGate(config.delivery.new_streams_per_second, config.delivery.new_streams_burst,
                                       config.delivery.new_stream_max_wait, clock,
                                       address_share=config.endpoint.new_streams_share_per_ip,
                                       # The cap counts for the whole deployment (Redis), else the host.
                                       streams=AddressLimits(config.endpoint.max_streams_per_ip,
                                                             HostAddressCounts(config.cluster.redis_prefix),
                                                             clock=clock,
                                                             host_rates=HostAddressRates(config.cluster.redis_prefix)))
        # Set by pricefeed's gunicorn worker, which knows the response framing (PriceFeed.served_by).
        self.direct_writes = False
        self.breakers: dict[str, pybreaker.CircuitBreaker] = {
            # Short: the backoff (with the server's Retry-After) already paces attempts; the
            # breaker only stops a run of doomed handshakes and shows it in /health.
            "upstream": new_breaker("upstream", fail_max=5, reset_timeout=5),
            "rest": new_breaker("rest", fail_max=3, reset_timeout=30),
        }
        # As many exchange connections as the pairs need (stream_plan.py); one for ~200 pairs.
        self.feed = FeedSet(
            config.upstream.upstream_url, self.catalog, self._publish,
            max_streams=config.upstream.upstream_max_streams_per_connection,
            max_target_chars=config.upstream.upstream_max_target_length,
            silence_timeout=config.upstream.upstream_silence_timeout,
            connect_timeout=config.upstream.upstream_connect_timeout,
            rotate_after=config.upstream.upstream_rotate_after,
            policy=ReconnectPolicy(config.upstream.upstream_backoff_base, config.upstream.upstream_backoff_cap,
                                   config.upstream.upstream_max_attempts_per_5min,
                                   host_budget=HostAttemptBudget(config.upstream.upstream_attempt_budget_dir,
                                                                 urlsplit(config.upstream.upstream_url)
                                                                 .netloc.rpartition("@")[2],
                                                                 config.upstream.upstream_max_attempts_per_5min)),
            force_simulated=config.upstream.simulated, clock=clock, breaker=self.breakers["upstream"],
            # Probed before its prices would turn stale: a quiet market stays current.
            probe_after=min(config.upstream.upstream_silence_timeout, config.delivery.stale_after / 2),
            probe_timeout=config.upstream.upstream_probe_timeout,
            max_frame_bytes=config.upstream.upstream_max_frame_bytes,
            max_clock_skew_ms=int(config.upstream.max_clock_skew * 1000) or None)
        # What the exchange refuses us (451/403), and the REST weight the catalogue and the REST
        # tier share; the catalogue says which pairs it lists, under which symbols, in which status.
        self.access = AccessRefusals(config.upstream.refused_retry_interval, clock)
        self.feed.access = self.access
        self.rest_weight = RequestWeight(clock=clock)
        self.rest = RestPoller(config.upstream.rest_url, self.catalog, self._publish, breaker=self.breakers["rest"],
                               clock=clock, max_body_bytes=config.upstream.rest_max_body_bytes, weight=self.rest_weight,
                               access=self.access, is_trading=self._is_trading)
        self.catalogue = CatalogueReader(config.upstream.rest_url, self._adopt_catalogue,
                                         refresh=config.upstream.catalogue_refresh,
                                         breaker=self.breakers["rest"], weight=self.rest_weight,
                                         access=self.access, clock=clock, on_settled=self._sync_feed)
        self._standings_version = 0
        self._catalogue_wait_until = 0.0
        self.bus: Bus
        self.election: Election | None = None
        self.publisher: TickPublisher | None = None     # Redis only: publishing off the feed's loop
        self.host_tier: HostTier | None = None          # Redis only: one local-tier connection per host
        if config.cluster.redis_url:
            # Two breakers, because pybreaker holds its lock for the whole call: per-tick
            # publishing must never queue the lease renewal behind it.
            self.breakers["redis_lease"] = new_breaker("redis_lease", fail_max=3, reset_timeout=2)
            self.breakers["redis_bus"] = new_breaker("redis_bus", fail_max=3, reset_timeout=2)
            client = redis_client(config.cluster.redis_url, sentinel_username=config.cluster.redis_sentinel_username,
                                  sentinel_password=config.cluster.redis_sentinel_password)
            lease = Lease(client, config.cluster.redis_prefix,
                          LeaseTimings(config.cluster.lease_ttl, config.cluster.lease_renew_interval,
                                       config.cluster.lease_renew_deadline),
                          clock)
            self.bus = RedisBus(client, config.cluster.redis_prefix, lease, config.cluster.bus_heartbeat_interval,
                                clock,
                                breaker=self.breakers["redis_bus"])
            self.bus.max_clock_skew_ms = int(config.upstream.max_clock_skew * 1000) or None
            self.election = Election(lease, on_elected=self._sync_feed, on_demoted=self._sync_feed,
                                     epoch_floor=self._epoch_floor, breaker=self.breakers["redis_lease"])
            self.bus.on_release = self.election.wake
            self.publisher = TickPublisher(self.bus.publish_many, on_failed=self.hub.publish_local)
            self.host_tier = HostTier(config.cluster.redis_prefix, deliver=self._on_sibling_tick, clock=clock)
            self.bus.on_heartbeat = self._on_leader_heartbeat
            self.admission.streams.redis = RedisAddressCounts(client, config.cluster.redis_prefix,
                                                              lambda: self.worker_id)
        else:
            self.bus = InProcessBus()
        self.fallback = FallbackChain(clock)
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._last_heartbeat = 0.0
        self._heartbeat: gevent.Greenlet | None = None     # the leader's heartbeat being published
        self._feed_down_since: float | None = None
        self._heartbeat_epoch = 0     # the highest epoch a leader's heartbeat announced
        self.mode = DEGRADED
        self.mode_since = time.time()
        self._announced: tuple | None = None
        self._last_ping = clock()
        self.started_at: float | None = None
        self.handover_s: float | None = None     # the stop sequence's lease handover (seconds)
        self.drained: dict | None = None         # what the spread close did (close_spread)

    @property
    def worker_id(self) -> str:
        # Read at call time: the node may be built before gunicorn forks.
        return f"{socket.gethostname()}:{os.getpid()}"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the greenlets. Requires gevent's monkey patching (gunicorn's gevent worker does it)."""
        if self._greenlets or self._stopping:
            return   # stopping is final: a request arriving during shutdown must not restart us
        from gevent import monkey
        if not monkey.is_module_patched("socket"):
            raise RuntimeError("pricefeed needs gevent monkey patching: run under gunicorn -k gevent "
                               "(see gunicorn.conf.py) or call gevent.monkey.patch_all() first")
        self.started_at = time.time()
        self._catalogue_wait_until = self._clock() + CATALOGUE_START_WAIT_SECONDS
        self.catalogue.start()
        self.flusher.start()
        self.admission.streams.start()
        self.bus.start(self.hub.publish)
        if self.publisher is not None:
            self.publisher.start()
        if self.host_tier is not None:
            self.host_tier.start()
        if self.election is not None:
            self._greenlets.append(gevent.spawn(self.election.run_forever))
        # Without Redis the feed is ours at once: the monitor's first pass starts it (after the
        # first catalogue read, _sync_feed).
        self._greenlets.append(gevent.spawn(self._monitor_forever))
        log.info("pricefeed started in worker %s: %d pairs, upstream %s, bus %s", self.worker_id,
                 len(self.catalog.pairs), reduce_url(self.feed.url), self.bus.status()["backend"])

    def stop(self, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
        """Graceful shutdown: stop publishing and hand the lease over at once, then close every
        stream — after `delay_s` more seconds of streaming, over `spread_s` seconds, each with a
        jittered `retry:` (delivery/drain.py), while the bus and the flusher keep the streams not
        yet closed live."""
        self._stopping = True
        for greenlet in self._greenlets + [self._heartbeat]:
            if greenlet is not None:
                greenlet.kill(block=False)
        self._greenlets = []
        self.catalogue.stop()
        self.rest.stop()
        handover_started = self._clock()
        if self.election is not None:
            self.feed.stop(wait=HANDOVER_CLOSE_WAIT_SECONDS)   # no tick of ours after the release
            self.election.resign()
        self.feed.stop()
        if self.publisher is not None:
            self.publisher.stop()
        self.handover_s = self._clock() - handover_started
        if spread_s > 0:
            # Not admitting from now on (503 shutting_down), but still streaming: a reload's
            # new workers are booting, and browsers sent back now would find nobody accepting.
            # A few (no more than one admission burst) wait in the listen backlog unharmed.
            # With Redis the wait ends as soon as a successor on this host leads (bench/restart.py:
            # 0.5-0.6 s after the HUP, not 2 s).
            waited = 0.0
            if len(self.hub.drain()) > self.config.delivery.new_streams_burst:
                waited = wait_for_successor(self._successor_on_this_host(), delay_s, self._clock)
            restart = self.config.restart
            self.drained = close_spread(self.hub, spread_s, restart.restart_closes_per_second, farewell_retry(
                restart.restart_retry_ms, restart.restart_retry_jitter_ms), self._clock)
            self.drained["waited_s"] = round(waited, 3)
            log.warning("pricefeed: handed over in %.2f s, kept streaming %.2f s, then closed %d streams over "
                        "%.2f s in %d slices", self.handover_s, waited, self.drained["streams"],
                        self.drained["took_s"], self.drained["slices"])
        if self.host_tier is not None:
            self.host_tier.stop()
        self.bus.stop()
        self.hub.close_all()
        self.flusher.stop()
        self.admission.streams.stop()

    def _successor_on_this_host(self) -> Callable[[], bool]:
        """For a stopping worker: has another worker of this host taken the lease since? Its
        heartbeat, under a newer epoch, says it is up and past its boot — a reload's new worker,
        or a sibling. A leader on another instance says nothing about ours: then the whole delay."""
        epoch, me = max(self.hub.epoch, self._heartbeat_epoch), self.worker_id
        host = me.rsplit(":", 1)[0]                 # worker ids are host:pid

        def seen() -> bool:
            heartbeat = self.bus.leader_heartbeat or {}
            worker, new_epoch = heartbeat.get("worker"), heartbeat.get("epoch")
            return (self.election is not None and isinstance(new_epoch, int) and new_epoch > epoch
                    and isinstance(worker, str) and worker != me and worker.rsplit(":", 1)[0] == host)
        return seen

    def _oldest_unwritten(self) -> float | None:
        # Before the node starts nothing is flushed, and nothing is late either: a stream
        # admitted then (Flask's test client, a first request) is served once it starts.
        return self.flusher.oldest_unwritten() if self.running else None

    @property
    def running(self) -> bool:
        return bool(self._greenlets)

    @property
    def leading(self) -> bool:
        """This worker holds the lease (always so without Redis)."""
        return self.election.leading if self.election is not None else True

    # -- the price path ------------------------------------------------------------

    def _publishes_locally(self) -> bool:
        """Ticks of our own feed go straight to our hub while we serve the local tier.

        A worker holding the lease always publishes through the bus (whose fenced script
        refuses it if the lease is gone), even before its local tier formally ends:
        otherwise followers that rejoin would hear nothing. One past its renew deadline no
        longer holds it, though its election has not said so yet (_lease_lapsed): the bus
        would drop its ticks, so they go to its own browsers and its host's.
        """
        if self.election is None:
            return False
        if self.election.leading:
            return self._lease_lapsed()
        return self.fallback.local or self.election.redis_failing

    def _lease_lapsed(self) -> bool:
        """The election still says we lead, but the renew deadline has passed: its renewal is
        stuck on a Redis that stopped answering, and it demotes us only once that returns, which
        can be seconds later (under Sentinel a reconnect first asks each sentinel, a timeout each)."""
        return self.election is not None and self.election.leading and not self.election.lease.held()

    def _publish(self, tick: PriceTick) -> None:
        """Route a tick from our feed (or REST poller): the bus while we lead, our own hub in the local tier."""
        if self._publishes_locally():
            if not self._leader_delivering():
                self.hub.publish_local(tick)
                if self.host_tier is not None:
                    self.host_tier.share(tick)
            return
        if self.publisher is not None:
            self.publisher.submit(tick)
            return
        try:
            self.bus.publish(tick)
        except (Exception, pybreaker.CircuitBreakerError) as exc:  # noqa: BLE001 - Redis trouble
            # The lease deadline demotes us and the fallback chain goes local; until then
            # our own clients still get the price.
            log.warning("publish failed (%s); delivering locally", exc)
            self.hub.publish_local(tick)

    def _on_sibling_tick(self, tick: PriceTick) -> None:
        """A tick of the host's local-tier connection, run by a sibling worker (cluster/host_tier.py)."""
        if self._publishes_locally() and not self.feed.running and not self._leader_delivering():
            self.hub.publish_local(tick)

    def _leader_delivering(self) -> bool:
        """Redis is back and a live leader's ticks reach us: our own feed's are redundant."""
        return self.bus.subscribed and self._leader_live()

    def _leader_live(self) -> bool:
        """Another worker leads, and its exchange connection delivers."""
        heartbeat = self.bus.leader_heartbeat or {}
        return bool(self.bus.leader_alive() and heartbeat.get("live"))

    def _epoch_floor(self) -> int:
        """The highest epoch this worker knows of: a lease taken on a promoted replica that missed
        the last INCR must still get a larger one (a heartbeat counts: a quiet market sends no tick)."""
        return max(self.hub.epoch, self._heartbeat_epoch)

    def _on_leader_heartbeat(self, heartbeat: dict) -> None:
        epoch = heartbeat.get("epoch")
        if isinstance(epoch, int) and epoch > self._heartbeat_epoch:
            self._heartbeat_epoch = epoch
        if isinstance(epoch, int) and 0 < epoch < self.hub.epoch:
            log.warning("the leader's epoch %d is below the %d seen before: Redis lost its epoch "
                        "counter; following the new epoch", epoch, self.hub.epoch)
            self.hub.rebase(epoch)

    def _sync_feed(self) -> None:
        """Run our exchange connection exactly while we lead or serve the local tier."""
        if self._stopping:
            return
        cut_off = self.election is not None and (self.election.redis_failing or self._lease_lapsed())
        # The third case: a leader demoted because Redis stopped answering keeps its
        # connection rather than dropping it and reopening it a moment later as the local tier.
        want = self.leading or self.fallback.local or (cut_off and self.feed.running)
        if self.host_tier is not None:
            # Outside the lease, one connection per host: the worker holding the host's lock runs it
            # and shares its ticks; the others serve theirs.
            # A holder that becomes leader keeps the lock (and keeps telling its siblings its
            # connection is live) until its connection stops: a sibling still in the local tier
            # must not open one of its own in the seconds before it rejoins.
            # A leader cut off from Redis claims the lock at once, before its election demotes
            # it: it keeps its connection (the third case), so a sibling that goes local must
            # take its ticks, not open a second connection on this host. Claimed only once
            # Redis fails: while it works, the lock is the local tier's alone.
            if want and (cut_off or not self.leading):
                if not self.host_tier.claim() and not self.leading:
                    want = False
            elif not want:
                self.host_tier.release()
        if want and not self.feed.running and not self.catalogue.settled \
                and self._clock() < self._catalogue_wait_until:
            # Asked under the names the exchange lists (BTC/USD may be BTCUSD), not the guess,
            # unless the first catalogue read takes longer than CATALOGUE_START_WAIT_SECONDS.
            return
        if want and not self.feed.running:
            log.warning("feed: starting (%s)", "leader" if self.leading else "local tier")
            self.feed.start()
        elif not want and self.feed.running:
            log.warning("feed: stopping (no longer leader)")
            self.rest.stop()
            self.feed.stop(wait=HANDOVER_CLOSE_WAIT_SECONDS)

    # -- mode, staleness, heartbeats -----------------------------------------------

    def _monitor_forever(self) -> None:
        while True:
            try:
                self._monitor_once()
            except Exception:  # noqa: BLE001 - the monitor must survive any one bad pass
                log.exception("monitor pass failed")
            gevent.sleep(MONITOR_INTERVAL_SECONDS)

    def _monitor_once(self) -> None:
        now = self._clock()
        mode = self.fallback.update(self._observe())
        self._sync_feed()
        self._steer_rest(now)
        self._yield_if_exchange_unreachable(now)
        if self.host_tier is not None:
            self.host_tier.share_status(self.feed.is_live(), self.feed.data_age())
        if self.election is not None and self.election.leading \
                and now - self._last_heartbeat >= self.config.cluster.bus_heartbeat_interval \
                and (self._heartbeat is None or self._heartbeat.dead):
            self._last_heartbeat = now
            # Published from its own greenlet: on a Redis that stopped answering it waits out
            # its timeout (and the bus breaker the publisher holds), and this pass must not —
            # it also claims the host's lock for a leader cut off from Redis and tells the
            # host's other workers, every pass, whether that connection is live.
            self._heartbeat = gevent.spawn(self._send_heartbeat)
        if self.feed.is_live():
            # A live stream proves the exchange serves us; the REST tier, stopped now, cannot
            # say so itself.
            self.access.answered("handshake")
            if not self.rest.running:
                self.access.answered("rest")
        data_age = self._source_data_age()
        if mode in (LIVE, LOCAL) and data_age is not None:
            # A connection of the set that is down leaves its own pairs to go stale.
            self.hub.confirm_current(data_age, except_pairs=self._source_down_pairs())
        if mode != self.mode:
            log.warning("mode %s -> %s", self.mode, mode)
            self.mode = mode
            self.mode_since = time.time()
        announcement = (self.mode, self.simulated, tuple(self.hub.stale_pairs()), self._standings_version,
                        self.access.current())
        if announcement != self._announced:
            self._announced = announcement
            self.hub.broadcast_status(self.status_body())
        if now - self._last_ping >= self.config.delivery.heartbeat_interval:
            self._last_ping = now
            self.hub.ping_all()

    def _source_data_age(self) -> float | None:
        """Seconds since the exchange connection feeding us last delivered data (ours or the leader's)."""
        if self.election is None or self.election.leading or self.fallback.local:
            if self.host_tier is not None and not self.feed.running:
                return self.host_tier.source_data_age()
            return self.feed.data_age()
        heartbeat = self.bus.leader_heartbeat or {}
        age = heartbeat.get("data_age_s")
        if not self._leader_live() or not isinstance(age, (int, float)):
            return None
        return age + self.bus.heartbeat_age()

    def _source_down_pairs(self) -> list[str]:
        """The pairs whose exchange connection (ours or the leader's) is down while others deliver."""
        if self.election is None or self.election.leading or self.fallback.local:
            return self.feed.down_pairs() if self.feed.running else []
        down = (self.bus.leader_heartbeat or {}).get("down_pairs")
        return [pair for pair in down if isinstance(pair, str)] if isinstance(down, list) else []

    def _observe(self) -> Observation:
        if self.election is None:
            return Observation(redis_configured=False, redis_up=False, leading=True,
                               feed_live=self.feed.is_live(), leader_live=False)
        return Observation(
            redis_configured=True,
            redis_up=self.bus.subscribed and not self.election.redis_failing,
            leading=self.election.leading,
            feed_live=self.feed.is_live() or (self.host_tier is not None and not self.feed.running
                                              and self.host_tier.source_live()),
            leader_live=self._leader_live(),
        )

    def _steer_rest(self, now: float) -> None:
        """Poll REST while our own exchange connection should run but cannot deliver."""
        if self.feed.running and not self.feed.is_live():
            if self._feed_down_since is None:
                self._feed_down_since = now
            if now - self._feed_down_since >= REST_AFTER_SECONDS and not self.rest.running:
                log.warning("WebSocket down for %.0fs: polling REST prices", now - self._feed_down_since)
                self.rest.start()
        else:
            self._feed_down_since = None
            if self.rest.running:
                log.warning("REST polling stopped (%s)", "WebSocket live" if self.feed.is_live() else "not ours")
                self.rest.stop()

    def _yield_if_exchange_unreachable(self, now: float) -> None:
        """Redis works but our exchange connection has been down for LEADER_YIELD_AFTER: let
        another worker, perhaps on a host whose route works, lead."""
        after = self.config.cluster.leader_yield_after
        if (after and self.election is not None and self.election.leading and not self.election.redis_failing
                and self._feed_down_since is not None and now - self._feed_down_since >= after):
            log.warning("exchange unreachable for %.0fs while Redis works: yielding the lease", after)
            self._feed_down_since = None
            # Out for two turns: a sibling on this host (the same broken route) that takes the lease
            # next yields it before we would compete again, so another host gets its turn.
            self.election.yield_lease(hold_off=2 * after)

    def _send_heartbeat(self) -> None:
        assert self.election is not None
        lease = self.election.lease
        try:
            self.bus.publish_heartbeat({
                "worker": self.worker_id, "epoch": lease.epoch, "since": lease.since,
                "live": self.feed.is_live(), "data_age_s": self.feed.data_age(),
                "down_pairs": self.feed.down_pairs(),
                "simulated": self.feed.simulated, "t": int(time.time() * 1000)})
        except (Exception, pybreaker.CircuitBreakerError) as exc:  # noqa: BLE001 - shows in the mode
            log.warning("heartbeat not published: %s", exc)

    @property
    def simulated(self) -> bool:
        if self.config.upstream.simulated or self.feed.simulated:
            return True
        heartbeat = self.bus.leader_heartbeat
        if heartbeat and heartbeat.get("simulated"):
            return True
        return any(entry.tick.source == "simulator" for entry in self.hub.book.values())

    def status_body(self) -> dict:
        """The `status` event: mode, simulation label, stale pairs, each pair's status and traded
        symbol, and the reason the exchange refuses us, if it does."""
        return {"mode": self.mode, "simulated": self.simulated, "stale": self.hub.stale_pairs(),
                "pairs": self.hub.pair_states(pair.name for pair in self.catalog.configured),
                "reason": self.access.current(), "server_time": int(time.time() * 1000),
                "detail": self.mode_detail()}

    def mode_detail(self) -> str:
        """The mode in words, for the dashboard's banner (status events and snapshots)."""
        detail = REFUSAL_DETAIL.get(self.access.current() or "", MODE_DETAIL[self.mode])
        if self.mode != LIVE:
            detail += "; prices shown are the last received" if self.hub.book else "; no prices yet"
        return detail

    # -- the exchange's catalogue ----------------------------------------------------

    def _adopt_catalogue(self, catalogue: ExchangeCatalogue) -> None:
        """Serve each configured pair as the exchange lists it (exchange/listing_log.py); new
        symbols go on a replacement connection, and clients hear of every status change."""
        standings, resubscribe = adopt_listing(self.catalog, catalogue, self.hub.standings,
                                               self.config.upstream.rest_url)
        if resubscribe:
            self.feed.retarget()
        if self.hub.set_standings(standings):
            self._standings_version += 1

    def _is_trading(self, symbol: str) -> bool:
        """What the catalogue last said (True before it was read: the configured pairs as named)."""
        catalogue = self.catalogue.catalogue
        listed = catalogue.symbols.get(symbol) if catalogue is not None else None
        return listed is None or listed.status == TRADING
