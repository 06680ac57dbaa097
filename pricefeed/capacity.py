"""How many streams one worker can hold, from the open-files limit it runs with.

Every stream is one socket, so the soft RLIMIT_NOFILE bounds a worker's clients. Like Go's
runtime and nginx's `worker_rlimit_nofile`, pricefeed's gunicorn worker raises the soft limit
to the hard limit when it starts (raise_open_files_limit; an unprivileged process may), then
derives, in this order:

    open files         = the soft limit in force
    worker_connections = open files − FILE_HEADROOM       (what gunicorn's gevent worker accepts)
    max_clients        = worker_connections − reserve     (streams; the rest still answer
                                                           /health, /prices and the 503s)

FILE_HEADROOM covers what a worker holds besides client sockets: its Redis connections
(commands, pub/sub, lease), the exchange (two sockets while rotating make-before-break), the
REST fallback, the listening socket, log files, gevent's hub and the files Python opens.
The reserve is PRICEFEED_CONNECTION_RESERVE (at most half the pool). Explicit settings win:
PRICEFEED_WORKER_CONNECTIONS (or the host's own gunicorn `worker_connections`) is used as
given, and PRICEFEED_MAX_CLIENTS too, except that it is lowered to keep the reserve.

derive() is pure: its inputs are the loaded settings (settings/delivery.py) and the limit.
The worker derives once, after it loaded the app (pricefeed/server/worker.py); elsewhere
(flask run, a test client) the extension derives from the limit as it finds it.
Standard library only.
"""
from __future__ import annotations

import logging
import resource
from dataclasses import asdict, dataclass
from typing import Any

from pricefeed.settings.delivery import DeliverySettings

log = logging.getLogger(__name__)

FILE_HEADROOM = 128
# Below this many open files a derived capacity would be useless; explicit settings still apply.
SMALLEST_DERIVED = 16

WORKER_CONNECTIONS_VARIABLE = "PRICEFEED_WORKER_CONNECTIONS"
MAX_CLIENTS_VARIABLE = "PRICEFEED_MAX_CLIENTS"


@dataclass(frozen=True)
class OpenFiles:
    """The open-files limit in force."""

    soft: int
    hard: int | None                   # None: unlimited


@dataclass(frozen=True)
class Capacity:
    """The numbers in force for one worker, and where each came from (/health shows them)."""

    open_files_soft: int
    open_files_hard: int | None        # None: unlimited
    worker_connections: int
    worker_connections_source: str     # "derived", "PRICEFEED_WORKER_CONNECTIONS" or "gunicorn config"
    max_clients: int
    max_clients_source: str            # "derived" or "PRICEFEED_MAX_CLIENTS"
    file_headroom: int = FILE_HEADROOM
    health_reserve: int = 100          # PRICEFEED_CONNECTION_RESERVE as applied to this pool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def raise_open_files_limit() -> OpenFiles:
    """Raise the soft open-files limit to the hard one; return the limit now in force.

    Where the hard limit is unlimited, Linux still caps it at fs.nr_open: try that instead.
    A refusal leaves the limit as it was (the derivation then works from it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if target is not None and soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return open_files_limit()


def open_files_limit() -> OpenFiles:
    """The open-files limit as it is (nothing changed); an unlimited soft limit counts as fs.nr_open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = _nr_open() or 1_048_576
    return OpenFiles(soft, None if hard == resource.RLIM_INFINITY else hard)


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open") as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def worker_connections_for(open_files: int) -> int:
    """gunicorn's worker_connections for a worker allowed `open_files` files."""
    return max(SMALLEST_DERIVED, open_files - FILE_HEADROOM, open_files // 2)


def reserve_for(worker_connections: int, reserve: int) -> int:
    """Connections kept free of streams: `reserve`, but never more than half a small pool."""
    return min(reserve, worker_connections // 2)


def max_clients_for(worker_connections: int, reserve: int = 100) -> int:
    """Streams per worker that still leave the reserve for everything else."""
    return max(1, worker_connections - reserve_for(worker_connections, reserve))


def derive(settings: DeliverySettings, open_files: OpenFiles, worker_connections: int | None = None) -> Capacity:
    """The capacity in force: explicit settings first, else derived from `open_files`.

    `worker_connections` is the value the host's gunicorn config gave, when known (inside a
    worker): it wins over the setting and the derivation.
    """
    if worker_connections is not None:
        connections = worker_connections
        source = (WORKER_CONNECTIONS_VARIABLE if settings.worker_connections == worker_connections
                  else "derived" if worker_connections == worker_connections_for(open_files.soft)
                  else "gunicorn config")
    elif settings.worker_connections is not None:
        connections, source = settings.worker_connections, WORKER_CONNECTIONS_VARIABLE
    else:
        connections, source = worker_connections_for(open_files.soft), "derived"
    reserve = reserve_for(connections, settings.connection_reserve)
    cap = max_clients_for(connections, settings.connection_reserve)
    if settings.max_clients is None:
        clients, clients_source = cap, "derived"
    else:
        clients, clients_source = settings.max_clients, MAX_CLIENTS_VARIABLE
        if clients > cap:
            log.warning("pricefeed: PRICEFEED_MAX_CLIENTS=%d leaves fewer than %d of worker_connections=%d "
                        "for /health and /prices; streams capped at %d per worker",
                        clients, reserve, connections, cap)
            clients = cap
    return Capacity(open_files.soft, open_files.hard, connections, source, clients, clients_source,
                    health_reserve=reserve)
