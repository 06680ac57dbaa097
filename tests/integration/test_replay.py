"""Replaying real captured Binance traffic through the simulator ends with the capture's last trade prices."""
from __future__ import annotations

import pytest

from tests.conftest import fixture_path, last_trade_prices
from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

CAPTURES = {
    # capture file: pairs as users name them (quotes as the exchange lists them)
    "cryptofeed-BINANCE.ws.1.0.txt": "FTM/USDT,SXP/BTC,BADGER/BTC,XMR/BTC",
    "cryptofeed-BINANCE_US.ws.1.0.txt": "CRV/USDT,COMP/USDT,OMG/BUSD,ZRX/USDT",
}


@pytest.mark.parametrize("capture", sorted(CAPTURES))
def test_replayed_capture_ends_with_its_last_trade_price_per_symbol_in_prices(capture):
    pairs = CAPTURES[capture]
    expected = {f"{symbol[:-len(quote)]}/{quote}": price
                for symbol, price in last_trade_prices(capture).items()
                for quote in ("USDT", "BUSD", "BTC") if symbol.endswith(quote)}
    # Not every subscribed symbol traded during the capture; those must show no price at all.
    assert set(expected) < set(pairs.split(","))
    with SimulatorProcess(replay=str(fixture_path(capture)), speed=10) as sim, \
            GunicornProcess(workers=1, env={"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": pairs,
                                            "PRICEFEED_UPSTREAM_SILENCE_TIMEOUT": "60",
                                            # The captures are years old: no clock window for them.
                                            "PRICEFEED_MAX_CLOCK_SKEW": "0"}) as app:
        wait_until(lambda: app.prices(pairs) == expected, 30,
                   message=f"/prices to equal the capture's last trades {expected}")
        health = app.health()
        assert health["upstream"]["malformed"] == 0
        never_traded = set(pairs.split(",")) - set(expected)
        assert all(health["pairs"][pair]["price"] is None for pair in never_traded), "a price was invented"
