"""The dashboard shows what the exchange lists: a pair traded under an alias names its symbol, a
halted market says HALTED and is never shown fresh, a pair the exchange does not list says so —
in headless Chromium, against the simulator's Binance.US-like catalogue."""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from tests.browser.conftest import PageErrors, deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
PAIRS = "BTC/USD,ETH/USD,XRP/USDT,SOL/EUR"
SYMBOLS = "BTCUSD,BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT"


def row_states(page) -> dict[str, dict]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll("tr[data-pair]")].map((tr) => [
        tr.dataset.pair, {status: tr.dataset.status || null, stale: tr.classList.contains("stale"),
                          price: tr.querySelector("td.price").innerText,
                          tradedAs: tr.querySelector(".traded-as").hidden ? null : tr.querySelector(".traded-as").innerText,
                          halted: !tr.querySelector(".tag-halted").hidden,
                          unlisted: !tr.querySelector(".tag-unlisted").hidden}]))""")


def test_aliased_halted_and_unlisted_pairs_are_shown_as_what_they_are(chromium, tmp_path):
    env = {"PRICEFEED_CATALOGUE_REFRESH": "5", "PRICEFEED_STALE_AFTER": "3"}
    with deployment(pairs=PAIRS, symbols=SYMBOLS, rate=20, env=env) as (sim, app):
        context = chromium.new_context(viewport={"width": 1100, "height": 480}, device_scale_factor=1)
        page = context.new_page()
        errors = PageErrors(page)
        try:
            page.goto(app.url + "/")
            try:
                wait_until(lambda: all(row_states(page)[p]["status"] == "live" for p in ("BTC/USD", "ETH/USD", "XRP/USDT")),
                           20, message="the three listed pairs live on the page")
            except AssertionError:
                raise AssertionError(f"rows: {row_states(page)}; health: {app.health()['pairs']}") from None
            sim.list_symbol("XRPUSDT", "HALT")
            wait_until(lambda: row_states(page)["XRP/USDT"]["status"] == "halted", 20,
                       message="the page to show XRP/USDT halted")
            rows = row_states(page)
            # Listed under its own name: BTCUSD itself, no alias shown.
            assert rows["BTC/USD"]["status"] == "live" and rows["BTC/USD"]["tradedAs"] is None
            # Not listed as ETH/USD: traded as ETHUSDT, and the page says so beside the name.
            assert rows["ETH/USD"]["tradedAs"] == "ETHUSDT" and rows["ETH/USD"]["status"] == "live"
            # Halted: its last price, never fresh.
            assert rows["XRP/USDT"]["halted"] and rows["XRP/USDT"]["stale"] and rows["XRP/USDT"]["price"] != "—"
            # Unlisted: no price, never live.
            assert rows["SOL/EUR"] == {"status": "unlisted", "stale": True, "price": "not listed", "tradedAs": None,
                                       "halted": False, "unlisted": True}
            sim.market(paused=True)
            # BTC/USD shows BTCUSD's own price (the simulator trades BTCUSD apart from BTCUSDT).
            btcusd = Decimal(sim.prices()["BTCUSD"]["price"])
            wait_until(lambda: Decimal(row_states(page)["BTC/USD"]["price"].replace(",", "")) == btcusd, 10,
                       message="the BTCUSD price on the BTC/USD row")
            wait_until(lambda: page.locator("tr.flash-up, tr.flash-down").count() == 0, 5, message="flashes faded")
            target = Path(os.environ.get("PRICEFEED_SCREENSHOT_DIR", tmp_path)) / "dashboard-listing.png"
            page.screenshot(path=str(target), full_page=True)
            print(f"\nscreenshot: {target}")
            assert errors.unexpected() == []
        finally:
            context.close()
