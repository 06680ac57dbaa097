"""How many streams one worker can hold, from the open-files limit it runs with.

Every stream is one socket, so the soft RLIMIT_NOFILE bounds a worker's clients. Like Go's
runtime and nginx's `worker_rlimit_nofile`, we raise the soft limit to the hard limit first
(an unprivileged process may), then derive from it, in this order:

    open files  = the soft limit after raising it
    worker_connections = open files − FILE_HEADROOM          (what gunicorn's gevent worker accepts)
    max_clients        = worker_connections − HEALTH_RESERVE (streams; the rest still answer
                                                              /health, /prices and the 503s)

FILE_HEADROOM covers what a worker holds besides client sockets: its Redis connections
(commands, pub/sub, lease), the exchange (two sockets while rotating make-before-break), the
REST fallback, the listening socket, log files, gevent's hub and the files Python opens.
Explicit settings win: PRICEFEED_WORKER_CONNECTIONS and PRICEFEED_MAX_CLIENTS (or the host's
own gunicorn `worker_connections`) are used as given.

Derived once per process (for_this_process), in the worker, before the app is loaded.
Standard library only.
"""
from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass
from typing import Any, Mapping

FILE_HEADROOM = 128
HEALTH_RESERVE = 100
# Below this many open files a derived capacity would be useless; explicit settings still apply.
SMALLEST_DERIVED = 16

WORKER_CONNECTIONS_VARIABLE = "PRICEFEED_WORKER_CONNECTIONS"
MAX_CLIENTS_VARIABLE = "PRICEFEED_MAX_CLIENTS"


@dataclass(frozen=True)
class Capacity:
    """The numbers in force for one worker, and where each came from."""

    open_files_soft: int
    open_files_hard: int | None        # None: unlimited
    worker_connections: int
    worker_connections_source: str     # "derived", "PRICEFEED_WORKER_CONNECTIONS" or "gunicorn config"
    max_clients: int
    max_clients_source: str            # "derived" or "PRICEFEED_MAX_CLIENTS"
    file_headroom: int = FILE_HEADROOM
    health_reserve: int = HEALTH_RESERVE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def raise_open_files_limit() -> tuple[int, int | None]:
    """Raise the soft open-files limit to the hard one; return (soft, hard) now in force.

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
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, (None if hard == resource.RLIM_INFINITY else hard)


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open") as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def worker_connections_for(open_files: int) -> int:
    """gunicorn's worker_connections for a worker allowed `open_files` files."""
    return max(SMALLEST_DERIVED, open_files - FILE_HEADROOM, open_files // 2)


def max_clients_for(worker_connections: int) -> int:
    """Streams per worker that still leave HEALTH_RESERVE connections for everything else."""
    return max(1, worker_connections - HEALTH_RESERVE, worker_connections // 2)


def derive(environ: Mapping[str, Any] | None = None, worker_connections: int | None = None,
           raise_limit: bool = True) -> Capacity:
    """The capacity in force: explicit settings from `environ` (or app.config) first, else derived.

    `worker_connections` is the value gunicorn actually runs with, when known (inside a
    worker): it wins over the derivation, as the host's gunicorn config may have set it.
    """
    environ = os.environ if environ is None else environ
    soft, hard = raise_open_files_limit() if raise_limit else _current_limit()
    open_files = soft if soft != resource.RLIM_INFINITY else (_nr_open() or 1_048_576)
    explicit_connections = _explicit_int(environ, WORKER_CONNECTIONS_VARIABLE)
    if worker_connections is not None:
        source = ("PRICEFEED_WORKER_CONNECTIONS" if explicit_connections == worker_connections
                  else "derived" if worker_connections == worker_connections_for(open_files)
                  else "gunicorn config")
        connections = worker_connections
    elif explicit_connections is not None:
        connections, source = explicit_connections, WORKER_CONNECTIONS_VARIABLE
    else:
        connections, source = worker_connections_for(open_files), "derived"
    explicit_clients = _explicit_int(environ, MAX_CLIENTS_VARIABLE)
    if explicit_clients is not None:
        clients, clients_source = explicit_clients, MAX_CLIENTS_VARIABLE
    else:
        clients, clients_source = max_clients_for(connections), "derived"
    return Capacity(open_files, hard, connections, source, clients, clients_source)


_in_this_process: Capacity | None = None


def for_this_process(environ: Mapping[str, Any] | None = None, worker_connections: int | None = None) -> Capacity:
    """The capacity of this process, derived once: the first caller's inputs decide.

    Under pricefeed's gunicorn worker the worker calls it first, before loading the app, with
    the worker_connections a host's gunicorn config gave (pricefeed/server/worker.py); the
    extension then reads the same numbers. Elsewhere (flask run, a test client) the extension's
    init_app is the first caller.
    """
    global _in_this_process
    if _in_this_process is None:
        _in_this_process = derive(environ, worker_connections)
    return _in_this_process


def _current_limit() -> tuple[int, int | None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, (None if hard == resource.RLIM_INFINITY else hard)


def _explicit_int(environ: Mapping[str, Any], key: str) -> int | None:
    raw = environ.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={str(raw)[:80]!r} is invalid: expected a whole number") from None
    if value < 1:
        raise ValueError(f"{key}={value} is below the minimum 1")
    return value
