"""The client's parts, run in Chromium as the page runs them: the event-stream parser on awkward
chunk boundaries, full-jitter delays with Retry-After, sparkline series bounds, string decimals."""
from __future__ import annotations

import pytest

from tests.browser.conftest import PageErrors, deployment

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(chromium):
    with deployment(rate=1) as (sim, app):
        context = chromium.new_context()
        page = context.new_page()
        page.errors = PageErrors(page)
        page.goto(f"{app.url}/test-pages/module.html?pairs=BTC/USD")
        yield page
        assert not page.errors.unexpected(), page.errors.unexpected()
        context.close()


def test_the_event_stream_parser_reassembles_events_split_anywhere(page):
    stream = ("retry: 2500\r\n: ping\r\n\r\nevent: price\r\nid: 7-1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
              "event: status\nid: 7-2\ndata:{\"mode\":\"live\"}\n\n")
    for size in (1, 2, 3, 7, len(stream)):
        parsed = page.evaluate("""async ([text, size]) => {
            const {EventStreamParser} = await import("/pricefeed-static/pricefeed/sse-transport.js");
            const events = [], retries = [];
            const parser = new EventStreamParser((name, data, id) => events.push([name, data, id]),
                                                 (ms) => retries.push(ms), () => {});
            for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
            return {events, retries};
        }""", [stream, size])
        assert parsed == {"events": [["price", '{"a":\n1}', "7-1"], ["status", '{"mode":"live"}', "7-2"]],
                          "retries": [2500]}, size


def test_retry_after_is_a_floor_and_the_jitter_above_it_is_full_and_capped(page):
    delays = page.evaluate("""async () => {
        const {PriceFeed} = await import("/pricefeed-static/pricefeed.js");
        const feed = new PriceFeed({backoff: {initialMs: 1000, maxMs: 8000}});
        const out = [];
        for (let attempt = 0; attempt < 6; attempt++) {
            const round = [];
            for (let i = 0; i < 200; i++) { feed._attempt = attempt; round.push(feed._retryDelay(5000)); }
            out.push(round);
        }
        return out;
    }""")
    for attempt, round_ in enumerate(delays):
        ceiling = min(8000, 1000 * 2 ** attempt)
        assert all(5000 <= d <= 5000 + ceiling for d in round_), attempt
        # Full jitter: spread over the whole range, not bunched at its top.
        assert min(round_) < 5000 + ceiling * 0.2 and max(round_) > 5000 + ceiling * 0.8, attempt


def test_a_sparkline_series_keeps_one_point_per_interval_inside_its_window(page):
    before, series = page.evaluate("""async () => {
        const {PriceSeries} = await import("/pricefeed-static/dashboard/sparkline.js");
        const s = new PriceSeries(1000, 10000);
        s.seed([[1000, "1.0"], [2000, "2.0"], [9000, "bad"], [3000, "3.0"]], 1000, 10000);
        s.add(3500, "3.5", 3500);       // same second as 3000: replaces it
        s.add(4200, "4.2", 4200);
        const before = s.points.map((p) => p.slice());
        s.add(15000, "15", 15000);      // pushes 1000..4200 out of the 10 s window
        return [before, s.points];
    }""")
    assert before == [[1000, "1.0"], [2000, "2.0"], [3500, "3.5"], [4200, "4.2"]]
    assert series == [[15000, "15"]]


def test_string_decimals_format_and_compare_without_floats(page):
    result = page.evaluate("""async () => {
        const {Decimal} = await import("/pricefeed-static/pricefeed.js");
        return [Decimal.format("43250.12000000"), Decimal.format("0.00012300"),
                Decimal.compare("0.1", "0.10"), Decimal.compare("9007199254740993.1", "9007199254740993.01"),
                Decimal.formatPercent("-0.693"), Decimal.round("2.675", 2)];
    }""")
    assert result == ["43,250.12", "0.000123", 0, 1, "-0.69%", "2.68"]
