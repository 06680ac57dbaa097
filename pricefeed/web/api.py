"""The streaming API blueprint: /stream, /ws, /prices, /history, /health under the configured prefix.

Requests are parsed here into checked values (pairs, a resume point); everything
below trusts them. Every error a client can cause is a JSON 4xx (errors.py).
"""
from __future__ import annotations

import logging
import random
import re
import time
from typing import Callable

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule

from pricefeed.delivery import sse
from pricefeed.delivery.hub import HubClosed, HubFull
from pricefeed.delivery.pace import MAX_INTERVAL_MS, MIN_INTERVAL_MS, pace_in_force
from pricefeed.node import Node
from pricefeed.pairs import PairError
from pricefeed.web.access import EXTENSION_KEY, admin_allowed, test_switch_allowed
from pricefeed.web.errors import ApiError, at_capacity, json_error, shutting_down
from pricefeed.web.health import health_report, public_health_report
from pricefeed.web.origins import cors_headers, origin_allowed, preflight_headers
from pricefeed.web.security_headers import add_common_headers
from pricefeed.web.stream_admission import admit, hold_stream_slot
from pricefeed.web.sse_response import bound_writes, direct_socket, server_response, stream_events

log = logging.getLogger(__name__)

_EVENT_ID = re.compile(r"^([0-9]{1,19})-([0-9]{1,19})$")
_INTERVAL = re.compile(r"^[0-9]{1,5}$")
API_BLUEPRINT = "pricefeed_api"
# Every path under the prefix, every method: answered by the blueprint, so in JSON.
_ANY_PATH = "pricefeed_any_path"
_ROUTES_KEY = "pricefeed.routes"
# Up to 10% more, so streams opened together (after a deploy) do not all end together.
LIFETIME_JITTER = 0.1


class _AnyPath(BaseConverter):
    """Matches anything after the prefix, empty or with slashes of its own."""

    regex = ".*"
    part_isolating = False


def current_node() -> Node:
    return current_app.extensions[EXTENSION_KEY].node


