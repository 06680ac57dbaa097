/**
 * PriceFeed: one live connection to pricefeed (WebSocket or SSE), the latest price per pair,
 * reconnects with full jitter, /prices polling while disconnected, staleness on the server's
 * clock, and a pause while the tab is hidden. Transports differ only in framing (sse-transport.js,
 * ws-transport.js); everything a page sees is decided here.
 */
import {SseTransport} from "./sse-transport.js";
import {WsTransport} from "./ws-transport.js";
import {parseJson, isObject, validPrice, pairKey, endpointUrl} from "./payloads.js";
import {PairInterest} from "./interest.js";
import {PricesPoller} from "./poller.js";
import {PriceBook} from "./book.js";
import {HiddenTab} from "./hidden-tab.js";

export const EVENTS = ["price", "snapshot", "status", "connection", "stale", "error"];
const DEFAULTS = {
  url: "/api/market-data/stream", transport: "auto", interval: undefined,
  backoff: {initialMs: 1000, maxMs: 30000}, pollMs: 5000, hiddenCloseMs: 60000,
  idleTimeoutMs: 45000, pingMs: 20000, staleCheckMs: 1000, lingerMs: 1000,
};
// A 4xx other than these will not change by retrying (unknown pair, bad interval): report it.
const RETRYABLE_4XX = new Set([408, 425, 429]);

export class PriceFeed {
  constructor(options) {
    const opts = Object.assign({}, DEFAULTS, options || {});
    if (!["auto", "sse", "ws"].includes(opts.transport)) {
      throw new TypeError(`PriceFeed: transport must be "auto", "sse" or "ws", not ${JSON.stringify(opts.transport)}`);
    }
    this.url = opts.url;
    this.wsUrl = opts.wsUrl || endpointUrl(this.url, "ws");
    this.pricesUrl = opts.pricesUrl === undefined ? endpointUrl(this.url, "prices") : opts.pricesUrl;
    this.transportOption = opts.transport;
    this.interval = opts.interval;
    this.interest = new PairInterest(opts.pairs);
    this.backoff = Object.assign({}, DEFAULTS.backoff, opts.backoff || {});
    this.options = opts;
    this.logger = opts.logger || globalThis.console;
    this.fetch = opts.fetch || ((...args) => globalThis.fetch(...args));
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;

    this.state = "closed";
    this.transport = null;           // "ws" | "sse" while connected
    this.lastEventId = "";
    this.lastError = null;
    this.lastSnapshot = null;
    this.book = new PriceBook();
    if (Number.isFinite(opts.staleAfterMs) && opts.staleAfterMs > 0) this.book.staleAfterMs = opts.staleAfterMs;
    this._listeners = new Map(EVENTS.map((name) => [name, new Set()]));
    this._poller = new PricesPoller({url: this.pricesUrl, everyMs: opts.pollMs, fetchImpl: this.fetch, logger: this.logger,
      pairs: () => this._activePairs,
      onSnapshot: (body) => {
        if (this._running && this.state !== "open") {
          this._applySnapshot(body, {lastEventId: this.lastEventId, polled: true, transport: "poll"});
        }
      }});
    this._wsUnavailable = false;
    this._timers = {};
    this._current = null;
    this._activePairs = null;
    this._attempt = 0;
    this._retryHintMs = null;
    this._running = false;
    this._paused = false;
    this._pairsQueued = false;
    this._hiddenTab = new HiddenTab(opts.hiddenCloseMs, () => this._pause(), () => this._resume());
  }

  // ---------------------------------------------------------------- listeners and state

  /** Listen to "price" | "snapshot" | "status" | "connection" | "stale" | "error"; returns an unsubscribe function. */
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

  latest(pair) {
    return this.book.get(pair);
  }

  latestAll() {
    return this.book.all();
  }

  /** Milliseconds on the server's clock (offset learnt from server_time). */
  serverNow() {
    return this.book.serverNow();
  }

