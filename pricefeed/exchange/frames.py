"""From one connection's frames to PriceTicks: parse, reject by reason, de-duplicate, emit.

Every frame goes through `parse_frame` with the clock window; what breaks a rule
is counted by reason in the feed's stats, logged rate-limited (with a truncated
`repr`) and skipped. A frame with many events yields to the other greenlets
every EVENTS_PER_YIELD events. Trades give the price; the 24 h tickers give the
open for the change figure and repair a price whose trade fell in a gap.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from pricefeed.exchange.connection import FeedStats, UpstreamConnection
from pricefeed.exchange.dedup import Deduplicator
from pricefeed.exchange.protocol import (
    ControlReply,
    MalformedFrame,
    RejectedEvent,
    ServerShutdown,
    Ticker,
    Trade,
    parse_frame,
)
from pricefeed.logs import RateLimitedLog, outside
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick

log = logging.getLogger("pricefeed.exchange.feed")

# A frame with many events (!miniTicker@arr) yields to the other greenlets this often.
EVENTS_PER_YIELD = 100


class FrameHandler:
    """Turns the frames of the feed's connections into PriceTicks for `on_tick`."""

    def __init__(self, catalog: PairCatalog, on_tick: Callable[[PriceTick], None], stats: FeedStats,
                 max_clock_skew_ms: int | None, force_simulated: bool, on_first_data: Callable[[], None],
                 on_shutdown: Callable[[], None]):
        self.catalog = catalog
        self.on_tick = on_tick
        self.stats = stats
        self.max_clock_skew_ms = max_clock_skew_ms
        self.force_simulated = force_simulated
        self._on_first_data = on_first_data
        self._on_shutdown = on_shutdown
        self.dedup = Deduplicator()
        self._rejections_log = RateLimitedLog(log)
        self._open24h: dict[str, str] = {}
        self._last_price: dict[str, tuple[int, str]] = {}   # symbol -> (event time, price) emitted

    def on_data(self, conn: UpstreamConnection, data: bytes, binary: bool) -> None:
        """Handle one data frame of `conn` (called by its reader greenlet)."""
        self.stats.messages += 1
        if conn.first_data_at == conn.last_data_at:
            # The first data on this connection: it works, so backoff starts afresh.
            self._on_first_data()
        try:
            if binary:
                raise MalformedFrame("binary_frame", "binary frame (Binance sends text)")
            messages = parse_frame(data, max_skew_ms=self.max_clock_skew_ms)
        except MalformedFrame as exc:
            self.stats.malformed += 1
            self.reject(conn, exc.reason, exc.detail, data)
            return
        for index, message in enumerate(messages):
            if index and index % EVENTS_PER_YIELD == 0:
                gevent.sleep(0)   # a frame of thousands of events must not hold the hub
            if isinstance(message, Trade):
                self._on_trade(conn, message)
            elif isinstance(message, Ticker):
                self._on_ticker(conn, message)
            elif isinstance(message, RejectedEvent):
                self.reject(conn, message.reason, message.detail, data)
            elif isinstance(message, ServerShutdown):
                log.info("upstream: serverShutdown on connection #%d", conn.number)
                conn.shutdown_announced = True
                self._on_shutdown()
            elif isinstance(message, ControlReply):
                self.stats.probes_answered += 1
                conn.reply_received(message.request_id)
                if message.error_code is not None:
                    # An answer all the same (the connection works), but one worth reading.
                    self._rejections_log.warning("control_error", "upstream: control request %s refused "
                                                 "on connection #%d: code %s: %s", outside(message.request_id, 40),
                                                 conn.number, message.error_code, outside(message.error_message, 120))
            else:
                self.stats.unused += 1

    def reject(self, conn: UpstreamConnection, reason: str, detail: str, data: bytes | str) -> None:
        """Count a bad frame or event by reason; log it (rate-limited, `repr`, truncated)."""
        self.stats.rejected[reason] += 1
        self._rejections_log.warning(reason, "upstream: rejected on connection #%d (%s): %s; frame starts %s",
                                     conn.number, reason, outside(detail, 120), outside(data, 120))

    def _on_trade(self, conn: UpstreamConnection, trade: Trade) -> None:
        pair = self.catalog.by_symbol(trade.symbol)
        if pair is None:
            self.stats.unused += 1
            return
        if not self.dedup.accept((trade.kind, trade.symbol), trade.trade_id, trade.event_time):
            return
        self._emit(PriceTick(pair.name, trade.symbol, trade.price, trade.event_time,
                             self._source(conn), self._open24h.get(trade.symbol)))

    def _on_ticker(self, conn: UpstreamConnection, ticker: Ticker) -> None:
        pair = self.catalog.by_symbol(ticker.symbol)
        if pair is None:
            self.stats.unused += 1
            return
        resets = self.dedup.resets
        if not self.dedup.accept(("ticker", ticker.symbol), ticker.event_time, ticker.event_time):
            return
        self._open24h[ticker.symbol] = ticker.open
        last = self._last_price.get(ticker.symbol)
        if self.dedup.resets != resets:
            last = None   # the exchange's clock went back: what we emitted before proves nothing
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
