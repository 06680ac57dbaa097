"""The price book: one worker's latest price per pair, behind the epoch fence, with the resume window.

Each pair's latest tick is kept framed for every transport. Ticks from the bus carry
`<epoch>-<seq>` ids: one from an epoch older than the newest seen comes from a deposed
publisher and is fenced out; a newer epoch starts the sequence again. The recent
window (the last `resume_window` ids) tells a reconnecting client whether its
snapshot picks up without a gap. How current each price is, and how the exchange lists
its pair (catalogue standings), decide the status every entry is shown with.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pricefeed.delivery.framings import framings
from pricefeed.ticks import PriceTick

LISTED = "listed"           # exchange/catalogue.LISTED: the book needs the word, not the module


@dataclass(slots=True)
class BookEntry:
    """The latest tick of a pair, its encoded frame, and when it was last known to be current."""

    tick: PriceTick
    frame: tuple[bytes, ...]   # the price event, framed for each transport (index: stream_client.SSE, ...)
    confirmed_at: float        # monotonic: when this price was last known to be the current one
    version: int = 0           # the hub's version when this frame was made
    # Replaced by the next tick from the bus whatever that tick's id: a price from our own
    # feed in the local tier, or one from before an epoch rebase.
    provisional: bool = False


class PriceBook:
    """The latest price of each configured pair, fenced by epoch, and what a resume missed."""

    def __init__(self, pairs: Iterable[str], stale_after: float, resume_window: int = 4096,
                 clock: Callable[[], float] = time.monotonic):
        self.pairs = frozenset(pairs)
        self.stale_after = stale_after
        self._clock = clock
        # pair -> its entry; one dict for the life of the book (the hub hands it out as `hub.book`).
        self.entries: dict[str, BookEntry] = {}
        self.epoch = 0
        self.seq = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=max(resume_window, 1))
        self._local_seq = 0
        # pair -> how the exchange lists it (exchange/catalogue.Standing: `listing` "listed",
        # "halted" or "unlisted", the traded `symbol`, `quote` when aliased).
        self.standings: dict = {}

    # -- the fence -----------------------------------------------------------------

    def fenced(self, tick: PriceTick) -> bool:
        """From an epoch older than the newest seen: a deposed publisher's."""
        return tick.epoch < self.epoch

    def advance(self, tick: PriceTick) -> bool:
        """Take an unfenced tick from the bus into the sequence; False if the book has no use for
        it (a pair not configured, or one it already holds that price or a newer one of)."""
        if tick.epoch > self.epoch:
            # A new publisher: sequence numbers start again, and the resume window
            # cannot vouch for ids of the old epoch.
            self.epoch = tick.epoch
            self.seq = 0
            self._recent.clear()
        if tick.pair not in self.pairs:
            return False
        held = self.entries.get(tick.pair)
        if held is not None and not held.provisional and (held.tick.epoch, held.tick.seq) >= (tick.epoch, tick.seq):
            # Already have this one or newer (e.g. the re-read of the last prices after a reconnect).
            return False
        self.seq = max(self.seq, tick.seq)
        self._recent.append((tick.seq, tick.pair))
        return True

    def stamp_local(self, tick: PriceTick) -> PriceTick | None:
        """A tick of this worker's own feed (local tier), numbered `0-<n>`: outside every epoch,
        so its ids never collide with the bus's and a resume from one always reports a gap.
        None for a pair not configured."""
        if tick.pair not in self.pairs:
            return None
        self._local_seq += 1
        return tick.stamped(0, self._local_seq)

    def rebase(self, epoch: int) -> None:
        """Follow a lower epoch: Redis lost its epoch counter (a restart without persistence).

        Only a fenced publish can carry the current lease's epoch, so a lower one heard on
        the bus proves the higher ones we hold belong to a lease that no longer exists.
        """
        self.epoch = epoch
        self.seq = 0
        self._recent.clear()
        for entry in self.entries.values():
            entry.provisional = True

    # -- entries -------------------------------------------------------------------

    def frame(self, tick: PriceTick) -> tuple[bytes, ...]:
        """The tick's price event, with its pair's status in force."""
        return framings("price", self.price_payload(tick), tick.event_id)

    def put(self, tick: PriceTick, frame: tuple[bytes, ...], version: int, provisional: bool) -> BookEntry:
        entry = self.entries[tick.pair] = BookEntry(tick, frame, self._confirmed_at(tick), version, provisional)
        return entry

    def latest_frames(self, pairs: Iterable[str], transport: int) -> bytes:
        """The latest price event of each of `pairs` that has one, in one framing, in id order."""
        entries = sorted((entry.version, entry.frame[transport])
                         for pair in pairs if (entry := self.entries.get(pair)) is not None)
        return b"".join(frame for _, frame in entries)

    def _confirmed_at(self, tick: PriceTick) -> float:
        # As old as the exchange says the price is: a price re-read from Redis after a
        # restart is not fresh just because it arrived now.
        age = max(0.0, time.time() - tick.ts / 1000)
        return self._clock() - age

    def confirm_current(self, data_age: float = 0.0, except_pairs: Iterable[str] = ()) -> None:
        """The source is live and delivered data `data_age` seconds ago: every held price
        was still the current one then (a quiet market on a live connection is not stale).
        `except_pairs` are on an exchange connection that is down: they are not confirmed."""
        at = self._clock() - data_age
        skipped = set(except_pairs)
        for pair, entry in self.entries.items():
            if entry.confirmed_at < at and pair not in skipped:
                entry.confirmed_at = at

    # -- staleness and listing -------------------------------------------------------

    def is_stale(self, entry: BookEntry, now: float | None = None) -> bool:
        """Not known to be the current price: too old, or its market halted or unlisted (a
        halted market's last price is never fresh, however live the connection)."""
        if self._listing(entry.tick.pair) != LISTED:
            return True
        return ((now if now is not None else self._clock()) - entry.confirmed_at) > self.stale_after

    def _listing(self, pair: str) -> str:
        standing = self.standings.get(pair)
        return standing.listing if standing is not None else LISTED

    def set_standings(self, standings: dict) -> bool:
        """Take the catalogue's view of each pair; True if any pair's listing, symbol or quote
        changed. Held prices are framed again, so a catch-up carries the status in force."""
        if standings == self.standings:
            return False
        self.standings = dict(standings)
        for entry in self.entries.values():
            entry.frame = self.frame(entry.tick)
        return True

    def price_payload(self, tick: PriceTick, stale: bool = False, age_ms: int | None = None) -> dict:
        standing = self.standings.get(tick.pair)
        listing = standing.listing if standing is not None else LISTED
        status = listing if listing != LISTED else ("stale" if stale else "live")
        return tick.payload(stale or listing != LISTED, age_ms, status,
                            standing.quote if standing is not None else None)

    def pair_status(self, pair: str, now: float | None = None) -> str:
        """live | stale | halted | unlisted. A listed pair with no price yet is stale."""
        listing = self._listing(pair)
        if listing != LISTED:
            return listing
        entry = self.entries.get(pair)
        return "stale" if entry is None or self.is_stale(entry, now) else "live"

    def pair_states(self, pairs: Iterable[str]) -> dict[str, dict]:
        """Per pair, priced or not: its status, the symbol it trades as and (if aliased) its quote."""
        now = self._clock()
        states = {}
        for pair in pairs:
            standing = self.standings.get(pair)
            entry = self.entries.get(pair)
            state = {"status": self.pair_status(pair, now),
                     "symbol": standing.symbol if standing is not None else (entry.tick.symbol if entry else None)}
            if standing is not None and standing.quote is not None:
                state["quote"] = standing.quote
            states[pair] = state
        return states

    def stale_pairs(self) -> list[str]:
        now = self._clock()
        return sorted(pair for pair, entry in self.entries.items() if self.is_stale(entry, now))

    def snapshot(self, pairs: Iterable[str]) -> list[dict]:
        """The current price payload of each requested pair that has one."""
        now = self._clock()
        now_ms = int(time.time() * 1000)
        prices = []
        for pair in pairs:
            entry = self.entries.get(pair)
            if entry is None:
                continue
            stale = self.is_stale(entry, now)
            prices.append(self.price_payload(entry.tick, stale, max(0, now_ms - entry.tick.ts)))
        return prices

    # -- resuming ------------------------------------------------------------------

    @property
    def last_event_id(self) -> str:
        return f"{self.epoch}-{self.seq}"

    def resume(self, last_event_id: tuple[int, int], pairs: Iterable[str]) -> dict:
        """Tell a reconnecting client whether the snapshot picks up exactly where it left off.

        No gap means: same epoch, and every tick since its last event is still in
        the recent window, so we know what it missed; the snapshot carries the
        latest price of each of its pairs, so nothing it missed is lost.
        """
        epoch, seq = last_event_id
        wanted = set(pairs)
        oldest = self._recent[0][0] if self._recent else self.seq + 1
        known = epoch == self.epoch and seq <= self.seq and seq >= oldest - 1
        missed = sum(1 for s, pair in self._recent if s > seq and pair in wanted) if known else None
        return {"last_event_id": f"{epoch}-{seq}", "gap": not known, "missed": missed}
