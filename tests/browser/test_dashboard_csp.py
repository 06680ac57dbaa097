"""The dashboard works under its Content-Security-Policy in a real headless Chromium, and the browser
reports no violation of it."""
from __future__ import annotations

import pytest

from tests.browser.test_dashboard import PAIRS, browser  # noqa: F401 - the shared Chromium fixture
from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

# Installed before any of the page's own code: collects every violation the browser reports.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_the_dashboard_shows_prices_under_its_csp_with_no_violation(browser):  # noqa: F811
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as sim, \
            GunicornProcess(workers=1, env={"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS}) as app:
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.add_init_script(RECORD_VIOLATIONS)
        response = page.goto(app.url + "/")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"

        price_cell = page.locator('tr[data-pair="BTC/USD"] td.price')
        wait_until(lambda: price_cell.inner_text().strip() not in ("", "—"), 15,
                   message="a BTC/USD price on screen under the CSP")
        assert page.locator("#mode-banner").get_attribute("data-mode") == "live"
        assert page.evaluate("window.__cspViolations") == []
        assert not [line for line in console if "Content Security Policy" in line or "Refused to" in line], console
