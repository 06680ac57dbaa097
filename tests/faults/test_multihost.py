"""Faults between hosts: namespaced hosts for the exchange, Redis (master, replica, three sentinels),
two app instances (2 workers each) and the browsers, with real partitions between them.

One topology for the module, healed between faults. Each fault asserts what its rule in
docs/operations-ha.md promises: connections the exchange saw, fencing at every client (no tick
of an older epoch after a newer one), every client converging on the exchange's final prices,
and no browser disconnected on a host that was not isolated.
"""
from __future__ import annotations

import time

import pytest

from tests.support import netns
from tests.support.ha_topology import (
    APP_HOSTS,
    MASTER_PORT,
    PAIRS,
    REPLICA_PORT,
    SYMBOLS,
    Topology,
    epoch_of,
    fencing_violations,
)
from tests.support.observe import mode_sequence
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=f"namespaced hosts: {netns.unavailable()}")

CLIENTS_PER_HOST = 4      # spread over both workers of each host
WORKERS = 2


@pytest.fixture(scope="module")
def topology():
    topo = Topology(workers=WORKERS)
    yield topo
    topo.close()


@pytest.fixture
def deployment(topology):
    """A healed, live deployment with one exchange connection and fresh clients on each app host."""
    topology.net.heal()
    topology.sim_market(paused=False)
    topology.wait_sentinels_agree(timeout=30)
    wait_until(lambda: topology.sim_stats()["connections_open"] == 1, 30, interval=0.2,
               message="one exchange connection")
    for host in APP_HOSTS:
        wait_until(lambda: topology.health(host)["mode"] == "live", 30, interval=0.2, message=f"{host} live")
    clients = {host: topology.open_clients(host, CLIENTS_PER_HOST) for host in APP_HOSTS}
    for client in all_of(clients):
        client.wait_for(lambda c: len(c.of("price")) >= 3 and mode_sequence(c)[-1] == "live", 15,
                        "live ticks before the fault")
    yield clients
    for client in all_of(clients):
        client.close()
    for name in APP_HOSTS:   # shown by pytest only when the test failed
        print(f"--- {name}\n{topology.log_tail(name)}")


def all_of(clients: dict) -> list:
    return [client for group in clients.values() for client in group]


def newest_epoch(clients) -> int:
    return max(epoch_of(c.of("price")[-1].id) for c in clients)


def reset_exchange_stats(topology: Topology) -> None:
    topology._get(topology.sim_url + "/_sim/stats/reset", method="POST")


def converge(topology: Topology, clients, timeout: float = 20) -> None:
    """Every pair ticks afresh, the exchange pauses, every client must show its final prices."""
    since_ms = int(time.time() * 1000)
    pairs = set(PAIRS.split(","))
    for client in clients:
        client.wait_for(lambda c: {e.json()["pair"] for e in c.of("price") if e.json()["ts"] >= since_ms} == pairs,
                        25, "a fresh tick of every pair")
    topology.sim_market(paused=True)
    prices = topology.sim_prices()
    final = {pair: prices[symbol] for pair, symbol in zip(PAIRS.split(","), SYMBOLS.split(","), strict=True)}
    for client in clients:
        client.wait_for(lambda c: c.latest_prices() == final, timeout,
                        f"final prices {final}, client has {client.latest_prices()}")
    topology.sim_market(paused=False)


def assert_fenced_and_connected(clients, hosts=APP_HOSTS) -> None:
    for host in hosts:
        for client in clients[host]:
            assert not client.closed, f"a browser of {host} was disconnected ({client.error!r})"
    for client in all_of(clients):
        assert fencing_violations(client) == [], fencing_violations(client)[:5]


def test_a_leader_cut_off_from_redis_is_fenced_and_serves_its_own_browsers_from_its_local_tier(topology, deployment):
    clients = deployment
    isolated, _ = topology.leader()
    other = next(h for h in APP_HOSTS if h != isolated)
    epoch_before = newest_epoch(all_of(clients))
    reset_exchange_stats(topology)

    topology.net.cut(isolated, "redis")
    # The rest of the deployment: a new leader on the other host, a newer epoch at its browsers.
    for client in clients[other]:
        client.wait_for(lambda c: epoch_of(c.of("price")[-1].id) > epoch_before, 20, "a newer epoch")
    # The isolated host's browsers: told `local`, served fresh ticks by their own worker.
    for client in clients[isolated]:
        client.wait_for(lambda c: "local" in mode_sequence(c), 20, "the local tier")
        mark = len(client.of("price"))
        client.wait_for(lambda c: len(c.of("price")) >= mark + 3, 15, "fresh local ticks")
    during = topology.sim_stats()
    # One for the deployment, one more for the isolated host, whatever its number of workers:
    # its workers share one local-tier connection (cluster/host_tier.py).
    assert during["max_concurrent"] <= 2, during

    topology.net.heal()
    wait_until(lambda: topology.sim_stats()["connections_open"] == 1, 30, interval=0.2,
               message="one exchange connection after healing")
    for client in clients[isolated]:
        client.wait_for(lambda c: mode_sequence(c)[-1] == "live", 30, "live again")
    converge(topology, all_of(clients))
    assert_fenced_and_connected(clients, hosts=APP_HOSTS)


