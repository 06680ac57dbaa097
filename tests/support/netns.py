"""Hosts in network namespaces: a few namespaces joined by veth pairs to a bridge, for real partitions.

    with Network(["exchange", "redis", "app-a", "app-b", "clients"]) as net:
        net.spawn("redis", ["redis-server", "--bind", net.ip("redis")])
        net.call("clients", lambda: urllib.request.urlopen(f"http://{net.ip('exchange')}:9000/"))
        net.cut("app-a", "redis")        # both directions, silently dropped (a real partition)
        net.heal()

What it touches: only namespaces it creates, all named `pfnet-<pid>-<n>-...`. The bridge lives
in its own namespace, so no interface of the machine's own (root) namespace is created, moved
or changed; the hosts have loopback up, one address each in a private /24 that no interface
of the machine uses (checked before anything is made), no default route, and no link to the
machine's interfaces: nothing sent inside can leave. Everything is removed on exit, also after
a failed test; namespaces left by runs whose process is gone are removed first.

Faults are nftables rules inside the hosts' namespaces (drop, or drop a share at random for
loss) and delay: `tc netem` on the host's veth where the kernel has sch_netem, else an NFQUEUE
rule (iptables) and tests/support/packet_delay.py holding the packets in user space.
Needs root, `ip` and `nft` (and `iptables` for delay without netem): `unavailable()` says
why a test must skip.
"""
from __future__ import annotations

