"""pricefeed's gunicorn worker: gunicorn's gevent worker, with what the feed needs from it
done in the methods it overrides (as uvicorn's and gevent-websocket's workers do).

`from pricefeed.gunicorn import *` names it as gunicorn's `worker_class`. It owns:

- its capacity: the open-files limit raised when it starts (init_process), and
  `worker_connections` and the client cap derived once, from the app's settings, once the app
  is loaded (load_wsgi; capacity.py);
- the feed's start, after the app is loaded and before serving (run), whatever hooks the
  host's gunicorn.conf.py defines;
- the servers it builds (run, accept.py): up to PRICEFEED_ACCEPT_BATCH connections accepted
  per loop turn, and the door that refuses new streams before gunicorn's parser while the
  worker sheds load;
- JSON answers to gunicorn's own limit errors (handle_error, raw_response.py);
- which connections sit idle between requests (timeout_ctx, keepalive.py);
- one ordered stop with one deadline (handle_exit, run): accept no more, close the idle
  keep-alive connections, hand the lease over and close the streams in a spread, wait for
  the requests still being answered — all inside gunicorn's graceful_timeout.

What the app and the worker tell each other is `PriceFeedState.served_by` (pricefeed/web/extension.py).
The gunicorn internals relied on, per version, are in docs/gunicorn-worker.md; another
gunicorn version is refused at boot (log, then exit with gunicorn's boot-error code, which
stops the master rather than respawning).

Module level imports gevent and gunicorn only: the master imports this class (as it imports
gunicorn's own gevent worker) and must not import Flask or redis.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from functools import partial
from typing import Any

import gevent
import gunicorn
from gevent.event import Event
from gevent.pool import Pool
from gunicorn.arbiter import Arbiter
from gunicorn.sock import ssl_context
from gunicorn.workers.base import Worker as BaseWorker
from gunicorn.workers.ggevent import GeventWorker

from pricefeed.server.accept import AcceptServer
from pricefeed.server.access_line import door_refusal_atoms
from pricefeed.server.handoff import offers_hand_off
from pricefeed.server.keepalive import KeepAliveWaits
from pricefeed.server.limits import json_refusal
from pricefeed.server.pending import PendingConnections
from pricefeed.web import EXTENSION_KEY  # the package's own module: no Flask in the master

# [from, to) of gunicorn's version_info; pyproject.toml states the same range.
SUPPORTED_GUNICORN = ((27, 0), (28, 0))
# Of graceful_timeout: the last part, for the exit itself once the pool is done (the master
# SIGKILLs a worker still there at graceful_timeout).
EXIT_ALLOWANCE_S = 0.5
# The lease handover before the first stream is closed (node.stop: the release, the feed's
# close) takes up to about this long; the close delay and spread fit in what remains.
HANDOVER_ALLOWANCE_S = 1.5
HEARTBEAT_S = 1.0          # gunicorn's own loop notifies the master once a second


def supported(version_info: tuple) -> bool:
    low, high = SUPPORTED_GUNICORN
    return low <= tuple(version_info[:2]) < high


def restart_timing(delay_s: float, spread_s: float, budget_s: float) -> tuple[float, float]:
    """(delay, spread) that fit together in `budget_s`: the delay takes at most a third, the
    spread gives way first."""
    budget = max(0.0, budget_s)
    delay = min(delay_s, budget / 3)
    return delay, max(0.0, min(spread_s, budget - delay))


class NamedListener:
    """The listening socket as gunicorn's handler sees it, its name read once: a connection whose
    head arrives after a stopping worker closed its listener (accept.py waits for it) is still
    answered — gunicorn's handle starts with `listener.getsockname()`."""

    def __init__(self, sock: Any):
        self._sock = sock
        self._name = sock.getsockname()

    def getsockname(self) -> Any:
        return self._name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Worker(GeventWorker):
    """gunicorn's gevent worker, serving a Flask app with the PriceFeed extension."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.feed: Any = None              # the app's PriceFeedState (app.extensions), once the app is loaded
        self.door: Any = None              # the app's StreamDoor (pricefeed/web/streams/door.py)
        self.servers: list[AcceptServer] = []
        self.open_files: Any = None        # the limit in force once init_process raised it (capacity.py)
        self.capacity: Any = None          # derived once the app is loaded (load_wsgi)
        self.keepalive_waits = KeepAliveWaits()
        self._pending: PendingConnections | None = None
        self._told_to_stop: Event | None = None
        self._feed_stopped = False

    # -- boot ------------------------------------------------------------------------------

    def init_process(self) -> None:
        if not supported(gunicorn.version_info):
            low, high = SUPPORTED_GUNICORN
            self.log.error("pricefeed: this worker supports gunicorn >=%d.%d,<%d.%d and runs under gunicorn %s: "
                           "install a supported gunicorn (pip install 'gunicorn>=%d.%d,<%d.%d')",
                           *low, *high, gunicorn.__version__, *low, *high)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        from pricefeed.capacity import raise_open_files_limit
        self.open_files = raise_open_files_limit()
        super().init_process()      # patches, loads the app (load_wsgi), post_worker_init, run

    def _hosts_worker_connections(self) -> int | None:
        """worker_connections as the host's gunicorn config set it; None if left at gunicorn's
        default (then PRICEFEED_WORKER_CONNECTIONS or the derivation decides)."""
        setting = self.cfg.settings["worker_connections"]
        return None if setting.value == setting.default else setting.value

    def load_wsgi(self) -> None:
        super().load_wsgi()
        extensions = getattr(self.wsgi, "extensions", None) or {}
        self.feed = extensions.get(EXTENSION_KEY)
        from pricefeed.capacity import derive
        if self.feed is None:
            self.log.warning("pricefeed: the WSGI app has no PriceFeed extension; serving it as gunicorn's "
                             "gevent worker would")
            from pricefeed.settings.delivery import DeliverySettings
            delivery = DeliverySettings.load(environ=os.environ)
        else:
            delivery = self.feed.loaded_config.delivery
        # The pool is only built in run (_server): derived here, from the settings the app loaded.
        self.capacity = derive(delivery, self.open_files, self._hosts_worker_connections())
        self.worker_connections = self.capacity.worker_connections
        if self.feed is not None:
            # Waiting for a head's blank line means plain HTTP: not TLS records, not the uwsgi protocol.
            if not self.cfg.is_ssl and self.cfg.protocol != "uwsgi":
                endpoint = self.feed.config.endpoint
                self._pending = PendingConnections(endpoint.max_pending_per_ip, endpoint.request_head_timeout,
                                                   endpoint.trusted_proxies)
            # Chunks straight to the socket need gunicorn's own Response framing (not the uwsgi
            # protocol); each stream still checks its socket (TLS) and its framing.
            self.door = self.feed.served_by(self.capacity, direct_writes=self.cfg.protocol != "uwsgi",
                                            pending_connections=self._pending)

    # -- serving ---------------------------------------------------------------------------

    def run(self) -> None:
        self._told_to_stop = Event()
        try:
            if self.feed is not None:
                self.feed.start()
            # The heap built at boot (the app, its modules, the feed: ~54,000 objects) lives as long
            # as the worker: frozen, the full collections that the allocations of stream opens
            # trigger now and then no longer walk it.
            gc.collect()
            gc.freeze()
            self.servers = [self._server(listener) for listener in self.sockets]
            for server in self.servers:
                server.start()
            while self.alive:
                self.notify()
                self._told_to_stop.wait(HEARTBEAT_S)
            self._stop_in_order()
        finally:
            self._stop_feed()       # however run ends (the master gone, an error): hand the lease over

    def _server(self, listener: Any) -> AcceptServer:
        listener.setblocking(1)
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        # The door peeks plain HTTP request heads: not TLS records, not the uwsgi protocol.
        door = None if self.cfg.is_ssl or self.cfg.protocol == "uwsgi" else self.door
        if self.feed is not None:
            batch = self.feed.config.delivery.accept_batch
        else:
            batch = 1 if self.cfg.workers > 1 else AcceptServer.max_accept    # gunicorn's own choice
        # NamedListener stands in for the socket: gunicorn's handle only asks it for getsockname().
        handle = partial(self.handle, NamedListener(listener))  # type: ignore[arg-type]
        return AcceptServer(listener, handle, Pool(self.worker_connections), batch, door, self.keepalive_waits,
                            self._pending, self._log_refusal, self._hand_off(listener), **ssl_args)

    def _log_refusal(self, head: bytes, peer: Any, refusal: Any, seconds: float) -> None:
        """The access-log line of a request the door answered before gunicorn's parser: in
        gunicorn's access_log_format, with the reason as the `refused` field (and as the
        environ atom `{pricefeed.refused}e`)."""
        if not self.log.access_log_enabled:
            return
        try:
            atoms = door_refusal_atoms(self.log, head, peer, refusal, seconds)
            self.log.access_log.info(self.cfg.access_log_format, self.log.atoms_wrapper_class(atoms),
                                     extra={"refused": refusal.reason})
        except Exception:  # noqa: BLE001 - a log line never takes the worker down
            self.log.exception("pricefeed: access log line for a door refusal failed")

    def _hand_off(self, listener: Any) -> Any:
        """The app's stream hand-off for this listener (server/handoff.py), or None."""
        if self.feed is None or not offers_hand_off(self.cfg, listener):
            return None
        return self.feed.stream_hand_off(self.wsgi, self.cfg, listener.getsockname())

    def timeout_ctx(self) -> Any:
        """gunicorn's keep-alive wait for the next request head: its Timeout, known while it waits."""
        return self.keepalive_waits.wait(self.cfg.keepalive)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's refusals of an oversized request line or header block in JSON; the rest as gunicorn's."""
        response = json_refusal(exc, self.cfg)
        if response is None:
            super().handle_error(req, client, addr, exc)
            return
        self.log.debug("refused: %s", exc)
        try:
            client.sendall(response)
        except OSError:
            pass      # the client went away before hearing why

    # -- stopping --------------------------------------------------------------------------

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM (a graceful stop or restart): run's loop wakes now and stops in order."""
        super().handle_exit(sig, frame)
        if self._told_to_stop is not None:
            self._told_to_stop.set()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGINT/SIGQUIT: stop now. Out of the signal handler, as gunicorn's gevent worker does."""
        gevent.spawn(self._quit, sig, frame)

    def _quit(self, sig: int, frame: Any) -> None:
        self.alive = False
        for server in self.servers:
            server.close()
        self._stop_feed()
        BaseWorker.handle_quit(self, sig, frame)     # the host's worker_int, then exit

    def handle_abort(self, sig: int, frame: Any) -> None:
        """SIGABRT (the heartbeat timeout): release the lease if we still can, then gunicorn's abort."""
        self._stop_feed()
        super().handle_abort(sig, frame)

    def _stop_in_order(self) -> None:
        """The one stop, inside graceful_timeout from now."""
        started = time.monotonic()
        deadline = started + self.cfg.graceful_timeout - EXIT_ALLOWANCE_S
        heartbeat = gevent.spawn(self._keep_notifying)
        try:
            # 1. Accept no more; 2. close the connections idle between requests, on which a
            # returning browser would be told "shutting down" by this worker (keepalive.py).
            for server in self.servers:
                server.close()
            idle = self.keepalive_waits.close_idle()
            self.log.warning("pricefeed: stopping: %d listener(s) closed, %d idle keep-alive connection(s) closed "
                             "in %.3f s", len(self.servers), idle, time.monotonic() - started)
            # 3. Hand the lease over; 4. close the streams over PRICEFEED_RESTART_SPREAD (delivery/farewell.py),
            # so that browsers come back spread out, not all in one second.
            if self.feed is not None:
                restart = self.feed.config.restart
                delay, spread = restart_timing(restart.restart_close_delay, restart.restart_spread,
                                               deadline - time.monotonic() - HANDOVER_ALLOWANCE_S)
                self._stop_feed(spread, delay)
            # 5. Wait for the requests still being answered, until the deadline.
            for server in self.servers:
                server.pool.join(timeout=max(0.0, deadline - time.monotonic()))
            busy = sum(len(server.pool) for server in self.servers)
            if busy:
                self.log.warning("pricefeed: %d connection(s) still served at the end of graceful_timeout; ended",
                                 busy)
                for server in self.servers:
                    server.pool.kill(block=True, timeout=EXIT_ALLOWANCE_S / 2)
        finally:
            heartbeat.kill(block=False)

    def _keep_notifying(self) -> None:
        while True:
            self.notify()
            gevent.sleep(HEARTBEAT_S)

    def _stop_feed(self, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
        """Stop the feed and hand the lease over (once); its streams closed over `spread_s` after `delay_s`."""
        if self.feed is None or self._feed_stopped:
            return
        self._feed_stopped = True
        try:
            self.feed.stop(spread_s, delay_s)
        except Exception:  # noqa: BLE001 - stopping: log and carry on to the exit
            self.log.exception("pricefeed: stop failed")
