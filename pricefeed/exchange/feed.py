"""The exchange connection: Binance market streams over `websocket-client`, in greenlets.

`BinanceFeed` keeps one combined-stream connection alive forever and turns its
frames into `PriceTick`s. What it guards against, each learnt from users of
other clients (BINANCE.md):

- silent stalls: a watchdog on the *data*, not the socket. A connection quiet for
  `probe_after` is asked one cheap question (LIST_SUBSCRIPTIONS); no answer within
  `probe_timeout` and it is replaced even if pings still flow. A quiet market on a
  live connection answers, so it is neither replaced nor stale;
- giving up: it never does; waits follow `ReconnectPolicy` (full jitter, capped,
  and a hard cap under Binance's 300 attempts per 5 minutes);
- double pongs: websocket-client answers each ping with exactly one pong
  echoing its payload; we send nothing else, so we stay far below 5 msgs/s;
- losing data at the 24 h limit and at `serverShutdown`: make-before-break —
  the replacement takes over once it is open and confirmed (its first data or
  the answer to its first control request, whichever comes first: no trade is
  needed), after a short overlap whose duplicates the per-symbol ids drop;
- hostile frames: a size cap read from the frame header, every value checked
  by `pricefeed.validation`, bad events counted by reason and skipped, and a
  cooperative yield inside frames with many events.

Each connection has its own reader greenlet; one supervisor greenlet decides
when to connect, rotate and give a connection up.
"""
from __future__ import annotations

import itertools
import logging
import ssl
import time
from collections.abc import Callable, Iterator

import gevent
import gevent.event
import pybreaker
import websocket

from pricefeed.exchange.access import AccessRefusals
from pricefeed.exchange.backoff import AttemptBudgetSpent, ReconnectPolicy
from pricefeed.exchange.connection import DEFAULT_MAX_FRAME_BYTES, FeedStats, UpstreamConnection, cap_frame_size
from pricefeed.exchange.frames import FrameHandler
from pricefeed.exchange.stream_plan import StreamGroup, one_group
from pricefeed.logs import short_reason
from pricefeed.pairs import PairCatalog
from pricefeed.shown_urls import reduce_url
from pricefeed.ticks import PriceTick
from pricefeed.validation import DEFAULT_MAX_CLOCK_SKEW_MS

log = logging.getLogger(__name__)

SIMULATOR_HEADER = "x-pricefeed-simulator"
# How long both connections run side by side once the replacement is confirmed. Short: the
# old one keeps reading what it already has until its close handshake ends anyway.
ROTATION_OVERLAP_SECONDS = 0.5
SUPERVISE_INTERVAL_SECONDS = 0.1
BREAKER_OPEN_POLL_SECONDS = 0.5
# Certificates are always verified: there is no setting that turns this off.
_TLS_OPTIONS = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}


