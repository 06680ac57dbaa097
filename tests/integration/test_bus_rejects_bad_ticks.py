"""Ticks read back from a real Redis are checked like the exchange's: a bad entry is skipped, never fatal."""
from __future__ import annotations

import json
import time

import pytest

from pricefeed.cluster.lease import Lease, LeaseTimings
from pricefeed.cluster.redis_bus import RedisBus, command_client
from pricefeed.ticks import PriceTick
from tests.support.redis_server import RedisServer

DAY_MS = 86_400_000


@pytest.fixture
def bus():
    with RedisServer() as server:
        client = command_client(server.url)
        bus = RedisBus(client, "t", Lease(client, "t", LeaseTimings(2, 0.5, 1.5)), max_clock_skew_ms=DAY_MS)
        yield server, bus


def wire(*fields) -> str:
    return "T" + json.dumps(list(fields))


def test_bad_entries_in_the_last_prices_hash_are_skipped_and_counted(bus):
    server, bus = bus
    now = int(time.time() * 1000)
    good = PriceTick("ETH/USD", "ETHUSDT", "2000.5", now, "binance", None, 1, 2)
    server.client.hset("t:last", mapping={
        "ETH/USD": "T" + good.to_json(),
        "BTC/USD": wire("BTC/USD", "BTCUSDT", "1.0", 10**399, "binance", None, 1, 1),
        "SOL/USD": wire("SOL/USD", "SOLUSDT", "-1", now, "binance", None, 1, 3),
        "XRP/USD": wire("XRP/USD", "XRPUSDTß", "1.0", now, "binance", None, 1, 4),
        "BNB/USD": "T[" * 50_000,
    })
    assert bus.last_prices() == [good]
    assert bus.rejected == {"time_out_of_window": 1, "price_shape": 1, "symbol_shape": 1, "tick_too_long": 1}


def test_a_message_whose_delivery_fails_costs_that_message_only(bus):
    _, bus = bus
    now = int(time.time() * 1000)
    delivered = []

    def deliver(tick: PriceTick) -> None:
        if tick.pair == "BTC/USD":
            raise OverflowError("int too large to convert to float")   # what the hub once raised
        delivered.append(tick.pair)
    bus._deliver = deliver
    for pair, symbol in (("BTC/USD", "BTCUSDT"), ("ETH/USD", "ETHUSDT")):
        bus._on_message(bus.channel.encode(), wire(pair, symbol, "1.5", now, "binance", None, 1, 1).encode())
    bus._on_message(bus.channel.encode(), wire("ETH/USD", "ETHUSDT", "1.5", 10**30, "binance", None, 1, 2).encode())
    assert delivered == ["ETH/USD"]
    assert bus.rejected == {"delivery_failed": 1, "time_out_of_window": 1}


def test_a_heartbeat_with_numbers_no_one_can_compute_with_is_skipped(bus):
    _, bus = bus
    heard: list[dict] = []
    bus.on_heartbeat = heard.append
    for body in ('{"epoch":1,"live":true,"data_age_s":1' + "0" * 400 + "}", '{"epoch":1,"data_age_s":NaN}',
                 '{"epoch":-1}', '[1]'):
        bus._on_message(bus.channel.encode(), ("H" + body).encode())
    bus._on_message(bus.channel.encode(), b'H{"epoch":1,"live":true,"data_age_s":0.25}')
    assert heard == [{"epoch": 1, "live": True, "data_age_s": 0.25}]
    assert sum(bus.rejected.values()) == 4
