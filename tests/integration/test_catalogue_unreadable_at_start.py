"""An exchange whose catalogue cannot be read at start: the configured pairs are served as named,
and once it can be read, as the exchange lists them (BTC/USD moves from the guessed BTCUSDT to BTCUSD)."""
from __future__ import annotations

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

API = "/api/market-data"


def test_prices_flow_on_the_configured_names_until_the_catalogue_can_be_read():
    with SimulatorProcess(pairs="BTCUSD,BTCUSDT", rate=20) as sim:
        # Two failed reads (5 s apart, PRICEFEED_CATALOGUE_REFRESH): under the REST breaker's three.
        sim.fault(fault="rest", status=503, duration=8, retry_after=1)
        env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
               "PRICEFEED_PAIRS": "BTC/USD", "PRICEFEED_CATALOGUE_REFRESH": "5"}
        with GunicornProcess(workers=1, env=env) as app:
            def priced_as(symbol):
                entries = app.get_json(f"{API}/prices")[1]["prices"]
                return entries and entries[0]["symbol"] == symbol and entries[0]["status"] == "live"
            wait_until(lambda: priced_as("BTCUSDT"), 15, message="prices under the guessed name meanwhile")
            assert app.health()["catalogue"]["read"] is False
            wait_until(lambda: priced_as("BTCUSD"), 60, message="BTC/USD as BTCUSD once the catalogue is read")
            assert "cannot read" in app.output() and "serving the configured pairs as named" in app.output()