  /** Stale when the server says so, or when its age on the server clock passed stale_after_ms. */
  isStale(pair) {
    return this.book.isStale(pair);
  }

  stalePairs() {
    return Array.from(this.book.staleFlagged);
  }

  /** `{status, symbol, quote?}`: live | stale | halted | unlisted, and the symbol the exchange trades it as
   * (`quote` when that differs from the pair's own, e.g. BTC/USD traded as BTCUSDT); null before the server said. */
  pairStatus(pair) {
    return this.book.pairState(pair);
  }

  get mode() { return this.book.mode; }
  get simulated() { return this.book.simulated; }
  get intervalMs() { return this.book.intervalMs; }
  get staleAfterMs() { return this.book.staleAfterMs; }
  get clockOffsetMs() { return this.book.clockOffsetMs; }

  /** The pairs asked of the server; null means the server's default set. */
  activePairs() {
    return this._activePairs === null ? null : this._activePairs.slice();
  }

  // ---------------------------------------------------------------- start, stop, pairs

  start() {
    if (this._running) return this;
    this._running = true;
    this._paused = false;
    this._attempt = 0;
    this._hiddenTab.watch();
    this._timers.stale = setInterval(() => this._checkStale(), this.options.staleCheckMs);
    this._setState("connecting");
    // Connect after the current task: every subscriber mounting now shares the first request.
    queueMicrotask(() => {
      if (this._running && !this._current && !this._timers.retry && !this._paused) this._connect();
    });
    return this;
  }

  stop() {
    this._running = false;
    this._paused = false;
    this._hiddenTab.unwatch();
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    this._poller.stop();
    this._closeTransport();
    this._setState("closed");
    return this;
  }

  /** Add pairs: a live `subscribe` over WebSocket; over SSE a new request resuming from Last-Event-ID. */
  subscribe(pairs) {
    this.interest.add(pairs);
    this._pairsChanged();
  }

  unsubscribe(pairs) {
    this.interest.remove(pairs);
    this._pairsChanged();
  }