class BinanceFeed:
    """Keeps a combined-stream connection to the exchange and emits a PriceTick per trade.

    It reads one `StreamGroup` (default: every pair of the catalog); a `FeedSet` runs one
    per group when the pairs need several connections.
    """

    def __init__(self, url: str, catalog: PairCatalog, on_tick: Callable[[PriceTick], None], *,
                 silence_timeout: float = 15.0, connect_timeout: float = 10.0,
                 rotate_after: float = 23 * 3600.0, policy: ReconnectPolicy,
                 force_simulated: bool = False, clock: Callable[[], float] = time.monotonic,
                 breaker: pybreaker.CircuitBreaker | None = None, probe_after: float | None = None,
                 probe_timeout: float = 3.0, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 max_clock_skew_ms: int | None = DEFAULT_MAX_CLOCK_SKEW_MS,
                 group: StreamGroup | None = None, numbering: Iterator[int] | None = None,
                 access: AccessRefusals | None = None):
        self.group = group if group is not None else one_group(url, catalog.pairs)
        self.url = self.group.url
        # Where a 451 or 403 on the handshake goes (exchange/access.py).
        self.access = access
        # Quiet this long, a connection is asked whether it still works (never later than the
        # silence timeout); it is replaced only if that goes unanswered for `probe_timeout`.
        self.probe_after = min(silence_timeout, probe_after) if probe_after else silence_timeout
        self.probe_timeout = probe_timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_clock_skew_ms = max_clock_skew_ms
        self.breaker = breaker
        self.catalog = catalog
        self.on_tick = on_tick
        self.silence_timeout = silence_timeout
        self.connect_timeout = connect_timeout
        self.rotate_after = rotate_after
        self.policy = policy
        self.force_simulated = force_simulated
        self._clock = clock
        self.stats = FeedStats()
        self.active: UpstreamConnection | None = None
        self.standby: UpstreamConnection | None = None
        # Connection numbers, shared by the feeds of a set so that "#7" in a log is one connection.
        self._numbering = numbering if numbering is not None else itertools.count(1)
        self._next_replacement_at = 0.0
        self._wake = gevent.event.Event()
        self._stopping = False
        self._greenlet: gevent.Greenlet | None = None
        self.frames = FrameHandler(catalog, on_tick, self.stats, max_clock_skew_ms, force_simulated,
                                   on_first_data=policy.succeeded, on_shutdown=self._wake.set)
        self._connected_since_wall: float | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._greenlet is None:
            self._stopping = False
            self._greenlet = gevent.spawn(self._supervise_forever)

    def stop(self, wait: float = 0.0) -> None:
        """Close the connections; with `wait`, return only once they are closed (or `wait` passed).

        A leader handing over waits, so the exchange never sees its connection and
        the successor's open at the same time.
        """
        self._stopping = True
        connections = [conn for conn in (self.active, self.standby) if conn is not None]
        for conn in connections:
            conn.close("feed stopped")
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self.active = self.standby = None
        if wait and connections:
            gevent.joinall([conn.reader for conn in connections], timeout=wait)

    @property
    def running(self) -> bool:
        return self._greenlet is not None

    def is_live(self) -> bool:
        """Connected, and the exchange proved the connection current (data, or an answered
        probe) recently enough that the watchdog has not given up on it."""
        age = self.data_age()
        return age is not None and age < self.probe_after + self.probe_timeout

    def data_age(self) -> float | None:
        """Seconds since the active connection was last known current — its last data or the
        answer to a probe (a quiet market on a live connection is current); None when not connected."""
        conn = self.active
        if conn is None or conn.ended:
            return None
        return self._clock() - conn.last_heard_at

    @property
    def simulated(self) -> bool:
        conn = self.active
        return self.force_simulated or (conn is not None and conn.simulated)

    # -- supervisor ----------------------------------------------------------------

    def _supervise_forever(self) -> None:
        while not self._stopping:
            try:
                if self.active is None:
                    self._connect_fresh()
                    continue
                self._wake.wait(SUPERVISE_INTERVAL_SECONDS)
                self._wake.clear()
                self._supervise_once()
            except gevent.GreenletExit:
                raise
            except Exception:  # noqa: BLE001 - the supervisor must outlive any bug in one pass
                log.exception("upstream supervisor pass failed; continuing")
                gevent.sleep(1.0)

    def _connect_fresh(self) -> None:
        delay = self.policy.delay()
        if delay > 0:
            log.info("upstream: next connection attempt in %.2fs", delay)
            gevent.sleep(delay)
        conn = self._open()
        if conn is not None:
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            # A fresh connection after a gap: trade ids may restart (exchange failover);
            # only an overlap needs the per-symbol dedup memory.
            self.frames.dedup.clear()
            self.active = conn
            self._connected_since_wall = time.time()

    def _supervise_once(self) -> None:
        now = self._clock()
        conn = self.active
        if conn is None:
            return     # stop() dropped it while we waited: the loop ends, or connects afresh
        if conn.ended:
            self._lost(conn)
            return
        standby = self.standby
        if standby is not None:
            if standby.ended:
                self.standby = None
            elif standby.confirmed_at is not None and (
                    now - standby.confirmed_at >= ROTATION_OVERLAP_SECONDS or conn.replace_reason):
                # Confirmed: its subscriptions are live. (An unreadable old one needs no overlap.)
                self._promote(standby)
                return
            elif standby.confirmed_at is None and now - standby.opened_at >= self.probe_timeout:
                log.warning("upstream: replacement #%d neither delivered nor answered; abandoning it",
                            standby.number)
                standby.close("replacement unconfirmed")
                self.standby = None
                # A peer that accepts and never answers must not get a handshake every few seconds.
                self.policy.failed()
                self._next_replacement_at = now + max(SUPERVISE_INTERVAL_SECONDS, self.policy.delay())
        if self._watchdog(conn, now):
            return
        replace = conn.replace_reason or ("serverShutdown" if conn.shutdown_announced else "") or (
            "rotation before 24 h" if conn.age() >= self.rotate_after else "")
        if self.standby is None and replace and now >= self._next_replacement_at:
            log.info("upstream: opening a replacement for connection #%d (%s)", conn.number, replace)
            self.standby = self._open()
            if self.standby is None:
                # Keep the old connection and try again after the backoff (and any Retry-After).
                self._next_replacement_at = now + max(SUPERVISE_INTERVAL_SECONDS, self.policy.delay())

    def _watchdog(self, conn: UpstreamConnection, now: float) -> bool:
        """Probe a quiet connection; replace it if the probe goes unanswered. True if replaced."""
        if conn.probe_sent_at is not None and conn.last_data_at > conn.probe_sent_at:
            conn.probe_sent_at = None   # data is an answer too
        if conn.probe_sent_at is not None:
            if now - conn.probe_sent_at < self.probe_timeout:
                return False
            self.stats.silence_timeouts += 1
            log.warning("upstream: connection #%d quiet for %.1fs and its probe unanswered for %.1fs; "
                        "replacing it", conn.number, now - conn.last_heard_at, now - conn.probe_sent_at)
            conn.close("silence: probe unanswered")
            self._lost(conn)
            return True
        if now - conn.last_heard_at >= self.probe_after:
            self.stats.probes += 1
            conn.send_probe()
        return False

    def _lost(self, conn: UpstreamConnection) -> None:
        """The active connection ended: take the standby if there is one, else reconnect."""
        reason = conn.end_reason or "ended"
        self.stats.last_error = reason
        standby = self.standby
        if standby is not None and not standby.ended:
            log.info("upstream: connection #%d ended (%s); standby #%d takes over",
                     conn.number, reason, standby.number)
            self.standby = None
            self.active = standby
            self.stats.rotations += 1
            return
        log.warning("upstream: connection #%d ended: %s", conn.number, reason)
        self.active = None
        self._connected_since_wall = None
        if not conn.shutdown_announced:
            self.policy.failed()

    def _promote(self, standby: UpstreamConnection) -> None:
        old = self.active
        self.active = standby
        self.standby = None
        self.stats.rotations += 1
        if old is not None:
            log.info("upstream: connection #%d replaces #%d", standby.number, old.number)
            old.close("replaced")

    def _connect(self) -> websocket.WebSocket:
        # Counted here, inside the breaker: an attempt the open breaker refused costs nothing.
        self.policy.attempted()
        self.stats.connect_attempts += 1
        # No handshake redirects (a redirect could lead off TLS or to another host); TLS verified.
        return websocket.create_connection(self.url, timeout=self.connect_timeout, enable_multithread=True,
                                           suppress_origin=True, skip_utf8_validation=True,
                                           redirect_limit=0, sslopt=dict(_TLS_OPTIONS))

    def _open(self) -> UpstreamConnection | None:
        try:
            self.policy.take_host_attempt()
        except AttemptBudgetSpent as exc:
            self._failed(str(exc), exc.wait)
            return None
        try:
            ws = self.breaker.call(self._connect) if self.breaker is not None else self._connect()
        except pybreaker.CircuitBreakerError:
            # Refused without trying (breakers here re-raise the real error when they trip):
            # wait for the breaker's trial call; no attempt spent, no backoff step.
            self.stats.last_error = "upstream circuit breaker open"
            gevent.sleep(BREAKER_OPEN_POLL_SECONDS)
            return None
        except websocket.WebSocketBadStatusException as exc:
            if self.access is not None and self.access.applies(exc.status_code):
                self._access_refused(exc.status_code)
                return None
            retry_after = _retry_after((exc.resp_headers or {}).get("retry-after"))
            self.stats.handshake_refusals += 1
            self._failed(f"handshake refused with HTTP {exc.status_code}", retry_after)
            return None
        except Exception as exc:  # noqa: BLE001 - DNS, TCP, TLS, protocol: all mean "try later"
            self._failed(short_reason(exc), None)
            return None
        ws.settimeout(None)  # reads block in their greenlet; the supervisor watches the data
        cap_frame_size(ws, self.max_frame_bytes)
        headers = ws.getheaders() or {}
        conn = UpstreamConnection(ws, next(self._numbering), SIMULATOR_HEADER in headers,
                                  self.frames.on_data, self._on_end, self._clock)
        self.stats.connects += 1
        log.info("upstream: connection #%d open to %s%s", conn.number, self.url.split("?")[0],
                 " (simulator)" if conn.simulated else "")
        # Confirms the subscriptions without waiting for a trade (a quiet market has none).
        self.stats.probes += 1
        conn.send_probe()
        return conn

    def _failed(self, reason: str, retry_after: float | None) -> None:
        self.stats.connect_failures += 1
        self.stats.last_error = reason
        self.policy.failed(retry_after)
        log.warning("upstream: connection attempt failed: %s%s", reason,
                    f" (Retry-After {retry_after:.0f}s)" if retry_after else "")

    def _access_refused(self, status: int) -> None:
        """451 (region not served) or 403 (the exchange's firewall): no backoff cures it, so the
        next attempt waits AccessRefusals' interval (about a minute), never a retry loop."""
        assert self.access is not None
        self.stats.connect_failures += 1
        self.stats.handshake_refusals += 1
        wait = self.access.refused(status, "handshake", self.url)
        self.stats.last_error = f"handshake refused with HTTP {status} ({self.access.reason})"
        self.policy.failed(wait)

    def retarget(self, group: StreamGroup) -> None:
        """This connection's streams changed (the exchange's catalogue was read, or a pair was
        delisted): the new streams go on a replacement connection, make-before-break."""
        self.group = group
        self.url = group.url
        conn = self.active
        if conn is not None and not conn.replace_reason:
            conn.replace_reason = "the exchange's catalogue changed the symbols"
        self._wake.set()

    def _on_end(self, conn: UpstreamConnection) -> None:
        if conn.replace_reason and not conn.ended:
            self.stats.oversized_frames += 1
            self.frames.reject(conn, "frame_too_large", conn.replace_reason, b"")
        self._wake.set()

    # -- health --------------------------------------------------------------------

    def status(self) -> dict:
        conn = self.active
        now = self._clock()
        return {
            "url": reduce_url(self.url),
            "streams": len(self.group.streams),
            "pairs": len(self.group.pairs),
            "target_length": self.group.target_length,
            "connected": conn is not None and not conn.ended,
            "live": self.is_live(),
            "simulated": self.simulated,
            "connection": conn.number if conn else None,
            "connected_since": self._connected_since_wall,
            "connection_age_s": round(conn.age(), 3) if conn else None,
            "last_message_age_s": round(now - conn.last_data_at, 3) if conn else None,
            "last_confirmed_age_s": round(now - conn.last_heard_at, 3) if conn else None,
            "pings_on_connection": conn.pings if conn else None,
            "rotating": self.standby is not None,
            "connects": self.stats.connects,
            "reconnects": self.stats.reconnects,
            "rotations": self.stats.rotations,
            "connect_attempts": self.stats.connect_attempts,
            "connect_failures": self.stats.connect_failures,
            "attempts_last_5min": self.policy.attempts_in_window(),
            "host_attempt_budget": self.policy.host_budget.status() if self.policy.host_budget else None,
            "handshake_refusals": self.stats.handshake_refusals,
            "silence_timeouts": self.stats.silence_timeouts,
            "probes": self.stats.probes,
            "probes_answered": self.stats.probes_answered,
            "probe_after_s": self.probe_after,
            "messages": self.stats.messages,
            "malformed": self.stats.malformed,
            "rejected": dict(self.stats.rejected),
            "oversized_frames": self.stats.oversized_frames,
            "max_frame_bytes": self.max_frame_bytes,
            "duplicates_dropped": self.frames.dedup.duplicates,
            "dedup_resets": self.frames.dedup.resets,
            "unused": self.stats.unused,
            "last_error": self.stats.last_error,
        }


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, int(value.strip()))
    except ValueError:
        return None
