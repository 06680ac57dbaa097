"""usePriceStream with React 19 from the npm registry, in StrictMode, in headless Chromium."""
from __future__ import annotations

import pytest

from tests.browser.conftest import PageErrors, deployment, streams
from tests.support.server_features import has_endpoint
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser


def shown(page) -> dict[str, dict]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll("p.price")].map(
        (p) => [p.dataset.id, {pair: p.dataset.pair, raw: p.dataset.raw, text: p.textContent,
                               connection: p.dataset.connection, error: p.dataset.error}]))""")


needs_ws = pytest.mark.skipif(not has_endpoint("ws"), reason="the server has no {prefix}/ws")


@pytest.mark.parametrize("transport", ["sse", pytest.param("ws", marks=needs_ws)])
def test_two_components_on_one_pair_in_strict_mode_share_one_stream(chromium, react_vendor, transport):
    with deployment(vendor=react_vendor) as (sim, app):
        context = chromium.new_context()
        page = context.new_page()
        errors = PageErrors(page)
        page.goto(f"{app.url}/test-pages/react.html?transport={transport}")
        def both_showing() -> dict[str, dict] | None:
            s = shown(page)
            return s if len(s) == 2 and all(v["raw"] for v in s.values()) else None
        both = wait_until(both_showing, 15, message="both components showing a BTC/USD price")
        assert all(v["connection"] == "open" for v in both.values())
        assert page.evaluate("window.renders") >= 4, "StrictMode renders every component twice"
        counters = streams(app)
        assert counters["clients"] == 1
        assert counters["clients_total"] == 1, "StrictMode's double mount must not open a second stream"

        # The text is the exchange's string, formatted, never a float's rendering.
        sim.market(paused=True)
        try:
            final = app.prices("BTC/USD")["BTC/USD"]
            wait_until(lambda: all(v["raw"] == final for v in shown(page).values()), 10,
                       message=f"both components showing {final}")
            digits = shown(page)["a"]["text"].split(" ", 1)[1].replace(",", "").replace(".", "")
            assert digits.rstrip("0") == final.replace(".", "").rstrip("0")
        finally:
            sim.market(paused=False)

        # A component on another pair joins the same page-wide connection: a live subscribe over
        # WebSocket, one request resuming from Last-Event-ID over SSE.
        opened = 1 if transport == "ws" else 2
        page.evaluate("window.show({c: true})")
        wait_until(lambda: shown(page).get("c", {}).get("raw"), 10, message="an ETH/USD component with a price")
        wait_until(lambda: streams(app)["clients"] == 1, 10, message="still one stream")
        assert streams(app)["clients_total"] == opened
        assert page.get_attribute('p[data-id="c"]', "data-transport") == transport

        # Unmounting one of two BTC/USD users keeps the stream; unmounting all closes it.
        page.evaluate("window.show({a: false})")
        wait_until(lambda: set(shown(page)) == {"b", "c"}, 5, message="component a gone")
        page.evaluate("window.show({b: false, c: false})")
        wait_until(lambda: streams(app)["clients"] == 0, 10, message="the stream closed after the last user")
        assert streams(app)["clients_total"] == opened
        assert not errors.unexpected(), errors.unexpected()
        context.close()
