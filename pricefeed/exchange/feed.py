"""The exchange connection: Binance market streams over `websocket-client`, in greenlets.

`BinanceFeed` keeps one combined-stream connection alive forever and turns its
frames into `PriceTick`s. What it guards against, each learnt from users of
other clients (BINANCE.md):

- silent stalls: a watchdog on the *data*, not the socket — no data message for
  `silence_timeout` and the connection is replaced even if pings still flow;
- giving up: it never does; waits follow `ReconnectPolicy` (full jitter, capped,
  and a hard cap under Binance's 300 attempts per 5 minutes);
- double pongs: websocket-client answers each ping with exactly one pong
  echoing its payload; we send nothing else, so we stay far below 5 msgs/s;
- losing data at the 24 h limit and at `serverShutdown`: make-before-break —
  the replacement connection is opened and delivering before the old one is
  closed, and per-symbol trade ids drop the duplicates of the overlap.

Each connection has its own reader greenlet; one supervisor greenlet decides
when to connect, rotate and give a connection up.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import gevent
import gevent.event
import pybreaker
import websocket

from pricefeed.exchange.backoff import ReconnectPolicy
from pricefeed.exchange.protocol import (ControlReply, MalformedFrame, ServerShutdown, Ticker, Trade,
                      combined_stream_url, parse_frame)
from pricefeed.config import reduce_url
from pricefeed.logs import RateLimitedLog, outside, short_reason
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick
from pricefeed.exchange.connection import FeedStats, UpstreamConnection

log = logging.getLogger(__name__)

SIMULATOR_HEADER = "x-pricefeed-simulator"
# How long both connections run side by side during a rotation once the new one delivers.
ROTATION_OVERLAP_SECONDS = 1.0
SUPERVISE_INTERVAL_SECONDS = 0.1
BREAKER_OPEN_POLL_SECONDS = 0.5


class BinanceFeed:
    """Keeps a combined-stream connection to the exchange and emits a PriceTick per trade."""

    def __init__(self, url: str, catalog: PairCatalog, on_tick: Callable[[PriceTick], None], *,
                 silence_timeout: float = 15.0, connect_timeout: float = 10.0,
                 rotate_after: float = 23 * 3600.0, policy: ReconnectPolicy,
                 force_simulated: bool = False, clock: Callable[[], float] = time.monotonic,
                 breaker: pybreaker.CircuitBreaker | None = None):
        self.url = combined_stream_url(url, catalog.pairs)
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
        self._warnings = RateLimitedLog(log, 10.0)
        self.active: UpstreamConnection | None = None
        self.standby: UpstreamConnection | None = None
        self._numbers = 0
        self._next_replacement_at = 0.0
        self._wake = gevent.event.Event()
        self._stopping = False
        self._greenlet: gevent.Greenlet | None = None
        self._last_trade_id: dict[tuple[str, str], int] = {}
        self._last_ticker_time: dict[str, int] = {}
        self._open24h: dict[str, str] = {}
        self._last_price: dict[str, tuple[int, str]] = {}   # symbol -> (event time, price) emitted
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
        """Connected and data arrived within the silence timeout."""
        conn = self.active
        return (conn is not None and not conn.ended
                and self._clock() - conn.last_data_at < self.silence_timeout)

    def data_age(self) -> float | None:
        """Seconds since the active connection last delivered data; None when not connected."""
        conn = self.active
        if conn is None or conn.ended:
            return None
        return self._clock() - conn.last_data_at

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
            self._last_trade_id.clear()
            self._last_ticker_time.clear()
            self.active = conn
            self._connected_since_wall = time.time()

    def _supervise_once(self) -> None:
        now = self._clock()
        conn = self.active
        assert conn is not None
        if conn.ended:
            self._lost(conn)
            return
        standby = self.standby
        if standby is not None:
            if standby.ended:
                self.standby = None
            elif standby.first_data_at is not None and now - standby.first_data_at >= ROTATION_OVERLAP_SECONDS:
                self._promote(standby)
                return
            elif standby.first_data_at is None and now - standby.opened_at >= self.silence_timeout:
                log.warning("upstream: replacement #%d delivered nothing; abandoning it", standby.number)
                standby.close("replacement silent")
                self.standby = None
        if now - conn.last_data_at >= self.silence_timeout:
            self.stats.silence_timeouts += 1
            log.warning("upstream: no data for %.1fs on connection #%d; replacing it",
                        now - conn.last_data_at, conn.number)
            conn.close("silence")
            self._lost(conn)
            return
        if self.standby is None and (conn.shutdown_announced or conn.age() >= self.rotate_after) \
                and now >= self._next_replacement_at:
            reason = "serverShutdown" if conn.shutdown_announced else "rotation before 24 h"
            log.info("upstream: opening a replacement for connection #%d (%s)", conn.number, reason)
            self.standby = self._open()
            if self.standby is None:
                # Keep the old connection and try again after the backoff (and any Retry-After).
                self._next_replacement_at = now + max(SUPERVISE_INTERVAL_SECONDS, self.policy.delay())

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
        return websocket.create_connection(self.url, timeout=self.connect_timeout, enable_multithread=True,
                                           suppress_origin=True, skip_utf8_validation=True)

    def _open(self) -> UpstreamConnection | None:
        try:
            ws = self.breaker.call(self._connect) if self.breaker is not None else self._connect()
        except pybreaker.CircuitBreakerError:
            # Refused without trying (breakers here re-raise the real error when they trip):
            # wait for the breaker's trial call; no attempt spent, no backoff step.
            self.stats.last_error = "upstream circuit breaker open"
            gevent.sleep(BREAKER_OPEN_POLL_SECONDS)
            return None
        except websocket.WebSocketBadStatusException as exc:
            retry_after = _retry_after((exc.resp_headers or {}).get("retry-after"))
            self.stats.handshake_refusals += 1
            self._failed(f"handshake refused with HTTP {exc.status_code}", retry_after)
            return None
        except Exception as exc:  # noqa: BLE001 - DNS, TCP, TLS, protocol: all mean "try later"
            self._failed(short_reason(exc), None)
            return None
        ws.settimeout(None)  # reads block in their greenlet; the supervisor watches the data
        self._numbers += 1
        headers = ws.getheaders() or {}
        conn = UpstreamConnection(ws, self._numbers, SIMULATOR_HEADER in headers,
                                  self._on_data, self._on_end, self._clock)
        self.stats.connects += 1
        log.info("upstream: connection #%d open to %s%s", conn.number, self.url.split("?")[0],
                 " (simulator)" if conn.simulated else "")
        return conn

    def _failed(self, reason: str, retry_after: float | None) -> None:
        self.stats.connect_failures += 1
        self.stats.last_error = reason
        self.policy.failed(retry_after)
        log.warning("upstream: connection attempt failed: %s%s", reason,
                    f" (Retry-After {retry_after:.0f}s)" if retry_after else "")

    def _on_end(self, conn: UpstreamConnection) -> None:
        self._wake.set()

    # -- frames --------------------------------------------------------------------

    def _on_data(self, conn: UpstreamConnection, data: bytes, binary: bool) -> None:
        self.stats.messages += 1
        if conn.first_data_at == conn.last_data_at:
            # The first data on this connection: it works, so backoff starts afresh.
            self.policy.succeeded()
        try:
            if binary:
                raise MalformedFrame("binary frame (Binance sends text)")
            messages = parse_frame(data)
        except MalformedFrame as exc:
            self.stats.malformed += 1
            self._warnings.warning("malformed", "upstream: malformed frame #%d skipped: %s; frame starts %s",
                                   self.stats.malformed, outside(str(exc)), outside(data))
            return
        for message in messages:
            if isinstance(message, Trade):
                self._on_trade(conn, message)
            elif isinstance(message, Ticker):
                self._on_ticker(conn, message)
            elif isinstance(message, ServerShutdown):
                log.info("upstream: serverShutdown on connection #%d", conn.number)
                conn.shutdown_announced = True
                self._wake.set()
            elif isinstance(message, ControlReply):
                log.info("upstream: control reply %r", message)
            else:
                self.stats.unused += 1

    def _on_trade(self, conn: UpstreamConnection, trade: Trade) -> None:
        pair = self.catalog.by_symbol(trade.symbol)
        if pair is None:
            self.stats.unused += 1
            return
        key = (trade.kind, trade.symbol)
        if trade.trade_id <= self._last_trade_id.get(key, -1):
            self.stats.duplicates += 1
            return
        self._last_trade_id[key] = trade.trade_id
        self._emit(PriceTick(pair.name, trade.symbol, trade.price, trade.event_time,
                             self._source(conn), self._open24h.get(trade.symbol)))

    def _on_ticker(self, conn: UpstreamConnection, ticker: Ticker) -> None:
        pair = self.catalog.by_symbol(ticker.symbol)
        if pair is None:
            self.stats.unused += 1
            return
        if ticker.event_time <= self._last_ticker_time.get(ticker.symbol, -1):
            self.stats.duplicates += 1
            return
        self._last_ticker_time[ticker.symbol] = ticker.event_time
        self._open24h[ticker.symbol] = ticker.open
        last = self._last_price.get(ticker.symbol)
        if last is None or (ticker.event_time > last[0] and ticker.close != last[1]):
            # The ticker's close is the exchange's own last price at its event time. It
            # gives a quiet pair a price at all, and repairs one whose last trade fell
            # in a reconnect gap (the exchange does not resend missed trades).
            self._emit(PriceTick(pair.name, ticker.symbol, ticker.close, ticker.event_time,
                                 self._source(conn), ticker.open))

    def _source(self, conn: UpstreamConnection) -> str:
        return "simulator" if (self.force_simulated or conn.simulated) else "binance"

    def _emit(self, tick: PriceTick) -> None:
        self._last_price[tick.symbol] = (tick.ts, tick.price)
        try:
            self.on_tick(tick)
        except Exception:  # noqa: BLE001 - a consumer bug must not end the connection
            log.exception("upstream: tick consumer failed for %s", tick.pair)

    # -- health --------------------------------------------------------------------

    def status(self) -> dict:
        conn = self.active
        now = self._clock()
        return {
            "url": reduce_url(self.url),
            "streams": self.url.split("streams=", 1)[1].count("/") + 1,
            "connected": conn is not None and not conn.ended,
            "live": self.is_live(),
            "simulated": self.simulated,
            "connection": conn.number if conn else None,
            "connected_since": self._connected_since_wall,
            "connection_age_s": round(conn.age(), 3) if conn else None,
            "last_message_age_s": round(now - conn.last_data_at, 3) if conn else None,
            "pings_on_connection": conn.pings if conn else None,
            "rotating": self.standby is not None,
            "connects": self.stats.connects,
            "reconnects": self.stats.reconnects,
            "rotations": self.stats.rotations,
            "connect_attempts": self.stats.connect_attempts,
            "connect_failures": self.stats.connect_failures,
            "attempts_last_5min": self.policy.attempts_in_window(),
            "handshake_refusals": self.stats.handshake_refusals,
            "silence_timeouts": self.stats.silence_timeouts,
            "messages": self.stats.messages,
            "malformed": self.stats.malformed,
            "duplicates_dropped": self.stats.duplicates,
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
