"""The streaming API blueprint: /stream, /ws, /prices, /history, /health under the configured prefix.

Requests are parsed here into checked values (pairs, a resume point); everything
below trusts them. Every error a client can cause is a JSON 4xx (errors.py).
"""
from __future__ import annotations

import random
import re
import time

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from pricefeed.delivery import sse
from pricefeed.delivery.hub import HubClosed, HubFull
from pricefeed.delivery.pace import MAX_INTERVAL_MS, MIN_INTERVAL_MS, pace_in_force
from pricefeed.node import Node
from pricefeed.pairs import PairError
from pricefeed.web.errors import ApiError, at_capacity, json_error, shutting_down
from pricefeed.web.health import health_report
from pricefeed.web.sse_response import bound_writes, direct_socket, server_response, stream_events

_EVENT_ID = re.compile(r"^([0-9]{1,19})-([0-9]{1,19})$")
_INTERVAL = re.compile(r"^[0-9]{1,5}$")
EXTENSION_KEY = "pricefeed"
API_BLUEPRINT = "pricefeed_api"


def current_node() -> Node:
    return current_app.extensions[EXTENSION_KEY].node


def create_api_blueprint() -> Blueprint:
    api = Blueprint(API_BLUEPRINT, __name__)

    @api.before_request
    def _reject_oversized_query() -> None:
        limit = current_node().config.max_query_length
        if len(request.query_string) > limit:
            raise ApiError(400, "query_too_long", f"the query string exceeds {limit} bytes")

    @api.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return json_error(exc.status, exc.error, exc.detail, exc.headers)

    @api.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return json_error(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or "")

    @api.route("/stream", methods=["GET"])
    def stream():
        node = current_node()
        pairs = _requested_pairs(node)
        pace_ms = requested_pace(node)
        resume_from = _last_event_id()
        if request.method == "HEAD":
            # Headers only, and no mailbox: gunicorn never writes a HEAD body, so a stream
            # opened here would never notice its client leave and would hold a slot forever.
            return Response(b"", content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
        admit_stream(node)
        sock = request.environ.get("gunicorn.socket")
        try:
            client = node.hub.connect(pairs, direct_socket(node.direct_writes, sock, request.environ), pace_ms)
        except HubFull:
            raise at_capacity() from None
        except HubClosed:
            raise shutting_down() from None
        bound_writes(sock, node.config.write_timeout)
        # Registered and snapshotted without yielding in between: no tick falls in the gap.
        snapshot = _snapshot_body(node, pairs)
        snapshot["interval_ms"] = client.pace_ms
        if resume_from is not None:
            snapshot["resume"] = node.hub.resume(resume_from, pairs)
        retry_ms = node.config.retry_ms + random.randint(0, node.config.retry_jitter_ms)
        preamble = sse.retry(retry_ms) + sse.event("snapshot", snapshot, node.hub.last_event_id)
        responder = server_response(request.environ) if client.direct else None
        response = Response(stream_events(node.hub, client, preamble, sock, responder),
                            content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
        response.call_on_close(lambda: node.hub.disconnect(client))
        return response

    @api.route("/prices", methods=["GET"])
    def prices():
        node = current_node()
        response = jsonify(_snapshot_body(node, _requested_pairs(node)))
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/history", methods=["GET"])
    def history():
        node = current_node()
        pairs = _requested_pairs(node)
        now_ms = int(time.time() * 1000)
        store = node.hub.history
        response = jsonify({"interval_ms": store.interval_ms, "window_ms": store.window_ms, "server_time": now_ms,
                            "history": store.window(pairs, now_ms)})
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/health", methods=["GET"])
    def health():
        body, status = health_report(current_node())
        response = jsonify(body)
        response.status_code = status
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/_fault/block-hub", methods=["POST"])
    def block_hub():
        # Test-only: freezes this worker's whole gevent hub, as a CPU-bound request or a
        # blocking call would, so the fault suite can push a leader past its renew deadline.
        node = current_node()
        if not node.config.fault_injection:
            raise ApiError(404, "not_found", "fault injection is disabled")
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

    @api.route("/", defaults={"unknown": ""}, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    @api.route("/<path:unknown>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def not_found(unknown: str):
        if unknown in ("stream", "prices", "health", "history", "ws"):
            raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here; use GET",
                           {"Allow": "GET, HEAD"})
        raise ApiError(404, "not_found", f"no such endpoint: {request.path[:200]}")

    return api


def _snapshot_body(node: Node, pairs: tuple[str, ...]) -> dict:
    return {
        "prices": node.hub.snapshot(pairs),
        "mode": node.mode,
        "simulated": node.simulated,
        "stale": [p for p in node.hub.stale_pairs() if p in pairs],
        "stale_after_ms": int(node.config.stale_after * 1000),
        "server_time": int(time.time() * 1000),
        "worker": node.worker_id,
        "resume": None,
    }


def _requested_pairs(node: Node) -> tuple[str, ...]:
    raw = request.args.get("pairs")
    try:
        pairs = node.catalog.resolve_list(raw, node.config.max_pairs_per_request)
    except PairError as exc:
        raise ApiError(400, exc.error, exc.detail) from None
    return tuple(pair.name for pair in pairs)


def admit_stream(node: Node) -> None:
    """Capacity, shutdown and the admission gate for a new stream (SSE or WebSocket): returns once
    admitted (after waiting its turn), else raises the 503 to answer."""
    if node.hub.closed:
        raise shutting_down()
    if node.hub.full:
        node.hub.clients_refused += 1
        raise at_capacity()
    wait = node.admission.reserve()
    if wait is None:
        raise at_capacity("too many new streams on this worker at once; retry",
                          node.admission.retry_after(), jitter=5)
    if wait and node.hub.wait_closed(wait):
        # A reconnect storm is admitted at a bounded rate (admission.py); shutdown ends the wait.
        raise shutting_down()


def requested_pace(node: Node) -> int:
    """The pace in force for this request's `interval` (ms): 0 every tick, or 100..60000, raised to
    the deployment's floor (PRICEFEED_MIN_UPDATE_INTERVAL); absent: that floor."""
    raw = request.args.get("interval")
    if raw is None:
        return pace_in_force(None, node.config.min_update_interval)
    if not _INTERVAL.match(raw) or not (int(raw) == 0 or MIN_INTERVAL_MS <= int(raw) <= MAX_INTERVAL_MS):
        raise ApiError(400, "malformed_interval", f"interval must be 0 (every tick) or whole milliseconds "
                       f"from {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS}, got {raw[:20]!r}")
    return pace_in_force(int(raw), node.config.min_update_interval)


def _last_event_id() -> tuple[int, int] | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = request.args.get("lastEventId")
    if raw is None or raw == "":
        return None
    match = _EVENT_ID.match(raw.strip())
    if not match:
        raise ApiError(400, "malformed_last_event_id",
                       "Last-Event-ID must be an id this server sent, like 1700000000000-42")
    return int(match.group(1)), int(match.group(2))
