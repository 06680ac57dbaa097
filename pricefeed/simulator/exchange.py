"""The simulated exchange as one WSGI application.

It owns the market source, the open connections and what they share (quotes,
stats, faults), routes each request (WebSocket streams, REST, `/_sim`), and
fans every published market event out to the connections subscribed to it.
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

import gevent

from .admin import AdminApi
from .connection import Connection
from .faults import Fault, FaultState, status_line
from .handler import Refusal, SimulatorWebSocket
from .listing import Listing
from .market import MarketSource, RandomWalkMarket
from .options import SimulatorOptions
from .quotes import Quotes
from .replay import ReplayMarket, load_capture
from .responses import StartResponse, json_response
from .rest import RestApi
from .stats import Stats
from .streams import MarketEvent, encode_json, is_valid_stream_name

_REFUSAL_MESSAGES = {
    429: "Too many requests; current limit is 300 connections per 5 MINUTE.",
    418: "Way too many requests; IP banned until further notice.",
}
REGION_MESSAGE = ("Service unavailable from a restricted location according to 'b. Eligibility' in "
                  "https://www.binance.com/en/terms. Please contact customer service if you believe you "
                  "received this message in error.")


@dataclass(frozen=True)
class StreamRoute:
    """What a WebSocket URL asks for."""

    streams: list[str]
    combined: bool
    microseconds: bool


class RouteError(ValueError):
    def __init__(self, status: int, msg: str, too_many_streams: bool = False) -> None:
        super().__init__(msg)
        self.status = status
        self.too_many_streams = too_many_streams


def parse_stream_route(path: str, query_string: str, max_streams: int) -> StreamRoute:
    """`/ws`, `/ws/<s>[/<s>...]`, `/stream` or `/stream?streams=a/b/c` (names percent-decoded)."""
    query = parse_qs(query_string, keep_blank_values=True)
    path = path.rstrip("/") or "/"
    if path == "/stream":
        combined = True
        names = [name for name in query.get("streams", [""])[-1].split("/") if name]
    elif path == "/ws" or path.startswith("/ws/"):
        combined = False
        names = [name for name in path[len("/ws"):].split("/") if name]
    else:
        raise RouteError(404, f"No stream endpoint at {path}")
    bad = [name for name in names if not is_valid_stream_name(name)]
    if bad:
        raise RouteError(400, f"Invalid stream name: {bad[0]}")
    if len(names) > max_streams:
        raise RouteError(400, f"Too many streams (at most {max_streams})", too_many_streams=True)
    time_unit = query.get("timeUnit", ["MILLISECOND"])[-1].upper()
    if time_unit not in ("MILLISECOND", "MICROSECOND"):
        raise RouteError(400, f"Invalid timeUnit: {time_unit}")
    return StreamRoute(names, combined, time_unit == "MICROSECOND")


class Exchange:
    """The WSGI application behind the simulator's HTTP server."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.stats = Stats()
        self.faults = FaultState()
        self.quotes = Quotes()
        self.connections: set[Connection] = set()
        self.source: MarketSource
        if options.replay:
            self.source = ReplayMarket(load_capture(options.replay), options.speed, options.loop,
                                       self.publish)
        else:
            self.source = RandomWalkMarket(options.pairs, options.rate, self.publish,
                                           random.Random(options.seed))
        for opening in self.source.opening_quotes():
            self.quotes.open(opening)
        symbols = tuple(opening.symbol for opening in self.source.opening_quotes()) or options.pairs
        self.listing = Listing(symbols, dict(options.statuses))
        self._rest = RestApi(self.quotes, self.stats, self.faults, options.rest_weight_limit, self.listing)
        self._admin = AdminApi(self)
        self._market_greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """Start the market (a replay still waits for its first client)."""
        self._market_greenlet = gevent.spawn(self.source.run)

    def stop(self) -> None:
        """Stop the market and close every connection as a server going away."""
        if self._market_greenlet is not None:
            self._market_greenlet.kill(block=False)
        for connection in list(self.connections):
            connection.close(1001, "Server stopping")

    # -- market fan-out -----------------------------------------------------------

    def publish(self, events: Iterable[MarketEvent]) -> None:
        """Record events in the quotes and offer them to every connection."""
        for event in events:
            if not self.listing.trading(event.symbol):
                continue   # a halted (or delisted) market trades no more: nothing to tell anyone
            self.quotes.observe(event)
            if self.faults.silenced:
                continue   # the market moves on; the clients just hear nothing
            for connection in list(self.connections):
                connection.offer(event)

    # -- faults on connections -------------------------------------------------------

    def apply_fault(self, fault: Fault) -> int:
        """Carry out `fault`; return how many open connections it affected."""
        connections = [connection for connection in self.connections
                       if not fault.stream or connection.subscribes(fault.stream)]
        self.faults.apply(fault)
        if fault.name == "drop":
            self.stats.drops += len(connections)
            for connection in connections:
                connection.drop()
        elif fault.name == "close":
            for connection in connections:
                connection.close(fault.code, fault.reason)
        elif fault.name == "malformed":
            for connection in connections:
                connection.send_malformed(fault.count or 1)
        elif fault.name == "shutdown":
            for connection in connections:
                connection.announce_shutdown(self.options.shutdown_grace, fault.close)
        elif fault.name == "hostile":
            if fault.kind == "ids_jump_back":
                restart = getattr(self.source, "restart_ids", None)
                if restart is None:
                    raise ValueError("ids_jump_back needs the random-walk market (not a replay)")
                restart()
                return len(connections)
            last_trades = self.quotes.last_trades()
            self.stats.hostile_sent += len(connections)
            for connection in connections:
                connection.send_hostile(fault.kind, last_trades)
        elif fault.name in ("refuse", "rest", "clear", "quiet", "stall"):
            return 0
        return len(connections)

    # -- WSGI --------------------------------------------------------------------------

    def refuse_handshake(self, environ: dict[str, Any]) -> Refusal | None:
        """Called by the handler before upgrading: an HTTP answer instead, or None."""
        target = _request_target(environ)
        if len(target) > self.options.max_target_length:
            # What a front end does with an over-long request line: 414, before any routing.
            self.stats.targets_too_long += 1
            return (status_line(414), [("Content-Type", "application/json")],
                    encode_json({"code": -1, "msg": f"Request-URI Too Long: {len(target)} characters "
                                 f"(at most {self.options.max_target_length})"}).encode())
        try:
            parse_stream_route(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                               self.options.max_streams)
        except RouteError as error:
            if error.too_many_streams:
                self.stats.streams_refused += 1
            return (status_line(error.status), [("Content-Type", "application/json")],
                    encode_json({"code": -1, "msg": str(error)}).encode())
        blocked = self.faults.blocked()
        if blocked is not None:
            return self._blocked_handshake(blocked)
        refusal = self.faults.take_refusal()
        if refusal is None:
            return None
        status, retry_after = refusal
        self.stats.handshakes_refused += 1
        body = encode_json({"code": -1003, "msg": _REFUSAL_MESSAGES.get(status, "Refused.")})
        return (status_line(status), [("Content-Type", "application/json"),
                                      ("Retry-After", str(retry_after))], body.encode())

    def _blocked_handshake(self, status: int) -> Refusal:
        self.stats.handshakes_refused += 1
        if status == 403:
            body = b"<html><body><h1>403 Forbidden</h1></body></html>"   # the WAF answers in HTML
            return status_line(403), [("Content-Type", "text/html")], body
        return (status_line(status), [("Content-Type", "application/json")],
                encode_json({"code": 0, "msg": REGION_MESSAGE}).encode())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        websocket = environ.get("wsgi.websocket")
        if isinstance(websocket, SimulatorWebSocket):
            return self._serve_websocket(environ, websocket)
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/"):
            return self._rest(environ, start_response)
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._admin(environ, start_response)
        if path in ("/ws", "/stream") or path.startswith("/ws/"):
            return json_response(start_response, 426, {"error": "WebSocket upgrade required"},
                                 [("Upgrade", "websocket")])
        return json_response(start_response, 404, {"error": f"not found: {path}"})

    def _serve_websocket(self, environ: dict[str, Any], websocket: SimulatorWebSocket) -> list[bytes]:
        route = parse_stream_route(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                                   self.options.max_streams)
        connection = Connection(websocket, route.streams, route.combined, route.microseconds,
                                self.options, self.stats, self.faults, len(_request_target(environ)))
        self.connections.add(connection)
        self.stats.connection_opened()
        self.source.client_connected()
        try:
            connection.serve()
        finally:
            self.connections.discard(connection)
            self.stats.connection_closed()
        return []


def _request_target(environ: dict[str, Any]) -> str:
    """The handshake's request target as the client sent it (percent-encoded path and query)."""
    raw = environ.get("RAW_URI")
    if isinstance(raw, str) and raw:
        return raw
    query = environ.get("QUERY_STRING", "")
    return quote(environ.get("PATH_INFO", "")) + (f"?{query}" if query else "")
