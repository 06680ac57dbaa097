"""A region block (HTTP 451) or the exchange's firewall (403): named in /health, said once in the
log with the fix, and asked again about once a retry interval — never a loop.

The retry interval is PRICEFEED_REFUSED_RETRY_INTERVAL (default 60 s, about one attempt a
minute); these tests set 3 s so a minute's behaviour fits in seconds.
"""
from __future__ import annotations

import time

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

API = "/api/market-data"
INTERVAL = 3.0


@pytest.mark.parametrize("status, reason", [(451, "region_not_served"), (403, "blocked_by_exchange_firewall")])
def test_a_blocked_host_names_the_reason_in_health_and_asks_once_an_interval(status, reason):
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as sim:
        sim.fault(fault="block", status=status)
        env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
               "PRICEFEED_PAIRS": "BTC/USD,ETH/USD", "PRICEFEED_REFUSED_RETRY_INTERVAL": str(INTERVAL),
               "PRICEFEED_UPSTREAM_BACKOFF_BASE": "0.1", "PRICEFEED_UPSTREAM_BACKOFF_CAP": "0.5"}
        with GunicornProcess(workers=1, env=env) as app:
            code, public = wait_until(lambda: (lambda r: r if r[1].get("reason") == reason else None)(
                app.get_json(f"{API}/health", headers={"X-Forwarded-For": "192.0.2.9"})), 15,
                message=f"/health to name {reason}")
            assert public["mode"] == "degraded" and public["status"] in ("degraded", "down")
            assert all(p["status"] != "live" for p in public["pairs"].values())
            # A browser's stream says why in its snapshot.
            snapshot = app.get_json(f"{API}/prices")[1]
            assert snapshot["reason"] == reason and snapshot["mode"] == "degraded"

            refused_before, rest_before = sim.stats()["handshakes_refused"], sim.stats()["rest_requests"]
            window = 4 * INTERVAL
            time.sleep(window)     # the behaviour under test is the pace of attempts over this window
            refused = sim.stats()["handshakes_refused"] - refused_before
            rest = sim.stats()["rest_requests"] - rest_before
            # About one handshake per interval (never the backoff's fractions of a second), and at
            # most one catalogue read and one REST poll per interval.
            assert 2 <= refused <= window / INTERVAL + 1, refused
            assert rest <= 2 * (window / INTERVAL + 1), rest

            fix = [line for line in app.output().splitlines() if "Fix: point BOTH" in line or
                   ("Fix:" in line and reason in line)]
            assert len(fix) == 1, fix       # one clear line, not one per attempt
            if status == 451:
                assert "PRICEFEED_UPSTREAM_URL and PRICEFEED_REST_URL" in fix[0]

            sim.fault(fault="clear")
            wait_until(lambda: app.health()["mode"] == "live" and app.health()["reason"] is None,
                       4 * INTERVAL + 10, message="live again once the block lifts")
