"""pricefeed installed as a wheel into a fresh virtualenv, embedded in an existing app (examples/shop).

Nothing from the checkout is on sys.path: the wheel is built from a clean copy of the
sources, installed with the pinned dependencies into its own virtualenv, and the example
runs from a temporary directory under that virtualenv's gunicorn. The shop's own route,
its page using the browser client (served from inside the wheel), a stream and the
dashboard must all answer. The virtualenv is cached by the wheel's content (its RECORD)
and the pins, so a second run in the same session (or a later one) reuses it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import free_port, wait_until
from tests.support.wheel import build_wheel

ROOT = Path(__file__).resolve().parents[2]
VENV_CACHE = Path(tempfile.gettempdir()) / "pricefeed-wheel-venvs"
PAIRS = "BTC/USD,ETH/USD"
CHROMIUM = os.environ.get("PRICEFEED_CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.slow


def _wheel_key(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        record = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
        content = archive.read(record)
    pins = (ROOT / "requirements.txt").read_bytes()
    return hashlib.sha256(content + pins + sys.version.encode()).hexdigest()[:16]


def venv_with(wheel: Path) -> Path:
    """A virtualenv with `wheel` and the pinned dependencies, reused while the wheel's content is the same."""
    VENV_CACHE.mkdir(exist_ok=True)
    venv = VENV_CACHE / _wheel_key(wheel)
    with open(VENV_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "requirements.txt"),
                            str(wheel)], check=True, capture_output=True, text=True)
            (venv / ".complete").write_text(wheel.name)
            _prune(keep=venv)
    return venv


def _prune(keep: Path, older_than_s: float = 3600) -> None:
    """Other wheels' virtualenvs untouched for an hour: gone (each is ~100 MB)."""
    now = time.time()
    for other in VENV_CACHE.iterdir():
        if other.is_dir() and other != keep and now - other.stat().st_mtime > older_than_s:
            shutil.rmtree(other, ignore_errors=True)


def test_an_editable_install_finds_the_assets_in_the_source_tree(tmp_path):
    wheel_dir = tmp_path / "w"
    wheel_dir.mkdir()
    build_wheel(wheel_dir)          # leaves the clean copy of the sources in w/source
    source = wheel_dir / "source"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-e", str(source)], check=True,
                   capture_output=True, text=True)
    probe = ("from pricefeed.web.http.assets import asset_folder; import pricefeed; "
             "print(pricefeed.__file__); print(asset_folder('templates')); print(asset_folder('static'))")
    module, templates, static = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
                                               env=_clean_env(), capture_output=True, text=True,
                                               check=True).stdout.split()
    assert module == str(source / "pricefeed" / "__init__.py")
    assert (templates, static) == (str(source / "templates"), str(source / "static"))


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(out)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"pricefeed/_assets/templates/dashboard.html", "pricefeed/_assets/static/pricefeed.js",
            "pricefeed/gunicorn.py", "pricefeed/server/worker.py", "pricefeed/web/cli/commands.py",
            "pricefeed/py.typed"} <= names
    return venv_with(wheel)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory):
    shop = tmp_path_factory.mktemp("run") / "shop"
    shutil.copytree(ROOT / "examples" / "shop", shop, ignore=shutil.ignore_patterns("__pycache__"))
    return shop


class Shop:
    """examples/shop under the wheel's gunicorn, from its own directory."""

    def __init__(self, venv: Path, directory: Path, sim: SimulatorProcess):
        self.directory = directory
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(directory / "gunicorn.log", "w")
        env = _clean_env(SHOP_BIND=f"127.0.0.1:{port}", PRICEFEED_UPSTREAM_URL=sim.ws_url,
                         PRICEFEED_REST_URL=sim.http_url, PRICEFEED_PAIRS=PAIRS)
        self.proc = subprocess.Popen([str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "shop:app"],
                                     cwd=directory, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return (self.directory / "gunicorn.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self._log.close()


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def shop(installed, shop_dir, sim):
    running = Shop(installed, shop_dir, sim)

    # Started by pricefeed's worker at its start, before any request: the exchange sees the
    # connection. The shop's own post_worker_init (which calls nothing of pricefeed's) ran too.
    def started() -> bool:
        if running.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{running.output()}")
        return "shop: worker" in running.output() and sim.stats()["connections_open"] >= 1
    try:
        wait_until(started, 30, message="the shop's worker and its exchange connection")
        yield running
    finally:
        running.stop()
    # The shop's own worker_exit ran as the worker left.
    assert "leaving" in running.output(), running.output()


def _clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PRICEFEED_", "PYTHON", "FLASK_", "VIRTUAL_ENV"))}
    env.update(settings, PYTHONUNBUFFERED="1")
    return env


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, shop_dir):
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import pricefeed; print(pricefeed.__file__)"],
                           cwd=shop_dir, env=_clean_env(), capture_output=True, text=True, check=True).stdout
    assert where.strip().startswith(str(installed)) and str(ROOT) not in where


def test_the_example_app_serves_its_own_route_a_stream_and_the_dashboard_from_the_wheel(shop):
    url = shop.url
    status, body = _get(url + "/orders")
    assert status == 200 and json.loads(body)["shop"] == "Corner Shop"

    status, page = _get(url + "/shop")
    assert status == 200 and b"<h1>Corner Shop</h1>" in page
    assert b'src="/pricefeed-static/pricefeed.js"' in page
    status, client = _get(url + "/pricefeed-static/pricefeed.js")
    assert status == 200 and client == (ROOT / "static" / "pricefeed.js").read_bytes()

    stream = SSEClient(url + "/api/market-data/stream?pairs=BTC/USD")
    try:
        assert stream.status == 200
        stream.wait_for(lambda s: s.of("price"), 20, message="a price event from the wheel's stream")
        assert stream.of("price")[-1].json()["pair"] == "BTC/USD"
    finally:
        stream.close()

    status, dashboard = _get(url + "/dashboard")
    assert status == 200 and b"pricefeed" in dashboard

    health = json.loads(_get(url + "/api/market-data/health")[1])
    assert health["clients"]["direct_writes"] is True and health["capacity"]["max_clients"] > 0


@pytest.mark.browser
def test_the_shops_own_page_shows_live_prices_in_chromium(shop):
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: ./test.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(shop.url + "/shop")
            cell = page.locator('tr[data-pair="BTC/USD"] td.price')

            def shown() -> str | None:
                text = cell.inner_text().strip()
                return text if text and text != "…" else None
            first = wait_until(shown, 20, message="a BTC/USD price on the shop's page")
            wait_until(lambda: (shown() or first) != first, 20, message="the price to change on the shop's page")
            assert not errors, errors
        finally:
            browser.close()
