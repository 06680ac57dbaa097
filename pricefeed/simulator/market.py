"""The simulated market: a random walk of trades, books, tickers and klines.

Ticks arrive at `rate` per second in total, each on a randomly chosen symbol;
a tick is one trade, published as both a `trade` and an `aggTrade` event, and
moves the symbol's best bid/ask (`bookTicker`). Once a second every symbol
that traded publishes its 24h mini ticker and ticker, and its klines.
Prices move on each instrument's tick grid in integer 1e-8 units: no floats.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import gevent
from gevent.event import Event

from .candles import CandleSet
from .instruments import UNITS_PER_ONE, Instrument, format_units, instrument_for, multiply_units
from .options import MAX_RATE
from .quotes import Quote
from .streams import MarketEvent

Publish = Callable[[Iterable[MarketEvent]], None]
_DAY_MS = 24 * 60 * 60 * 1000
# A typical tick moves the price by up to about one basis point.
_MOVE_PER_TICK = 10_000
# How far ids go back on `restart_ids`: far beyond any overlap a client could be de-duplicating.
ID_JUMP_BACK = 50_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _checked_rate(rate: float) -> float:
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be > 0 and <= {MAX_RATE:g} ticks per second")
    return rate


class MarketSource(Protocol):
    """What the exchange needs from wherever its events come from."""

    def opening_quotes(self) -> list[Quote]: ...
    def run(self) -> None: ...
    def client_connected(self) -> None: ...
    def control(self, paused: bool | None, rate: float | None) -> dict[str, Any]: ...


@dataclass
class _SymbolState:
    instrument: Instrument
    price: int
    candles: CandleSet
    next_agg_id: int
    next_trade_id: int
    update_id: int
    bid: int = 0
    ask: int = 0
    bid_qty: int = 0
    ask_qty: int = 0
    last_qty: int = 0
    open_price: int = 0
    high: int = 0
    low: int = 0
    volume: int = 0
    quote_volume: int = 0
    first_trade_id: int = -1
    trades: int = 0
    changed: bool = False
    max_step: int = field(init=False)

    def __post_init__(self) -> None:
        self.open_price = self.high = self.low = self.price
        self.bid = self.price - self.instrument.tick_size
        self.ask = self.price
        self.max_step = max(1, self.price // (_MOVE_PER_TICK * self.instrument.tick_size))


class RandomWalkMarket:
    """Random-walk trades for a fixed list of symbols."""

    def __init__(self, symbols: Iterable[str], rate: float, publish: Publish,
                 rng: random.Random) -> None:
        self._publish = publish
        self._rng = rng
        self._rate = _checked_rate(rate)
        self._paused = False
        self._wake = Event()
        started = now_ms()
        self._states: dict[str, _SymbolState] = {}
        for symbol in symbols:
            instrument = instrument_for(symbol)
            agg_base = rng.randrange(100_000_000, 900_000_000)
            self._states[symbol] = _SymbolState(
                instrument=instrument, price=instrument.start_price,
                candles=CandleSet(symbol, instrument.start_price, started),
                next_agg_id=agg_base, next_trade_id=agg_base * 2 + rng.randrange(1000),
                update_id=rng.randrange(1_000_000_000, 9_000_000_000))
            state = self._states[symbol]
            state.bid_qty = state.ask_qty = instrument.lot_size * rng.randint(1, 500)

    # -- MarketSource ---------------------------------------------------------

    def opening_quotes(self) -> list[Quote]:
        return [Quote(symbol, format_units(s.price), format_units(s.bid), format_units(s.bid_qty),
                      format_units(s.ask), format_units(s.ask_qty))
                for symbol, s in self._states.items()]

    def client_connected(self) -> None:
        """The random walk runs whether or not anyone listens."""

    def control(self, paused: bool | None, rate: float | None) -> dict[str, Any]:
        """Pause, resume or retune the walk; return the resulting state."""
        if rate is not None:
            self._rate = _checked_rate(rate)
        if paused is not None:
            self._paused = paused
        self._wake.set()
        return {"source": "random_walk", "paused": self._paused, "rate": self._rate}

    def restart_ids(self) -> None:
        """Trade ids start again far lower, as after an exchange failover (ids_jump_back)."""
        for state in self._states.values():
            state.next_agg_id = max(1, state.next_agg_id - ID_JUMP_BACK)
            state.next_trade_id = max(1, state.next_trade_id - ID_JUMP_BACK)

    def run(self) -> None:
        """Publish ticks forever (run in its own greenlet)."""
        next_tick = next_second = time.monotonic()
        while True:
            self._wake.clear()
            if self._paused:
                self._wake.wait()
                next_tick = next_second = time.monotonic()
                continue
            now = time.monotonic()
            if now - next_tick > 1.0:   # fell behind (a stall): don't burst to catch up
                next_tick = now
            due_rate = self._rate
            while next_tick <= now:
                self._publish(self._tick(self._rng.choice(list(self._states))))
                next_tick += 1.0 / due_rate
            if now >= next_second:
                self._publish(self._every_second(now_ms()))
                next_second = max(next_second + 1.0, now)
            if self._wake.wait(max(0.0, min(next_tick, next_second) - time.monotonic())):
                next_tick = time.monotonic()   # retuned: apply the new rate at once
            gevent.sleep(0)

    # -- events -----------------------------------------------------------------

    def _tick(self, symbol: str) -> list[MarketEvent]:
        state = self._states[symbol]
        instrument = state.instrument
        rng = self._rng
        state.price = self._step(state)
        quantity = instrument.lot_size * rng.randint(1, 1000) * (10 if rng.random() < 0.1 else 1)
        buyer_is_maker = rng.random() < 0.5
        # The trade happened at the touch: a seller hit the bid or a buyer lifted the ask.
        if buyer_is_maker:
            state.bid, state.ask = state.price, state.price + instrument.tick_size
        else:
            state.bid, state.ask = max(state.price - instrument.tick_size, instrument.tick_size), state.price
        state.bid_qty = instrument.lot_size * rng.randint(1, 500)
        state.ask_qty = instrument.lot_size * rng.randint(1, 500)
        state.update_id += rng.randint(1, 5)
        agg_id, trade_id = state.next_agg_id, state.next_trade_id
        state.next_agg_id += 1
        state.next_trade_id += 1
        self._record_stats(state, trade_id, quantity)

        trade_time = now_ms()
        event_time = trade_time + rng.randint(0, 2)
        price, qty = format_units(state.price), format_units(quantity)
        lower = symbol.lower()
        events = [
            MarketEvent(f"{lower}@trade", {
                "e": "trade", "E": event_time, "s": symbol, "t": trade_id, "p": price,
                "q": qty, "T": trade_time, "m": buyer_is_maker, "M": True}),
            MarketEvent(f"{lower}@aggTrade", {
                "e": "aggTrade", "E": event_time, "s": symbol, "a": agg_id, "p": price,
                "q": qty, "f": trade_id, "l": trade_id, "T": trade_time,
                "m": buyer_is_maker, "M": True}),
            MarketEvent(f"{lower}@bookTicker", {
                "u": state.update_id, "s": symbol,
                "b": format_units(state.bid), "B": format_units(state.bid_qty),
                "a": format_units(state.ask), "A": format_units(state.ask_qty)}),
        ]
        closed = state.candles.add_trade(trade_time, trade_id, state.price, quantity, buyer_is_maker)
        events.extend(self._kline_events(symbol, closed))
        return events

    def _step(self, state: _SymbolState) -> int:
        tick = state.instrument.tick_size
        moved = state.price + self._rng.randint(-state.max_step, state.max_step) * tick
        # Keep within a tenth to ten times the start, reflecting off the bounds.
        floor = max(tick, state.instrument.start_price // 10 // tick * tick)
        ceiling = state.instrument.start_price * 10
        if moved < floor:
            moved = 2 * floor - moved
        elif moved > ceiling:
            moved = 2 * ceiling - moved
        return moved

    @staticmethod
    def _record_stats(state: _SymbolState, trade_id: int, quantity: int) -> None:
        state.high = max(state.high, state.price)
        state.low = min(state.low, state.price)
        state.volume += quantity
        state.quote_volume += multiply_units(state.price, quantity)
        state.last_qty = quantity
        if state.first_trade_id < 0:
            state.first_trade_id = trade_id
        state.trades += 1
        state.changed = True

    def _every_second(self, event_time: int) -> list[MarketEvent]:
        events: list[MarketEvent] = []
        minis = []
        for symbol, state in self._states.items():
            events.extend(self._kline_events(symbol, state.candles.roll(event_time)))
            if not state.changed:
                continue
            state.changed = False
            mini = self._mini_ticker(symbol, state, event_time)
            minis.append(mini)
            lower = symbol.lower()
            events.append(MarketEvent(f"{lower}@miniTicker", mini))
            events.append(MarketEvent(f"{lower}@ticker", self._ticker(symbol, state, event_time)))
            events.extend(self._kline_events(symbol, state.candles.updates(event_time)))
        if minis:
            events.append(MarketEvent("!miniTicker@arr", minis))
        return events

    @staticmethod
    def _kline_events(symbol: str, payloads: list[dict[str, Any]]) -> list[MarketEvent]:
        lower = symbol.lower()
        return [MarketEvent(f"{lower}@kline_{payload['k']['i']}", payload) for payload in payloads]

    @staticmethod
    def _mini_ticker(symbol: str, state: _SymbolState, event_time: int) -> dict[str, Any]:
        return {"e": "24hrMiniTicker", "E": event_time, "s": symbol,
                "c": format_units(state.price), "o": format_units(state.open_price),
                "h": format_units(state.high), "l": format_units(state.low),
                "v": format_units(state.volume), "q": format_units(state.quote_volume)}

    @staticmethod
    def _ticker(symbol: str, state: _SymbolState, event_time: int) -> dict[str, Any]:
        change = state.price - state.open_price
        percent = (Decimal(change) * 100 / Decimal(state.open_price)).quantize(Decimal("0.001"))
        weighted = state.quote_volume * UNITS_PER_ONE // state.volume if state.volume else 0
        return {
            "e": "24hrTicker", "E": event_time, "s": symbol,
            "p": format_units(change), "P": str(percent), "w": format_units(weighted),
            "x": format_units(state.open_price), "c": format_units(state.price),
            "Q": format_units(state.last_qty),
            "b": format_units(state.bid), "B": format_units(state.bid_qty),
            "a": format_units(state.ask), "A": format_units(state.ask_qty),
            "o": format_units(state.open_price), "h": format_units(state.high),
            "l": format_units(state.low), "v": format_units(state.volume),
            "q": format_units(state.quote_volume),
            "O": event_time - _DAY_MS, "C": event_time,
            "F": state.first_trade_id, "L": state.next_trade_id - 1, "n": state.trades,
        }
