/**
 * One connection per page: every subscriber of the same endpoint, transport and interval shares
 * one PriceFeed, reference-counted by pair (PriceFeed.hold). PriceView is a store per pair list in
 * the shape React's useSyncExternalStore wants: subscribe(onChange) and a getSnapshot() whose
 * result keeps its identity until something a subscriber sees has changed.
 */
import {PriceFeed, EVENTS} from "./feed.js";
import {pairKey} from "./payloads.js";

const feeds = new Map();

/** The page's shared PriceFeed for these options (pairs are ignored: use hold() or views). */
export function sharedFeed(options) {
  const opts = Object.assign({}, options || {});
  delete opts.pairs;
  const key = JSON.stringify([opts.url || null, opts.wsUrl || null, opts.pricesUrl === undefined ? null : opts.pricesUrl,
    opts.transport || "auto", opts.interval === undefined ? null : opts.interval]);
  let feed = feeds.get(key);
  if (!feed) {
    feed = new PriceFeed(opts);
    feeds.set(key, feed);
  }
  return feed;
}

/** A live view of some pairs of a feed: holds them while it has listeners. */
export class PriceView {
  constructor(feed, pairs) {
    this.feed = feed;
    this.pairs = Array.from(new Set((pairs || []).map(pairKey))).sort();
    this.listeners = new Set();
    this.release = null;
    this.unlisten = [];
    this.snapshot = this.compute(null);
    this.subscribe = this.subscribe.bind(this);
    this.getSnapshot = () => this.snapshot;
  }

  /** The cached view of `pairs` on `feed`: the same object for the same pairs. */
  static of(feed, pairs) {
    if (!feed._views) feed._views = new Map();
    const key = Array.from(new Set((pairs || []).map(pairKey))).sort().join(",");
    let view = feed._views.get(key);
    if (!view) {
      view = new PriceView(feed, pairs);
      feed._views.set(key, view);
    }
    return view;
  }

  subscribe(onChange) {
    this.listeners.add(onChange);
    if (this.listeners.size === 1) {
      this.release = this.feed.hold(this.pairs);
      this.unlisten = EVENTS.map((name) => this.feed.on(name, () => this.refresh()));
      this.snapshot = this.compute(this.snapshot);
    }
    return () => {
      if (!this.listeners.delete(onChange) || this.listeners.size > 0) return;
      for (const off of this.unlisten) off();
      this.unlisten = [];
      this.release();
      this.release = null;
    };
  }

  refresh() {
    const next = this.compute(this.snapshot);
    if (next === this.snapshot) return;
    this.snapshot = next;
    for (const listener of Array.from(this.listeners)) listener();
  }

  /** {prices, status, stale, error}; `previous` itself when nothing in it changed. */
  compute(previous) {
    const feed = this.feed;
    const pairs = this.pairs.length ? this.pairs : feed.latestAll().map((p) => pairKey(p.pair));
    const prices = {};
    const stale = {};
    for (const pair of pairs) {
      const price = feed.latest(pair);
      if (price) prices[pair] = price;
      stale[pair] = feed.isStale(pair);
    }
    const status = {connection: feed.state, transport: feed.transport, mode: feed.mode, simulated: feed.simulated,
      intervalMs: feed.intervalMs, staleAfterMs: feed.staleAfterMs, lastEventId: feed.lastEventId};
    const error = feed.lastError;
    if (previous && sameEntries(previous.prices, prices) && sameEntries(previous.stale, stale)
        && sameEntries(previous.status, status) && previous.error === error) {
      return previous;
    }
    return {prices, status, stale, error};
  }
}

function sameEntries(a, b) {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => a[key] === b[key]);
}
