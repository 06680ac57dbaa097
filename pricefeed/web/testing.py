"""Test-only switches, for the fault and overload suites: added to the API blueprint only
when PRICEFEED_FAULT_INJECTION is on (never in production), and then answered only to a
direct loopback peer, with the admin token when one is set (policy/access.py).

    POST {prefix}/_fault/block-hub?seconds=N[&worker=ID]   freeze this worker's gevent hub
    POST {prefix}/_fault/slow-flush?ms=N                   pause after every flush (0 ends it)
"""
from __future__ import annotations

import re
from collections.abc import Callable

import gevent
from flask import Blueprint, jsonify, request

from pricefeed.node import Node
from pricefeed.web.errors import ApiError
from pricefeed.web.http.api import current_node
from pricefeed.web.policy.access import test_switch_allowed


def add_fault_routes(api: Blueprint) -> None:
    """The fault-injection routes, on the API blueprint (its JSON errors, headers and 405s)."""

    @api.route("/_fault/block-hub", methods=["POST"], provide_automatic_options=False)
    def block_hub():
        # Freezes this worker's whole gevent hub, as a CPU-bound request or a blocking call
        # would, so the fault suite can push a leader past its renew deadline.
        node = _switch_node()
        target = request.args.get("worker")
        if target is not None and target != node.worker_id:
            # Requests land on any worker; a test aiming at one (the leader) retries.
            raise ApiError(409, "other_worker", f"this is {node.worker_id}, not {target[:80]}")
        raw = request.args.get("seconds", "1")
        if not re.fullmatch(r"[0-9]{1,2}", raw) or not 0 < int(raw) <= 30:
            raise ApiError(400, "malformed_seconds", "seconds must be a whole number from 1 to 30")
        seconds = int(raw)
        from gevent import monkey
        monkey.get_original("time", "sleep")(seconds)
        return jsonify({"blocked_s": seconds, "worker": node.worker_id})

    @api.route("/_fault/slow-flush", methods=["POST"], provide_automatic_options=False)
    def slow_flush():
        # A cooperative pause after every flush of this worker, to push it past its lag bound
        # (load shedding) without thousands of clients. ms=0 ends it.
        node = _switch_node()
        raw = request.args.get("ms", "")
        if not re.fullmatch(r"[0-9]{1,4}", raw):
            raise ApiError(400, "malformed_ms", "ms must be a whole number from 0 to 9999")
        node.flusher.after_flush = pause(int(raw) / 1000)
        return jsonify({"flush_delay_ms": int(raw), "worker": node.worker_id})


def _switch_node() -> Node:
    """This worker's node, for a request allowed to throw a test switch (else a 404 as if absent)."""
    node = current_node()
    if not test_switch_allowed(request.environ, node.config.endpoint):
        raise ApiError(404, "not_found", "fault injection is disabled")
    return node


def pause(seconds: float) -> Callable[[], None] | None:
    """A flusher's `after_flush` that sleeps cooperatively for `seconds`; None for 0."""
    if not seconds:
        return None
    return lambda: gevent.sleep(seconds)
