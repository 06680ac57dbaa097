"""docs/several-hosts.md, done: two instances ("hosts") on one Redis over TLS (rediss://), each with its
own ACL user limited to the deployment's keys and channels; one exchange connection for both, prices
on both, `flask pricefeed status` over rediss://, and no password in any log."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.tls_redis import ACL_COMMANDS, TlsRedisServer, acl_rule
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_give_the_acl_this_test_uses():
    page = (ROOT / "docs" / "several-hosts.md").read_text()
    assert ACL_COMMANDS in page


def test_two_hosts_share_one_tls_redis_with_their_own_acl_users():
    prefix = new_prefix()
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as sim, TlsRedisServer() as redis_server:
        urls = []
        for name in ("a", "b"):
            password = f"pw-{name}-{prefix}"
            redis_server.add_user(f"pricefeed-{name}", acl_rule(prefix, password))
            urls.append(redis_server.url(f"pricefeed-{name}", password))
        # The CA is private: OpenSSL's default verify path takes it from SSL_CERT_FILE.
        tls = {"SSL_CERT_FILE": redis_server.ca}
        with GunicornProcess(workers=2, env={**instance_env(sim, urls[0], prefix), **tls}) as host_a, \
                GunicornProcess(workers=2, env={**instance_env(sim, urls[1], prefix), **tls}) as host_b:
            all_live([host_a, host_b])
            wait_until(lambda: sim.stats()["connections_open"] == 1, 10, message="one exchange connection")
            for host in (host_a, host_b):
                stream = SSEClient(host.url + "/api/market-data/stream?pairs=BTC/USD")
                try:
                    stream.wait_for(lambda s: s.of("price"), 15, message=f"a price on {host.url}")
                finally:
                    stream.close()
            status = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "app", "pricefeed", "status", "--json"], cwd=ROOT,
                env={**{k: v for k, v in os.environ.items() if not k.startswith("PRICEFEED_")}, **tls,
                     "PRICEFEED_REDIS_URL": urls[1], "PRICEFEED_REDIS_PREFIX": prefix, "PRICEFEED_PAIRS": PAIRS},
                capture_output=True, text=True, timeout=30)
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["mode"] == "live"
            logs = host_a.output() + host_b.output()
        assert f"pw-a-{prefix}" not in logs and f"pw-b-{prefix}" not in logs
        assert "NOPERM" not in logs, logs[-3000:]
