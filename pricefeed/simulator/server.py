"""Running the exchange on a gevent WSGI server until SIGTERM or SIGINT."""
from __future__ import annotations

import signal
import sys

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from .exchange import Exchange
from .handler import SimulatorHandler
from .options import SimulatorOptions

# How long open connections get to finish their close handshake at exit.
STOP_TIMEOUT = 2.0


def display_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(options: SimulatorOptions) -> int:
    """Serve until told to stop; print `listening on http://H:P` once accepting."""
    exchange = Exchange(options)
    server = WSGIServer((options.host, options.port), exchange, handler_class=SimulatorHandler,
                        log=sys.stderr if options.verbose else None)
    server.start()
    exchange.start()
    assert isinstance(server.address, tuple), server.address      # bound to (host, port), not a Unix socket
    host, port = server.address[:2]
    print(f"listening on {display_url(host, port)}", flush=True)

    stopping = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    stopping.wait()

    exchange.stop()
    server.stop(timeout=STOP_TIMEOUT)
    return 0
