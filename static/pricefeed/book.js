/**
 * The latest price per pair as the server sent it, and what the server said about them: its mode,
 * whether the feed is simulated, its clock (from server_time), stale_after_ms and the interval in
 * force. Staleness is judged on the server's clock, so a page on a skewed clock ages prices right.
 */
import {pairKey} from "./payloads.js";

export class PriceBook {
  constructor() {
    this.prices = new Map();
    this.pairStates = new Map();     // pair -> {status, symbol, quote?} as the server last said
    this.staleFlagged = new Set();   // pairs announced stale by the last "stale" callbacks
    this.mode = null;
    this.simulated = false;
    this.intervalMs = null;
    this.staleAfterMs = 10000;
    this.clockOffsetMs = 0;
  }

  /** Learn from a snapshot or status body (fields absent are left as they were). */
  noteServer(body) {
    if (Number.isFinite(body.server_time)) this.clockOffsetMs = body.server_time - Date.now();
    if (typeof body.mode === "string") this.mode = body.mode;
    if (typeof body.simulated === "boolean") this.simulated = body.simulated;
    if (Number.isFinite(body.stale_after_ms) && body.stale_after_ms > 0) this.staleAfterMs = body.stale_after_ms;
    if (Number.isFinite(body.interval_ms)) this.intervalMs = body.interval_ms;
  }

  serverNow() {
    return Date.now() + this.clockOffsetMs;
  }

  get(pair) {
    return this.prices.get(pairKey(pair)) || null;
  }

  all() {
    return Array.from(this.prices.values());
  }

  /**
   * Learn each pair's status (live | stale | halted | unlisted) and traded symbol from a snapshot's or
   * status event's `pairs` object.
   */
  notePairs(pairs) {
    if (pairs === null || typeof pairs !== "object" || Array.isArray(pairs)) return;
    for (const [pair, state] of Object.entries(pairs)) {
      if (state !== null && typeof state === "object" && typeof state.status === "string") {
        this.pairStates.set(pairKey(pair), Object.assign({}, state));
      }
    }
  }

  /** {status, symbol, quote?} for `pair`: from its price when it has one, else what the server said. */
  pairState(pair) {
    const key = pairKey(pair);
    const said = this.pairStates.get(key) || null;
    const price = this.prices.get(key);
    if (!price) return said;
    const state = Object.assign({}, said || {}, {symbol: price.symbol || (said && said.symbol) || null});
    if (typeof price.quote === "string") state.quote = price.quote;
    const listing = said && (said.status === "halted" || said.status === "unlisted") ? said.status : null;
    state.status = listing || (this.isStale(pair) ? "stale" : "live");
    return state;
  }

  /**
   * Hold `price`: the stream's order is the truth (the server's hub keeps the newest tick per pair
   * by publisher epoch and sequence); `ts` is not compared, since REST and WebSocket prices are
   * stamped by different clocks and a skew would freeze a pair.
   */
  set(price) {
    this.prices.set(pairKey(price.pair), price);
    // A price event carries its pair's status (halted: the market stopped; never fresh).
    if (typeof price.status === "string") {
      const said = this.pairStates.get(pairKey(price.pair)) || {};
      this.pairStates.set(pairKey(price.pair), Object.assign({}, said, {status: price.status, symbol: price.symbol}));
    }
  }

  /** Forget every pair not in `keep` (null keeps all). */
  keepOnly(keep) {
    if (keep === null) return;
    for (const key of Array.from(this.prices.keys())) {
      if (!keep.includes(key)) {
        this.prices.delete(key);
        this.staleFlagged.delete(key);
      }
    }
  }

  /** A status event's `stale` list sets the server's flag on the held prices. */
  applyStaleList(list) {
    const flagged = new Set(list.map(pairKey));
    for (const [key, price] of this.prices) {
      const isStale = flagged.has(key);
      if (Boolean(price.stale) !== isStale) {
        const updated = Object.assign({}, price, {stale: isStale});
        if (!isStale) delete updated.age_ms;
        this.prices.set(key, updated);
      }
    }
  }

  /** Stale when the server says so, or when its age on the server clock passed stale_after_ms. */
  isStale(pair) {
    const price = this.get(pair);
    if (!price) return false;
    const said = this.pairStates.get(pairKey(pair));
    if (said && (said.status === "halted" || said.status === "unlisted")) return true;
    return price.stale === true || this.serverNow() - price.ts > this.staleAfterMs;
  }

  /** [pair, isStale, price] for each pair whose staleness changed since the last call. */
  staleChanges() {
    const changes = [];
    for (const [key, price] of this.prices) {
      const stale = this.isStale(key);
      if (stale === this.staleFlagged.has(key)) continue;
      if (stale) this.staleFlagged.add(key);
      else this.staleFlagged.delete(key);
      changes.push([key, stale, price]);
    }
    return changes;
  }
}
