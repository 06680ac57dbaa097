"""Admission: a bounded rate of new streams per worker, a fair share of it per client address,
and a bound on the streams one address holds at once.

Opening a stream costs a worker far more than keeping one (request parsing, a
snapshot encoded for this client alone). After a restart or a network blip,
thousands of browsers reconnect at once; admitted as fast as they arrive they
would take the CPU from the streams already open, and every price on this
worker would be late. The gate spaces new streams at `rate` per second after a
burst of `burst` (a leaky bucket, kept as one number: when the next slot is
free). A newcomer waits for its slot — its connection is open, it costs only an
idle greenlet — unless the queue is longer than `max_wait`, when it is told to
come back later instead (503 with Retry-After).

One address must not take the whole gate: each address has its own bucket with
`address_share` of the rate (at least one a second) and of the burst (beyond it: 429).
Its queue is bounded by the same `max_wait`, so the slots one address holds or
waits for are bounded too. A newcomer that leaves while it waits gives its slot
back (`cancel`). Addresses are plain strings: the web layer decides what a
client's address is (trusted proxies, IPv6 /64s); nothing here parses them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Per-address buckets are forgotten once idle; swept when the table grows past this.
ADDRESS_SWEEP_SIZE = 4096


class LeakyBucket:
    """GCRA: `next_free` is when the queue would be empty; `burst` slots may be taken at once."""

    __slots__ = ("rate", "burst", "next_free")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst, self.next_free = rate, burst, now

    def wait(self, now: float) -> float:
        """The wait a newcomer arriving now would have (without taking the slot)."""
        wait = max(self.next_free, now) - now - (self.burst - 1) / self.rate
        return wait if wait > 1e-9 else 0.0     # float dust is not a wait

    def take(self, now: float) -> None:
        self.next_free = max(self.next_free, now) + 1.0 / self.rate

    def give_back(self) -> None:
        # Later waiters keep their times; the freed slot goes to whoever comes next.
        self.next_free -= 1.0 / self.rate

    def idle(self, now: float) -> bool:
        return self.next_free <= now


@dataclass(frozen=True)
class Admission:
    """The gate's answer: wait `wait` seconds, or refused (`refused` says by which limit)."""

    wait: float = 0.0
    refused: str | None = None       # None, "gate" (worker-wide queue full) or "address" (its share)
    retry_after: int | None = None   # for a refusal by a shared pace: when the address finds room


