"""The rules of the public endpoint, one by one: client addresses, per-address limits, the private
health view, test-only switches, and settings that never echo their values."""
from __future__ import annotations

import ipaddress
import logging

import pytest

from pricefeed import ConfigError
from pricefeed.config import Config
from pricefeed.delivery.admission import AdmissionGate, StreamsPerAddress
from pricefeed.logs import RateLimitedLog, outside
from pricefeed.shown_urls import reduce_url
from pricefeed.web.policy.client_address import client_ip, client_key, is_direct_loopback
from tests.unit.test_admission import ManualClock
from tests.unit.test_http_surface import PREFIX, make_app

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def environ(peer: str, forwarded: str | None = None) -> dict:
    env = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        env["HTTP_X_FORWARDED_FOR"] = forwarded
    return env


# -- client address ---------------------------------------------------------------------

def test_x_forwarded_for_from_an_untrusted_peer_is_ignored():
    assert str(client_ip(environ("203.0.113.9", "1.1.1.1"), TRUSTED)) == "203.0.113.9"


def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client():
    # The client wrote "6.6.6.6" itself; our proxies appended what they saw.
    forwarded = "6.6.6.6, 198.51.100.7, 10.0.0.5"
    assert str(client_ip(environ("127.0.0.1", forwarded), TRUSTED)) == "198.51.100.7"


def test_an_unreadable_hop_stops_the_walk_at_the_last_hop_we_trust():
    assert str(client_ip(environ("127.0.0.1", "198.51.100.7, bogus"), TRUSTED)) == "127.0.0.1"


