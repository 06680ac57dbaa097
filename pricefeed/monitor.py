"""The monitor: one worker's periodic pass over its parts.

Every MONITOR_INTERVAL_SECONDS it derives the mode (the fallback chain) and the feed the
role wants, steers REST polling, has the leader's heartbeat published (never waiting for
Redis itself), confirms the prices a live source still vouches for, tells clients when
the mode or a pair's staleness changes, and sends the stream pings. One timer for all
clients, never one per client.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import pybreaker

from pricefeed.cluster.fallback import DEGRADED, LIVE, LOCAL, Observation
from pricefeed.cluster.role import HOST, LEADER, Situation, price_source

if TYPE_CHECKING:
    from pricefeed.node import Node

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 0.25
# The WebSocket must have been down this long before REST polling starts.
REST_AFTER_SECONDS = 5.0


class Monitor:
    """The mode and the periodic duties of one node."""

    def __init__(self, node: Node, clock: Callable[[], float] = time.monotonic):
        self.node = node
        self._clock = clock
        self.mode = DEGRADED
        self.mode_since = time.time()
        self._announced: tuple | None = None
        self._last_ping = clock()
        self._last_heartbeat = 0.0
        self._heartbeat: gevent.Greenlet | None = None     # the leader's heartbeat being published
        self._feed_down_since: float | None = None

    def run_forever(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the monitor must survive any one bad pass
                log.exception("monitor pass failed")
            gevent.sleep(MONITOR_INTERVAL_SECONDS)

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)

    def run_once(self) -> None:
        node = self.node
        feed, election, hub = node.feed, node.election, node.hub
        now = self._clock()
        mode = node.fallback.update(self._observe())
        node.sync_feed()
        self._steer_rest(now)
        self._yield_if_exchange_unreachable(now)
        if node.host_tier is not None:
            node.host_tier.share_status(feed.is_live(), feed.data_age())
        if election is not None and election.leading \
                and now - self._last_heartbeat >= node.config.cluster.bus_heartbeat_interval \
                and (self._heartbeat is None or self._heartbeat.dead):
            self._last_heartbeat = now
            # Published from its own greenlet: on a Redis that stopped answering it waits out
            # its timeout (and the bus breaker the publisher holds), and this pass must not —
            # it also claims the host's lock for a leader cut off from Redis and tells the
            # host's other workers, every pass, whether that connection is live.
            self._heartbeat = gevent.spawn(self._send_heartbeat)
        if feed.is_live():
            # A live stream proves the exchange serves us; the REST tier, stopped now, cannot
            # say so itself.
            node.access.answered("handshake")
            if not node.rest.running:
                node.access.answered("rest")
        seen = node.situation()
        data_age = self._source_data_age(seen)
        if mode in (LIVE, LOCAL) and data_age is not None:
            # A connection of the set that is down leaves its own pairs to go stale.
            hub.confirm_current(data_age, except_pairs=self._source_down_pairs(seen))
        if mode != self.mode:
            log.warning("mode %s -> %s", self.mode, mode)
            self.mode = mode
            self.mode_since = time.time()
        announcement = (self.mode, node.simulated, tuple(hub.stale_pairs()), node.standings_version,
                        node.access.current())
        if announcement != self._announced:
            self._announced = announcement
            hub.broadcast_status(node.status_body())
        if now - self._last_ping >= node.config.delivery.heartbeat_interval:
            self._last_ping = now
            hub.ping_all()

    def _source_data_age(self, seen: Situation) -> float | None:
        """Seconds since the exchange connection feeding us last delivered data (ours, the host's
        or the leader's)."""
        node = self.node
        source = price_source(seen)
        if source == HOST:
            assert node.host_tier is not None
            return node.host_tier.source_data_age()
        if source != LEADER:
            return node.feed.data_age()
        heartbeat = node.bus.leader_heartbeat or {}
        age = heartbeat.get("data_age_s")
        if not seen.leader_live or not isinstance(age, (int, float)):
            return None
        return age + node.bus.heartbeat_age()

    def _source_down_pairs(self, seen: Situation) -> list[str]:
        """The pairs whose exchange connection (ours or the leader's) is down while others deliver."""
        node = self.node
        if price_source(seen) != LEADER:
            return node.feed.down_pairs() if node.feed.running else []
        down = (node.bus.leader_heartbeat or {}).get("down_pairs")
        return [pair for pair in down if isinstance(pair, str)] if isinstance(down, list) else []

    def _observe(self) -> Observation:
        node = self.node
        feed, election = node.feed, node.election
        if election is None:
            return Observation(redis_configured=False, redis_up=False, leading=True,
                               feed_live=feed.is_live(), leader_live=False)
        return Observation(
            redis_configured=True,
            redis_up=node.bus.subscribed and not election.redis_failing,
            leading=election.leading,
            feed_live=feed.is_live() or (node.host_tier is not None and not feed.running
                                         and node.host_tier.source_live()),
            leader_live=node.leader_live(),
        )

    def _steer_rest(self, now: float) -> None:
        """Poll REST while our own exchange connection should run but cannot deliver."""
        feed, rest = self.node.feed, self.node.rest
        if feed.running and not feed.is_live():
            if self._feed_down_since is None:
                self._feed_down_since = now
            if now - self._feed_down_since >= REST_AFTER_SECONDS and not rest.running:
                log.warning("WebSocket down for %.0fs: polling REST prices", now - self._feed_down_since)
                rest.start()
        else:
            self._feed_down_since = None
            if rest.running:
                log.warning("REST polling stopped (%s)", "WebSocket live" if feed.is_live() else "not ours")
                rest.stop()

    def _yield_if_exchange_unreachable(self, now: float) -> None:
        """Redis works but our exchange connection has been down for LEADER_YIELD_AFTER: let
        another worker, perhaps on a host whose route works, lead."""
        after, election = self.node.config.cluster.leader_yield_after, self.node.election
        if (after and election is not None and election.leading and not election.redis_failing
                and self._feed_down_since is not None and now - self._feed_down_since >= after):
            log.warning("exchange unreachable for %.0fs while Redis works: yielding the lease", after)
            self._feed_down_since = None
            # Out for two turns: a sibling on this host (the same broken route) that takes the lease
            # next yields it before we would compete again, so another host gets its turn.
            election.yield_lease(hold_off=2 * after)

    def _send_heartbeat(self) -> None:
        node = self.node
        assert node.election is not None
        lease, feed = node.election.lease, node.feed
        try:
            node.bus.publish_heartbeat({
                "worker": node.worker_id, "epoch": lease.epoch, "since": lease.since,
                "live": feed.is_live(), "data_age_s": feed.data_age(),
                "down_pairs": feed.down_pairs(),
                "simulated": feed.simulated, "t": int(time.time() * 1000)})
        except (Exception, pybreaker.CircuitBreakerError) as exc:  # noqa: BLE001 - shows in the mode
            log.warning("heartbeat not published: %s", exc)