class AdmissionGate:
    def __init__(self, rate: float, burst: int, max_wait: float, clock: Callable[[], float] = time.monotonic,
                 address_share: float = 1.0, max_streams_per_address: int | None = None,
                 streams: AddressStreams | None = None):
        if rate <= 0 or burst < 1 or max_wait < 0 or not 0 < address_share <= 1:
            raise ValueError("rate must be > 0, burst >= 1, max_wait >= 0, 0 < address_share <= 1")
        self.rate = rate
        self.burst = burst
        self.max_wait = max_wait
        self.address_share = address_share
        self._clock = clock
        self._gate = LeakyBucket(rate, burst, clock())
        self._addresses: dict[str, LeakyBucket] = {}
        # The count of streams per address: this worker's own unless the node passes a wider one
        # (cluster/address_limits.py: the host's or the deployment's, with the same interface).
        self.streams: AddressStreams = (streams if streams is not None
                                        else StreamsPerAddress(max_streams_per_address))
        self.admitted = 0
        self.delayed = 0
        self.refused = 0
        self.refused_address = 0
        self.cancelled = 0

    def reserve(self) -> float | None:
        """Take the next worker-wide slot: seconds to wait before admitting, or None (queue full)."""
        admission = self.admit(None)
        return None if admission.refused else admission.wait

    def admit(self, address: str | None) -> Admission:
        """Take the next slot for a newcomer from `address` (None: count it worker-wide only)."""
        now = self._clock()
        bucket = self._address_bucket(address, now) if address is not None else None
        wait = self._gate.wait(now)
        # The worker's own queue first: when it is full, that is what the client is told (503).
        if wait > self.max_wait:
            self.refused += 1
            return Admission(refused="gate")
        shared = None
        if bucket is not None:
            # The address's share, paced for the deployment or the host when the count object
            # offers it (cluster/address_limits.py); else by this worker's own bucket. A share of
            # the whole gate is no share: each worker's gate bounds it already, and one address
            # (a load generator, a proxy not declared trusted) keeps each worker's whole rate.
            take_shared = getattr(self.streams, "take_new", None) if self.address_share < 1 else None
            shared = take_shared(address, bucket.rate, bucket.burst, self.max_wait) if take_shared else None
            own = shared[1] if shared is not None else bucket.wait(now)
            if (shared is not None and not shared[0]) or own > self.max_wait:
                self.refused_address += 1
                return Admission(refused="address", retry_after=max(1, int(own - self.max_wait) + 1))
            wait = max(wait, own)
        self._gate.take(now)
        if bucket is not None and shared is None:
            bucket.take(now)
        self.admitted += 1
        if wait > 0:
            self.delayed += 1
        return Admission(wait=wait)

    def cancel(self, address: str | None = None) -> None:
        """A newcomer admitted with a wait left before its turn: its slot goes back."""
        self._gate.give_back()
        bucket = self._addresses.get(address) if address is not None else None
        if bucket is not None:
            bucket.give_back()
        self.admitted -= 1
        self.cancelled += 1

    def _address_bucket(self, address: str, now: float) -> LeakyBucket:
        bucket = self._addresses.get(address)
        if bucket is None:
            if len(self._addresses) >= ADDRESS_SWEEP_SIZE:
                self._addresses = {key: b for key, b in self._addresses.items() if not b.idle(now)}
            # At least one stream a second per address (or the whole rate, if lower): a share
            # of a small gate must not make one browser's reconnect wait for minutes.
            bucket = LeakyBucket(max(self.rate * self.address_share, min(self.rate, 1.0)),
                                 max(1, int(self.burst * self.address_share)), now)
            self._addresses[address] = bucket
        return bucket

    def retry_after(self, address: str | None = None) -> int:
        """Whole seconds after which a refused client (from `address`) would find room."""
        now = self._clock()
        bucket = self._addresses.get(address) if address is not None else None
        backlog = max(self._gate.wait(now), bucket.wait(now) if bucket is not None else 0.0) - self.max_wait
        return max(1, int(backlog) + 1)

    def status(self) -> dict:
        return {"rate_per_s": self.rate, "burst": self.burst, "admitted": self.admitted,
                "delayed": self.delayed, "refused": self.refused,
                "refused_address_share": self.refused_address, "cancelled": self.cancelled,
                "address_share": self.address_share, **self.streams.status()}


class AddressStreams(Protocol):
    """The count of streams per address the gate holds and the node starts and stops: this
    worker's own (StreamsPerAddress) or the host's or deployment's (cluster/address_limits.py)."""

    limit: int | None                 # streams one address may hold (None: no bound)
    refused: int                      # streams refused for the bound

    @property
    def scope(self) -> str: ...       # what the count covers now (shown in /health)
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def acquire(self, address: str) -> bool: ...
    def release(self, address: str) -> None: ...
    def status(self) -> dict: ...


class StreamsPerAddress:
    """How many streams each client address holds on this worker, bounded by `limit` (None: no bound)."""

    scope = "worker"          # what the count covers (cluster/address_limits.py has wider ones)

    def __init__(self, limit: int | None):
        self.limit = limit
        self._open: dict[str, int] = {}
        self.refused = 0

    def start(self) -> None:
        """Nothing to start: the count is this worker's own."""

    def stop(self) -> None:
        """Nothing to stop."""

    def acquire(self, address: str) -> bool:
        """Count one more stream for `address`; False (nothing counted) if it holds its limit already."""
        held = self._open.get(address, 0)
        if self.limit is not None and held >= self.limit:
            self.refused += 1
            return False
        self._open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self._open.get(address, 0)
        if held <= 1:
            self._open.pop(address, None)
        else:
            self._open[address] = held - 1

    def held(self, address: str) -> int:
        return self._open.get(address, 0)

    def status(self) -> dict:
        busiest = max(self._open.values(), default=0)
        return {"max_streams_per_address": self.limit, "addresses": len(self._open),
                "busiest_address_streams": busiest, "refused_too_many_streams": self.refused}
