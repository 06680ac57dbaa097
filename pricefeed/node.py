"""Node: one worker's pricefeed — wires upstream → bus → hub and decides the mode.

The node owns the per-worker greenlets: the upstream feed (when this worker
publishes), the bus subscription, and one monitor that derives the mode and
staleness, tells clients when either changes, and sends the heartbeat pings.
One timer for all clients, never one per client.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

import gevent

from .backoff import ReconnectPolicy
from .bus import Bus, InProcessBus
from .config import Config
from .hub import Hub
from .lease import Election, Lease, LeaseTimings
from .pairs import PairCatalog
from .redis_bus import RedisBus, command_client
from .ticks import PriceTick
from .upstream import BinanceFeed

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 0.25
# Leaving `live` waits this long so a reconnect that takes a moment does not flap the banner.
MODE_HOLD_SECONDS = 2.0

# A leader stepping down waits this long for its exchange connection to close before
# releasing the lease, so the successor's connection never overlaps it.
HANDOVER_CLOSE_WAIT_SECONDS = 1.5

LIVE, REDIS, LOCAL, DEGRADED = "live", "redis", "local", "degraded"


class Node:
    """This worker's share of the service."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.catalog = PairCatalog(config.pairs, config.stable_quote)
        self._clock = clock
        self.hub = Hub((p.name for p in self.catalog.pairs), config.max_clients, config.stale_after,
                       config.resume_window, clock)
        self.feed = BinanceFeed(
            config.upstream_url, self.catalog, self._publish,
            silence_timeout=config.upstream_silence_timeout,
            connect_timeout=config.upstream_connect_timeout,
            rotate_after=config.upstream_rotate_after,
            policy=ReconnectPolicy(config.upstream_backoff_base, config.upstream_backoff_cap,
                                   config.upstream_max_attempts_per_5min),
            force_simulated=config.simulated, clock=clock)
        self.bus: Bus
        self.election: Election | None = None
        if config.redis_url:
            client = command_client(config.redis_url)
            lease = Lease(client, config.redis_prefix,
                          LeaseTimings(config.lease_ttl, config.lease_renew_interval, config.lease_renew_deadline),
                          clock)
            self.bus = RedisBus(client, config.redis_prefix, lease, config.bus_heartbeat_interval, clock)
            self.election = Election(lease, on_elected=self.feed.start,
                                     on_demoted=lambda: self.feed.stop(wait=HANDOVER_CLOSE_WAIT_SECONDS),
                                     epoch_floor=lambda: self.hub.epoch)
            self.bus.on_release = self.election.wake
        else:
            self.bus = InProcessBus()
        self._greenlets: list[gevent.Greenlet] = []
        self._last_heartbeat = 0.0
        self.mode = DEGRADED
        self.mode_since = time.time()
        self._not_live_since: float | None = clock()
        self._announced: tuple | None = None
        self._last_ping = clock()
        self.started_at: float | None = None

    @property
    def worker_id(self) -> str:
        # Read at call time: the node may be built before gunicorn forks.
        return f"{socket.gethostname()}:{os.getpid()}"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the greenlets. Requires gevent's monkey patching (gunicorn's gevent worker does it)."""
        if self._greenlets:
            return
        from gevent import monkey
        if not monkey.is_module_patched("socket"):
            raise RuntimeError("pricefeed needs gevent monkey patching: run under gunicorn -k gevent "
                               "(see gunicorn.conf.py) or call gevent.monkey.patch_all() first")
        self.started_at = time.time()
        self.bus.start(self.hub.publish)
        if self.election is not None:
            self._greenlets.append(gevent.spawn(self.election.run_forever))
        else:
            self.feed.start()
        self._greenlets.append(gevent.spawn(self._monitor_forever))
        log.info("pricefeed started in worker %s: %d pairs, upstream %s", self.worker_id,
                 len(self.catalog.pairs), self.feed.url.split("?")[0])

    def stop(self) -> None:
        """Stop publishing, hand the lease over at once, close every stream (graceful shutdown)."""
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        self._greenlets = []
        if self.election is not None:
            self.election.resign()
        self.feed.stop()
        self.bus.stop()
        self.hub.close_all()

    @property
    def running(self) -> bool:
        return bool(self._greenlets)

    @property
    def leading(self) -> bool:
        """This worker runs the upstream connection (always so without Redis)."""
        return self.election.leading if self.election is not None else self.feed.running

    def source_live(self) -> bool:
        """Live ticks are flowing to this worker: from its own feed, or per the leader's heartbeat."""
        if self.election is None or self.election.leading:
            return self.feed.is_live()
        heartbeat = self.bus.leader_heartbeat if isinstance(self.bus, RedisBus) else None
        return bool(self.bus.leader_alive() and heartbeat and heartbeat.get("live"))

    # -- the price path ------------------------------------------------------------

    def _publish(self, tick: PriceTick) -> None:
        self.bus.publish(tick)

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
        if self.election is not None and self.election.leading \
                and now - self._last_heartbeat >= self.config.bus_heartbeat_interval:
            self._last_heartbeat = now
            self._send_heartbeat()
        live = self.source_live()
        if live:
            self._not_live_since = None
            self.hub.confirm_current()
        elif self._not_live_since is None:
            self._not_live_since = now
        mode = self._choose_mode(live, now)
        if mode != self.mode:
            log.warning("mode %s -> %s", self.mode, mode)
            self.mode = mode
            self.mode_since = time.time()
        announcement = (self.mode, self.simulated, tuple(self.hub.stale_pairs()))
        if announcement != self._announced:
            self._announced = announcement
            self.hub.broadcast_status(self.status_body())
        if now - self._last_ping >= self.config.heartbeat_interval:
            self._last_ping = now
            self.hub.ping_all()

    def _send_heartbeat(self) -> None:
        assert isinstance(self.bus, RedisBus)
        lease = self.bus.lease
        try:
            self.bus.publish_heartbeat({
                "worker": self.worker_id, "epoch": lease.epoch, "since": lease.since,
                "live": self.feed.is_live(), "simulated": self.feed.simulated,
                "t": int(time.time() * 1000)})
        except Exception as exc:  # noqa: BLE001 - Redis trouble shows in the mode; keep monitoring
            log.warning("heartbeat not published: %s", exc)

    def _choose_mode(self, live: bool, now: float) -> str:
        if live:
            return LIVE
        if self.mode == LIVE and self._not_live_since is not None \
                and now - self._not_live_since < MODE_HOLD_SECONDS:
            return LIVE
        if isinstance(self.bus, RedisBus) and self.bus.subscribed:
            return REDIS
        return DEGRADED

    @property
    def simulated(self) -> bool:
        if self.config.simulated or self.feed.simulated:
            return True
        heartbeat = getattr(self.bus, "leader_heartbeat", None)
        if heartbeat and heartbeat.get("simulated"):
            return True
        return any(entry.tick.source == "simulator" for entry in self.hub.book.values())

    def status_body(self) -> dict:
        """The `status` event: mode, simulation label, stale pairs."""
        stale = self.hub.stale_pairs()
        detail = {
            LIVE: "live prices from the exchange",
            REDIS: "no live ticks; serving the last prices known to Redis",
            DEGRADED: "no live data from the exchange; prices shown are the last received"
                      if self.hub.book else "no live data from the exchange and no cached prices",
        }.get(self.mode, self.mode)
        return {"mode": self.mode, "simulated": self.simulated, "stale": stale,
                "server_time": int(time.time() * 1000), "detail": detail}

    # -- health --------------------------------------------------------------------

    def health(self) -> tuple[dict, int]:
        """The /health document and its HTTP status (503 only when no price can be served)."""
        now_wall = time.time()
        stale = self.hub.stale_pairs()
        servable = bool(self.hub.book) or self.feed.is_live()
        if not servable:
            overall = "down"
        elif self.mode == LIVE and not stale:
            overall = "ok"
        else:
            overall = "degraded"
        pairs = {}
        for pair in self.catalog.pairs:
            entry = self.hub.book.get(pair.name)
            pairs[pair.name] = None if entry is None else {
                "price": entry.tick.price, "source": entry.tick.source,
                "age_s": round(max(0.0, now_wall - entry.tick.ts / 1000), 3),
                "stale": self.hub.is_stale(entry),
            }
        body = {
            "status": overall,
            "mode": self.mode,
            "mode_since": self.mode_since,
            "simulated": self.simulated,
            "worker": {"id": self.worker_id, "role": "leader" if self.leading else "standby",
                       "started_at": self.started_at},
            "leader": self._leader_info(),
            "upstream": self.feed.status(),
            "bus": self.bus.status(),
            "redis": self._redis_info(),
            "breakers": {},
            "clients": self.hub.status(),
            "pairs": pairs,
            "stale_after_s": self.config.stale_after,
            "server_time": int(now_wall * 1000),
        }
        return body, 503 if overall == "down" else 200

    def _leader_info(self) -> dict:
        if self.election is None:
            return {"worker": self.worker_id, "epoch": self.bus.status().get("epoch"),
                    "since": self.started_at, "scope": "this worker (no Redis: every worker is its own)"}
        lease = self.election.lease
        timings = {"ttl_s": lease.timings.ttl, "renew_interval_s": lease.timings.renew_interval,
                   "renew_deadline_s": lease.timings.renew_deadline}
        if self.election.leading:
            return {"worker": self.worker_id, "host": socket.gethostname(), "epoch": lease.epoch,
                    "since": lease.since, "this_worker": True, "lease": timings}
        heartbeat = getattr(self.bus, "leader_heartbeat", None) or {}
        alive = self.bus.leader_alive() if isinstance(self.bus, RedisBus) else False
        return {"worker": heartbeat.get("worker") if alive else None,
                "host": (heartbeat.get("worker") or ":").split(":")[0] if alive else None,
                "epoch": heartbeat.get("epoch") if alive else None,
                "since": heartbeat.get("since") if alive else None,
                "this_worker": False, "lease": timings}

    def _redis_info(self) -> dict:
        if self.election is None:
            return {"configured": False, "reachable": None, "latency_ms": None}
        ok_at = self.election.redis_ok_at
        reachable = ok_at is not None and self._clock() - ok_at < 3 * self.config.lease_renew_interval + 1
        return {"configured": True, "reachable": reachable, "latency_ms": self.election.redis_latency_ms,
                "last_error": self.election.last_error or None}
