/**
 * pricefeed.js — browser client for the pricefeed Server-Sent Events stream.
 *
 * Load it with a plain script tag; it defines `window.PriceFeed`:
 *
 *   <script src="/pricefeed-static/pricefeed.js"></script>
 *   const feed = new PriceFeed({url: "/api/market-data/stream", pairs: ["BTC/USD"]});
 *   feed.on("price", (price, meta) => ...);     // {pair, symbol, price, ts, source, stale, ...}
 *   feed.on("snapshot", (snapshot, meta) => ...); // {prices, mode, simulated, stale_after_ms, ...}
 *   feed.on("status", (status, meta) => ...);   // {mode, simulated, stale, server_time, detail}
 *   feed.on("connection", (state, info) => ...); // "connecting" | "open" | "reconnecting" | "closed"
 *   feed.start();
 *   feed.latest("BTC/USD");                     // last accepted price object, or null
 *   feed.stop();
 *
 * Options (constructor):
 *   url        stream URL (default "/api/market-data/stream").
 *   pairs      array of "BASE/QUOTE" names; omitted or empty: the server's default set.
 *   pricesUrl  optional JSON snapshot URL (`GET {prefix}/prices`); fetched once each time
 *              the stream is closed for good, so a page still gets prices while it backs off.
 *   backoff    {initialMs: 1000, maxMs: 30000} for retries after the stream is closed for good.
 *   logger     object with warn/error (default: console).
 *   EventSource  constructor to use (default: window.EventSource); for tests.
 *
 * Behaviour:
 *   - While the EventSource reconnects by itself (network drop), it is left alone: the
 *     browser honours the server's `retry:` hint and sends Last-Event-ID.
 *   - If the EventSource is closed for good (the server answered 503/4xx or a wrong
 *     content type), the feed opens a new one after a capped exponential backoff with
 *     jitter, passing the last event id as the `lastEventId` query parameter.
 *   - Every event is parsed defensively: a malformed one is logged and skipped.
 *   - "price" fires for every accepted price, including each one carried by a snapshot
 *     (then meta.fromSnapshot is true, and "snapshot" has fired just before).
 *   - Prices are held in stream order (the server orders them; `ts` clocks may differ by source).
 *   - A "status" stale list updates the `stale` flag of the held prices.
 *   - Listener exceptions are caught and logged; they never break the feed.
 *   - `meta.lastEventId` is the last SSE event id seen (also `feed.lastEventId`).
 *
 * Prices are decimal strings and stay strings. `PriceFeed.Decimal` offers string-only
 * helpers for pages: compare(a, b), format(s), round(s, places), sign(s), formatPercent(s).
 */
