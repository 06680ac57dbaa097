/**
 * dashboard.js — the pricefeed dashboard (an ES module; no inline script in the page).
 *
 * Reads its settings from <script type="application/json" id="pricefeed-config">, finds the
 * server-rendered rows (<tr data-pair="BTC/USD">), draws each pair's sparkline from
 * {prefix}/history as soon as the page runs, and keeps everything current from a PriceFeed.
 * Prices stay decimal strings from the wire to the cell.
 *
 * Hooks that browser tests rely on (besides dashboard/row.js's):
 *   #mode-banner[data-mode]    live | redis | local | degraded | connecting | reconnecting | paused | closed
 *   #simulated-banner[hidden]  shown while the feed is simulated
 *   #connection-state          the PriceFeed connection state, as text and data-state
 *   #price-announcer           the polite live region (data-announcements counts its updates)
 *   body[data-last-event-id]   the last event id seen; body[data-history] "loaded" | "unavailable"
 */
import {PriceFeed, pairKey} from "./pricefeed.js";
import {Row} from "./dashboard/row.js";
import {Announcer} from "./dashboard/announcer.js";

const TICK_MS = 1000;
const MODE_LABELS = {
  live: "LIVE",
  redis: "STALE — showing last known prices",
  local: "LIVE (local feed)",
  degraded: "DEGRADED — no live data",
};
const CONNECTION_LABELS = {
  connecting: "CONNECTING…",
  reconnecting: "RECONNECTING…",
  paused: "PAUSED — tab hidden",
  closed: "DISCONNECTED",
};

function readConfig() {
  const element = document.getElementById("pricefeed-config");
  try {
    return JSON.parse(element ? element.textContent : "{}") || {};
  } catch (err) {
    console.error("pricefeed dashboard: unreadable #pricefeed-config", err);
    return {};
  }
}

class Dashboard {
  constructor(config) {
    this.config = config;
    this.tbody = document.getElementById("price-rows");
    this.modeBanner = document.getElementById("mode-banner");
    this.modeDetail = document.getElementById("mode-detail");
    this.simulatedBanner = document.getElementById("simulated-banner");
    this.connectionState = document.getElementById("connection-state");
    this.announcer = new Announcer(document.getElementById("price-announcer"), config.announce_every_ms);
    this.baseTitle = document.title;
    this.rows = new Map();
    for (const tr of this.tbody.querySelectorAll("tr[data-pair]")) this.rows.set(pairKey(tr.dataset.pair), new Row(tr));
    this.connection = "connecting";
    this.connectionInfo = {};
    this.serverDetail = "";
    this.feed = new PriceFeed({
      url: config.stream_url || "/api/market-data/stream",
      pricesUrl: config.prices_url || undefined,
      pairs: Array.isArray(config.pairs) ? config.pairs : [],
      transport: config.transport || "sse",
      staleAfterMs: config.stale_after_ms,
    });
    this.feed.on("connection", (state, info) => this.onConnection(state, info));
    this.feed.on("snapshot", (snapshot, meta) => this.onServerNews(snapshot, meta));
    this.feed.on("status", (status, meta) => this.onStatus(status, meta));
    this.feed.on("price", (price, meta) => this.onPrice(price, meta));
    this.feed.on("stale", () => this.renderAges());
  }

  start() {
    this.loadHistory();
    this.renderBanners();
    this.feed.start();
    this.timer = setInterval(() => this.renderAges(), TICK_MS);
  }

  /** Sparklines at load: the server's recent history (a 404 just leaves them to fill from live prices). */
  async loadHistory() {
    if (!this.config.history_url || !this.rows.size) return;
    const url = new URL(this.config.history_url, location.href);
    url.searchParams.set("pairs", Array.from(this.rows.values(), (row) => row.pair).join(","));
    try {
      const response = await fetch(url, {headers: {Accept: "application/json"}, cache: "no-store"});
      if (!response.ok) {
        document.body.dataset.history = "unavailable";
        return;
      }
      const body = await response.json();
      const serverNow = Number.isFinite(body.server_time) ? body.server_time : this.feed.serverNow();
      for (const [pair, points] of Object.entries(body.history || {})) {
        const row = this.rows.get(pairKey(pair));
        if (row && Array.isArray(points)) row.seedHistory(points, body.interval_ms, body.window_ms, serverNow);
      }
      document.body.dataset.history = "loaded";
    } catch (err) {
      document.body.dataset.history = "unavailable";
    }
  }

