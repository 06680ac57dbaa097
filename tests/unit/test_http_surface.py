"""The public HTTP surface, through the real Flask views (Flask's test client; the node is not started).

Property-based: whatever a client sends under the prefix — any method, any path, any
query, any Origin, X-Forwarded-For, Last-Event-ID or header size — the answer is never a
5xx and an error always carries a JSON reason; and nothing a request opened stays open.
"""
from __future__ import annotations

import json
import string

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricefeed import PriceFeed
from tests.unit.test_hub import tick

PREFIX = "/api/market-data"
SETTINGS = {
    "PRICEFEED_PAIRS": "BTC/USD,ETH/USD",
    # Generous gates: the property is about answers, not about pacing.
    "PRICEFEED_NEW_STREAMS_BURST": 100_000, "PRICEFEED_NEW_STREAMS_PER_SECOND": 100_000,
    "PRICEFEED_NEW_STREAMS_SHARE_PER_IP": 1,
}


def make_app(**config) -> tuple[Flask, PriceFeed]:
    app = Flask(__name__)
    app.config.update({**SETTINGS, **config})

    @app.route("/host-page", methods=["GET"])
    def host_page():
        return "the host app's own page"

    @app.errorhandler(404)
    def host_not_found(exc):
        return "host 404", 404

    feed = PriceFeed(app)
    feed.node.hub.publish(tick(price="43250.12"))      # a price, so /health is not "down" (503)
    return app, feed


APP, FEED = make_app()

METHODS = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND",
                     "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT"]),
    st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=12))
SAFE_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                    max_size=60)
PATHS = st.one_of(
    st.sampled_from(["/stream", "/prices", "/health", "/_fault/block-hub", "", "/", "//stream", "/stream/",
                     "/STREAM", "/../health", "/%2e%2e/", "/prices//", "/ws"]),
    st.text(alphabet=string.ascii_letters + string.digits + "/._-%~:@!$&'()*+,;=", max_size=40).map(
        lambda tail: "/" + tail))
PAIR_LISTS = st.one_of(
    st.sampled_from(["BTC/USD", "btc/usd,ETH/USD", "", ",", "BTC", "BTC/USD,BTC/USD", "DOGE/USD", "BTC/USDT",
                     "BTC/USD," * 60, "../..", "BTC/USD\u0000"]),
    SAFE_TEXT)
EVENT_IDS = st.one_of(st.none(), st.sampled_from(["1-1", "0-0", "99999999999999999999-1", "1-", "-1", " 1-2 "]),
                      SAFE_TEXT)
ORIGINS = st.one_of(st.none(), st.sampled_from(["http://localhost", "https://evil.example", "null", "*",
                                                "http://localhost:80", "file://", "https://localhost"]), SAFE_TEXT)
FORWARDED = st.one_of(st.none(), st.sampled_from(["1.2.3.4", "1.2.3.4, 127.0.0.1", "::1", "garbage", ", ,"]),
                      SAFE_TEXT)


@st.composite
def requests(draw):
    query = {}
    if draw(st.booleans()):
        query["pairs"] = draw(PAIR_LISTS)
    if draw(st.booleans()):
        query["lastEventId"] = draw(SAFE_TEXT)
    if draw(st.booleans()):
        query[draw(st.text(alphabet=string.ascii_letters, min_size=1, max_size=8))] = draw(SAFE_TEXT)
    headers = {}
    for name, strategy in (("Last-Event-ID", EVENT_IDS), ("Origin", ORIGINS), ("X-Forwarded-For", FORWARDED)):
        value = draw(strategy)
        if value is not None:
            headers[name] = value
    if draw(st.booleans()):
        headers["X-Padding"] = "x" * draw(st.integers(0, 20_000))
    if draw(st.booleans()):
        headers["Access-Control-Request-Method"] = draw(st.sampled_from(["GET", "POST", "PUT"]))
    if draw(st.booleans()):
        headers["Authorization"] = draw(st.sampled_from(["Bearer x", "Bearer", "Basic abc", ""]))
    long_query = draw(st.sampled_from([0, 0, 0, 3000, 70_000]))
    if long_query:
        query["pad"] = "p" * long_query
    return draw(METHODS), PREFIX + draw(PATHS), query, headers, draw(st.sampled_from(["127.0.0.1", "10.1.2.3",
                                                                                      "::1", "2001:db8::7"]))


