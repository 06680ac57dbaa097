"""`/_sim`: how tests inspect and steer the simulator.

    GET  /_sim/stats          counters (see stats.Stats), and `open_connections`: each open
                              connection's stream count and handshake target length
    POST /_sim/stats/reset    zero the totals; max_concurrent = connections open now
    GET  /_sim/prices         last published trade per symbol: {"BTCUSDT": {"price", "ts", "trade_id"}}
    GET  /_sim/market         the market source's state
    POST /_sim/market         {"paused": bool, "rate": float}: pause, resume or retune it
    GET  /_sim/fault          the timed faults in force
    POST /_sim/fault          {"fault": ..., ...}: inject one (see faults.py)
    GET  /_sim/connections    every open connection's streams, outbox and age
    GET  /_sim/listing        the catalogue: {"BTCUSDT": "TRADING", ...}
    POST /_sim/listing        {"symbol": "ETHUSDT", "status": "HALT"}; "status": null delists it
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .faults import FaultError, parse_fault
from .responses import StartResponse, json_response, read_json_body

if TYPE_CHECKING:
    from .exchange import Exchange

Endpoint = Callable[[dict[str, Any]], tuple[int, Any]]


def _loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class AdminApi:
    """The `/_sim` endpoints of one exchange."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._routes: dict[tuple[str, str], Endpoint] = {
            ("GET", "/_sim/stats"): lambda env: (200, {
                **exchange.stats.snapshot(),
                "open_connections": [connection.limits() for connection in exchange.connections]}),
            ("POST", "/_sim/stats/reset"): self._reset_stats,
            ("GET", "/_sim/prices"): lambda env: (200, exchange.quotes.last_trades()),
            ("GET", "/_sim/market"): lambda env: (200, exchange.source.control(None, None)),
            ("POST", "/_sim/market"): self._control_market,
            ("GET", "/_sim/fault"): lambda env: (200, {"active": exchange.faults.describe()}),
            ("POST", "/_sim/fault"): self._inject_fault,
            ("GET", "/_sim/listing"): lambda env: (200, exchange.listing.describe()),
            ("POST", "/_sim/listing"): self._set_listing,
            ("GET", "/_sim/connections"): lambda env: (
                200, [connection.describe() for connection in exchange.connections]),
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if not (self._exchange.options.admin_anywhere or _loopback(environ.get("REMOTE_ADDR"))):
            # It injects faults and reads every connection: the machine's own tests only.
            return json_response(start_response, 403, {"error": "the /_sim admin API answers loopback "
                                                                "callers only (--admin-anywhere to change)"})
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        endpoint = self._routes.get((method, path))
        if endpoint is None:
            allowed = sorted(m for (m, p) in self._routes if p == path)
            if allowed:
                return json_response(start_response, 405,
                                     {"error": f"{method} not allowed; use {', '.join(allowed)}"},
                                     [("Allow", ", ".join(allowed))])
            return json_response(start_response, 404, {"error": f"no such endpoint: {path}"})
        try:
            status, body = endpoint(environ)
        except ValueError as error:
            status, body = 400, {"error": str(error)}
        return json_response(start_response, status, body)

    def _reset_stats(self, environ: dict[str, Any]) -> tuple[int, Any]:
        self._exchange.stats.reset()
        return 200, {"ok": True, **self._exchange.stats.snapshot()}

    def _control_market(self, environ: dict[str, Any]) -> tuple[int, Any]:
        body = read_json_body(environ)
        if not isinstance(body, dict) or set(body) - {"paused", "rate"}:
            raise ValueError('body must be {"paused": true|false, "rate": <ticks per second>}')
        paused, rate = body.get("paused"), body.get("rate")
        if paused is not None and not isinstance(paused, bool):
            raise ValueError("paused must be true or false")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
            raise ValueError("rate must be a number of ticks per second")
        state = self._exchange.source.control(paused, rate)
        return 200, {"ok": True, **state}

    def _set_listing(self, environ: dict[str, Any]) -> tuple[int, Any]:
        body = read_json_body(environ)
        if not isinstance(body, dict) or set(body) != {"symbol", "status"} or not isinstance(body["symbol"], str):
            raise ValueError('body must be {"symbol": "ETHUSDT", "status": "HALT"} (status null delists)')
        status = body["status"]
        if status is not None and not isinstance(status, str):
            raise ValueError("status must be a string or null")
        self._exchange.listing.set(body["symbol"], status)
        return 200, {"ok": True, "listing": self._exchange.listing.describe()}

    def _inject_fault(self, environ: dict[str, Any]) -> tuple[int, Any]:
        try:
            fault = parse_fault(read_json_body(environ))
        except FaultError as error:
            raise ValueError(str(error)) from error
        affected = self._exchange.apply_fault(fault)
        return 200, {"ok": True, "fault": fault.name, "affected": affected,
                     "active": self._exchange.faults.describe()}
