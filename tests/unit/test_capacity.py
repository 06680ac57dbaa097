"""Capacity by default: the open-files limit raised to the hard limit, the numbers derived from it, explicit ones win."""
from __future__ import annotations

import json
import pathlib
import resource
import subprocess
import sys

import pytest

from pricefeed import capacity
from pricefeed.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _with_soft_limit(soft: int, code: str) -> dict:
    """Run `code` (which prints JSON) in a process started with a low soft open-files limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         preexec_fn=lower, env={"PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)


_HARD_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
needs_room_to_raise = pytest.mark.skipif(
    _HARD_LIMIT == resource.RLIM_INFINITY or _HARD_LIMIT <= 1024,
    reason=f"needs a finite hard open-files limit above 1024 (is {_HARD_LIMIT})")


@needs_room_to_raise
def test_the_soft_limit_is_raised_to_the_hard_limit_and_the_numbers_follow():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    found = _with_soft_limit(1024, "import json, resource\nfrom pricefeed.capacity import derive\n"
                                   "c = derive({})\nprint(json.dumps({'soft': resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
                                   " **c.as_dict()}))")
    assert found["soft"] == hard == found["open_files_soft"]
    assert found["worker_connections"] == hard - capacity.FILE_HEADROOM
    assert found["max_clients"] == found["worker_connections"] - capacity.HEALTH_RESERVE
    assert found["worker_connections_source"] == found["max_clients_source"] == "derived"


def test_the_gunicorn_config_derives_nothing_in_the_master():
    found = _with_soft_limit(1024, "import json, resource\nimport pricefeed.gunicorn\n"
                                   "print(json.dumps({'soft': resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))")
    assert found["soft"] == 1024          # the worker raises its own limit (pricefeed/server/worker.py)


def test_a_process_derives_its_capacity_once_and_the_first_callers_inputs_decide():
    found = _with_soft_limit(1024, "import json\nfrom pricefeed import capacity\n"
                                   "first = capacity.for_this_process({}, worker_connections=500)\n"
                                   "again = capacity.for_this_process({'PRICEFEED_WORKER_CONNECTIONS': '9'})\n"
                                   "print(json.dumps([first.as_dict(), again is first]))")
    assert found[0]["worker_connections"] == 500 and found[0]["max_clients"] == 400 and found[1] is True


def test_explicit_settings_win():
    chosen = capacity.derive({"PRICEFEED_WORKER_CONNECTIONS": "3000", "PRICEFEED_MAX_CLIENTS": "2500"})
    assert (chosen.worker_connections, chosen.worker_connections_source) == (3000, "PRICEFEED_WORKER_CONNECTIONS")
    assert (chosen.max_clients, chosen.max_clients_source) == (2500, "PRICEFEED_MAX_CLIENTS")
    only_connections = capacity.derive({"PRICEFEED_WORKER_CONNECTIONS": "3000"})
    assert only_connections.max_clients == 3000 - capacity.HEALTH_RESERVE


def test_gunicorns_own_worker_connections_bounds_the_derived_client_cap():
    in_force = capacity.derive({}, worker_connections=500)
    assert in_force.worker_connections == 500 and in_force.worker_connections_source == "gunicorn config"
    assert in_force.max_clients == 400


def test_small_limits_still_leave_room_for_health():
    assert capacity.worker_connections_for(64) == 32
    assert capacity.max_clients_for(32) == 16
    assert capacity.max_clients_for(1) == 1


def test_a_malformed_explicit_value_names_the_variable():
    with pytest.raises(ValueError, match="PRICEFEED_WORKER_CONNECTIONS"):
        capacity.derive({"PRICEFEED_WORKER_CONNECTIONS": "lots"})


def test_config_leaves_max_clients_to_the_derivation_and_keeps_an_explicit_one():
    assert Config.load({}, environ={}).max_clients is None
    assert Config.load({"PRICEFEED_MAX_CLIENTS": 7}, environ={}).max_clients == 7


def test_the_extension_puts_this_processs_capacity_in_force_with_an_explicit_cap_winning():
    from flask import Flask

    from pricefeed.web.extension import PriceFeed
    in_force = capacity.for_this_process()
    feed = PriceFeed(Flask(__name__))
    assert feed.node.hub.max_clients == in_force.max_clients == feed.node.capacity["max_clients"]
    app = Flask(__name__)
    app.config["PRICEFEED_MAX_CLIENTS"] = 7
    explicit = PriceFeed(app)
    assert explicit.node.hub.max_clients == 7
    assert explicit.node.capacity["max_clients_source"] == "PRICEFEED_MAX_CLIENTS"
