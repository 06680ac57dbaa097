"""The API blueprint: /prices, /history, /health (and /stream, /ws: streams/) under the configured prefix.

Requests are parsed into checked values (streams/request.py); everything below
trusts them. Every error a client can cause is a JSON 4xx (errors.py, json_error here).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Request, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule

from pricefeed.node import Node
from pricefeed.web import EXTENSION_KEY
from pricefeed.web.errors import ApiError
from pricefeed.web.http.health import health_report, public_health_report
from pricefeed.web.http.security_headers import add_common_headers
from pricefeed.web.policy.access import operator_allowed
from pricefeed.web.policy.origins import cors_headers, origin_allowed, preflight_headers
from pricefeed.web.streams.request import parse_pairs
from pricefeed.web.streams.routes import add_stream_routes
from pricefeed.web.streams.snapshot import snapshot_body

if TYPE_CHECKING:
    from pricefeed.web.extension import PriceFeedState

log = logging.getLogger(__name__)

API_BLUEPRINT = "pricefeed_api"
# Every path under the prefix, every method: answered by the blueprint, so in JSON.
_ANY_PATH = "pricefeed_any_path"
_ROUTES_KEY = "pricefeed.routes"


class _AnyPath(BaseConverter):
    """Matches anything after the prefix, empty or with slashes of its own."""

    regex = ".*"
    part_isolating = False


def current_state() -> PriceFeedState:
    """The current app's pricefeed (extension.py)."""
    return current_app.extensions[EXTENSION_KEY]


def current_node() -> Node:
    return current_state().node


def admin_allowed(request: Request) -> bool:
    """The request may see the operator's view (policy/access.py)."""
    return operator_allowed(request.environ, current_state().config.endpoint)


def json_error(status: int, error: str, detail: str, headers: dict | None = None) -> Response:
    """An ApiError's answer: `{"error": ..., "detail": ...}` with `status` and `headers`."""
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def create_api_blueprint() -> Blueprint:
    api = Blueprint(API_BLUEPRINT, __name__)
    api.record(_route_every_path_and_method)
    # /stream and /ws: served below Flask by streams/routes.StreamRoutes; declared here too.
    add_stream_routes(api, current_state)

    @api.before_request
    def _reject_oversized_query() -> None:
        limit = current_node().config.endpoint.max_query_length
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
            if origin is not None and not origin_allowed(origin, request.host_url, current_node().config.endpoint):
                raise ApiError(403, "origin_not_allowed", "this API is not open to pages of that origin")

    @api.after_request
    def _headers(response: Response) -> Response:
        endpoint = current_node().config.endpoint
        origin = request.environ.get("HTTP_ORIGIN")
        if origin is None:
            response.vary.add("Origin")        # what cors_headers answers without one, for less work
        else:
            for key, value in cors_headers(origin, request.host_url, endpoint).items():
                if key == "Vary":
                    response.vary.add(value)
                else:
                    response.headers[key] = value
        return add_common_headers(response, endpoint)

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

    @api.route("/prices", methods=["GET"], provide_automatic_options=False)
    def prices():
        node = current_node()
        response = jsonify(snapshot_body(node, parse_pairs(request.args.get("pairs"), node),
                                         admin_allowed(request)))
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api.route("/history", methods=["GET"], provide_automatic_options=False)
    def history():
        node = current_node()
        pairs = parse_pairs(request.args.get("pairs"), node)
        now_ms = int(time.time() * 1000)
        store = node.history
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
        if not origin_allowed(origin, request.host_url, current_node().config.endpoint):
            raise ApiError(403, "origin_not_allowed", "this API is not open to pages of that origin")
        response.headers.update(preflight_headers())
    return response