  /**
   * Reference-counted interest in `pairs` ([] = the server's default set); returns release().
   * The connection opens with the first hold and closes `lingerMs` after the last release, so a
   * component that unmounts and mounts again at once (React StrictMode) keeps the same connection.
   */
  hold(pairs) {
    const keys = this.interest.hold(pairs);
    this._clearTimer("linger");
    if (this._running) this._pairsChanged();
    else this.start();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.interest.release(keys);
      if (!this.interest.unheld) {
        this._pairsChanged();
        return;
      }
      this._timers.linger = setTimeout(() => {
        this._timers.linger = null;
        if (this.interest.unheld) this.stop();
      }, this.options.lingerMs);
    };
  }

  _pairsChanged() {
    if (!this._running || this._pairsQueued) return;
    this._pairsQueued = true;
    queueMicrotask(() => {
      this._pairsQueued = false;
      if (this._running) this._applyPairs();
    });
  }

  _applyPairs() {
    const desired = this.interest.desired();
    const active = this._activePairs;
    if (JSON.stringify(desired) === JSON.stringify(active)) return;
    this.book.keepOnly(desired);
    const current = this._current;
    if (desired !== null && desired.length === 0) {
      this._idle();
    } else if (current && current.canChangePairsLive && desired !== null && active !== null) {
      current.changePairs(desired.filter((p) => !active.includes(p)), active.filter((p) => !desired.includes(p)));
      this._activePairs = desired;
    } else if (current || (this.state === "closed" && !this._paused)) {
      this._closeTransport();
      this._clearTimer("retry");
      this._connect();
    } else {
      this._activePairs = desired; // backing off or paused: the next request asks for these
      if (this._poller.running) this._poller.pollOnce();
    }
  }

  // ---------------------------------------------------------------- connecting

  _chooseTransport() {
    const hasWs = typeof this.WebSocket === "function" && Boolean(this.wsUrl);
    if (this.transportOption === "ws") return "ws";
    if (this.transportOption === "auto" && hasWs && !this._wsUnavailable) return "ws";
    return "sse";
  }

  _streamUrl(base, kind) {
    const url = new URL(base, globalThis.location ? globalThis.location.href : undefined);
    if (kind === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this._activePairs !== null) url.searchParams.set("pairs", this._activePairs.join(","));
    if (this.interval !== undefined && this.interval !== null) url.searchParams.set("interval", String(this.interval));
    if (this.lastEventId) url.searchParams.set("lastEventId", this.lastEventId);
    return url.toString();
  }

  _connect() {
    this._activePairs = this.interest.desired();
    if (this._activePairs !== null && this._activePairs.length === 0) {
      this._idle();
      return;
    }
    const kind = this._chooseTransport();
    const transport = this._makeTransport(kind);
    transport.snapshotSeen = false;
    this._current = transport;
    transport.start();
  }

  _makeTransport(kind) {
    const guard = (fn) => (...args) => {
      if (this._current === transport) fn.apply(this, args);
    };
    const callbacks = {
      onOpen: () => {},
      onEvent: guard((name, data, id) => this._onEvent(transport, name, data, id)),
      onRetryHint: guard((ms) => { this._retryHintMs = ms; }),
      onServerError: guard((data) => this._reportError(Object.assign({source: "server"}, isObject(data) ? data : {}))),
      onSubscribed: guard(() => {}),
      onClose: guard((info) => this._transportClosed(transport, info)),
    };
    const common = {callbacks, idleTimeoutMs: this.options.idleTimeoutMs, logger: this.logger};
    const transport = kind === "ws"
      ? new WsTransport(Object.assign({url: this._streamUrl(this.wsUrl, "ws"), pingMs: this.options.pingMs,
        WebSocketImpl: this.WebSocket}, common))
      : new SseTransport(Object.assign({url: this._streamUrl(this.url, "sse"), fetchImpl: this.fetch}, common));
    return transport;
  }

  _closeTransport() {
    if (this._current) this._current.close();
    this._current = null;
    this.transport = null;
  }

  _transportClosed(transport, info) {
    this._current = null;
    this.transport = null;
    if (!this._running || this._paused) return;
    if (transport.kind === "ws" && this.transportOption === "auto" && !transport.snapshotSeen) {
      // No snapshot ever came over the WebSocket (no /ws route, a proxy without Upgrade): use SSE.
      this._wsUnavailable = true;
      this.logger.warn("PriceFeed: WebSocket unavailable, using Server-Sent Events:", info.detail);
      this._connect();
      return;
    }
    const status = info.status || 0;
    if (status >= 400 && status < 500 && !RETRYABLE_4XX.has(status)) {
      this._reportError({status, error: info.error, detail: info.detail, source: "server"});
      this._setState("closed", {error: info.error, status, detail: info.detail});
      return; // nothing to retry until the pairs change
    }
    if (status) this._reportError({status, error: info.error, detail: info.detail, source: "server"});
    // A stream the server ended on purpose (a graceful restart closing its streams in a
    // spread, a lifetime's end) was told when to come back: its last `retry:`, which the
    // server already jittered per stream. Honour it as EventSource does; drawing from
    // [0, retry] instead would pull a restart's returning crowd forward, into the new workers'
    // boot and all at once. Anything that fails after that backs off with full jitter.
    const told = info.error === "stream_ended" && this._attempt === 0 && this._retryHintMs;
    const delay = told ? this._toldDelay() : this._retryDelay(info.retryAfterMs);
    this._setState("reconnecting", {retryInMs: delay, attempt: this._attempt, status: status || null,
      error: info.error, retryAfterMs: info.retryAfterMs || null});
    this._timers.retry = setTimeout(() => {
      this._timers.retry = null;
      if (this._running && !this._paused) this._connect();
    }, delay);
    this._poller.start();
  }

  /** The server's own `retry:`, exactly (the next failure is the first attempt of the backoff). */
  _toldDelay() {
    this._attempt = 1;
    return this._retryHintMs;
  }

  /** Full jitter: uniform in [0, ceiling], the ceiling doubling per attempt; never before Retry-After. */
  _retryDelay(retryAfterMs) {
    const base = this._retryHintMs || this.backoff.initialMs;
    const ceiling = Math.min(this.backoff.maxMs, base * 2 ** this._attempt);
    this._attempt += 1;
    return Math.round((retryAfterMs || 0) + Math.random() * ceiling);
  }

  /** The tab is seen again: reopen with lastEventId; the snapshot says whether anything was missed. */
  _resume() {
    if (!this._paused || !this._running) return;
    this._paused = false;
    this._setState("connecting", {resumed: true});
    this._connect();
  }

  /** The tab stayed hidden: give the server its connection back until the page is seen again. */
  _pause() {
    if (!this._running) return;
    this._paused = true;
    this._clearTimer("retry");
    this._poller.stop();
    this._closeTransport();
    this._setState("paused");
  }

  /** No pair is wanted: no connection until one is subscribed again (the server refuses `pairs=`). */
  _idle() {
    this._activePairs = [];
    this._closeTransport();
    this._clearTimer("retry");
    this._poller.stop();
    this._setState("closed", {reason: "no_pairs"});
  }

  _clearTimer(name) {
    const timer = this._timers[name];
    if (timer) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this._timers[name] = null;
  }

  _setState(state, info) {
    if (state === this.state && state !== "reconnecting") return;
    this.state = state;
    this._emit("connection", state, Object.assign({transport: this.transport}, info));
  }

  _reportError(error) {
    this.lastError = error;
    this._emit("error", error);
  }

  // ---------------------------------------------------------------- events

  _onEvent(transport, name, data, id) {
    if (id) this.lastEventId = id;
    const meta = {lastEventId: this.lastEventId, transport: transport.kind};
    const payload = typeof data === "string" ? parseJson(data) : data;
    if (!isObject(payload)) {
      this.logger.warn(`PriceFeed: skipping malformed ${name} event:`, data);
      return;
    }
    if (name === "snapshot") {
      transport.snapshotSeen = true;
      this._attempt = 0;
      this._poller.stop();
      this.transport = transport.kind;
      this.lastError = null;
      this._applySnapshot(payload, meta);
      this._setState("open", {resume: payload.resume || null});
    } else if (name === "price") {
      const price = validPrice(payload);
      if (!price) this.logger.warn("PriceFeed: skipping malformed price event:", data);
      else if (this._wanted(price.pair)) this._acceptPrice(price, Object.assign({fromSnapshot: false}, meta));
    } else if (name === "status") {
      this._applyStatus(payload, meta);
    }
  }

  _wanted(pair) {
    return this._activePairs === null || this._activePairs.includes(pairKey(pair));
  }

  _applySnapshot(snapshot, meta) {
    this.book.noteServer(snapshot);
    this.book.notePairs(snapshot.pairs);
    if (!meta.polled) this.lastSnapshot = snapshot;
    const accepted = [];
    for (const raw of Array.isArray(snapshot.prices) ? snapshot.prices : []) {
      const price = validPrice(raw);
      if (!price) this.logger.warn("PriceFeed: skipping malformed price in snapshot:", raw);
      else if (this._wanted(price.pair)) accepted.push(price);
    }
    for (const price of accepted) this.book.set(price);
    this._emit("snapshot", snapshot, meta);
    for (const price of accepted) this._emit("price", price, Object.assign({fromSnapshot: true}, meta));
    this._checkStale();
  }

  _applyStatus(status, meta) {
    this.book.noteServer(status);
    this.book.notePairs(status.pairs);
    if (Array.isArray(status.stale)) this.book.applyStaleList(status.stale);
    this._emit("status", status, meta);
    this._checkStale();
  }

  _acceptPrice(price, meta) {
    this.book.set(price);
    this._emit("price", price, meta);
    this._checkStale();
  }

  _checkStale() {
    for (const [pair, stale, price] of this.book.staleChanges()) this._emit("stale", pair, stale, price);
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
