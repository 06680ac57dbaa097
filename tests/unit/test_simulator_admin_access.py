"""The simulator's /_sim admin API answers loopback callers only, unless started with --admin-anywhere."""
from __future__ import annotations

import json

from pricefeed.simulator.exchange import Exchange
from pricefeed.simulator.options import SimulatorOptions, parse_options


def call(exchange: Exchange, peer: str, path: str = "/_sim/stats") -> tuple[str, dict]:
    seen = {}

    def start_response(status, headers):
        seen["status"] = status
    body = exchange({"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": peer}, start_response)
    return seen["status"], json.loads(b"".join(body))


def test_the_admin_api_refuses_a_caller_from_another_host():
    exchange = Exchange(SimulatorOptions())
    status, body = call(exchange, "192.0.2.10")
    assert status.startswith("403") and "loopback" in body["error"]
    for peer in ("127.0.0.1", "127.0.0.9", "::1", "::ffff:127.0.0.1"):
        assert call(exchange, peer)[0].startswith("200"), peer


def test_admin_anywhere_opens_it_on_purpose():
    exchange = Exchange(parse_options(["--admin-anywhere"]))
    assert call(exchange, "192.0.2.10")[0].startswith("200")
