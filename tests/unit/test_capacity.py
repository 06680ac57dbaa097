"""Capacity by default: the worker raises the open-files limit to the hard limit, the numbers are
derived from it and the loaded settings, explicit ones win, and loading settings changes nothing."""
from __future__ import annotations

import json
import pathlib
import resource
import subprocess
import sys

import pytest

from pricefeed import capacity
from pricefeed.capacity import OpenFiles
from pricefeed.config import Config
from pricefeed.settings.delivery import DeliverySettings

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


def _settings(**values) -> DeliverySettings:
    return DeliverySettings(**values)


@needs_room_to_raise
def test_the_soft_limit_is_raised_to_the_hard_limit_and_the_numbers_follow():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    found = _with_soft_limit(1024, "import json, resource\nfrom pricefeed import capacity\n"
                                   "from pricefeed.settings.delivery import DeliverySettings\n"
                                   "c = capacity.derive(DeliverySettings(), capacity.raise_open_files_limit())\n"
                                   "print(json.dumps({'soft': resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
                                   " **c.as_dict()}))")
    assert found["soft"] == hard == found["open_files_soft"]
    assert found["worker_connections"] == hard - capacity.FILE_HEADROOM
    assert found["max_clients"] == found["worker_connections"] - found["health_reserve"] == \
        found["worker_connections"] - 100
    assert found["worker_connections_source"] == found["max_clients_source"] == "derived"


@needs_room_to_raise
def test_loading_the_settings_and_the_app_leaves_the_open_files_limit_alone():
    found = _with_soft_limit(1024, "import json, resource\nimport pricefeed.gunicorn\n"
                                   "from pricefeed.config import Config\nConfig.load()\n"
                                   "from flask import Flask\nfrom pricefeed import PriceFeed\n"
                                   "feed = PriceFeed(Flask(__name__))\n"
                                   "print(json.dumps({'soft': resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
                                   " 'capacity': feed.node.capacity}))")
    assert found["soft"] == 1024          # the worker raises its own limit (pricefeed/server/worker.py)
    assert found["capacity"]["open_files_soft"] == 1024
    assert found["capacity"]["worker_connections"] == 1024 - capacity.FILE_HEADROOM


def test_explicit_settings_win():
    limit = OpenFiles(1024, 4096)
    chosen = capacity.derive(_settings(worker_connections=3000, max_clients=2500), limit)
    assert (chosen.worker_connections, chosen.worker_connections_source) == (3000, "PRICEFEED_WORKER_CONNECTIONS")
    assert (chosen.max_clients, chosen.max_clients_source) == (2500, "PRICEFEED_MAX_CLIENTS")
    only_connections = capacity.derive(_settings(worker_connections=3000), limit)
    assert only_connections.max_clients == 3000 - 100


def test_gunicorns_own_worker_connections_bounds_the_derived_client_cap():
    in_force = capacity.derive(_settings(), OpenFiles(1024, None), worker_connections=500)
    assert in_force.worker_connections == 500 and in_force.worker_connections_source == "gunicorn config"
    assert in_force.max_clients == 400


def test_the_connection_reserve_is_the_one_reserve_and_an_explicit_cap_keeps_it():
    in_force = capacity.derive(_settings(worker_connections=50, connection_reserve=10, max_clients=900),
                               OpenFiles(1024, None))
    assert (in_force.max_clients, in_force.health_reserve) == (40, 10)
    derived = capacity.derive(_settings(worker_connections=2000, connection_reserve=300), OpenFiles(1024, None))
    assert derived.max_clients == 1700 and derived.health_reserve == 300


def test_small_limits_still_leave_room_for_health():
    assert capacity.worker_connections_for(64) == 32
    assert capacity.max_clients_for(32) == 16
    assert capacity.max_clients_for(1) == 1


def test_config_leaves_max_clients_to_the_derivation_and_keeps_an_explicit_one():
    assert Config.load({}, environ={}).delivery.max_clients is None
    assert Config.load({"PRICEFEED_MAX_CLIENTS": 7}, environ={}).delivery.max_clients == 7


def test_a_node_built_without_a_capacity_derives_its_cap():
    from pricefeed.node import Node
    config = Config.load({}, environ={})
    node = Node(config)           # no capacity given and PRICEFEED_MAX_CLIENTS unset
    assert node.hub.max_clients == capacity.derive(config.delivery, capacity.open_files_limit()).max_clients
    assert node.hub.full is False


def test_the_extension_puts_the_capacity_in_force_with_an_explicit_cap_winning():
    from flask import Flask

    from pricefeed.web.extension import PriceFeed
    feed = PriceFeed(Flask(__name__))
    expected = capacity.derive(feed.state().loaded_config.delivery, capacity.open_files_limit())
    assert feed.node.hub.max_clients == expected.max_clients == feed.node.capacity["max_clients"]
    assert feed.config.delivery.max_clients == expected.max_clients
    app = Flask(__name__)
    app.config["PRICEFEED_MAX_CLIENTS"] = 7
    explicit = PriceFeed(app)
    assert explicit.node.hub.max_clients == 7
    assert explicit.node.capacity["max_clients_source"] == "PRICEFEED_MAX_CLIENTS"


def test_a_worker_puts_its_own_capacity_in_force():
    from flask import Flask

    from pricefeed.web.extension import PriceFeed
    app = Flask(__name__)
    app.config["PRICEFEED_MAX_CLIENTS"] = 900
    feed = PriceFeed(app)
    in_force = capacity.derive(feed.state().loaded_config.delivery, OpenFiles(1024, 4096), worker_connections=500)
    feed.state().served_by(in_force, direct_writes=True)
    assert feed.node.hub.max_clients == 400 == feed.node.capacity["max_clients"] == feed.config.delivery.max_clients
    from pricefeed.web.http.health import health_report
    with app.app_context():
        assert health_report(feed.node)[0]["config"]["max_clients"] == 400
