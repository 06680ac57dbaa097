"""pricefeed behind a real nginx running deploy/nginx/pricefeed.conf, on loopback.

What a user of the deploy file relies on: prices come through nginx as soon as
they come directly (the same events, compared in one run), the proxied streams
keep gunicorn's direct-write path, and the per-IP limits count the browser behind
nginx, not nginx. Timing figures proper are measured by bench/nginx_latency.py.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import signal
import statistics
import time

import pytest

from pricefeed.config import SETTINGS
from tests.support.gunicorn import GunicornProcess
from tests.support.nginx import NginxProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PAIRS = "BTC/USD,ETH/USD,SOL/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"
ADMIN_TOKEN = "nginx-test-token"
_SETTING_NAMES = {setting.name for setting in SETTINGS}
PER_IP_SETTINGS = {"TRUSTED_PROXIES", "MAX_STREAMS_PER_IP"}


def arrival_gaps(direct: SSEClient, proxied: SSEClient) -> list[float]:
    """Per price event id both streams received: seconds the proxied copy came after the direct one."""
    direct_at = {event.id: event.received_at for event in direct.of("price")}
    return [event.received_at - direct_at[event.id] for event in proxied.of("price") if event.id in direct_at]


def serve(sim: SimulatorProcess, **extra: str) -> GunicornProcess:
    # One worker: every stream of a test meets the same per-worker counters and limits.
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url, "PRICEFEED_PAIRS": PAIRS,
           "PRICEFEED_ADMIN_TOKEN": ADMIN_TOKEN}
    env.update(extra)
    return GunicornProcess(workers=1, env=env)


def detailed_health(app: GunicornProcess) -> dict:
    return app.get_json("/api/market-data/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})[1]


@pytest.fixture
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=30) as simulator:
        yield simulator


def test_prices_arrive_through_nginx_as_soon_as_directly_and_stay_on_the_direct_write_path(sim):
    with serve(sim) as app, NginxProcess(app.port) as nginx:
        proxied = SSEClient(nginx.url + STREAM)
        direct = SSEClient(app.url + STREAM)
        try:
            assert proxied.status == 200 and proxied.headers["content-type"].startswith("text/event-stream")
            assert "content-length" not in proxied.headers
            wait_until(lambda: len(arrival_gaps(direct, proxied)) >= 100, 20,
                       message="100 price events on both streams")
            gaps = sorted(arrival_gaps(direct, proxied))
            median, p95 = statistics.median(gaps), gaps[int(len(gaps) * 0.95)]
            print(f"\nnginx vs direct over {len(gaps)} events: median {median * 1000:.2f} ms, "
                  f"p95 {p95 * 1000:.2f} ms, max {gaps[-1] * 1000:.2f} ms")
            # Generous on purpose (a shared machine): the figures that matter are the bench's.
            assert median < 0.25, f"proxied prices arrive {median * 1000:.0f} ms after direct ones (median)"
            wait_until(lambda: proxied.latest_prices() == direct.latest_prices(), 5, message="the same prices")
            clients = detailed_health(app)["clients"]
            assert clients["clients"] == 2
            assert clients["clients_direct"] == 2, "the proxied stream fell back to the WSGI write path"
        finally:
            proxied.close()
            direct.close()


def test_through_nginx_metrics_need_the_admin_token_and_an_allowed_scraper_address(sim):
    with serve(sim) as app, NginxProcess(app.port) as nginx:
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        def get(headers: dict, source: str = "127.0.0.1") -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5, source_address=(source, 0))
            try:
                conn.request("GET", "/api/market-data/metrics", headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()
        status, body = get({})
        assert status == 403 and b'"forbidden"' in body            # pricefeed's refusal: no token
        status, body = get(bearer)
        assert status == 200 and b"pricefeed_clients" in body
        status, _ = get(bearer, source="127.0.0.2")
        assert status == 403                                        # nginx's: not an allowed scraper


@pytest.mark.skipif(not PER_IP_SETTINGS <= _SETTING_NAMES,
                    reason="needs PRICEFEED_TRUSTED_PROXIES and PRICEFEED_MAX_STREAMS_PER_IP")
def test_the_per_ip_limit_counts_the_browser_behind_nginx_not_nginx(sim):
    with serve(sim, PRICEFEED_TRUSTED_PROXIES="127.0.0.1", PRICEFEED_MAX_STREAMS_PER_IP="2") as app, \
            NginxProcess(app.port) as nginx:
        url = nginx.url + STREAM
        first_browser = [SSEClient(url, source_address=("127.0.0.2", 0)) for _ in range(2)]
        try:
            assert [c.status for c in first_browser] == [200, 200]
            third = SSEClient(url, source_address=("127.0.0.2", 0))
            assert third.status == 429, third.body[:300]
            assert b"too_many_streams" in third.body
            other_browser = SSEClient(url, source_address=("127.0.0.3", 0))
            try:
                assert other_browser.status == 200
                other_browser.wait_for(lambda c: c.of("snapshot"), 10, "a snapshot for the other browser")
            finally:
                other_browser.close()
        finally:
            for client in first_browser:
                client.close()


def test_through_nginx_a_graceful_restart_answers_every_new_stream_from_a_new_worker(sim):
    """nginx keeps idle connections to gunicorn (`keepalive 32` in the deploy file) and reuses
    them: a stopping worker must not answer on them (`503 shutting_down` to every browser that
    nginx sends that way) but close them, so nginx opens new ones, which a new worker accepts."""
    with serve(sim, PRICEFEED_RESTART_SPREAD="0.5") as app, NginxProcess(app.port) as nginx:
        old_workers = set(app.worker_pids())
        refusals: list[bytes] = []

        def status_of(path: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                if path != STREAM or response.status != 200:
                    body = response.read()   # a whole response: nginx keeps its upstream connection
                    if response.status != 200:
                        refusals.append(body[:300])
                return response.status
            finally:
                conn.close()

        # Several requests at once: nginx keeps several idle upstream connections afterwards.
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            assert list(pool.map(lambda _: status_of(f"/api/market-data/prices?pairs={PAIRS}"), range(12))) == [200] * 12
        proxied = SSEClient(nginx.url + STREAM)
        try:
            proxied.wait_for(lambda c: c.of("price"), 10, "prices through nginx")
            app.proc.send_signal(signal.SIGHUP)
            statuses = []
            deadline = time.monotonic() + 3       # longer than the old worker's whole stop
            while time.monotonic() < deadline:
                statuses.append(status_of(STREAM))
                time.sleep(0.05)
            assert statuses and set(statuses) == {200}, (statuses, refusals)
            proxied.wait_for(lambda c: c.closed, 10, "the proxied stream closed by the restart")
            assert int(detailed_health(app)["worker"]["id"].rsplit(":", 1)[1]) not in old_workers
            assert "upstream prematurely closed" not in nginx.error_log()
        finally:
            proxied.close()
