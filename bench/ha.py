"""High availability across hosts: Sentinel failovers under load, and the partition table.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.ha --streams 2000 --failovers 10

Needs root (network namespaces; see tests/support/netns.py). The hosts: the simulator
(20 trades/s), a Redis host (master, replica, three sentinels, down-after 1 s), two app hosts
(gunicorn, 2 workers each, PRICEFEED_REDIS_URL=redis+sentinel://...), and a client host whose
load generator (bench/ha_clients.py) holds the streams, half on each app host.

Failover x N: SIGKILL the master; time from the kill to the first tick of a newer epoch at any
client; trades the exchange sent in the failover window that the loss-sample stream of a host
never got; fencing violations (a tick of an older epoch after a newer one at a sample stream:
a second publisher would show here); exchange connections during and after. The killed server
comes back empty as a replica before the next round.

Partition table: each fault of tests/faults/test_multihost.py, held for a while and healed:
detection (fault → the deployment shows it: a newer epoch at the clients), recovery (heal →
one exchange connection and every stream told `live`), exchange connections during and after,
streams disconnected per host. Stops by itself; the generator reports its own CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from tests.support import netns
from tests.support.ha_topology import APP_HOSTS, MASTER_PORT, REPLICA_PORT, SIM_PORT, STREAM, SYMBOLS, Topology
from tests.support.waiting import wait_until

OBSERVER = 1          # the generator's own WebSocket to the exchange counts as one connection there


class Generator:
    """The load generator in the clients' namespace; `status` is its latest line."""

    def __init__(self, topo: Topology, streams: int, duration: float):
        self.dump = tempfile.mktemp(prefix="pf-ha-dump-", suffix=".json")
        self.stop_file = self.dump + ".stop"
        spec = {"stop_file": self.stop_file, "urls": {h: topo.app_url(h) + STREAM for h in APP_HOSTS}, "per_host": streams // len(APP_HOSTS),
                "sample": 10, "duration": duration, "dump": self.dump, "symbols": SYMBOLS.split(","),
                "exchange_ws": f"ws://{topo.net.ip('exchange')}:{SIM_PORT}"}
        self.proc = topo.net.spawn("clients", [sys.executable, "-m", "bench.ha_clients", json.dumps(spec)],
                                   stdout=subprocess.PIPE, text=True,
                                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.status: dict = {}
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None         # started with stdout=PIPE
        for line in self.proc.stdout:
            message = json.loads(line)
            if message.get("done"):
                self.done.set()
            else:
                self.status = message

    def finish(self) -> dict:
        """Stop the generator and read what its loss sample and exchange observer kept."""
        open(self.stop_file, "w").close()
        self.done.wait(60)
        self.proc.wait(timeout=30)
        with open(self.dump) as handle:
            dump = json.load(handle)
        os.unlink(self.dump)
        os.unlink(self.stop_file)
        return dump

    def newest_epoch(self) -> int:
        return max((int(e) for e in self.status.get("epochs", {})), default=0)

    def first_seen(self, epoch: int) -> float | None:
        times = [t for e, t in self.status.get("epochs", {}).items() if int(e) > epoch]
        return min(times) if times else None

    def ended(self) -> dict:
        return dict(self.status.get("ended", {}))

    def all_live(self, per_host: int) -> bool:
        modes = self.status.get("modes", {})
        return all(modes.get(h, {}) == {"live": per_host} for h in APP_HOSTS)


def exchange_open(topo: Topology) -> int:
    """The service's connections at the exchange (the observer subscribes to no miniTicker)."""
    connections = json.loads(topo._get(topo.sim_url + "/_sim/connections")[1])
    return sum(1 for c in connections if any("miniTicker" in s for s in c["streams"]))


def reset_stats(topo: Topology) -> None:
    topo._get(topo.sim_url + "/_sim/stats/reset", method="POST")


def replica_synced(topo: Topology) -> bool:
    _, port = topo.master_address()
    other = REPLICA_PORT if port == MASTER_PORT else MASTER_PORT
    ip = topo.replica_ip if other == REPLICA_PORT else topo.master_ip
    return topo.redis_command(ip, other, "INFO", "replication").get("master_link_status") == "up"


def steady(topo: Topology, gen: Generator, per_host: int, timeout: float = 60) -> None:
    topo.wait_sentinels_agree(timeout=timeout)
    wait_until(lambda: replica_synced(topo), timeout, interval=0.2, message="the replica in sync")
    wait_until(lambda: exchange_open(topo) == 1 and gen.all_live(per_host), timeout, interval=0.2,
               message="one exchange connection and every stream live")


def diff(after: dict, before: dict) -> dict:
    return {h: after.get(h, 0) - before.get(h, 0) for h in APP_HOSTS}


def failover_round(topo: Topology, gen: Generator, per_host: int) -> dict:
    steady(topo, gen, per_host)
    epoch, ended = gen.newest_epoch(), gen.ended()
    reset_stats(topo)
    killed_at = time.time()
    port = topo.kill_master()
    wait_until(lambda: gen.first_seen(epoch), 60, interval=0.05, message="a newer epoch at a client")
    first_new = gen.first_seen(epoch)
    assert first_new is not None                # once seen, a newer epoch stays seen
    wait_until(lambda: exchange_open(topo) == 1, 60, interval=0.2, message="one exchange connection")
    recovered_at = time.time()
    during = topo.sim_stats()["max_concurrent"] - OBSERVER
    epoch_after = gen.newest_epoch()
    topo.restart_as_replica(port)
    after: list[tuple[float, int]] = []
    until = time.time() + 3          # watch a moment longer: does one connection stay one?
    while time.time() < until:
        count = exchange_open(topo)
        if not after or after[-1][1] != count:
            after.append((round(time.time() - killed_at, 2), count))
        time.sleep(0.2)
    return {"to_new_epoch_s": round(first_new - killed_at, 3), "window": [killed_at, recovered_at + 1],
            "connections_during": during, "connections_after": exchange_open(topo), "after_changes": after,
            "epochs_after_recovery": gen.newest_epoch() - epoch_after,
            "disconnected": diff(gen.ended(), ended)}


def ticks_lost(dump: dict, window: list[float]) -> int:
    """Trades the exchange sent in the window that the loss-sample stream of some host never got."""
    sent = {(s, e, p) for s, e, p, t in dump["trades"] if window[0] <= t <= window[1]}
    lost = 0
    for kept in dump["kept"].values():
        got = {(s, e, p) for s, e, p, _ in kept}
        lost = max(lost, len(sent - got))
    return lost


def dump_rate(dump: dict, start: float, elapsed: float) -> float:
    return sum(1 for *_, t in dump["trades"] if start <= t <= start + elapsed) / elapsed


def partition(topo: Topology, gen: Generator, per_host: int, name: str, apply, hold: float,
              detect=True) -> dict:
    steady(topo, gen, per_host)
    epoch, ended = gen.newest_epoch(), gen.ended()
    reset_stats(topo)
    started = time.time()
    restore = apply()
    detection = None
    if detect:
        wait_until(lambda: gen.first_seen(epoch), 90, interval=0.05, message=f"{name}: a newer epoch")
        first_new = gen.first_seen(epoch)
        assert first_new is not None            # once seen, a newer epoch stays seen
        detection = round(first_new - started, 2)
    # A bench holds the fault for a fixed time (tests wait on conditions), watching the exchange.
    single_since: float | None = None
    changes: list[tuple[float, int]] = []
    until = time.time() + hold
    while time.time() < until:
        count = exchange_open(topo)
        if not changes or changes[-1][1] != count:
            changes.append((round(time.time() - started, 2), count))
        if count != 1:
            single_since = None
        elif single_since is None:
            single_since = time.time()
        time.sleep(0.25)
    during = topo.sim_stats()["max_concurrent"] - OBSERVER
    open_during = exchange_open(topo)
    healed = time.time()
    topo.net.heal()
    if restore:
        restore()
    wait_until(lambda: exchange_open(topo) == 1 and gen.all_live(per_host), 90, interval=0.1,
               message=f"{name}: recovery")
    return {"fault": name, "detection_s": detection, "recovery_s": round(time.time() - healed, 2),
            "single_again_during_s": None if single_since is None else round(single_since - started, 2),
            "connections_during_max": during, "connections_at_heal": open_during,
            "connections_after": exchange_open(topo), "connection_changes": changes, "epoch_changes": gen.newest_epoch() - epoch,
            "disconnected": diff(gen.ended(), ended)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds each partition is held")
    parser.add_argument("--loss", type=int, default=5, help="percent of packets lost, app hosts <-> Redis")
    parser.add_argument("--delay", type=int, default=100, help="ms added to packets from the app hosts to Redis")
    args = parser.parse_args()
    reason = netns.unavailable()
    if reason:
        sys.exit(f"bench/ha.py: {reason}")
    load_before = open("/proc/loadavg").read().strip()
    per_host = args.streams // len(APP_HOSTS)
    topo = Topology(workers=2)
    try:
        gen = Generator(topo, args.streams, duration=args.failovers * 40 + 400)
        wait_until(lambda: sum(gen.status.get("open", {}).values()) >= per_host * len(APP_HOSTS), 120,
                   interval=0.2, message="every stream open")
        cpu_start = gen.status["cpu_s"]
        measure_start = time.time()
        rounds = [failover_round(topo, gen, per_host) for _ in range(args.failovers)]

        def leader_host():
            return topo.leader()[0]
        steady(topo, gen, per_host)
        table = []
        isolated = leader_host()
        table.append(partition(topo, gen, per_host, f"leader host ({isolated}) cut from Redis",
                               lambda: topo.net.cut(isolated, "redis"), args.hold))
        isolated = leader_host()
        table.append(partition(topo, gen, per_host, f"leader host ({isolated}) cut from the exchange",
                               lambda: topo.net.cut(isolated, "exchange"), args.hold))
        def lossy():
            for host in APP_HOSTS:
                topo.net.degrade(host, "redis", loss_percent=args.loss, delay_ms=args.delay)
        table.append(partition(topo, gen, per_host, f"{args.loss}% loss + {args.delay} ms app hosts->Redis",
                               lossy, args.hold, detect=False))

        def kill_master():
            port = topo.kill_master()
            return lambda: topo.restart_as_replica(port)
        table.append(partition(topo, gen, per_host, "Redis master killed", kill_master, args.hold))
        final = gen.status
        elapsed = time.time() - measure_start
        dump = gen.finish()
        for row in rounds:
            row["ticks_lost"] = ticks_lost(dump, row["window"])
    finally:
        topo.close()
    print(json.dumps({"rounds": rounds, "partitions": table}, indent=1), file=sys.stderr)
    print(f"load average before: {load_before}")
    print(f"streams: {args.streams} ({per_host} per app host), generator CPU {final['cpu_s'] - cpu_start:.1f} s "
          f"over {elapsed:.0f} s")
    if rounds:
        print_failovers(rounds, final, dump, measure_start, elapsed)
    print_table(table)


def print_failovers(rounds: list[dict], final: dict, dump: dict, measure_start: float, elapsed: float) -> None:
    waits = [r["to_new_epoch_s"] for r in rounds]
    print(f"Sentinel failover x{len(rounds)}: master kill -> first tick of a newer epoch at a client: "
          f"p50 {statistics.median(waits):.2f} s, max {max(waits):.2f} s")
    lost = [r["ticks_lost"] for r in rounds]
    print(f"  trades lost per failover at a host's loss-sample stream: p50 {statistics.median(lost)}, "
          f"max {max(lost)} (the exchange sent {dump_rate(dump, measure_start, elapsed):.1f} trades/s)")
    print(f"  exchange connections during (max) {max(r['connections_during'] for r in rounds)}, "
          f"after {max(r['connections_after'] for r in rounds)}; streams disconnected "
          f"{sum(sum(r['disconnected'].values()) for r in rounds)}")
    print(f"  fencing violations at sample streams (duplicate publishers): {final['fencing_violations']}")


def print_table(table: list[dict]) -> None:
    print("| fault | detection | one exchange connection again (from the fault, while it lasts) | "
          "recovery after heal | exchange conns during (max) | after | streams disconnected |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        detection = "—" if row["detection_s"] is None else f"{row['detection_s']} s"
        single = "not while it lasts" if row["single_again_during_s"] is None else f"{row['single_again_during_s']} s"
        print(f"| {row['fault']} | {detection} | {single} | {row['recovery_s']} s | {row['connections_during_max']} | "
              f"{row['connections_after']} | {row['disconnected']} |")


if __name__ == "__main__":
    main()
