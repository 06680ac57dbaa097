"""Without Redis, the workers of one host share one exchange connection (cluster/host_tier.py)."""
from __future__ import annotations

from tests.faults.test_fallback_chain import STREAM, converge, service, sim  # noqa: F401 - the fixture
from tests.support.deployment import all_live, instance_env, new_prefix
from tests.support.observe import mode_sequence
from tests.support.redis_server import RedisServer
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until


def test_a_host_without_redis_holds_one_exchange_connection_for_all_its_workers(sim):  # noqa: F811
    with RedisServer() as redis_server, \
            service(instance_env(sim, redis_server.url, new_prefix()), workers=3) as (app, clients):
        all_live([app])
        clients += [SSEClient(app.url + STREAM) for _ in range(12)]
        served_by = set()
        for client in clients:
            client.wait_for(lambda c: c.of("price"), 10, "a first tick")
        sim.reset_stats()
        redis_server.kill()
        for client in clients:
            client.wait_for(lambda c: "local" in mode_sequence(c), 20, "the local tier")
            mark = len(client.of("price"))
            client.wait_for(lambda c: len(c.of("price")) >= mark + 5, 15, "fresh ticks from the host's connection")
            served_by.add(client.of("price")[-1].required_id().split("-")[0])
        # The demoted leader kept its connection and shares it: no worker opened another.
        assert sim.stats()["max_concurrent"] == 1, sim.stats()
        assert served_by == {"0"}, "every client is served by the local tier"
        redis_server.restart()
        for client in clients:
            client.wait_for(lambda c: mode_sequence(c)[-1] == "live" and len(mode_sequence(c)) >= 3, 30,
                            "back to live")
        wait_until(lambda: sim.stats()["connections_open"] == 1, 20, message="one upstream connection")
        converge(sim, clients)
        assert all(not c.closed for c in clients)
