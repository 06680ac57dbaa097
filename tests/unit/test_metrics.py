"""Metrics pieces that need no server: what the flusher counts, the bulk histogram, the master's
file bookkeeping (against prometheus_client's own), and who may scrape."""
from __future__ import annotations

import os

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.parser import text_string_to_metric_families

from pricefeed import PriceFeed
from pricefeed.delivery.flusher import Flusher
from pricefeed.delivery.hub import Hub
from pricefeed.web.metrics import process_files
from pricefeed.web.metrics.series import TICK_TO_WRITE_BUCKETS, observe_many
from tests.unit.test_hub import Wire, prices, tick


def test_a_paced_client_sent_only_the_latest_price_counts_the_ticks_it_was_spared():
    hub = Hub(["BTC/USD", "ETH/USD"], 10, 10.0, min_update_interval=1.0)
    wire = Wire(hub, ("BTC/USD",))
    for seq in range(1, 6):
        hub.publish(tick("BTC/USD", f"10{seq}.00", seq=seq))
    hub.publish(tick("ETH/USD", "5.00", seq=6))          # not its pair: not conflated for it
    flusher = Flusher(hub)
    flusher.flush(hub.take_batch(wire.client.slot), position=wire.client.slot)
    assert prices(wire.body()) == ["105.00"]
    assert hub.counters.events_written == 1
    assert hub.counters.conflated == 4


def test_a_client_that_keeps_up_is_sent_every_tick_and_nothing_counts_as_conflated():
    hub = Hub(["BTC/USD"], 10, 10.0)
    wire = Wire(hub, ("BTC/USD",))
    flusher = Flusher(hub)
    hub.publish(tick(seq=1, price="1.00"))
    flusher.flush(hub.take_batch())
    for seq in range(2, 5):
        hub.publish(tick(seq=seq, price=f"{seq}.00"))
    flusher.flush(hub.take_batch())
    assert prices(wire.body()) == ["1.00", "2.00", "3.00", "4.00"]
    assert (hub.counters.events_written, hub.counters.conflated) == (4, 0)


def test_a_client_stuck_past_the_walk_limit_still_has_its_conflation_counted():
    hub = Hub(["BTC/USD", "ETH/USD"], 10, 10.0, min_update_interval=1.0)
    wire = Wire(hub, ("BTC/USD",))
    for seq in range(1, 1001):    # far more than the flusher walks back before indexing
        hub.publish(tick("BTC/USD" if seq % 2 else "ETH/USD", f"{seq}.00", seq=seq))
    Flusher(hub).flush(hub.take_batch(wire.client.slot), wire.client.slot)
    assert prices(wire.body()) == ["999.00"]
    assert hub.counters.conflated == 499


def test_clients_stuck_since_different_moments_each_count_their_own_conflated_ticks():
    hub = Hub(["BTC/USD", "ETH/USD"], 10, 10.0)
    early = Wire(hub, ("BTC/USD",))
    for seq in range(1, 701):
        hub.publish(tick(seq=seq, price=f"{seq}.00"))
    late = Wire(hub, ("BTC/USD",))
    for seq in range(701, 1401):
        hub.publish(tick(seq=seq, price=f"{seq}.00"))
    hub.publish(tick("ETH/USD", "5.00", seq=1401))
    Flusher(hub).flush(hub.take_batch())
    assert prices(early.body()) == prices(late.body()) == ["1400.00"]
    assert hub.counters.conflated == 1399 + 699


def test_each_flush_records_its_duration_and_the_age_of_every_tick_it_wrote():
    import time
    hub = Hub(["BTC/USD"], 10, 10.0)
    Wire(hub, ("BTC/USD",))
    flusher = Flusher(hub)
    flusher.flush(hub.take_batch())                # the newcomer's first flush: steady from now on
    flusher.record.take()
    now_ms = int(time.time() * 1000)
    hub.publish(tick(seq=1, ts=now_ms - 3000))
    hub.publish(tick(seq=2, ts=now_ms - 2000))     # the steady client is sent both
    flusher.flush(hub.take_batch())
    flusher.flush(hub.take_batch())                # nothing new: a duration, no age
    durations, ages = flusher.record.take()
    assert len(durations) == 2 and all(0 <= d < 1 for d in durations)
    assert [round(age) for age in ages] == [2, 3]
    assert flusher.record.take() == ([], [])


