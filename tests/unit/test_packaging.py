"""The package as a host app sees it: what pyproject ships, what the gunicorn master imports, how hooks compose."""
from __future__ import annotations

import inspect
import json
import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests.support.wheel import build_wheel

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("gevent", "flask", "werkzeug", "redis", "ssl", "websocket", "pybreaker", "pricefeed.node",
         "pricefeed.web.http.api", "pythonjsonlogger")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_in_the_wheel():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "pricefeed").rglob("__init__.py")}
    assert on_disk <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_the_wheel_marks_the_package_as_typed(tmp_path):
    # PEP 561: without py.typed a host app's mypy ignores pricefeed's annotations.
    with zipfile.ZipFile(build_wheel(tmp_path)) as archive:
        assert "pricefeed/py.typed" in archive.namelist()


def test_the_templates_and_static_files_are_mapped_into_the_package():
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"pricefeed._assets.templates": "templates",
                                         "pricefeed._assets.static": "static"}
    assert {"pricefeed._assets.templates", "pricefeed._assets.static"} <= set(setuptools["packages"])


def test_dependencies_are_lower_bounds_on_the_pinned_set():
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.strip().lower()] = version.strip()
    for requirement in _pyproject()["project"]["dependencies"]:
        name, _, bound = requirement.partition(">=")
        assert bound, f"{requirement}: a library dependency is a lower bound"
        assert name.strip().lower() in pinned, f"{name} is not pinned in requirements.txt"


def _imported_after(code: str) -> list[str]:
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_gunicorn_master_imports_nothing_heavy_before_the_workers_patch():
    assert _imported_after("from pricefeed.gunicorn import *") == []
    assert _imported_after("exec(open('gunicorn.conf.py').read())") == []
    # Loading the worker class, as the master does, imports what loading gunicorn's own gevent
    # worker imports (gevent, ssl), and none of the app's libraries.
    load = "from gunicorn.util import load_class\nload_class({!r})"
    assert _imported_after(load.format("pricefeed.server.worker.Worker")) == _imported_after(
        load.format("gevent")) == ["gevent", "ssl"]


def test_child_exit_runs_in_the_master_without_importing_the_app():
    code = ("import types\nfrom pricefeed.gunicorn import child_exit\n"
            "child_exit(types.SimpleNamespace(), types.SimpleNamespace(pid=1, log=None))")
    assert _imported_after(code) == []


def test_the_one_line_exports_the_worker_class_and_every_hook_with_gunicorns_arity():
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.workers.ggevent import GeventWorker

    import pricefeed.gunicorn as one_line
    settings = GunicornConfig()
    for name in one_line.__all__:
        settings.set(name, getattr(one_line, name))   # gunicorn validates type and arity
    assert settings.worker_class is one_line.Worker and issubclass(one_line.Worker, GeventWorker)
    # The master's duties only: the worker starts and stops the feed itself.
    assert not {"post_worker_init", "worker_int", "worker_abort", "worker_exit"} & set(one_line.__all__)
    # Capacity is the worker's: the master leaves gunicorn's worker_connections as the host sets it.
    assert "worker_connections" not in one_line.__all__


def test_the_supported_gunicorn_versions_are_stated_and_include_the_pinned_one():
    from packaging.requirements import Requirement

    from pricefeed.server.worker import SUPPORTED_GUNICORN
    (declared,) = [Requirement(r) for r in _pyproject()["project"]["dependencies"] if r.startswith("gunicorn")]
    pinned = (ROOT / "requirements.txt").read_text().split("gunicorn==", 1)[1].split()[0]
    assert declared.specifier.contains(pinned)
    (low, high) = SUPPORTED_GUNICORN
    assert set(str(declared.specifier).split(",")) == {f">={low[0]}", f"<{high[0]}"}


def test_a_composed_hook_runs_both_and_keeps_the_arity():
    from gunicorn.config import Config as GunicornConfig

    from pricefeed.gunicorn import compose
    calls = []

    def ours(server, worker):
        calls.append(("ours", worker))

    def theirs(server, worker):
        calls.append(("theirs", worker))
    composed = compose(ours, theirs)
    assert len(inspect.signature(composed).parameters) == 2
    GunicornConfig().set("worker_exit", composed)
    composed(None, "w")
    assert calls == [("ours", "w"), ("theirs", "w")]
    with pytest.raises(ValueError):
        compose()


def test_the_worker_finds_the_apps_state_under_the_extensions_key():
    from flask import Flask

    from pricefeed.server import worker
    from pricefeed.web.extension import PriceFeed, PriceFeedState
    app = Flask(__name__)
    PriceFeed(app)
    assert isinstance(app.extensions[worker.EXTENSION_KEY], PriceFeedState)


def test_a_checkout_finds_its_templates_and_static_files_beside_the_package():
    from pricefeed.web.http.assets import asset_folder
    assert pathlib.Path(asset_folder("templates"), "dashboard.html").is_file()
    assert pathlib.Path(asset_folder("static"), "pricefeed.js").is_file()
    with pytest.raises(ValueError):
        asset_folder("secrets")
