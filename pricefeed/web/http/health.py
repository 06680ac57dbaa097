"""The /health document: what an operator (or a load balancer) needs to know about one worker.

Built from in-memory state only — no Redis or exchange call — so it answers
within milliseconds in every mode, including while Redis is frozen.
"""
from __future__ import annotations

import socket
import time

from pricefeed.breakers import breaker_status
from pricefeed.cluster.fallback import LIVE
from pricefeed.node import Node


def _overall(node: Node) -> str:
    hub = node.hub
    if not (hub.book or node.feed.is_live()):
        return "down"
    return "ok" if node.mode == LIVE and not hub.stale_pairs() else "degraded"


def _pair_entries(node: Node, now_wall: float, detailed: bool) -> dict[str, dict]:
    """Each configured pair's age, staleness and standing; `detailed` adds its price and source."""
    hub = node.hub
    states = hub.pair_states(pair.name for pair in node.catalog.configured)
    pairs = {}
    for pair in node.catalog.configured:
        entry = hub.book.get(pair.name)
        if entry is None:
            shown: dict = {"price": None, "age_s": None} if detailed else {"age_s": None}
            pairs[pair.name] = {**shown, "stale": True, **states[pair.name]}
            continue
        shown = {"price": entry.tick.price, "source": entry.tick.source} if detailed else {}
        pairs[pair.name] = {**shown, "age_s": round(max(0.0, now_wall - entry.tick.ts / 1000), 3),
                            "stale": hub.is_stale(entry), **states[pair.name]}
    return pairs


def public_health_report(node: Node) -> tuple[dict, int]:
    """What anyone may see: status, mode, and each pair's age and staleness. Nothing that names a
    host, a process, an upstream or a setting (the detailed report is the operator's, policy/access.py)."""
    overall = _overall(node)
    pairs = _pair_entries(node, time.time(), detailed=False)
    # `reason`: why the exchange refuses us (region_not_served, blocked_by_exchange_firewall), if it does.
    return ({"status": overall, "mode": node.mode, "reason": node.access.current(), "pairs": pairs},
            503 if overall == "down" else 200)


def health_report(node: Node) -> tuple[dict, int]:
    """The document and its HTTP status: 503 only when no price can be served."""
    now_wall = time.time()
    hub = node.hub
    overall = _overall(node)
    pairs = _pair_entries(node, now_wall, detailed=True)
    body = {
        "status": overall,
        "mode": node.mode,
        "reason": node.access.current(),
        "mode_since": node.mode_since,
        "simulated": node.simulated,
        "worker": {"id": node.worker_id, "role": "leader" if node.leading else "standby",
                   "local_tier": node.fallback.local, "started_at": node.started_at},
        "leader": _leader(node),
        "upstream": node.feed.status(),
        "rest": node.rest.status(),
        "catalogue": node.catalogue.status(),
        "access": node.access.status(),
        "bus": node.bus.status(),
        "redis": _redis(node),
        "breakers": {name: breaker_status(breaker) for name, breaker in node.breakers.items()},
        "clients": {**hub.status(), "direct_writes": node.direct_writes,
                    "admission": node.admission.status(), "load": node.shedder.status()},
        "capacity": node.capacity,
        # What the per-address stream cap counts: "deployment" (Redis), "host" (Redis unreachable
        # or not configured: this instance's workers) or "worker".
        "address_limits": node.admission.streams.scope,
        "pairs": pairs,
        "stale_after_s": node.config.delivery.stale_after,
        # As configured, with the client cap in force (derived once the worker serves: capacity.py).
        "config": {**node.config.public(), "max_clients": node.capacity.get("max_clients")},
        "server_time": int(now_wall * 1000),
    }
    return body, 503 if overall == "down" else 200


def _leader(node: Node) -> dict:
    if node.election is None:
        return {"worker": node.worker_id, "host": socket.gethostname(), "epoch": node.bus.status().get("epoch"),
                "since": node.started_at, "this_worker": True,
                "scope": "this worker (no Redis: every worker runs its own exchange connection)"}
    lease = node.election.lease
    timings = {"ttl_s": lease.timings.ttl, "renew_interval_s": lease.timings.renew_interval,
               "renew_deadline_s": lease.timings.renew_deadline,
               "acquired_by_this_worker": lease.acquisitions, "lost_by_this_worker": lease.losses}
    if node.election.leading:
        return {"worker": node.worker_id, "host": socket.gethostname(), "epoch": lease.epoch,
                "since": lease.since, "this_worker": True, "lease": timings}
    bus = node.bus
    heartbeat = bus.leader_heartbeat or {}
    alive = bus.leader_alive()
    worker = heartbeat.get("worker") if alive else None
    return {"worker": worker, "host": worker.rsplit(":", 1)[0] if worker else None,
            "epoch": heartbeat.get("epoch") if alive else None,
            "since": heartbeat.get("since") if alive else None,
            "this_worker": False, "lease": timings}


def _redis(node: Node) -> dict:
    election = node.election
    if election is None:
        return {"configured": False, "reachable": None, "latency_ms": None}
    return {"configured": True, "reachable": not election.redis_failing and node.bus.status()["subscribed"],
            "latency_ms": election.redis_latency_ms, "last_error": election.last_error or None}
