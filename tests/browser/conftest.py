"""Shared fixtures of the browser tests: headless Chromium, the React bundle, a served deployment."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.react_vendor import build_react_vendor
from tests.support.simulator import SimulatorProcess

CHROMIUM = os.environ.get("PRICEFEED_CHROMIUM", "/usr/bin/chromium")
BROWSER_APP = "tests.support.browser_app:app"


@pytest.fixture(scope="module")
def chromium():
    # Per module: Playwright's sync API allows one instance at a time, and test_dashboard.py has its own.
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


@pytest.fixture(scope="session")
def react_vendor(tmp_path_factory) -> str:
    return str(build_react_vendor(tmp_path_factory.mktemp("react-vendor")))


@contextmanager
def deployment(pairs: str = "BTC/USD,ETH/USD,SOL/USD", symbols: str = "BTCUSDT,ETHUSDT,SOLUSDT", rate: float = 20,
               env: dict[str, str] | None = None, vendor: str | None = None) -> Iterator[tuple]:
    """The simulator and one gunicorn worker (so /health counts every stream) of the browser test app."""
    with SimulatorProcess(pairs=symbols, rate=rate) as sim:
        full_env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url, "PRICEFEED_PAIRS": pairs}
        if vendor:
            full_env["PF_TEST_VENDOR_DIR"] = vendor
        full_env.update(env or {})
        with GunicornProcess(workers=1, env=full_env, app=BROWSER_APP) as app:
            yield sim, app


class PageErrors:
    """Uncaught exceptions and console errors of one page (a CSP violation is a console error)."""

    def __init__(self, page, allow: tuple[str, ...] = ()):
        self.messages: list[str] = []
        self.allow = allow
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: self.messages.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(a in m for a in self.allow)]


def streams(app: GunicornProcess) -> dict:
    """This (single) worker's stream counters from the detailed /health (asked from loopback)."""
    return app.health()["clients"]