def create_api_blueprint() -> Blueprint:
    api = Blueprint(API_BLUEPRINT, __name__)
    api.record(_route_every_path_and_method)

    @api.before_request
    def _reject_oversized_query() -> None:
        limit = current_node().config.max_query_length
        if len(request.query_string) > limit:
            raise ApiError(400, "query_too_long", f"the query string exceeds {limit} bytes")

    @api.before_request
    def _refuse_other_sites() -> None:
        # Data endpoints only: /health is for load balancers and operators, and an OPTIONS
        # preflight is answered (or refused) by its own view.
        if request.endpoint in (f"{API_BLUEPRINT}.stream", f"{API_BLUEPRINT}.prices",
                                f"{API_BLUEPRINT}.history", f"{API_BLUEPRINT}.websocket"):
            origin = request.environ.get("HTTP_ORIGIN")   # the environ: no header-object lookup per request
            # request.host_url is built from the environ on every call: only when there is an Origin.
            if origin is not None and not origin_allowed(origin, request.host_url, current_node().config):
                raise ApiError(403, "origin_not_allowed", "this API is not open to pages of that origin")

    @api.after_request
    def _headers(response: Response) -> Response:
        config = current_node().config
        origin = request.environ.get("HTTP_ORIGIN")
        if origin is None:
            response.vary.add("Origin")        # what cors_headers answers without one, for less work
        else:
            for key, value in cors_headers(origin, request.host_url, config).items():
                if key == "Vary":
                    response.vary.add(value)
                else:
                    response.headers[key] = value
        return add_common_headers(response, config)

    @api.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return json_error(exc.status, exc.error, exc.detail, exc.headers)

    @api.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return json_error(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or "")

    @api.errorhandler(Exception)
    def _bug(exc: Exception):
        log.exception("pricefeed: unexpected error serving %s %s", request.method, request.path[:200])
        return json_error(500, "internal_error", "the server failed to answer; this is a bug")

    @api.route("/stream", methods=["GET"], provide_automatic_options=False)
    def stream():
        node = current_node()
        pairs = _requested_pairs(node)
        pace_ms = requested_pace(node)
        resume_from = _last_event_id()
        if request.method == "HEAD":
            # Headers only, and no mailbox: gunicorn never writes a HEAD body, so a stream
            # opened here would never notice its client leave and would hold a slot forever.
            return Response(b"", content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
        release = hold_stream_slot(node)
        try:
            admit(node, release.address, request.environ.get("gunicorn.socket"))
            return _open_stream(node, pairs, pace_ms, resume_from, release)
        except BaseException:
            release()
            raise

    @api.route("/prices", methods=["GET"], provide_automatic_options=False)
    def prices():
        node = current_node()
        response = jsonify(_snapshot_body(node, _requested_pairs(node)))
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/history", methods=["GET"], provide_automatic_options=False)
    def history():
        node = current_node()
        pairs = _requested_pairs(node)
        now_ms = int(time.time() * 1000)
        store = node.hub.history
        response = jsonify({"interval_ms": store.interval_ms, "window_ms": store.window_ms, "server_time": now_ms,
                            "history": store.window(pairs, now_ms)})
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/health", methods=["GET"], provide_automatic_options=False)
    def health():
        # Operators (the token, or the host's own shell) get every detail; anyone else the summary.
        node = current_node()
        body, status = health_report(node) if admin_allowed(request) else public_health_report(node)
        response = jsonify(body)
        response.status_code = status
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/_fault/block-hub", methods=["POST"], provide_automatic_options=False)
    def block_hub():
        # Test-only: freezes this worker's whole gevent hub, as a CPU-bound request or a
        # blocking call would, so the fault suite can push a leader past its renew deadline.
        node = current_node()
        if not node.config.fault_injection or not test_switch_allowed(request):
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

    @api.route("/_fault/slow-flush", methods=["POST"], provide_automatic_options=False)
    def slow_flush():
        # Test-only: a cooperative pause after every flush of this worker, to push it past its lag
        # bound (load shedding) without thousands of clients. ms=0 ends it.
        node = current_node()
        if not node.config.fault_injection or not test_switch_allowed(request):
            raise ApiError(404, "not_found", "fault injection is disabled")
        raw = request.args.get("ms", "")
        if not re.fullmatch(r"[0-9]{1,4}", raw):
            raise ApiError(400, "malformed_ms", "ms must be a whole number from 0 to 9999")
        node.flusher.test_delay_s = int(raw) / 1000
        return jsonify({"flush_delay_ms": int(raw), "worker": node.worker_id})

    return api


def _route_every_path_and_method(state) -> None:
    """Send every method on every path under the prefix to `_any_path` (via Rules with methods=None,
    which Flask's route() cannot declare): a TRACE or PROPFIND on /stream, or //x, is ours and
    answered in JSON, while the host app's own paths keep their own 404s and 405s."""
    app, prefix = state.app, state.url_prefix or ""
    app.url_map.converters.setdefault(_ANY_PATH, _AnyPath)
    endpoint = f"{API_BLUEPRINT}.any_path"
    for rule in (f"{prefix}/<{_ANY_PATH}:unknown>", prefix or "/"):
        app.url_map.add(Rule(rule, endpoint=endpoint if "<" in rule else endpoint + "_root", methods=None,
                             strict_slashes=False, merge_slashes=False))
    app.view_functions[endpoint] = _any_path
    app.view_functions[endpoint + "_root"] = _any_path


def _allowed_methods(path: str) -> str | None:
    """The methods our own routes take at `path` ("GET, HEAD, OPTIONS"), or None if none is there.

    Read from a copy of the blueprint's rules without the catch-all, so routes added to the
    blueprint later (or by another module) are covered without a list to keep in step.
    """
    routes = current_app.extensions.get(_ROUTES_KEY)
    if routes is None:
        ours = [rule for rule in current_app.url_map.iter_rules()
                if rule.endpoint.startswith(API_BLUEPRINT + ".") and rule.methods is not None]
        routes = Map([Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods) for rule in ours])
        current_app.extensions[_ROUTES_KEY] = routes
    methods = routes.bind("localhost").allowed_methods(path)
    if not methods:
        return None
    return ", ".join(sorted(set(methods) | {"OPTIONS"}))


