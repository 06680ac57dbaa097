"""Prometheus metrics of one worker, read from the node's own counters once a second.

Nothing on the price path touches a Prometheus object. The node's parts already
count what they do (the feed, the bus, the hub, admission, the election); one
greenlet per worker (`NodeMetrics.run_forever`) reads those numbers every
SAMPLE_INTERVAL_S, adds their growth to the Prometheus counters and sets the
gauges. The two histograms are fed from the flusher's per-flush record
(delivery/flush_record.py), taken here in bulk.

Across gunicorn workers prometheus_client runs in multiprocess mode: each worker
writes its values to files in PROMETHEUS_MULTIPROC_DIR (set up by the gunicorn
config: process_files.py) and a scrape on any worker sums them all. Live gauges
(`multiprocess_mode="livesum"`) count only living workers: the master removes a
dead worker's files in `child_exit`. Without that directory (one process, `flask
pricefeed serve`, tests) each instance keeps its own in-memory registry.

Every label value comes from a fixed set — transports, modes, breakers, the
configured pairs, admission reasons — never from a request.
"""
from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import gevent
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from pricefeed.cluster.fallback import DEGRADED, LIVE, LOCAL, REDIS
from pricefeed.node import Node
from pricefeed.web.metrics.process_files import MULTIPROC_DIR_VARIABLE

log = logging.getLogger(__name__)

# prometheus_client's multiprocess modes that count only living workers.
LiveMode = Literal["liveall", "livemin", "livemax", "livesum", "livemostrecent"]

SAMPLE_INTERVAL_S = 1.0
CONTENT_TYPE = CONTENT_TYPE_LATEST
TRANSPORTS = ("sse", "ws")
MODES = (LIVE, REDIS, LOCAL, DEGRADED)
# Exchange event → written: tens of ms on a healthy path; seconds mean pacing or trouble.
TICK_TO_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# One flush: tens of µs for a few clients, ~100 ms for 10,000 on one worker.
FLUSH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    """The directory shared by all workers' metric files, or None (single-process registry)."""
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


