"""HTTP: the streaming API blueprint and the dashboard blueprint.

Every error a client can cause is a 4xx with `{"error": ..., "detail": ...}`;
nothing a client sends reaches a 500.
"""
from __future__ import annotations

import os
import random
import re
import socket
import time
from typing import Iterator

from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from . import sse
from .hub import Hub, HubClosed, HubFull
from .node import Node
from .pairs import PairError
from .stream_client import StreamClient

_EVENT_ID = re.compile(r"^([0-9]{1,19})-([0-9]{1,19})$")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTENSION_KEY = "pricefeed"
AT_CAPACITY_RETRY_AFTER_S = 5


class ApiError(Exception):
    """A client error: answered as JSON with this status."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def _at_capacity() -> ApiError:
    return ApiError(503, "at_capacity", "this worker streams to its maximum number of clients",
                    {"Retry-After": str(AT_CAPACITY_RETRY_AFTER_S + random.randint(0, 10))})


def _shutting_down() -> ApiError:
    # A short Retry-After: the browser should reconnect at once, to another worker.
    return ApiError(503, "shutting_down", "this server is restarting; reconnect", {"Retry-After": "1"})


def current_node() -> Node:
    return current_app.extensions[EXTENSION_KEY].node


def create_api_blueprint() -> Blueprint:
    api = Blueprint("pricefeed_api", __name__)

    @api.before_request
    def _reject_oversized_query() -> None:
        limit = current_node().config.max_query_length
        if len(request.query_string) > limit:
            raise ApiError(400, "query_too_long", f"the query string exceeds {limit} bytes")

    @api.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _json_error(exc.status, exc.error, exc.detail, exc.headers)

    @api.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return _json_error(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or "")

    @api.route("/stream", methods=["GET"])
    def stream():
        node = current_node()
        pairs = _requested_pairs(node)
        resume_from = _last_event_id()
        if request.method == "HEAD":
            # Headers only, and no mailbox: gunicorn never writes a HEAD body, so a stream
            # opened here would never notice its client leave and would hold a slot forever.
            return Response(b"", content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
        if node.hub.closed:
            raise _shutting_down()
        if node.hub.full:
            node.hub.clients_refused += 1
            raise _at_capacity()
        wait = node.admission.reserve()
        if wait is None:
            raise ApiError(503, "at_capacity", "too many new streams on this worker at once; retry",
                           {"Retry-After": str(node.admission.retry_after() + random.randint(0, 5))})
        if wait and node.hub.wait_closed(wait):
            # A reconnect storm is admitted at a bounded rate (admission.py); shutdown ends the wait.
            raise _shutting_down()
        sock = request.environ.get("gunicorn.socket")
        try:
            client = node.hub.connect(pairs, direct_socket(node, sock, request.environ))
        except HubFull:
            raise _at_capacity() from None
        except HubClosed:
            raise _shutting_down() from None
        _bound_writes(sock, node.config.write_timeout)
        # Registered and snapshotted without yielding in between: no tick falls in the gap.
        snapshot = _snapshot_body(node, pairs)
        if resume_from is not None:
            snapshot["resume"] = node.hub.resume(resume_from, pairs)
        retry_ms = node.config.retry_ms + random.randint(0, node.config.retry_jitter_ms)
        preamble = sse.retry(retry_ms) + sse.event("snapshot", snapshot, node.hub.last_event_id)
        responder = _server_response(request.environ) if client.direct else None
        response = Response(_stream_events(node.hub, client, preamble, sock, responder),
                            content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
        response.call_on_close(lambda: node.hub.disconnect(client))
        return response

    @api.route("/prices", methods=["GET"])
    def prices():
        node = current_node()
        response = jsonify(_snapshot_body(node, _requested_pairs(node)))
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/health", methods=["GET"])
    def health():
        body, status = current_node().health()
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
        if unknown in ("stream", "prices", "health"):
            raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here; use GET",
                           {"Allow": "GET, HEAD"})
        raise ApiError(404, "not_found", f"no such endpoint: {request.path[:200]}")

    return api


def create_dashboard_blueprint() -> Blueprint:
    dashboard = Blueprint("pricefeed_dashboard", __name__,
                          template_folder=os.path.join(_ROOT, "templates"),
                          static_folder=os.path.join(_ROOT, "static"),
                          static_url_path="/pricefeed-static")

    @dashboard.route("/")
    @dashboard.route("/dashboard")
    def page():
        node = current_node()
        api = "pricefeed_api"
        return render_template(
            "dashboard.html",
            title="pricefeed",
            pairs=[p.name for p in node.catalog.pairs],
            stream_url=url_for(f"{api}.stream"),
            prices_url=url_for(f"{api}.prices"),
            health_url=url_for(f"{api}.health"),
            static_url=url_for("pricefeed_dashboard.static", filename="").rstrip("/"),
            stale_after_ms=int(node.config.stale_after * 1000),
        )

    return dashboard


def direct_socket(node: Node, sock: socket.socket | None, environ: dict) -> socket.socket | None:
    """The socket the flusher may write framed chunks to itself, or None (chunks go through WSGI).

    A candidate only under gunicorn's gevent worker (node.direct_writes, set by the hooks),
    over a plain socket (TLS must go through its own layer) and HTTP/1.1 (chunked transfer
    encoding). The stream confirms it once gunicorn has sent the preamble
    (_framed_by_gunicorn), which also rules out the uwsgi protocol and rewriting middleware.
    """
    if sock is None or not node.direct_writes or environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return None
    if hasattr(sock, "getpeercert"):
        return None
    return sock


START_RESPONSE_KEY = "pricefeed.start_response"


def remember_start_response(wsgi_app):
    """WSGI wrapper (installed by PriceFeed.init_app): keeps the server's start_response in the
    environ, so a stream can check how the server framed its first bytes (_framed_by_gunicorn)."""
    def app(environ, start_response):
        environ[START_RESPONSE_KEY] = start_response
        return wsgi_app(environ, start_response)
    app.__wrapped__ = wsgi_app
    return app


def _server_response(environ: dict) -> object | None:
    """gunicorn's own Response object, if nothing stands between gunicorn and this app."""
    responder = getattr(environ.get(START_RESPONSE_KEY), "__self__", None)
    kind = type(responder)
    if kind.__module__ == "gunicorn.http.wsgi" and kind.__name__ == "Response":
        return responder
    return None