import ctypes
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
NAME_PREFIX = "pfnet-"
SUBNET = "10.213.77.0/24"
CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)
DELAY_QUEUE = 7
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unavailable() -> str | None:
    """Why namespaced hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI here runs as root)"
    for tool in ("ip", "nft", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (./test.sh installs nftables and iptables with apt-get)"
    return None


@functools.lru_cache(maxsize=1)
def netem_available() -> bool:
    """The kernel has sch_netem (delay). Some VM kernels are built without it."""
    probe = f"{NAME_PREFIX}{os.getpid()}-probe"
    _run(["ip", "netns", "add", probe])
    try:
        return subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
                               "netem", "delay", "1ms"], capture_output=True).returncode == 0
    finally:
        _run(["ip", "netns", "del", probe], check=False)


def _run(args: list[str], check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, input=stdin)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def remove_leftovers() -> list[str]:
    """Delete namespaces of earlier runs whose process no longer exists (a killed test run)."""
    removed = []
    for line in _run(["ip", "netns", "list"]).splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.match(re.escape(NAME_PREFIX) + r"(\d+)-", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            _delete_namespace(name)
            removed.append(name)
    return removed


def _delete_namespace(name: str) -> None:
    for pid in _run(["ip", "netns", "pids", name], check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _run(["ip", "netns", "del", name], check=False)


def _overlaps_machine(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", _run(["ip", "-4", "addr"]))
    return [a for a in found if ipaddress.ip_interface(a).network.overlaps(subnet)]


class Network:
    """Namespaced hosts on one bridge; a context manager that removes everything it made."""

    def __init__(self, hosts: list[str], subnet: str = SUBNET, extra_addresses: dict[str, int] | None = None):
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self.subnet = ipaddress.ip_network(subnet)
        clash = _overlaps_machine(self.subnet)
        if clash:
            raise RuntimeError(f"{subnet} overlaps this machine's addresses {clash}: pick another subnet")
        remove_leftovers()
        self.run_id = f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}"
        self.bridge_ns = f"{self.run_id}-br"
        self.hosts = list(hosts)
        self.extra = dict(extra_addresses or {})
        self._addresses: dict[str, list[str]] = {}
        self._processes: list[subprocess.Popen] = []
        self._rules: dict[str, list[str]] = {}
        self._netem: set[str] = set()
        self._delayers: dict[str, subprocess.Popen] = {}
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- building and removing -------------------------------------------------------

    def ns(self, host: str) -> str:
        return f"{self.run_id}-{host}"

    def ip(self, host: str, index: int = 0) -> str:
        return self._addresses[host][index]

    def _build(self) -> None:
        _run(["ip", "netns", "add", self.bridge_ns])
        self._ip(self.bridge_ns, "link", "add", "br0", "type", "bridge")
        self._ip(self.bridge_ns, "link", "set", "br0", "up")
        hosts_addresses = iter(self.subnet.hosts())
        for number, host in enumerate(self.hosts):
            ns = self.ns(host)
            _run(["ip", "netns", "add", ns])
            self._ip(ns, "link", "set", "lo", "up")
            port = f"p{number}"
            # Made inside the bridge's namespace with the peer moved straight into the host's:
            # neither end ever exists in the machine's own namespace.
            self._ip(self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._ip(self.bridge_ns, "link", "set", port, "master", "br0")
            self._ip(self.bridge_ns, "link", "set", port, "up")
            addresses = [str(next(hosts_addresses)) for _ in range(1 + self.extra.get(host, 0))]
            for address in addresses:
                self._ip(ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
            self._ip(ns, "link", "set", "eth0", "up")
            self._addresses[host] = addresses
            self._nft(host, _NFT_TABLE)

    def close(self) -> None:
        for proc in self._processes:
            if proc.poll() is None:
                proc.kill()
        for proc in self._processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for host in self.hosts:
            _delete_namespace(self.ns(host))
        _delete_namespace(self.bridge_ns)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ip(self, ns: str, *args: str) -> None:
        _run(["ip", "-n", ns, *args])

    def _nft(self, host: str, script: str) -> None:
        _run(["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"], stdin=script)

    # -- running things inside --------------------------------------------------------

    def spawn(self, host: str, args: list[str], **popen) -> subprocess.Popen:
        """Start a process in `host`'s namespace; killed at close() if still running."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *args], **popen)
        self._processes.append(proc)
        return proc

    def call(self, host: str, function: Callable[[], T]) -> T:
        """Run `function` on a thread that joined `host`'s namespace: sockets it opens live there
        (and stay there, whichever thread reads them later)."""
        result: dict = {}

        def enter_and_run() -> None:
            try:
                with open(f"/var/run/netns/{self.ns(host)}") as handle:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                result["value"] = function()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                result["error"] = exc
        thread = threading.Thread(target=enter_and_run, daemon=True)
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["value"]

    # -- faults -------------------------------------------------------------------------

    def cut(self, host: str, *others: str) -> None:
        """Drop everything between `host` and each of `others`, both ways (packets vanish)."""
        for other in others:
            for address in self._addresses[other]:
                self._add_rule(host, f"ip daddr {address} drop", f"ip saddr {address} drop")
            for address in self._addresses[host]:
                self._add_rule(other, f"ip daddr {address} drop", f"ip saddr {address} drop")

    def cut_ports(self, host: str, source: str, destination: str, port: int) -> None:
        """Drop TCP from address `source` to `destination`:`port` (and its replies), inside `host`."""
        self._add_rule(host, f"ip saddr {source} ip daddr {destination} tcp dport {port} drop",
                       f"ip saddr {destination} ip daddr {source} tcp sport {port} drop")

    def degrade(self, host: str, other: str, loss_percent: int = 0, delay_ms: int = 0) -> None:
        """Lose a share of the packets from `host` to `other` (and back), and delay them if netem exists."""
        if loss_percent:
            for address in self._addresses[other]:
                self._add_rule(host, f"ip daddr {address} numgen random mod 100 < {loss_percent} drop",
                               f"ip saddr {address} numgen random mod 100 < {loss_percent} drop")
        if delay_ms and netem_available():
            if host not in self._netem:
                _run(["ip", "netns", "exec", self.ns(host), "tc", "qdisc", "add", "dev", "eth0", "root",
                      "netem", "delay", f"{delay_ms}ms", f"{delay_ms // 4}ms"])
                self._netem.add(host)
        elif delay_ms:
            self._delay_in_user_space(host, other, delay_ms)

    def _delay_in_user_space(self, host: str, other: str, delay_ms: int) -> None:
        """No sch_netem in this kernel: NFQUEUE (through iptables' xt target, which nft lacks
        here) to tests/support/packet_delay.py, one listener per host, outgoing packets only."""
        if host not in self._delayers:
            proc = self.spawn(host, [sys.executable, "-m", "tests.support.packet_delay", str(DELAY_QUEUE),
                                     str(delay_ms), str(delay_ms // 4)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None      # PIPE
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"packet_delay did not start in {host}")
            self._delayers[host] = proc
        for address in self._addresses[other]:
            _run(["ip", "netns", "exec", self.ns(host), "iptables", "-A", "OUTPUT", "-d", address, "-j", "NFQUEUE",
                  "--queue-num", str(DELAY_QUEUE), "--queue-bypass"])

    def _add_rule(self, host: str, output_rule: str, input_rule: str) -> None:
        self._nft(host, f"add rule inet pfnet out {output_rule}\nadd rule inet pfnet in {input_rule}\n")
        self._rules.setdefault(host, []).append(output_rule)

    def heal(self) -> None:
        """Remove every fault: rules flushed, netem removed."""
        for host in list(self._rules):
            self._nft(host, "flush chain inet pfnet out\nflush chain inet pfnet in\n")
        self._rules.clear()
        for host in self._netem:
            _run(["ip", "netns", "exec", self.ns(host), "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        self._netem.clear()
        for host, proc in self._delayers.items():
            _run(["ip", "netns", "exec", self.ns(host), "iptables", "-F", "OUTPUT"], check=False)
            proc.kill()
            proc.wait(timeout=5)
        self._delayers.clear()


_NFT_TABLE = """
table inet pfnet {
  chain out { type filter hook output priority 0; policy accept; }
  chain in { type filter hook input priority 0; policy accept; }
}
"""