def _answer(method, path, query, headers, peer):
    response = APP.test_client().open(path, method=method, query_string=query, headers=headers,
                                      environ_base={"REMOTE_ADDR": peer}, buffered=False)
    try:
        status = response.status_code
        content_type = response.headers.get("Content-Type", "")
        body = None
        if content_type.startswith("application/json") and method != "HEAD":
            body = json.loads(b"".join(response.iter_encoded()))
        return status, content_type, body, response.headers
    finally:
        response.close()       # a stream is never read to its (infinite) end


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_anything_sent_under_the_prefix_gets_a_json_answer_and_never_a_5xx(request):
    method, path, query, headers, peer = request
    status, content_type, body, response_headers = _answer(method, path, query, headers, peer)
    assert status < 500, (status, body)
    assert response_headers["X-Content-Type-Options"] == "nosniff"
    assert "Referrer-Policy" in response_headers
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type)
        if method != "HEAD":
            assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    if status == 405:
        assert response_headers["Allow"]
    if status == 200 and content_type.startswith("text/event-stream") is False and method != "HEAD":
        assert content_type.startswith("application/json")
    # Nothing the request opened is left behind: no stream, no per-address count, no reservation.
    assert FEED.node.hub.status()["clients"] == 0
    assert FEED.node.admission.streams.status()["addresses"] == 0


def test_methods_that_flask_would_answer_in_html_are_json_405s_with_allow():
    client = APP.test_client()
    for method in ("TRACE", "PROPFIND", "POST", "DELETE", "BREW"):
        response = client.open(PREFIX + "/stream", method=method)
        assert response.status_code == 405
        assert response.get_json()["error"] == "method_not_allowed"
        assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_options_is_answered_in_json_with_allow():
    response = APP.test_client().options(PREFIX + "/prices")
    assert response.status_code == 200 and response.get_json() == {"allow": "GET, HEAD, OPTIONS"}
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_the_host_apps_own_404s_and_405s_stay_its_own():
    client = APP.test_client()
    assert client.get("/host-page").data == b"the host app's own page"
    assert client.get("/no-such-host-page").data == b"host 404"          # its handler, not ours
    not_allowed = client.post("/host-page")
    assert not_allowed.status_code == 405 and b"<title>405 Method Not Allowed" in not_allowed.data
    assert client.get(PREFIX + "-not-ours").data == b"host 404"          # a sibling of the prefix


def test_every_response_of_the_extension_has_nosniff_and_a_referrer_policy():
    client = APP.test_client()
    for path in (PREFIX + "/prices", PREFIX + "/health", PREFIX + "/nope", "/", "/pricefeed-static/pricefeed.js"):
        response = client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path


def test_the_dashboard_has_a_content_security_policy_without_inline_script():
    app, _ = make_app(PRICEFEED_FRAME_ANCESTORS="https://portal.example")
    policy = app.test_client().get("/").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "https://portal.example"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    html = app.test_client().get("/").data.decode()
    # The only <script> without src is the JSON settings block, which a browser never executes.
    scripts = [tag for tag in html.split("<script")[1:] if " src=" not in tag.split(">", 1)[0]]
    assert all('type="application/json"' in tag.split(">", 1)[0] for tag in scripts)
    assert " style=" not in html and " onload=" not in html and " onclick=" not in html


@pytest.mark.parametrize("configured, origin, allowed, allow_origin", [
    (None, "https://evil.example", False, None),
    (None, "http://localhost", True, None),                               # same origin: no CORS needed
    ("https://app.example", "https://app.example", True, "https://app.example"),
    ("https://app.example", "https://app.example.evil", False, None),     # exact match only
    ("https://app.example", "http://app.example", False, None),
    ("*", "https://anyone.example", True, "*"),
])
def test_origins_are_matched_exactly_and_vary_on_origin(configured, origin, allowed, allow_origin):
    app, _ = make_app(**({"PRICEFEED_ALLOWED_ORIGINS": configured} if configured else {}))
    client = app.test_client()
    for path in ("/prices", "/stream"):
        response = client.get(PREFIX + path, headers={"Origin": origin}, buffered=False)
        try:
            assert (response.status_code == 200) is allowed, (path, response.status_code)
            if not allowed:
                assert response.status_code == 403 and response.get_json()["error"] == "origin_not_allowed"
            assert response.headers.get("Access-Control-Allow-Origin") == allow_origin
            assert "Origin" in response.headers["Vary"]
        finally:
            response.close()
    preflight = client.options(PREFIX + "/prices", headers={"Origin": origin,
                                                            "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == (200 if allowed else 403)
    if allowed:
        assert "Last-Event-ID" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_request_without_origin_is_served():
    assert APP.test_client().get(PREFIX + "/prices").status_code == 200
