"""The dashboard a person looks at: sparklines, 24 h colours, flashes, ages, banners, phone layout,
screen-reader announcements — in headless Chromium, under a strict Content-Security-Policy."""
from __future__ import annotations

import pytest

from tests.browser.conftest import PageErrors, deployment
from tests.support.server_features import has_endpoint
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
needs_history = pytest.mark.skipif(not has_endpoint("history"),
                                   reason="the server has no {prefix}/history")
PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def served():
    with deployment(rate=20, env={"PRICEFEED_STALE_AFTER": "2"}) as (sim, app):
        yield sim, app


def sparkline_points(page) -> dict[str, int]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll("tr[data-pair]")].map(
        (tr) => [tr.dataset.pair, Number(tr.querySelector("td.trend svg").dataset.points || 0)]))""")


def screenshot(page, sim, path) -> None:
    """A still picture for a person to look at: the market paused until the flashes have faded."""
    sim.market(paused=True)
    try:
        wait_until(lambda: page.locator("tr.flash-up, tr.flash-down").count() == 0, 5, message="flashes faded")
        page.screenshot(path=str(path), full_page=True)
    finally:
        sim.market(paused=False)
    print(f"\nscreenshot: {path}")


def open_dashboard(chromium, app, viewport):
    context = chromium.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    # Until the server has /history, the dashboard's one request for it is a 404 in the console.
    errors = PageErrors(page, allow=() if has_endpoint("history") else ("status of 404",))
    page.goto(app.url + "/")
    return context, page, errors


def test_sparklines_fill_from_live_prices_and_the_page_shows_what_a_person_needs(served, chromium, tmp_path):
    sim, app = served
    context, page, errors = open_dashboard(chromium, app, DESKTOP)
    try:
        if not has_endpoint("history"):
            wait_until(lambda: page.evaluate("document.body.dataset.history") == "unavailable", 10,
                       message="the dashboard noticing there is no /history")
        wait_until(lambda: all(n >= 3 for n in sparkline_points(page).values()), 15,
                   message="a sparkline of at least 3 points per pair")
        for pair in PAIRS:
            row = page.locator(f'tr[data-pair="{pair}"]')
            assert row.locator("td.trend svg path.sparkline-line").get_attribute("d").startswith("M")
            assert row.locator("td.change").get_attribute("data-direction") in ("up", "down", "flat")
            assert row.locator("td.change").inner_text().endswith("%")
            assert row.locator("td.age").inner_text().endswith((" s", " min"))
            assert "last" in row.locator("td.trend svg").get_attribute("aria-label")
        # Colour follows the 24 h change: the pill's colour differs between up and down.
        colours = page.evaluate("""() => [...document.querySelectorAll("td.change[data-direction]")].map(
            (td) => [td.dataset.direction, getComputedStyle(td).color])""")
        by_direction = {d: c for d, c in colours}
        if "up" in by_direction and "down" in by_direction:
            assert by_direction["up"] != by_direction["down"]
        # A price change flashes its row.
        page.evaluate("""() => { window.flashes = 0; new MutationObserver((records) => { for (const r of records)
            if (r.target.classList.contains("flash-up") || r.target.classList.contains("flash-down")) window.flashes++; })
            .observe(document.getElementById("price-rows"), {attributes: true, subtree: true, attributeFilter: ["class"]}); }""")
        wait_until(lambda: page.evaluate("window.flashes") > 0, 10, message="a row flashing on a price change")
        # The simulated feed is labelled, honestly and visibly.
        assert page.locator("#simulated-banner").is_visible()
        assert "SIMULATED" in page.locator("#simulated-banner").inner_text()
        assert page.title().startswith("[SIMULATED]")
        assert page.locator("#mode-banner").get_attribute("data-mode") == "live"
        screenshot(page, sim, tmp_path / "dashboard-desktop.png")
        assert not errors.unexpected(), errors.unexpected()
    finally:
        context.close()


def test_at_phone_width_each_pair_is_a_card_with_no_sideways_scrolling(served, chromium, tmp_path):
    sim, app = served
    context, page, errors = open_dashboard(chromium, app, PHONE)
    try:
        wait_until(lambda: all(n >= 2 for n in sparkline_points(page).values()), 15, message="sparklines on a phone")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.locator("table.prices thead").is_hidden()
        card = page.locator('tr[data-pair="BTC/USD"]').bounding_box()
        spark = page.locator('tr[data-pair="BTC/USD"] td.trend svg').bounding_box()
        assert card["width"] > PHONE["width"] * 0.85 and spark["width"] > card["width"] * 0.8
        assert page.locator("#simulated-banner").is_visible()
        screenshot(page, sim, tmp_path / "dashboard-phone.png")
        assert not errors.unexpected(), errors.unexpected()
    finally:
        context.close()


def test_price_changes_are_announced_politely_a_few_at_a_time(served, chromium):
    sim, app = served
    context, page, errors = open_dashboard(chromium, app, DESKTOP)
    try:
        region = page.locator("#price-announcer")
        assert region.get_attribute("aria-live") == "polite"
        wait_until(lambda: page.evaluate("window.pricefeedDashboard.feed.state") == "open", 10, message="the feed open")
        page.evaluate("""() => { window.priceUpdates = 0; window.pricefeedDashboard.feed.on("price", () => window.priceUpdates++); }""")
        wait_until(lambda: region.get_attribute("data-announcements") == "1", 15, message="a first announcement")
        text = region.inner_text()
        assert any(pair in text for pair in PAIRS) and "percent over 24 hours" in text
        wait_until(lambda: page.evaluate("window.priceUpdates") > 100, 15, message="a hundred price updates")
        announcements = int(region.get_attribute("data-announcements"))
        assert announcements <= 2, f"{announcements} announcements for {page.evaluate('window.priceUpdates')} updates"
        assert not errors.unexpected(), errors.unexpected()
    finally:
        context.close()


def test_ages_count_up_and_a_quiet_pair_turns_stale_on_screen(served, chromium):
    sim, app = served
    context, page, errors = open_dashboard(chromium, app, DESKTOP)
    try:
        wait_until(lambda: page.locator('tr[data-pair="BTC/USD"] td.age').inner_text().endswith(" s"), 10,
                   message="an age on screen")
        sim.market(paused=True)
        try:
            wait_until(lambda: page.locator('tr[data-pair="BTC/USD"]').get_attribute("class") and
                       "stale" in page.locator('tr[data-pair="BTC/USD"]').get_attribute("class"), 10,
                       message="BTC/USD marked stale")
            assert page.locator('tr[data-pair="BTC/USD"] .tag-stale').is_visible()
            age = float(page.locator('tr[data-pair="BTC/USD"] td.age').inner_text().split()[0])
            assert age >= 2
        finally:
            sim.market(paused=False)
        wait_until(lambda: "stale" not in (page.locator('tr[data-pair="BTC/USD"]').get_attribute("class") or ""), 10,
                   message="BTC/USD fresh again")
        assert not errors.unexpected(), errors.unexpected()
    finally:
        context.close()


@needs_history
def test_sparklines_are_drawn_from_history_as_the_page_loads(chromium):
    with deployment(rate=20) as (sim, app):
        wait_until(lambda: all(len(v) >= 5 for v in
                               app.get_json("/api/market-data/history?pairs=" + ",".join(PAIRS))[1]["history"].values()),
                   20, message="five seconds of history on the server")
        context, page, errors = open_dashboard(chromium, app, DESKTOP)
        try:
            wait_until(lambda: page.evaluate("document.body.dataset.history") == "loaded", 5, message="history loaded")
            points = sparkline_points(page)
            assert all(n >= 5 for n in points.values()), points
            assert page.evaluate("window.pricefeedDashboard.feed.state") in ("connecting", "open")
            assert not errors.unexpected(), errors.unexpected()
        finally:
            context.close()