  onConnection(state, info) {
    this.connection = state;
    this.connectionInfo = info || {};
    this.connectionState.textContent = state;
    this.connectionState.dataset.state = state;
    document.body.dataset.connection = state;
    this.renderBanners();
    this.renderAges();
  }

  onServerNews(body, meta) {
    if (meta && meta.lastEventId) document.body.dataset.lastEventId = meta.lastEventId;
    this.serverDetail = typeof body.detail === "string" ? body.detail : "";
    this.renderBanners();
    this.renderAges();
  }

  onStatus(status, meta) {
    for (const price of this.feed.latestAll()) {
      const row = this.rows.get(pairKey(price.pair));
      if (row) row.refreshHeld(price);
    }
    this.onServerNews(status, meta);
    this.renderAges();
  }

  onPrice(price, meta) {
    if (meta && meta.lastEventId) document.body.dataset.lastEventId = meta.lastEventId;
    let row = this.rows.get(pairKey(price.pair));
    if (!row) {
      row = Row.create(price.pair, this.tbody);
      this.rows.set(pairKey(price.pair), row);
    }
    const sentence = row.showPrice(price, this.feed.serverNow());
    if (sentence) this.announcer.note(row.pair, sentence);
    row.renderAge(this.feed.serverNow(), this.feed.isStale(price.pair));
    row.renderListing(this.feed.pairStatus(price.pair));
    this.renderSimulated();
  }

  renderAges() {
    const now = this.feed.serverNow();
    for (const row of this.rows.values()) {
      row.renderAge(now, this.feed.isStale(row.pair));
      row.renderListing(this.feed.pairStatus(row.pair));
    }
  }

  renderBanners() {
    let mode;
    let label;
    let detail = "";
    const serverMode = this.feed.mode;
    if (this.connection !== "open" || serverMode === null) {
      mode = this.connection === "open" ? "connecting" : this.connection;
      label = CONNECTION_LABELS[mode] || CONNECTION_LABELS.connecting;
      if (this.connection === "reconnecting") {
        const wait = this.connectionInfo.retryInMs;
        detail = wait ? `The price stream is unavailable; retrying in ${Math.ceil(wait / 1000)} s. Prices shown are polled meanwhile.`
          : "Connection to the price stream lost; reconnecting.";
      } else if (this.connection === "paused") {
        detail = "The stream pauses while this tab is hidden and resumes when you come back.";
      } else if (this.connection === "closed") {
        detail = this.feed.lastError ? `Not connected: ${this.feed.lastError.detail || this.feed.lastError.error}`
          : "Not connected to the price stream.";
      }
    } else {
      mode = serverMode;
      label = MODE_LABELS[mode] || mode.toUpperCase();
      detail = this.serverDetail;
    }
    this.modeBanner.dataset.mode = mode;
    if (this.modeBanner.textContent !== label) this.modeBanner.textContent = label;
    this.modeDetail.textContent = detail;
    this.renderSimulated();
  }

  /** A simulated feed is labelled everywhere it shows: banner, tags, footer and the tab title. */
  renderSimulated() {
    let simulated = this.feed.simulated;
    for (const row of this.rows.values()) if (row.price && row.price.source === "simulator") simulated = true;
    this.simulatedBanner.hidden = !simulated;
    const note = document.getElementById("source-note");
    if (note) {
      note.textContent = simulated ? "Prices from a simulated exchange, not real market data."
        : "Prices from Binance, streamed live.";
    }
    document.body.classList.toggle("is-simulated", simulated);
    document.title = simulated ? "[SIMULATED] " + this.baseTitle : this.baseTitle;
  }
}

const dashboard = new Dashboard(readConfig());
window.pricefeedDashboard = dashboard;
dashboard.start();