def test_a_leader_cut_off_from_the_exchange_yields_the_lease_to_a_host_whose_route_works(topology, deployment):
    clients = deployment
    isolated, _ = topology.leader()
    other = next(h for h in APP_HOSTS if h != isolated)
    epoch_before = newest_epoch(all_of(clients))

    topology.net.cut(isolated, "exchange")
    # Silence (2 s) + failed reconnects, then PRICEFEED_LEADER_YIELD_AFTER (4 s): the lease moves,
    # possibly via the isolated host's other worker, which yields in turn.
    wait_until(lambda: topology.leader(timeout=5)[0] == other, 45, interval=0.5, message=f"a leader on {other}")
    for client in all_of(clients):
        client.wait_for(lambda c: epoch_of(c.of("price")[-1].id) > epoch_before, 20, "ticks of the new leader")
    wait_until(lambda: topology.sim_stats()["connections_open"] == 1, 20, interval=0.2,
               message="one exchange connection, from the new leader")
    assert topology.leader()[0] == other

    topology.net.heal()       # changes nothing for a deployment that already has a working leader
    converge(topology, all_of(clients))
    assert topology.sim_stats()["connections_open"] == 1
    # Redis never went away: every browser, on both hosts, stayed connected.
    assert_fenced_and_connected(clients, hosts=APP_HOSTS)


def test_loss_and_delay_between_the_app_hosts_and_redis_keep_ticks_flowing_on_one_connection(
        topology, deployment):
    """5 % loss both ways and 200 ms more on every packet to Redis. Usually nothing moves (bench/ha.py:
    no new epoch, every stream `live`); if renewals do miss the 1.5 s deadline on a busy machine, the
    handover is fenced like any other. Either way ticks keep flowing, one connection after."""
    clients = deployment
    reset_exchange_stats(topology)
    for host in APP_HOSTS:
        topology.net.degrade(host, "redis", loss_percent=5, delay_ms=200)
    marks = [len(c.of("price")) for c in all_of(clients)]
    for client, mark in zip(all_of(clients), marks, strict=True):
        client.wait_for(lambda c: len(c.of("price")) >= mark + 40, 30, "ticks through the slow, lossy path")
    during = topology.sim_stats()
    topology.net.heal()
    # The leader, or after a handover the new one plus the old one's host tier for a moment.
    assert during["max_concurrent"] <= 2, during
    wait_until(lambda: topology.sim_stats()["connections_open"] == 1, 20, interval=0.2,
               message="one exchange connection")
    converge(topology, all_of(clients))
    assert_fenced_and_connected(clients)


def test_a_master_killed_after_its_replica_missed_the_last_epoch_fails_over_without_an_epoch_going_back(
        topology, deployment):
    clients = deployment
    net = topology.net
    master_ip, master_port = topology.master_address()
    replica_ip = topology.replica_ip if master_port == MASTER_PORT else topology.master_ip
    replica_port = REPLICA_PORT if master_port == MASTER_PORT else MASTER_PORT
    epoch_before = newest_epoch(all_of(clients))

    # The replica stops hearing the master (its link stalls, unnoticed for the 60 s repl-timeout) ...
    net.cut_ports("redis", replica_ip, master_ip, master_port)
    # ... and a new leadership is taken on the master alone: the leader's hub freezes past its deadline.
    host, health = topology.leader()
    wait_until(lambda: topology.block_hub(host, health["worker"]["id"], 3), 15, interval=0.05,
               message="freezing the leader")
    for client in all_of(clients):
        client.wait_for(lambda c: epoch_of(c.of("price")[-1].id) > epoch_before, 20, "the new leadership")
    lost_epoch = newest_epoch(all_of(clients))
    replica_counter = int(topology.redis_command(replica_ip, replica_port, "GET", "pricefeed:epoch") or 0)
    assert replica_counter < lost_epoch, "the replica was meant to miss the last INCR"

    reset_exchange_stats(topology)
    topology.kill_master()
    wait_until(lambda: topology.master_address() == (replica_ip, replica_port), 20, interval=0.2,
               message="the sentinels promoting the replica")
    net.heal()
    # The new lease is taken on a Redis whose counter is behind: the floor keeps its epoch above.
    for client in all_of(clients):
        client.wait_for(lambda c: epoch_of(c.of("price")[-1].id) > lost_epoch, 30, "ticks of a newer epoch")
    wait_until(lambda: topology.sim_stats()["connections_open"] == 1, 30, interval=0.2,
               message="one exchange connection after the failover")
    during = topology.sim_stats()
    # While no master answers, each host runs one local-tier connection, and the new leader's
    # may open before its host's local tier ends.
    assert during["max_concurrent"] <= 1 + len(APP_HOSTS), during
    converge(topology, all_of(clients))
    assert_fenced_and_connected(clients)

    topology.restart_as_replica(master_port)
    topology.wait_sentinels_agree(timeout=30)