def test_a_paced_flush_records_the_age_of_the_latest_price_only_the_others_were_never_written():
    import time
    hub = Hub(["BTC/USD"], 10, 10.0, min_update_interval=1.0)
    wire = Wire(hub, ("BTC/USD",))
    now_ms = int(time.time() * 1000)
    hub.publish(tick(seq=1, ts=now_ms - 3000))
    hub.publish(tick(seq=2, ts=now_ms - 2000))
    flusher = Flusher(hub)
    flusher.flush(hub.take_batch(wire.client.slot), position=wire.client.slot)
    assert [round(age) for age in flusher.record.take()[1]] == [2]


def test_observing_in_bulk_gives_the_same_histogram_as_observing_one_by_one():
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 59.0, 61.0, 1e9]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("h", "d", buckets=TICK_TO_WRITE_BUCKETS, registry=one)
    for value in values:
        by_one.observe(value)
    observe_many(Histogram("h", "d", buckets=TICK_TO_WRITE_BUCKETS, registry=bulk), values)

    def samples(registry):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in registry.collect() for s in family.samples if not s.name.endswith("_created")}
    assert samples(one) == samples(bulk)


def test_the_master_forgets_exactly_the_files_prometheus_client_would(tmp_path):
    kinds = ["counter", "histogram", "gauge_all", "gauge_liveall", "gauge_livesum", "gauge_livemax",
             "gauge_livemin", "gauge_livemostrecent", "gauge_max", "gauge_sum"]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder in (ours, theirs):
        folder.mkdir()
        for kind in kinds:
            for pid in (41, 4242):
                (folder / f"{kind}_{pid}.db").write_bytes(b"")
    process_files.mark_worker_dead(41, str(ours))
    prometheus_multiprocess.mark_process_dead(41, str(theirs))
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))
    assert "gauge_livesum_41.db" not in os.listdir(ours) and "counter_41.db" in os.listdir(ours)


def test_the_master_wipes_a_given_directory_and_makes_a_fresh_one_when_none_is_given(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"old")
    (given / "keep.txt").write_text("not a metrics file")
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(given)}
    assert process_files.prepare_multiprocess_dir(environ) == str(given)
    assert os.listdir(given) == ["keep.txt"]
    environ = {}
    made = process_files.prepare_multiprocess_dir(environ)
    try:
        assert environ["PROMETHEUS_MULTIPROC_DIR"] == made and os.listdir(made) == []
    finally:
        os.rmdir(made)


def _app(**config) -> Flask:
    app = Flask(__name__)
    app.config.update({"PRICEFEED_PAIRS": "BTC/USD,ETH/USD", **config})
    PriceFeed(app)
    return app


def test_metrics_answer_a_direct_loopback_peer_and_no_one_through_a_proxy():
    client = _app().test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    response = client.get("/api/market-data/metrics", environ_base=local)
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"pricefeed_clients", "pricefeed_mode", "pricefeed_flush_seconds"} <= names
    proxied = client.get("/api/market-data/metrics", environ_base=local, headers={"X-Forwarded-For": "1.2.3.4"})
    remote = client.get("/api/market-data/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    for refused in (proxied, remote):
        assert refused.status_code == 403 and refused.get_json()["error"] == "forbidden"


def test_with_an_admin_token_metrics_need_it_from_everyone():
    client = _app(PRICEFEED_ADMIN_TOKEN="s3cret").test_client()
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/api/market-data/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403
    assert client.get("/api/market-data/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/api/market-data/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("value", ["false", "0"])
def test_metrics_can_be_turned_off(value):
    client = _app(PRICEFEED_METRICS=value).test_client()
    assert client.get("/api/market-data/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