def _any_path(unknown: str = ""):
    """Whatever no route of ours took: OPTIONS (and CORS preflights), 405s, 404s."""
    allow = _allowed_methods(request.path)
    if allow is None:
        raise ApiError(404, "not_found", f"no such endpoint: {request.path[:200]!r}")
    if request.method != "OPTIONS":
        raise ApiError(405, "method_not_allowed", f"{request.method[:20]!r} is not allowed here; use {allow}",
                       {"Allow": allow})
    origin = request.headers.get("Origin")
    response = jsonify({"allow": allow})
    response.headers["Allow"] = allow
    if origin is not None and "Access-Control-Request-Method" in request.headers:
        if not origin_allowed(origin, request.host_url, current_node().config):
            raise ApiError(403, "origin_not_allowed", "this API is not open to pages of that origin")
        response.headers.update(preflight_headers())
    return response


def _open_stream(node: Node, pairs: tuple[str, ...], pace_ms: int, resume_from: tuple[int, int] | None,
                 release: Callable[[], None]) -> Response:
    """Register and start one admitted stream."""
    sock = request.environ.get("gunicorn.socket")
    try:
        client = node.hub.connect(pairs, direct_socket(node.direct_writes, sock, request.environ), pace_ms)
    except HubFull:
        raise at_capacity() from None
    except HubClosed:
        raise shutting_down() from None
    bound_writes(sock, node.config.write_timeout, node.config.stream_send_buffer)
    # Registered and snapshotted without yielding in between: no tick falls in the gap.
    snapshot = _snapshot_body(node, pairs)
    snapshot["interval_ms"] = client.pace_ms
    if resume_from is not None:
        snapshot["resume"] = node.hub.resume(resume_from, pairs)
    retry_ms = node.config.retry_ms + random.randint(0, node.config.retry_jitter_ms)
    preamble = sse.retry(retry_ms) + sse.event("snapshot", snapshot, node.hub.last_event_id)
    responder = server_response(request.environ) if client.direct else None
    lifetime = node.config.max_stream_lifetime
    lifetime = lifetime * (1 + random.uniform(0, LIFETIME_JITTER)) if lifetime else None
    # direct_passthrough: the server iterates our generator itself, without werkzeug's two
    # wrappers around it — each open stream's greenlet then parks on a shallower stack
    # (issue 14: RSS per stream). The generator's own `finally` disconnects and releases.
    return Response(stream_events(node.hub, client, preamble, sock, responder, lifetime, on_close=release),
                    content_type=sse.CONTENT_TYPE, headers=sse.HEADERS, direct_passthrough=True)


def _snapshot_body(node: Node, pairs: tuple[str, ...]) -> dict:
    body = {
        "prices": node.hub.snapshot(pairs),
        # Every requested pair, priced or not: live | stale | halted | unlisted, and what it trades as.
        "pairs": node.hub.pair_states(pairs),
        "mode": node.mode,
        "simulated": node.simulated,
        "stale": [p for p in node.hub.stale_pairs() if p in pairs],
        "stale_after_ms": int(node.config.stale_after * 1000),
        "server_time": int(time.time() * 1000),
        "resume": None,
        "reason": node.access.current(),
        "detail": node.mode_detail(),
    }
    if admin_allowed(request):
        # Which worker answered (host:pid) is the operator's business only; browsers never see it.
        body["worker"] = node.worker_id
    return body


def _requested_pairs(node: Node) -> tuple[str, ...]:
    raw = request.args.get("pairs")
    try:
        pairs = node.catalog.resolve_list(raw, node.config.max_pairs_per_request)
    except PairError as exc:
        raise ApiError(400, exc.error, exc.detail) from None
    return tuple(pair.name for pair in pairs)


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
