"""The service's log under gunicorn: with PRICEFEED_LOG_FORMAT=json every line — gunicorn's own, the access
log and the app's — is one JSON object, and a Redis password (ACL user) never shows."""
from __future__ import annotations

import json

from tests.support.deployment import PAIRS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"


def test_every_line_is_json_under_gunicorn_and_no_secret_is_logged():
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as sim, RedisServer() as redis_server:
        # An ACL user of its own, as docs/several-hosts.md sets up.
        redis_server.client.acl_setuser("pricefeed-app", enabled=True, passwords=["+s3cret-pw"], keys=["*"],
                                        channels=["*"], commands=["+@all"])
        url = redis_server.url.replace("redis://", "redis://pricefeed-app:s3cret-pw@")
        env = instance_env(sim, url, new_prefix(), PRICEFEED_LOG_FORMAT="json", PRICEFEED_ACCESS_LOG="-",
                           PRICEFEED_LOG_LEVEL="INFO")
        with GunicornProcess(workers=2, env=env) as server:
            all_live([server])
            # Shown as scheme://host:port/db only: no user, no password (the public-endpoint rule).
            assert server.health()["config"]["redis_url"] == redis_server.url
            assert server.get("/api/market-data/prices?pairs=NOPE/USD")[0] == 400
            stream = SSEClient(server.url + "/api/market-data/stream?pairs=" + PAIRS)
            try:
                stream.wait_for(lambda s: s.of("price"), 15, message="a price")
            finally:
                stream.close()
            server.stop()
            wait_until(lambda: "Shutting down" in server.output(), 10, message="gunicorn's shutdown line")
            output = server.output()
    lines = [line for line in output.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- log ---\n{output}") from None
    loggers = {record["logger"] for record in records}
    assert {"gunicorn.error", "gunicorn.access", "pricefeed.node"} <= loggers, loggers
    assert all({"ts", "level", "logger", "pid", "msg"} <= set(record) for record in records)
    assert any("Booting worker" in record["msg"] for record in records)
    assert any("/api/market-data/prices" in record["msg"] and record["logger"] == "gunicorn.access"
               for record in records)
    assert "s3cret-pw" not in output
