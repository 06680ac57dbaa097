"""HostAddressCounts: how many of something (streams) each client address holds on this host,
counted by every worker of the host in one shared table.

The table is a file every worker maps into memory (`address-<kind>.table`, in the directory the
host tier uses too: `<tmp>/pricefeed-<prefix>-<master pid>`, private to the service's user).
Each worker owns one column of it, a slot it holds with `flock` on `slot-<n>.lock`: a lock
the kernel drops with its process, so a worker killed with SIGKILL leaves a column that any
sibling finds unowned within a sweep (SWEEP_SECONDS) and zeroes. Nothing leaks.

A column is a count-min sketch: ROWS rows of BUCKETS counters, an address counted in one
bucket per row (two independent hashes). The table is laid out bucket by bucket, every worker's
counter for a bucket side by side, so a check reads ROWS runs of SLOTS counters (two pages).
The host's count for an address is, per row, the sum of its bucket over every column, and
then the smallest of the rows. Two addresses that
share a bucket in every row are counted together: the sketch can count high, never low, so
the cap is never exceeded; with 2 × 32768 buckets a false refusal needs thousands of busy
addresses on one host. A full key table would be exact but needs deletion and compaction
across processes for no gain a user would see.

Check-and-increment runs under an exclusive `flock` on the table (microseconds), so workers
opening streams for one address at the same moment never pass the cap together: exact.
One table per gunicorn master, like the host tier: the "host" is one instance's workers. Two
instances on one machine count apart (as two hosts would) unless Redis joins them.
"""
from __future__ import annotations

import array
import fcntl
import functools
import hashlib
import logging
import mmap
import os
import re
import struct
import time
from collections.abc import Callable

from pricefeed.cluster.host_tier import instance_directory

log = logging.getLogger(__name__)

SLOTS = 64                   # workers per host that share the table (more count on their own)
ROWS = 2
BUCKETS = 32768
COUNTER = struct.Struct("=I")
COLUMN_COUNTERS = ROWS * BUCKETS
TABLE_BYTES = SLOTS * COLUMN_COUNTERS * COUNTER.size     # 16 MiB, sparse: only buckets used take pages
SWEEP_SECONDS = 1.0
_ZERO_COLUMN = array.array("I", bytes(COLUMN_COUNTERS * COUNTER.size))


@functools.lru_cache(maxsize=4096)      # asked at every open and close, mostly for the same addresses
def buckets_of(address: str) -> tuple[int, ...]:
    """The address's counter index in each row (a stable hash: every process must agree)."""
    digest = hashlib.blake2b(address.encode(), digest_size=4 * ROWS).digest()
    return tuple(row * BUCKETS + int.from_bytes(digest[4 * row:4 * row + 4], "little") % BUCKETS
                 for row in range(ROWS))


