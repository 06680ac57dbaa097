"""A real headless Chromium opens the dashboard and sees prices change on screen."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("PRICEFEED_CHROMIUM", "/usr/bin/chromium")
PAIRS = "BTC/USD,ETH/USD"


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: ./test.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                  "--no-first-run", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def test_dashboard_shows_live_prices_changing_and_the_simulated_banner(browser, tmp_path):
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as sim, \
            GunicornProcess(workers=1, env={"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS}) as app:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(app.url + "/")
        price_cell = page.locator('tr[data-pair="BTC/USD"] td.price')

        def shown_price():
            text = price_cell.inner_text().strip()
            return text if text and text != "—" else None

        first = wait_until(shown_price, 15, message="a BTC/USD price on screen")
        changed = wait_until(lambda: (shown_price() or first) != first and shown_price(), 15,
                             message="the BTC/USD price to change on screen")
        assert changed != first
        assert page.locator("#simulated-banner").is_visible()
        assert "SIMULATED" in page.locator("#simulated-banner").inner_text()
        assert page.locator("#mode-banner").get_attribute("data-mode") == "live"
        assert "simulated" in page.locator("#source-note").inner_text().lower()

        # What is on screen is the exchange's price, formatted but not altered.
        sim.market(paused=True)
        final = sim.prices()["BTCUSDT"]["price"]
        expected_digits = final.rstrip("0").rstrip(".").replace(".", "")

        def screen_matches():
            digits = (shown_price() or "").replace(",", "").replace(".", "").rstrip("0")
            return digits == expected_digits.rstrip("0")
        wait_until(screen_matches, 10, message=f"the screen to show the final price {final}")
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        assert not errors, errors