class NodeMetrics:
    """The Prometheus series of one worker's node, and the greenlet that keeps them current."""

    def __init__(self, node: Node, pending_connections: Callable[[], Any] = lambda: None):
        self.node = node
        # The worker's limits on connections without a request yet (server/pending.py): known
        # only under pricefeed's gunicorn worker, once it serves the app; None otherwise.
        self._pending_connections = pending_connections
        self.multiprocess = multiprocess_dir() is not None
        # Own registry per app (two apps in one process must not collide); in multiprocess mode
        # values live in the shared files and a scrape reads those instead.
        self.registry = None if self.multiprocess else CollectorRegistry()
        self._last: dict[int, float] = {}      # id(counter): the node total it last saw
        self._greenlet: gevent.Greenlet | None = None
        self.samples = 0
        registry = self.registry
        if registry is not None:
            ProcessCollector(registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def live_gauge(name: str, doc: str, labels: tuple[str, ...] = (), mode: LiveMode = "livesum") -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

        self.upstream_messages = counter("pricefeed_upstream_messages_total",
                                         "Data frames received from the exchange's WebSocket.")
        self.upstream_malformed = counter("pricefeed_upstream_malformed_total",
                                          "Exchange frames that failed to parse and were skipped.")
        self.upstream_reconnects = counter("pricefeed_upstream_reconnects_total",
                                           "Exchange connections opened to replace a lost one (not rotations).")
        self.upstream_connected = live_gauge("pricefeed_upstream_connected",
                                             "Open exchange WebSocket connections (one set per deployment with Redis).")
        self.lease_leader = live_gauge("pricefeed_lease_leader",
                                       "1 on the worker holding the upstream lease (each worker without Redis).")
        self.lease_changes = counter("pricefeed_lease_changes_total",
                                     "Upstream lease acquired or lost by a worker.", ("event",))
        self.bus_received = counter("pricefeed_bus_received_total",
                                    "Ticks this worker received from the bus.")
        self.bus_malformed = counter("pricefeed_bus_malformed_total",
                                     "Bus messages that failed to parse and were skipped.")
        self.clients = live_gauge("pricefeed_clients", "Open streams, by transport.", ("transport",))
        self.events_written = counter("pricefeed_events_written_total",
                                      "Price and status events written to streams (not snapshots, not pings).")
        self.conflated = counter("pricefeed_conflated_total",
                                 "Ticks a stream was not sent because a newer price of the pair replaced "
                                 "them first (its pace interval, or it was slow).")
        self.slow_disconnects = counter("pricefeed_slow_client_disconnects_total",
                                        "Streams dropped because the client read nothing for WRITE_TIMEOUT.")
        self.admission_refused = counter("pricefeed_admission_refused_total",
                                         "New streams refused with 503, by reason.", ("reason",))
        self.address_refused = counter("pricefeed_address_refused_total",
                                       "New streams refused with 429 because of their client address: it held "
                                       "MAX_STREAMS_PER_IP for the deployment (too_many_streams), or opened past "
                                       "its NEW_STREAMS_SHARE_PER_IP (too_many_new_streams).", ("reason",))
        self.pending = live_gauge("pricefeed_pending_connections",
                                  "Connections accepted whose first request head is not complete yet.")
        self.pending_refused = counter("pricefeed_pending_refused_total",
                                       "Connections closed before a request: their address held "
                                       "MAX_PENDING_PER_IP such (per_address), or no complete head within "
                                       "REQUEST_HEAD_TIMEOUT (head_timeout).", ("reason",))
        self.flush_lag = live_gauge("pricefeed_flush_lag_seconds",
                                    "How late the flusher runs (smoothed; tick arrival or slot due to the end of "
                                    "the flush that wrote it): the worst worker's.", mode="livemax")
        self.shedding = live_gauge("pricefeed_shedding", "Workers refusing new streams because they run late.")
        self.mode = live_gauge("pricefeed_mode", "Workers in each fallback mode.", ("mode",))
        self.breaker_open = live_gauge("pricefeed_breaker_open", "Workers whose circuit breaker is open.",
                                       ("breaker",))
        self.price_age = live_gauge("pricefeed_price_age_seconds",
                                    "Age of the latest price of each configured pair (the oldest any worker holds).",
                                    ("pair",), mode="livemax")
        self.workers = live_gauge("pricefeed_workers", "Workers running pricefeed.")
        self.tick_to_write = Histogram("pricefeed_tick_to_write_seconds",
                                       "Exchange event time to the end of the flush that wrote the price.",
                                       buckets=TICK_TO_WRITE_BUCKETS, registry=registry)
        self.flush_seconds = Histogram("pricefeed_flush_seconds", "Duration of one flush to this worker's streams.",
                                       buckets=FLUSH_BUCKETS, registry=registry)
        # Every series exists from the first scrape, zero until something happens.
        for transport in TRANSPORTS:
            self.clients.labels(transport)
        for mode in MODES:
            self.mode.labels(mode)
        for name in node.breakers:
            self.breaker_open.labels(name)
        for event in ("acquired", "lost"):
            self.lease_changes.labels(event)
        for reason in ("rate", "capacity", "lag"):
            self.admission_refused.labels(reason)
        for reason in ("per_address", "head_timeout"):
            self.pending_refused.labels(reason)
        for reason in ("too_many_streams", "too_many_new_streams"):
            self.address_refused.labels(reason)

    # -- the sampler greenlet ----------------------------------------------------------

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self.run_forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if self.multiprocess:
            self.workers.set(0)

    def run_forever(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - metrics must never take the worker down
                log.exception("metrics sample failed")
            gevent.sleep(SAMPLE_INTERVAL_S)

    def sample(self) -> None:
        """Bring every series up to date with the node's counters. Never yields."""
        node = self.node
        feed, hub, bus = node.feed, node.hub, node.bus
        stats = feed.stats
        self._advance(self.upstream_messages, stats.messages)
        self._advance(self.upstream_malformed, stats.malformed)
        self._advance(self.upstream_reconnects, stats.reconnects)
        self.upstream_connected.set(feed.open_connections())
        self.lease_leader.set(1 if node.leading else 0)
        lease = node.election.lease if node.election is not None else None
        self._advance(self.lease_changes.labels("acquired"), lease.acquisitions if lease else 0)
        self._advance(self.lease_changes.labels("lost"), lease.losses if lease else 0)
        self._advance(self.bus_received, bus.received)
        self._advance(self.bus_malformed, bus.malformed)
        for transport, count in _clients_by_transport(hub).items():
            self.clients.labels(transport).set(count)
        counters = hub.counters
        self._advance(self.events_written, counters.events_written)
        self._advance(self.conflated, counters.conflated)
        self._advance(self.slow_disconnects, counters.slow_client_disconnects)
        self._advance(self.admission_refused.labels("rate"), node.admission.refused)
        self._advance(self.admission_refused.labels("capacity"), counters.clients_refused)
        self._advance(self.admission_refused.labels("lag"), node.shedder.shed_total)
        self._advance(self.address_refused.labels("too_many_streams"), node.admission.streams.refused)
        self._advance(self.address_refused.labels("too_many_new_streams"), node.admission.refused_address)
        pending = self._pending_connections()
        if pending is not None:
            self.pending.set(pending.pending)
            self._advance(self.pending_refused.labels("per_address"), pending.refused_per_address)
            self._advance(self.pending_refused.labels("head_timeout"), pending.head_timeouts)
        node.shedder.settle()       # a quiet market after an overload reads 0, not the last lag
        self.flush_lag.set(node.shedder.smoothed_lag_s)
        self.shedding.set(1 if node.shedder.shedding else 0)
        for mode in MODES:
            self.mode.labels(mode).set(1 if node.mode == mode else 0)
        for name, breaker in node.breakers.items():
            self.breaker_open.labels(name).set(1 if breaker.current_state == "open" else 0)
        now = time.time()
        for pair in node.catalog.configured:
            entry = hub.book.get(pair.name)
            if entry is not None:
                self.price_age.labels(pair.name).set(max(0.0, now - entry.tick.ts / 1000))
        self.workers.set(1)
        durations, ages = node.flusher.record.take()
        observe_many(self.flush_seconds, durations)
        observe_many(self.tick_to_write, ages)
        self.samples += 1

    def _advance(self, counter: Counter, total: float) -> None:
        """Add to `counter` what `total` (a node counter that only grows) gained since last time."""
        key = id(counter)
        gained = total - self._last.get(key, 0)
        self._last[key] = total
        if gained > 0:
            counter.inc(gained)

    # -- a scrape ----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text of every worker (multiprocess) or of this instance."""
        self.sample()   # this worker's figures as of now; the others' are at most a second old
        if self.registry is None:        # multiprocess mode: read every worker's files
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _clients_by_transport(hub) -> dict[str, int]:
    """Open streams per transport, every label present."""
    counts = hub.clients_by_transport()
    return {transport: int(counts.get(transport, 0)) for transport in TRANSPORTS}


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """`histogram.observe(v)` for each value, as one increment per bucket.

    One take can hold thousands of values; observed one by one in multiprocess mode each
    is a locked write to the shared file. Uses prometheus_client's bucket internals (the
    version is pinned; tests/unit/test_metrics.py checks this equals observe()).
    """
    if not values:
        return
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1    # the first bucket with value <= bound
    histogram._sum.inc(sum(values))
    for index, count in enumerate(counts):
        if count:
            histogram._buckets[index].inc(count)
