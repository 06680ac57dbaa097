"""The HTTP contract's edges through the real Flask views (Flask's test client; nothing started)."""
from __future__ import annotations

from flask import Flask

from pricefeed import PriceFeed


def make_app(**config) -> tuple[Flask, PriceFeed]:
    app = Flask(__name__)
    app.config.update({"PRICEFEED_PAIRS": "BTC/USD,ETH/USD", **config})
    feed = PriceFeed(app)
    return app, feed


def test_a_worker_that_is_shutting_down_answers_a_stream_with_its_farewell_retry_and_ends_it():
    """What its open streams are told: come back after `retry:` (a 503 would end an EventSource)."""
    app, feed = make_app()
    feed.node.stop()
    response = app.test_client().get("/api/market-data/stream?pairs=BTC/USD")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    retry_ms = int(response.get_data(as_text=True).removeprefix("retry: ").strip())
    restart = feed.node.config.restart
    assert restart.restart_retry_ms <= retry_ms <= restart.restart_retry_ms + restart.restart_retry_jitter_ms


def test_two_apps_in_one_process_do_not_share_state():
    first, first_feed = make_app(PRICEFEED_URL_PREFIX="/a")
    second, second_feed = make_app(PRICEFEED_URL_PREFIX="/b", PRICEFEED_PAIRS="SOL/USD")
    assert first_feed.node is not second_feed.node
    assert first.test_client().get("/a/prices?pairs=SOL/USD").status_code == 400
    assert second.test_client().get("/b/prices?pairs=SOL/USD").status_code == 200


def test_an_invalid_setting_stops_start_up_naming_the_variable():
    import pytest

    from pricefeed import ConfigError
    with pytest.raises(ConfigError, match="PRICEFEED_STALE_AFTER"):
        make_app(PRICEFEED_STALE_AFTER="soon")


def test_the_dashboard_can_be_turned_off():
    app, _ = make_app(PRICEFEED_DASHBOARD=False)
    assert app.test_client().get("/").status_code == 404


def test_a_full_worker_refuses_before_taking_an_admission_slot():
    app, feed = make_app(PRICEFEED_MAX_CLIENTS=1)
    feed.node.hub.connect(("BTC/USD",))
    response = app.test_client().get("/api/market-data/stream?pairs=BTC/USD")
    assert response.status_code == 503 and response.get_json()["error"] == "at_capacity"
    assert int(response.headers["Retry-After"]) >= 5
    assert feed.node.admission.status()["admitted"] == 0


def test_a_stream_outside_gunicorn_gets_its_chunks_through_wsgi():
    app, feed = make_app()
    hub = feed.node.hub
    response = app.test_client().get("/api/market-data/stream?pairs=BTC/USD", buffered=False)
    body = iter(response.response)
    assert next(body).startswith(b"retry: ")          # the preamble ...
    client = next(iter(hub._clients))
    assert not client.direct                           # ... and no socket to write to directly
    import gevent

    from pricefeed.delivery.flusher import Flusher
    from tests.unit.test_hub import tick
    reader = gevent.spawn(next, body)                 # the server asks for the next chunk ...
    gevent.sleep(0)                                   # ... so the client is ready and waits
    hub.publish(tick(price="42.00"))
    Flusher(hub).flush(hub.take_batch())
    assert b'"price":"42.00"' in reader.get(timeout=2)
    response.close()
    assert hub.status()["clients"] == 0
