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


def test_one_extension_instance_on_two_apps_keeps_a_node_for_each():
    feed = PriceFeed()
    first, second = Flask("first"), Flask("second")
    first.config["PRICEFEED_PAIRS"] = "BTC/USD"
    second.config.update({"PRICEFEED_PAIRS": "SOL/USD", "PRICEFEED_URL_PREFIX": "/b"})
    feed.init_app(first)
    feed.init_app(second)
    first_node, second_node = feed.state(first).node, feed.state(second).node
    assert first_node is not second_node
    assert [p.name for p in first_node.catalog.configured] == ["BTC/USD"]
    assert [p.name for p in second_node.catalog.configured] == ["SOL/USD"]
    with first.app_context():
        assert feed.node is first_node
    with second.app_context():
        assert feed.node is second_node and feed.config.endpoint.url_prefix == "/b"
    # Each app's routes serve its own node.
    assert first.test_client().get("/api/market-data/prices?pairs=SOL/USD").status_code == 400
    assert second.test_client().get("/b/prices?pairs=SOL/USD").status_code == 200
    # Outside an app context, with two apps, the instance cannot guess which one is meant.
    import pytest
    with pytest.raises(RuntimeError, match="serves 2 apps"):
        _ = feed.node


def test_a_second_registration_on_the_same_app_is_refused():
    import pytest
    app, feed = make_app()
    node = feed.node
    with pytest.raises(RuntimeError, match="A 'pricefeed' extension is already registered on this app"):
        feed.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        PriceFeed(app)
    assert feed.node is node and app.extensions["pricefeed"].extension is feed


def test_an_app_the_extension_is_not_registered_on_has_no_state_of_it():
    import pytest
    _, feed = make_app()
    other = Flask("other")
    with pytest.raises(RuntimeError, match="not registered on the app 'other'"):
        feed.state(other)
    with other.app_context(), pytest.raises(RuntimeError, match="not registered"):
        _ = feed.node


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
    body = response.iter_encoded()
    assert next(body).startswith(b"retry: ")          # the preamble ...
    client = next(iter(hub.subscribers.clients()))
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
