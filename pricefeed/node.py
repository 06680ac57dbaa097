"""Node: one worker's pricefeed — upstream → bus → hub, and the role that routes between them.

The parts are built in one place (assembly.py); the node starts and stops them, and
acts on its role (cluster/role.py: whether our exchange connection runs, where its
ticks go, what to do with the host's lock), decided from what it sees. The periodic
duties — mode, staleness, heartbeats, pings — are the monitor's (monitor.py).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

import gevent
import pybreaker

from pricefeed.assembly import assemble
from pricefeed.capacity import derive, open_files_limit
from pricefeed.cluster.fallback import DEGRADED, LIVE, LOCAL, REDIS
from pricefeed.cluster.role import (
    BUS,
    CLAIM,
    CLAIM_TO_RUN,
    RELEASE,
    Situation,
    feed_plan,
    takes_sibling_ticks,
    tick_route,
)
from pricefeed.cluster.role import LOCAL as TO_HUB
from pricefeed.config import Config, reduce_url
from pricefeed.delivery.farewell import close_spread, farewell_retry, wait_for_successor
from pricefeed.exchange.catalogue import ExchangeCatalogue
from pricefeed.exchange.listing_log import adopt_listing
from pricefeed.monitor import Monitor
from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

# A leader stepping down waits this long for its exchange connection to close before
# releasing the lease, so the successor's connection never overlaps it.
HANDOVER_CLOSE_WAIT_SECONDS = 1.5
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

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic,
                 capacity: Callable[[], dict] = dict, direct_writes: Callable[[], bool] = lambda: False):
        """`capacity`: the open-files limit, worker_connections and client cap in force
        (capacity.py; /health shows them), and `direct_writes`: whether the flusher may write a
        stream's chunks to its socket itself. Both are asked when needed, not given: the web
        layer knows them only once pricefeed's gunicorn worker serves the app
        (PriceFeed.served_by), after the node was built."""
        self.config = config
        self._clock = clock
        self._capacity = capacity
        self._direct_writes = direct_writes
        parts = assemble(config, self, clock, max_clients=self._max_clients)
        self.catalog = parts.catalog
        self.hub = parts.hub
        self.history = parts.history
        self.flusher = parts.flusher
        self.shedder = parts.shedder
        self.admission = parts.admission
        self.breakers = parts.breakers
        self.access = parts.access
        self.feed = parts.feed
        self.rest_weight = parts.rest_weight
        self.catalogue = parts.catalogue
        self.rest = parts.rest
        self.bus = parts.bus
        self.election = parts.election
        self.publisher = parts.publisher
        self.host_tier = parts.host_tier
        self.fallback = parts.fallback
        self.monitor = Monitor(self, clock)
        self.standings_version = 0       # how many times the catalogue changed a pair's standing
        self._catalogue_wait_until = 0.0
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._heartbeat_epoch = 0     # the highest epoch a leader's heartbeat announced
        self.started_at: float | None = None
        self.handover_s: float | None = None     # the stop sequence's lease handover (seconds)
        self.farewell_summary: dict | None = None         # what the spread close did (close_spread)

    @property
    def worker_id(self) -> str:
        # Read at call time: the node may be built before gunicorn forks.
        return f"{socket.gethostname()}:{os.getpid()}"

    @property
    def capacity(self) -> dict:
        return self._capacity()

    def _max_clients(self) -> int:
        """The client cap, asked at each connect: the capacity's, else PRICEFEED_MAX_CLIENTS, else
        derived from the open-files limit as the extension derives it (a node built without a
        capacity and without the setting: the hub would otherwise compare with None)."""
        cap = self.capacity.get("max_clients", self.config.delivery.max_clients)
        if cap is None:
            cap = derive(self.config.delivery, open_files_limit()).max_clients
        return cap

    @property
    def direct_writes(self) -> bool:
        return self._direct_writes()

    @property
    def mode(self) -> str:
        return self.monitor.mode

    @property
    def mode_since(self) -> float:
        return self.monitor.mode_since

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
        # first catalogue read, sync_feed).
        self._greenlets.append(gevent.spawn(self.monitor.run_forever))
        log.info("pricefeed started in worker %s: %d pairs, upstream %s, bus %s", self.worker_id,
                 len(self.catalog.pairs), reduce_url(self.feed.url), self.bus.status()["backend"])

    def stop(self, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
        """Graceful shutdown: stop publishing and hand the lease over at once, then close every
        stream — after `delay_s` more seconds of streaming, over `spread_s` seconds, each with a
        jittered `retry:` (delivery/farewell.py), while the bus and the flusher keep the streams not
        yet closed live."""
        self._stopping = True
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        self._greenlets = []
        self.monitor.stop()
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
            if len(self.hub.begin_stopping()) > self.config.delivery.new_streams_burst:
                waited = wait_for_successor(self._successor_on_this_host(), delay_s, self._clock)
            restart = self.config.restart
            self.farewell_summary = close_spread(
                self.hub, spread_s, restart.restart_closes_per_second,
                farewell_retry(restart.restart_retry_ms, restart.restart_retry_jitter_ms), self._clock)
            self.farewell_summary["waited_s"] = round(waited, 3)
            log.warning("pricefeed: handed over in %.2f s, kept streaming %.2f s, then closed %d streams over "
                        "%.2f s in %d slices", self.handover_s, waited, self.farewell_summary["streams"],
                        self.farewell_summary["took_s"], self.farewell_summary["slices"])
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

    def oldest_unwritten(self) -> float | None:
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

    # -- the role ------------------------------------------------------------------

    def situation(self) -> Situation:
        """What this worker sees now: the inputs of its role (cluster/role.py)."""
        election = self.election
        if election is None:
            return Situation(redis_configured=False, feed_running=self.feed.running)
        leading = election.leading
        return Situation(
            redis_configured=True, leading=leading,
            # The election still says we lead, but the renew deadline has passed: its renewal is
            # stuck on a Redis that stopped answering, and it demotes us only once that returns,
            # which can be seconds later (under Sentinel a reconnect first asks each sentinel).
            lease_lapsed=leading and not election.lease.held(),
            redis_failing=election.redis_failing, local_tier=self.fallback.local,
            feed_running=self.feed.running, bus_subscribed=self.bus.subscribed,
            leader_live=self.leader_live(), host_tier=self.host_tier is not None)

    def leader_live(self) -> bool:
        """Another worker leads, and its exchange connection delivers."""
        heartbeat = self.bus.leader_heartbeat or {}
        return bool(self.bus.leader_alive() and heartbeat.get("live"))

    def route_tick(self, tick: PriceTick) -> None:
        """Route a tick from our feed (or REST poller): the bus while we lead, our own hub in the local tier."""
        route = tick_route(self.situation())
        if route == TO_HUB:
            self.hub.publish_local(tick)
            if self.host_tier is not None:
                self.host_tier.share(tick)
            return
        if route != BUS:
            return    # a live leader's ticks reach us: our own are redundant
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

    def take_sibling_tick(self, tick: PriceTick) -> None:
        """A tick of the host's local-tier connection, run by a sibling worker (cluster/host_tier.py)."""
        if takes_sibling_ticks(self.situation()):
            self.hub.publish_local(tick)

    def sync_feed(self) -> None:
        """Run our exchange connection exactly while the role wants it."""
        if self._stopping:
            return
        plan = feed_plan(self.situation())
        want = plan.run
        if plan.host_lock in (CLAIM, CLAIM_TO_RUN):
            assert self.host_tier is not None
            if not self.host_tier.claim() and plan.host_lock == CLAIM_TO_RUN:
                want = False
        elif plan.host_lock == RELEASE:
            assert self.host_tier is not None
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

    def epoch_floor(self) -> int:
        """The highest epoch this worker knows of: a lease taken on a promoted replica that missed
        the last INCR must still get a larger one (a heartbeat counts: a quiet market sends no tick)."""
        return max(self.hub.epoch, self._heartbeat_epoch)

    def on_leader_heartbeat(self, heartbeat: dict) -> None:
        epoch = heartbeat.get("epoch")
        if isinstance(epoch, int) and epoch > self._heartbeat_epoch:
            self._heartbeat_epoch = epoch
        if isinstance(epoch, int) and 0 < epoch < self.hub.epoch:
            log.warning("the leader's epoch %d is below the %d seen before: Redis lost its epoch "
                        "counter; following the new epoch", epoch, self.hub.epoch)
            self.hub.rebase(epoch)

    # -- what clients are told -------------------------------------------------------

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

    def adopt_catalogue(self, catalogue: ExchangeCatalogue) -> None:
        """Serve each configured pair as the exchange lists it (exchange/listing_log.py); new
        symbols go on a replacement connection, and clients hear of every status change."""
        standings, resubscribe = adopt_listing(self.catalog, catalogue, self.hub.standings,
                                               self.config.upstream.rest_url)
        if resubscribe:
            self.feed.retarget()
        if self.hub.set_standings(standings):
            self.standings_version += 1
