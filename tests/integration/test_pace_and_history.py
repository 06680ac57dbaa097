"""A pace per client (`interval`) and the price history, against real gunicorn (2 gevent workers,
one Redis deployment) and the simulator: the events each client receives, and the JSON of /history.
"""
from __future__ import annotations

import itertools
import json
import time

import pytest

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until
from tests.support.ws_client import WSClient

STREAM = "/api/market-data/stream"
HISTORY = "/api/market-data/history"


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=40) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def app(sim, redis_server):
    with GunicornProcess(workers=2, env=instance_env(sim, redis_server.url, new_prefix())) as server:
        all_live([server])
        yield server


@pytest.fixture(autouse=True)
def running_market(sim):
    sim.market(paused=False)
    yield
    sim.market(paused=False)


def final_prices(sim) -> dict[str, str]:
    by_symbol = {symbol: quote["price"] for symbol, quote in sim.prices().items()}
    return {pair: by_symbol[pair.split("/")[0] + "USDT"] for pair in PAIRS.split(",")}


def test_a_one_second_client_and_an_every_tick_client_each_get_their_pace_and_both_end_on_the_exchanges_prices(
        sim, app):
    slow = SSEClient(f"{app.url}{STREAM}?pairs={PAIRS}&interval=1000")
    fast = SSEClient(f"{app.url}{STREAM}?pairs={PAIRS}&interval=0")
    ws_slow = WSClient(app.url.replace("http", "ws") + f"/api/market-data/ws?pairs={PAIRS}&interval=1000")
    try:
        assert slow.status == fast.status == 200
        wait_until(lambda: len(slow.of("price")) >= 15 and len(ws_slow.of("price")) >= 15, 30,
                   message="15 prices on each one-second client")
        assert slow.of("snapshot")[0].json()["interval_ms"] == 1000
        assert fast.of("snapshot")[0].json()["interval_ms"] == 0
        assert ws_slow.of("snapshot")[0].data["interval_ms"] == 1000
        # The one-second clients: never two prices of one pair less than ~a second apart.
        for received in ([(e.json()["pair"], e.received_at) for e in slow.of("price")],
                         [(m.data["pair"], m.received_at) for m in ws_slow.of("price")]):
            for pair in PAIRS.split(","):
                times = [at for p, at in received if p == pair]
                gaps = [b - a for a, b in itertools.pairwise(times)]
                assert gaps and min(gaps) >= 0.9, (pair, gaps)
        # The every-tick client: every tick of the deployment, in order (it reads every pair).
        ids = [tuple(map(int, e.required_id().split("-"))) for e in fast.of("price")]
        assert len({epoch for epoch, _ in ids}) == 1
        seqs = [seq for _, seq in ids]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert len(seqs) > 3 * len(slow.of("price"))
        # Both converge on the exchange's final prices once the market pauses.
        sim.market(paused=True)
        final = final_prices(sim)
        wait_until(lambda: slow.latest_prices() == final and fast.latest_prices() == final
                   and ws_slow.latest_prices() == final, 10, message="every client on the final prices")
    finally:
        slow.close()
        fast.close()
        ws_slow.close()


def test_an_interval_below_the_deployments_floor_is_raised_to_it(sim, redis_server):
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_MIN_UPDATE_INTERVAL="0.5")
    with GunicornProcess(workers=2, env=env) as server:
        all_live([server])
        for query, in_force in (("&interval=0", 500), ("&interval=100", 500), ("", 500), ("&interval=2000", 2000),
                                ("&interval=1234", 1250)):
            client = SSEClient(f"{server.url}{STREAM}?pairs=BTC/USD{query}")
            try:
                snapshot = client.wait_for(lambda c: c.of("snapshot"), message="snapshot")[0]
                assert snapshot.json()["interval_ms"] == in_force, query
            finally:
                client.close()


@pytest.mark.parametrize("value", ["", "abc", "-1", "50", "99", "60001", "1e3", "100.5", "999999"])
def test_a_malformed_interval_gets_a_json_400(app, value):
    status, body = app.get_json(f"{STREAM}?pairs=BTC/USD&interval={value}")
    assert status == 400 and body["error"] == "malformed_interval" and body["detail"]


def test_history_serves_one_point_per_second_per_pair_ending_on_the_latest_price(sim, app):
    # Points per second accumulate from the ticks each worker sees; wait for a few seconds of them.
    def enough():
        status, body = app.get_json(f"{HISTORY}?pairs=BTC/USD,ETH/USD")
        return body if status == 200 and all(len(points) >= 3 for points in body["history"].values()) else None
    body = wait_until(enough, 20, message="three points per pair")
    assert set(body) == {"interval_ms", "window_ms", "server_time", "history"}
    assert body["interval_ms"] == 1000 and body["window_ms"] == 900_000
    assert abs(body["server_time"] - time.time() * 1000) < 5000
    assert list(body["history"]) == ["BTC/USD", "ETH/USD"]
    for points in body["history"].values():
        stamps = [ts for ts, _ in points]
        assert all(ts % 1000 == 0 for ts in stamps) and stamps == sorted(set(stamps))
        assert all(isinstance(price, str) and price[0].isdigit() for _, price in points)
        assert body["server_time"] - stamps[0] <= 900_000
    sim.market(paused=True)
    final = final_prices(sim)

    seen: list = []

    def last_points_final():
        status, later = app.get_json(f"{HISTORY}?pairs={PAIRS}")
        seen[:] = [{pair: later["history"][pair][-2:] for pair in final}]
        return all(later["history"][pair][-1][1] == final[pair] for pair in final)
    # Asked until both workers have answered with the final prices (requests land on either).
    try:
        wait_until(lambda: last_points_final() and last_points_final() and last_points_final(), 10,
                   message="the last point of each pair is the exchange's last price")
    except AssertionError as failure:
        raise AssertionError(f"{failure}; exchange's final prices {final}; last points seen {seen}") from None


@pytest.mark.parametrize("query, error", [("?pairs=", "malformed_pairs"), ("?pairs=NOPE/USD", "unknown_pair"),
                                          ("?pairs=BTC", "malformed_pair")])
def test_history_with_bad_pairs_gets_the_usual_400(app, query, error):
    status, body = app.get(f"{HISTORY}{query}")
    assert status == 400 and json.loads(body)["error"] == error