class HostAddressCounts:
    """Per-address counts shared by the workers of one host (see the module docstring)."""

    def __init__(self, prefix: str, kind: str = "streams", directory: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.prefix = prefix
        self.kind = re.sub(r"[^A-Za-z0-9_-]", "_", kind)[:40]
        self.directory = directory or ""       # resolved at start (after the fork) unless given
        self._base = ""
        self._clock = clock
        self._table_fd: int | None = None
        self._map: mmap.mmap | None = None
        self._counters: memoryview | None = None     # the whole table as uint32s
        self._slot: int | None = None
        self._slot_fd: int | None = None
        self._swept_at = 0.0
        self.swept_columns = 0                        # dead workers' columns zeroed by this worker
        self.error = ""

    # -- lifecycle (after the fork: every worker opens the files itself) -------------------

    @property
    def shared(self) -> bool:
        """This worker holds a column: its counts are the host's."""
        return self._slot is not None

    def start(self) -> bool:
        if self._slot is not None:
            return True
        if not self.directory:
            self.directory = instance_directory(self.prefix)
        self._base = os.path.join(self.directory, f"address-{self.kind}")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self._base + ".table", os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(fd).st_size < TABLE_BYTES:
                os.ftruncate(fd, TABLE_BYTES)      # sparse; a sibling doing the same is harmless
            self._table_fd = fd
            self._map = mmap.mmap(fd, TABLE_BYTES)
            self._counters = memoryview(self._map).cast("I")
            self._slot, self._slot_fd = self._claim_slot()
        except OSError as exc:
            self.error = f"host table unusable: {exc}"
            log.warning("address counts: %s; this worker counts on its own", self.error)
            self.stop()
            return False
        if self._slot is None:
            self.error = f"all {SLOTS} host slots taken"
            log.warning("address counts: %s; this worker counts on its own", self.error)
            return False
        return True

    def stop(self) -> None:
        """Give the column back (zeroed: this worker's streams are closing with it)."""
        if self._slot is not None and self._counters is not None:
            with self._locked():
                self._zero(self._slot)
        if self._counters is not None:
            self._counters.release()
            self._counters = None
        if self._map is not None:
            self._map.close()
            self._map = None
        for fd in (self._slot_fd, self._table_fd):
            if fd is not None:
                os.close(fd)
        self._slot = self._slot_fd = self._table_fd = None

    def _claim_slot(self) -> tuple[int | None, int | None]:
        for slot in range(SLOTS):
            fd = os.open(f"{self._base}.slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            with self._locked():
                self._zero(slot)        # whatever a dead former owner left
            return slot, fd
        return None, None

    # -- counting ---------------------------------------------------------------------------

    def acquire(self, address: str, limit: int | None) -> tuple[bool, int]:
        """Count one more for `address` unless the host already holds `limit` (None: no limit).
        Returns (counted, the host's count before this one)."""
        assert self._counters is not None and self._slot is not None
        indexes = buckets_of(address)
        with self._locked():
            held = self._count(indexes)
            if limit is not None and held >= limit:
                return False, held
            self._add(indexes, 1)
        return True, held

    def add(self, address: str, delta: int) -> None:
        """Count without a check (release: -1; and what the caller decided elsewhere: +1)."""
        if self._counters is None or self._slot is None:
            return
        indexes = buckets_of(address)
        with self._locked():
            self._add(indexes, delta)

    def count(self, address: str) -> int:
        """The host's count for `address` (an upper bound, see the module docstring)."""
        if self._counters is None:
            return 0
        return self._count(buckets_of(address))

    def _count(self, indexes: tuple[int, ...]) -> int:
        counters = self._counters
        assert counters is not None
        return min(sum(counters[index * SLOTS:(index + 1) * SLOTS]) for index in indexes)

    def _add(self, indexes: tuple[int, ...], delta: int) -> None:
        counters = self._counters
        assert counters is not None and self._slot is not None
        for index in indexes:
            at = index * SLOTS + self._slot
            counters[at] = max(0, counters[at] + delta)

    # -- dead workers -----------------------------------------------------------------------

    def sweep(self, force: bool = False) -> int:
        """Zero the columns of workers that died holding counts (their slot lock is free).
        Cheap enough for a monitor pass: one non-blocking flock per sibling, once a second."""
        now = self._clock()
        if self._map is None or (not force and now - self._swept_at < SWEEP_SECONDS):
            return 0
        self._swept_at = now
        zeroed = 0
        for slot in self._slot_files():
            if slot == self._slot:
                continue
            try:
                fd = os.open(f"{self._base}.slot-{slot}.lock", os.O_RDWR)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue            # its worker lives
                # Ours for a moment, so no newcomer claims it meanwhile (one that claims it
                # after we close zeroes it again: harmless).
                with self._locked():
                    self._zero(slot)
                zeroed += 1
            finally:
                os.close(fd)
        self.swept_columns += zeroed
        return zeroed

    def _slot_files(self) -> list[int]:
        """The slots some worker has claimed since the table was created (lock files stay)."""
        head = os.path.basename(self._base) + ".slot-"
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [int(name[len(head):-5]) for name in names
                if name.startswith(head) and name.endswith(".lock") and name[len(head):-5].isdigit()]

    def _zero(self, slot: int) -> None:
        counters = self._counters
        assert counters is not None
        if any(counters[slot::SLOTS]):        # rare (a claim, a dead sibling): a strided pass is fine
            counters[slot::SLOTS] = _ZERO_COLUMN

    def _locked(self) -> _TableLock:
        assert self._table_fd is not None
        return _TableLock(self._table_fd)

    def status(self) -> dict:
        return {"shared": self.shared, "slot": self._slot, "swept_dead_columns": self.swept_columns,
                **({"error": self.error} if self.error else {})}


class HostAddressRates:
    """The address's share of the admission gate, for the workers of this host: one GCRA state
    (when the address's queue would be empty, on the system-wide monotonic clock) per bucket, in
    a memory-mapped table of ROWS × BUCKETS doubles under the same kind of flock. An address's
    state is the latest of its buckets': an address sharing a bucket with a busy one can wait
    longer than its own share says, never shorter. Nothing to clean up: a state in the past is
    an empty queue."""

    def __init__(self, prefix: str, kind: str = "streams", directory: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.prefix = prefix
        self.kind = re.sub(r"[^A-Za-z0-9_-]", "_", kind)[:40]
        self.directory = directory or ""
        self._clock = clock
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._states: memoryview[float] | None = None

    @property
    def shared(self) -> bool:
        return self._states is not None

    def start(self) -> bool:
        if self._states is not None:
            return True
        if not self.directory:
            self.directory = instance_directory(self.prefix)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.directory, f"address-{self.kind}.rates"), os.O_RDWR | os.O_CREAT, 0o600)
            size = ROWS * BUCKETS * 8
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._fd = fd
            self._map = mmap.mmap(fd, size)
            self._states = memoryview(self._map).cast("d")
        except OSError as exc:
            log.warning("address rates: host table unusable (%s); this worker paces on its own", exc)
            self.stop()
            return False
        return True

    def stop(self) -> None:
        if self._states is not None:
            self._states.release()
            self._states = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def take(self, address: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float]:
        """Take the address's next slot: (taken, seconds to wait); not taken past `max_wait`."""
        states = self._states
        assert states is not None and self._fd is not None
        indexes = buckets_of(address)
        interval = 1.0 / rate
        with _TableLock(self._fd):
            now = self._clock()
            next_free = max(max(states[index] for index in indexes), now)
            wait = max(0.0, next_free - now - (burst - 1) * interval)
            if wait > max_wait:
                return False, wait
            for index in indexes:
                states[index] = next_free + interval
        return True, wait


class _TableLock:
    """An exclusive flock on the table for one check-and-increment (held for microseconds;
    a worker killed while holding it drops it with its process)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
