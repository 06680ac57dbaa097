/**
 * Polls `{prefix}/prices` while the stream is down, so a page keeps showing the server's
 * cached prices (never an exchange call per request) until the stream is back.
 */
export class PricesPoller {
  constructor({url, everyMs, fetchImpl, logger, pairs, onSnapshot}) {
    this.url = url;
    this.everyMs = everyMs;
    this.fetch = fetchImpl;
    this.logger = logger;
    this.pairs = pairs;             // () => array or null
    this.onSnapshot = onSnapshot;   // called only while polling
    this.timer = null;
  }

  get running() {
    return this.timer !== null;
  }

  start() {
    if (!this.url || this.timer) return;
    this.timer = setInterval(() => this.pollOnce(), this.everyMs);
    this.pollOnce();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  pollOnce() {
    const url = new URL(this.url, globalThis.location ? globalThis.location.href : undefined);
    const pairs = this.pairs();
    if (pairs !== null) url.searchParams.set("pairs", pairs.join(","));
    this.fetch(url.toString(), {headers: {Accept: "application/json"}, cache: "no-store"})
      .then((response) => (response.ok ? response.json() : null))
      .then((body) => { if (body && this.timer) this.onSnapshot(body); })
      .catch((err) => this.logger.warn("PriceFeed: polling prices failed:", err && err.message));
  }
}