def test_over_a_unix_socket_the_local_proxy_is_believed():
    assert str(client_ip({"REMOTE_ADDR": "", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7"}, ())) == "198.51.100.7"
    assert client_key({"REMOTE_ADDR": ""}, ()) == "unknown"


def test_ipv6_clients_count_per_64():
    assert client_key(environ("2001:db8:1:2::7"), ()) == client_key(environ("2001:db8:1:2:ffff::1"), ())
    assert client_key(environ("2001:db8:1:2::7"), ()) != client_key(environ("2001:db8:1:3::7"), ())
    assert client_key(environ("::ffff:192.0.2.1"), ()) == "192.0.2.1"


def test_loopback_is_direct_only_when_it_is_not_a_proxy():
    assert is_direct_loopback(environ("127.0.0.1"), ())
    assert not is_direct_loopback(environ("127.0.0.1"), TRUSTED)             # nginx on this host
    assert not is_direct_loopback(environ("127.0.0.1", "203.0.113.9"), ())   # an undeclared proxy
    assert not is_direct_loopback(environ("192.0.2.1"), ())


# -- per-address limits -------------------------------------------------------------------

def test_one_address_gets_only_its_share_of_the_admission_burst():
    gate = AdmissionGate(rate=100, burst=10, max_wait=0.05, clock=ManualClock(), address_share=0.2)
    greedy = [gate.admit("198.51.100.7") for _ in range(8)]
    assert [a.wait for a in greedy[:2]] == [0, 0]                 # its share: 2 of the burst at once
    assert all(a.refused in (None, "address") for a in greedy)
    assert greedy[-1].refused == "address"
    assert gate.admit("192.0.2.1").wait == 0                      # another address still gets in at once


def test_a_waiting_client_that_leaves_gives_its_slot_back():
    clock = ManualClock()
    gate = AdmissionGate(rate=10, burst=1, max_wait=0.25, clock=clock)
    assert gate.admit("a").wait == 0
    assert gate.admit("b").wait == pytest.approx(0.1)
    assert gate.admit("c").wait == pytest.approx(0.2)
    assert gate.admit("d").refused == "gate"
    gate.cancel("c")                                              # c closed its tab while waiting
    assert gate.admit("d").wait == pytest.approx(0.2)             # ... and d takes its place
    assert gate.status()["cancelled"] == 1


def test_concurrent_streams_are_bounded_per_address_and_forgotten_when_closed():
    streams = StreamsPerAddress(limit=2)
    assert streams.acquire("a") and streams.acquire("a")
    assert not streams.acquire("a") and streams.acquire("b")
    streams.release("a")
    assert streams.acquire("a")
    for _ in range(2):
        streams.release("a")
    streams.release("b")
    assert streams.status()["addresses"] == 0


def test_the_per_address_stream_cap_answers_429_with_retry_after():
    app, feed = make_app(PRICEFEED_MAX_STREAMS_PER_IP=2)
    client = app.test_client()
    held = [client.get(PREFIX + "/stream", environ_base={"REMOTE_ADDR": "198.51.100.7"}, buffered=False)
            for _ in range(2)]
    refused = client.get(PREFIX + "/stream", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_streams"
    assert int(refused.headers["Retry-After"]) > 0
    other = client.get(PREFIX + "/stream", environ_base={"REMOTE_ADDR": "192.0.2.1"}, buffered=False)
    assert other.status_code == 200
    for response in (*held, other):
        response.close()
    assert feed.node.admission.streams.status()["addresses"] == 0


# -- the private health view ---------------------------------------------------------------

PRIVATE_FIELDS = {"worker", "leader", "upstream", "rest", "redis", "breakers", "clients", "config"}


def test_public_health_shows_status_mode_and_pair_ages_only():
    app, _ = make_app()
    body = app.test_client().get(PREFIX + "/health", environ_base={"REMOTE_ADDR": "192.0.2.1"}).get_json()
    assert set(body) == {"status", "mode", "reason", "pairs"}
    # Per pair: its age, the stale flag, its status (live|stale|halted|unlisted) and traded symbol.
    assert set(body["pairs"]["BTC/USD"]) == {"age_s", "stale", "status", "symbol"}
    assert body["pairs"]["BTC/USD"]["status"] == "stale" and body["reason"] is None   # no price yet


def test_with_no_token_only_a_direct_loopback_peer_sees_the_detail():
    app, _ = make_app(PRICEFEED_TRUSTED_PROXIES="127.0.0.1")
    client = app.test_client()
    assert set(client.get(PREFIX + "/health", environ_base={"REMOTE_ADDR": "::1"}).get_json()) >= PRIVATE_FIELDS
    via_nginx = client.get(PREFIX + "/health", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                           headers={"X-Forwarded-For": "127.0.0.1"}).get_json()
    assert set(via_nginx) == {"status", "mode", "reason", "pairs"}


def test_with_a_token_the_detail_needs_it_from_every_address():
    app, _ = make_app(PRICEFEED_ADMIN_TOKEN="t0ken-for-ops")
    client = app.test_client()
    for peer in ("127.0.0.1", "192.0.2.1"):
        assert set(client.get(PREFIX + "/health", environ_base={"REMOTE_ADDR": peer}).get_json()) == \
            {"status", "mode", "reason", "pairs"}
        assert set(client.get(PREFIX + "/health", environ_base={"REMOTE_ADDR": peer},
                              headers={"Authorization": "Bearer wrong"}).get_json()) == {"status", "mode", "reason", "pairs"}
        detailed = client.get(PREFIX + "/health", environ_base={"REMOTE_ADDR": peer},
                              headers={"Authorization": "Bearer t0ken-for-ops"}).get_json()
        assert set(detailed) >= PRIVATE_FIELDS
        assert "t0ken-for-ops" not in str(detailed)


def test_snapshots_name_no_worker_for_a_browser():
    app, _ = make_app()
    client = app.test_client()
    body = client.get(PREFIX + "/prices", environ_base={"REMOTE_ADDR": "192.0.2.1"}).get_json()
    assert "worker" not in body
    stream = client.get(PREFIX + "/stream", environ_base={"REMOTE_ADDR": "192.0.2.1"}, buffered=False)
    try:
        preamble = next(iter(stream.response))
    finally:
        stream.close()
    import socket
    assert b'"worker"' not in preamble and socket.gethostname().encode() not in preamble


def test_fault_injection_is_off_by_default_and_loopback_and_token_only_when_on():
    app, _ = make_app()
    assert app.test_client().post(PREFIX + "/_fault/block-hub?seconds=1").status_code == 404
    app, _ = make_app(PRICEFEED_FAULT_INJECTION=True, PRICEFEED_ADMIN_TOKEN="ops")
    client = app.test_client()
    assert client.post(PREFIX + "/_fault/block-hub?seconds=1&worker=other",
                       environ_base={"REMOTE_ADDR": "192.0.2.1"},
                       headers={"Authorization": "Bearer ops"}).status_code == 404
    assert client.post(PREFIX + "/_fault/block-hub?seconds=1&worker=other").status_code == 404
    # Loopback with the token reaches the switch (409: it is not aimed at this worker).
    assert client.post(PREFIX + "/_fault/block-hub?seconds=1&worker=other",
                       headers={"Authorization": "Bearer ops"}).status_code == 409


# -- settings and logs ---------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("PRICEFEED_REDIS_URL", "http://:hunter2@127.0.0.1:6379/0"),
    ("PRICEFEED_STALE_AFTER", "hunter2"),
    ("PRICEFEED_MAX_CLIENTS", "hunter2"),
    ("PRICEFEED_TRUSTED_PROXIES", "hunter2"),
    ("PRICEFEED_ALLOWED_ORIGINS", "hunter2"),
])
def test_an_invalid_setting_is_named_but_its_value_never_echoed(name, value):
    with pytest.raises(ConfigError) as caught:
        Config.load({}, environ={name: value})
    assert name in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url, shown", [
    ("redis://:hunter2@10.0.0.2:6379/0", "redis://10.0.0.2:6379/0"),
    ("redis://user:hunter2@10.0.0.2:6379/0?password=hunter2", "redis://10.0.0.2:6379/0"),
    ("rediss://10.0.0.2:6380?password=hunter2", "rediss://10.0.0.2:6380"),
    ("wss://stream.binance.com:9443/stream?streams=btcusdt@trade", "wss://stream.binance.com:9443"),
])
def test_urls_are_shown_as_scheme_host_port_and_db(url, shown):
    assert reduce_url(url) == shown


def test_a_redis_password_never_reaches_the_detailed_health():
    app, _ = make_app(PRICEFEED_REDIS_URL="redis://:hunter2@127.0.0.1:1/0?password=hunter2")
    body = app.test_client().get(PREFIX + "/health").get_data(as_text=True)
    assert "hunter2" not in body and "redis://127.0.0.1:1/0" in body


def test_outside_text_is_a_cut_repr_that_cannot_forge_a_line():
    text = outside("ok\nWARNING forged line" + "x" * 500)
    assert "\n" not in text and len(text) < 130


def test_repeated_warnings_are_rate_limited_with_a_count(caplog):
    clock = ManualClock()
    limited = RateLimitedLog(logging.getLogger("test.rate"), interval_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, "test.rate"):
        for _ in range(50):
            limited.warning("malformed", "malformed message skipped")
        clock.now += 11
        limited.warning("malformed", "malformed message skipped")
    assert len(caplog.records) == 2
    assert "49 more like this suppressed" in caplog.records[1].getMessage()