def _framed_by_gunicorn(responder: object | None, preamble_length: int) -> bool:
    """True if gunicorn sent the head and exactly our preamble as a chunked body: then our own
    chunks continue its stream byte for byte. Not so if a middleware or an after_request hook
    set a Content-Length, compressed or buffered the body — then the WSGI path it is."""
    return (responder is not None and getattr(responder, "chunked", False) is True
            and getattr(responder, "headers_sent", False) is True
            and getattr(responder, "sent", None) == preamble_length)


def _stream_events(hub: Hub, client: StreamClient, preamble: bytes,
                   sock: socket.socket | None, responder: object | None = None) -> Iterator[bytes]:
    """The response body. The server writes the preamble; after that the flusher writes
    (stream_client.py) and this greenlet only finishes backlogs, or yields handed-over chunks."""
    try:
        yield preamble
        hub.ready(client, direct=client.direct and _framed_by_gunicorn(responder, len(preamble)))
        while True:
            client.wait()
            if client.gone or client.closed:
                # Gone, or the worker is shutting down. Without the hang-up the connection would
                # sit in keep-alive after the stream ends, and the worker could not exit for seconds.
                _hang_up(sock)
                return
            if client.backlog is not None:
                try:
                    sock.sendall(client.backlog)   # bounded by WRITE_TIMEOUT (_bound_writes)
                except OSError:                    # includes the timeout: a client that stopped reading
                    _hang_up(sock)
                    return
                client.backlog = None
                hub.catch_up(client)
            if client.outbox is not None:
                chunk, client.outbox = client.outbox, None
                yield chunk
                hub.catch_up(client)
    finally:
        hub.disconnect(client)


def _hang_up(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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


def _bound_writes(sock: socket.socket | None, write_timeout: float) -> None:
    """A client that stops reading blocks only its own greenlet, and only for `write_timeout`."""
    if sock is not None:
        sock.settimeout(write_timeout)


def _json_error(status: int, error: str, detail: str, headers: dict | None = None):
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