(function (global) {
  "use strict";

  // ---------------------------------------------------------------- decimals (no floats)

  const DECIMAL_RE = /^([+-]?)(\d*)(?:\.(\d*))?$/;

  /** Parse "-0012.3400" into {neg, int: "12", frac: "34"}; null if not a plain decimal. */
  function parseDecimal(text) {
    if (typeof text !== "string") return null;
    const match = DECIMAL_RE.exec(text.trim());
    if (!match || (match[2] === "" && !match[3])) return null;
    const int = match[2].replace(/^0+/, "");
    const frac = (match[3] || "").replace(/0+$/, "");
    return {neg: match[1] === "-" && (int !== "" || frac !== ""), int, frac};
  }

  function isDecimal(text) {
    return parseDecimal(text) !== null;
  }

  function compareMagnitude(a, b) {
    if (a.int.length !== b.int.length) return a.int.length < b.int.length ? -1 : 1;
    if (a.int !== b.int) return a.int < b.int ? -1 : 1;
    const width = Math.max(a.frac.length, b.frac.length);
    const fa = a.frac.padEnd(width, "0");
    const fb = b.frac.padEnd(width, "0");
    return fa === fb ? 0 : (fa < fb ? -1 : 1);
  }

  /** -1, 0 or 1 as decimal string a is below, equal to or above b. */
  function compare(a, b) {
    const pa = parseDecimal(a);
    const pb = parseDecimal(b);
    if (!pa || !pb) throw new TypeError("PriceFeed.Decimal.compare: not decimal strings");
    if (pa.neg !== pb.neg) return pa.neg ? -1 : 1;
    const magnitude = compareMagnitude(pa, pb);
    return pa.neg ? -magnitude : magnitude;
  }

  /** -1, 0 or 1: the sign of a decimal string. */
  function sign(text) {
    const p = parseDecimal(text);
    if (!p) throw new TypeError("PriceFeed.Decimal.sign: not a decimal string");
    if (p.int === "" && p.frac === "") return 0;
    return p.neg ? -1 : 1;
  }

  function incrementDigits(digits) {
    const out = digits.split("");
    for (let i = out.length - 1; i >= 0; i--) {
      if (out[i] !== "9") {
        out[i] = String.fromCharCode(out[i].charCodeAt(0) + 1);
        return out.join("");
      }
      out[i] = "0";
    }
    return "1" + out.join("");
  }

  /** Round to `places` decimals, half away from zero, as a plain decimal string. */
  function round(text, places) {
    const p = parseDecimal(text);
    if (!p) throw new TypeError("PriceFeed.Decimal.round: not a decimal string");
    const kept = p.frac.padEnd(places, "0").slice(0, places);
    let digits = (p.int || "0") + kept;
    if ((p.frac[places] || "0") >= "5") digits = incrementDigits(digits);
    const int = digits.slice(0, digits.length - places).replace(/^0+/, "") || "0";
    const frac = places > 0 ? digits.slice(digits.length - places) : "";
    const zero = /^0*$/.test(int + frac);
    return (p.neg && !zero ? "-" : "") + int + (frac ? "." + frac : "");
  }

  function groupThousands(int, separator) {
    return int.replace(/\B(?=(\d{3})+(?!\d))/g, separator);
  }

  /**
   * Display form: trailing zeros trimmed, at least `minDecimals` kept, thousands grouped.
   * "43250.12000000" -> "43,250.12"; "0.00012300" -> "0.000123". Non-decimals pass through.
   */
  function format(text, options) {
    const minDecimals = (options && options.minDecimals !== undefined) ? options.minDecimals : 2;
    const separator = (options && options.separator !== undefined) ? options.separator : ",";
    const p = parseDecimal(text);
    if (!p) return String(text);
    const frac = p.frac.padEnd(minDecimals, "0");
    return (p.neg ? "-" : "") + groupThousands(p.int || "0", separator) + (frac ? "." + frac : "");
  }

  /** "2.976" -> "+2.98%", "-0.693" -> "-0.69%", "-0.001" -> "0.00%". */
  function formatPercent(text) {
    const rounded = round(text, 2);
    const s = sign(rounded);
    return (s > 0 ? "+" : "") + format(rounded) + "%";
  }

  const Decimal = Object.freeze({parse: parseDecimal, isDecimal, compare, sign, round, format, formatPercent});

  // ---------------------------------------------------------------- the feed

  const EVENTS = ["price", "snapshot", "status", "connection"];
  const READY_CLOSED = 2;

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return undefined;
    }
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  /** A price payload with what the feed relies on, or null. `ts` may come as digits. */
  function validPrice(p) {
    if (!isObject(p) || typeof p.pair !== "string" || p.pair === "" || !isDecimal(p.price)) return null;
    let ts = p.ts;
    if (typeof ts === "string" && /^\d+$/.test(ts)) ts = Number(ts);
    if (typeof ts !== "number" || !Number.isFinite(ts)) return null;
    return ts === p.ts ? p : Object.assign({}, p, {ts});
  }

  class PriceFeed {
    constructor(options) {
      const opts = options || {};
      this.url = opts.url || "/api/market-data/stream";
      this.pairs = Array.isArray(opts.pairs) ? opts.pairs.slice() : [];
      this.pricesUrl = opts.pricesUrl || null;
      this.backoff = Object.assign({initialMs: 1000, maxMs: 30000}, opts.backoff || {});
      this.logger = opts.logger || global.console;
      this.EventSource = opts.EventSource || global.EventSource;
      this.state = "closed";
      this.lastEventId = "";
      this._listeners = new Map(EVENTS.map((name) => [name, new Set()]));
      this._latest = new Map();
      this._source = null;
      this._retryTimer = null;
      this._attempt = 0;
      this._running = false;
    }

    /** Subscribe; returns a function that unsubscribes. */
    on(event, listener) {
      const set = this._listeners.get(event);
      if (!set) throw new TypeError(`PriceFeed: unknown event "${event}" (use ${EVENTS.join(", ")})`);
      set.add(listener);
      return () => this.off(event, listener);
    }

    off(event, listener) {
      const set = this._listeners.get(event);
      if (set) set.delete(listener);
    }

    /** The last accepted price for `pair` (as the server spells it), or null. */
    latest(pair) {
      return this._latest.get(pair) || null;
    }

    /** Every held price, one per pair. */
    latestAll() {
      return Array.from(this._latest.values());
    }

    start() {
      if (this._running) return this;
      this._running = true;
      this._attempt = 0;
      this._setState("connecting");
      this._open();
      return this;
    }

    stop() {
      this._running = false;
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      this._closeSource();
      this._setState("closed");
      return this;
    }

    // -- connection management

    _streamUrl() {
      const url = new URL(this.url, global.location ? global.location.href : undefined);
      if (this.pairs.length) url.searchParams.set("pairs", this.pairs.join(","));
      if (this.lastEventId) url.searchParams.set("lastEventId", this.lastEventId);
      return url.toString();
    }

    _open() {
      if (typeof this.EventSource !== "function") {
        this.logger.error("PriceFeed: this browser has no EventSource");
        this._setState("closed");
        return;
      }
      const source = new this.EventSource(this._streamUrl());
      this._source = source;
      const guard = (handler) => (event) => {
        if (source === this._source) handler.call(this, event);
      };
      source.addEventListener("open", guard(this._onOpen));
      source.addEventListener("error", guard(this._onError));
      source.addEventListener("snapshot", guard(this._onSnapshot));
      source.addEventListener("price", guard(this._onPrice));
      source.addEventListener("status", guard(this._onStatus));
    }

    _closeSource() {
      if (this._source) {
        this._source.close();
        this._source = null;
      }
    }

    _onOpen() {
      this._attempt = 0;
      this._setState("open");
    }

    _onError() {
      if (this._source.readyState !== READY_CLOSED) {
        // The browser is reconnecting by itself (and will send Last-Event-ID).
        this._setState("reconnecting", {automatic: true});
        return;
      }
      this._closeSource();
      const cap = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this._attempt);
      const delay = Math.round(cap / 2 + Math.random() * cap / 2);
      this._attempt += 1;
      this._setState("reconnecting", {automatic: false, retryInMs: delay, attempt: this._attempt});
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        if (this._running) this._open();
      }, delay);
      this._pollPrices();
    }

    _pollPrices() {
      if (!this.pricesUrl || typeof global.fetch !== "function") return;
      const url = new URL(this.pricesUrl, global.location ? global.location.href : undefined);
      if (this.pairs.length) url.searchParams.set("pairs", this.pairs.join(","));
      global.fetch(url.toString(), {headers: {Accept: "application/json"}, cache: "no-store"})
        .then((response) => (response.ok ? response.text() : null))
        .then((text) => {
          if (text !== null && this._running && this.state !== "open") {
            this._handleSnapshot(text, {lastEventId: this.lastEventId, polled: true});
          }
        })
        .catch((err) => this.logger.warn("PriceFeed: polling prices failed:", err && err.message));
    }

    _setState(state, info) {
      if (state === this.state && state !== "reconnecting") return;
      this.state = state;
      this._emit("connection", state, Object.assign({readyState: this._source ? this._source.readyState : READY_CLOSED}, info));
    }

    // -- events

    _meta(event) {
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      return {lastEventId: this.lastEventId};
    }

    _onSnapshot(event) {
      this._handleSnapshot(event.data, this._meta(event));
    }

    _handleSnapshot(text, meta) {
      const snapshot = parseJson(text);
      if (!isObject(snapshot)) {
        this.logger.warn("PriceFeed: skipping malformed snapshot:", text);
        return;
      }
      const accepted = [];
      for (const raw of Array.isArray(snapshot.prices) ? snapshot.prices : []) {
        const price = validPrice(raw);
        if (!price) this.logger.warn("PriceFeed: skipping malformed price in snapshot:", raw);
        else if (this._accept(price)) accepted.push(price);
      }
      this._emit("snapshot", snapshot, meta);
      for (const price of accepted) this._emit("price", price, Object.assign({fromSnapshot: true}, meta));
    }

    _onPrice(event) {
      const meta = this._meta(event);
      const price = validPrice(parseJson(event.data));
      if (!price) {
        this.logger.warn("PriceFeed: skipping malformed price event:", event.data);
        return;
      }
      if (this._accept(price)) this._emit("price", price, Object.assign({fromSnapshot: false}, meta));
    }

    _onStatus(event) {
      const meta = this._meta(event);
      const status = parseJson(event.data);
      if (!isObject(status)) {
        this.logger.warn("PriceFeed: skipping malformed status event:", event.data);
        return;
      }
      if (Array.isArray(status.stale)) {
        const stale = new Set(status.stale);
        for (const [pair, price] of this._latest) {
          const isStale = stale.has(pair);
          if (Boolean(price.stale) !== isStale) {
            const updated = Object.assign({}, price, {stale: isStale});
            if (!isStale) delete updated.age_ms;
            this._latest.set(pair, updated);
          }
        }
      }
      this._emit("status", status, meta);
    }

    /**
     * Hold `price`. The server never sends a pair's price older than one it sent before:
     * its hub keeps only the newest tick per pair, by publisher epoch and sequence, and a
     * stream is ordered. So the stream's order is the truth; `ts` is not compared, because a REST
     * price carries the server's receipt time and a WebSocket price the exchange's event
     * time, and a skewed clock would make one side look "older" and freeze the table.
     */
    _accept(price) {
      this._latest.set(price.pair, price);
      return true;
    }

    _emit(event, ...args) {
      for (const listener of Array.from(this._listeners.get(event))) {
        try {
          listener(...args);
        } catch (err) {
          this.logger.error(`PriceFeed: a "${event}" listener threw:`, err);
        }
      }
    }
  }

  PriceFeed.Decimal = Decimal;
  global.PriceFeed = PriceFeed;
})(typeof window !== "undefined" ? window : globalThis);
