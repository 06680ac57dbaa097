/**
 * dashboard.js — the live price table of the pricefeed dashboard.
 *
 * Reads its settings from <script type="application/json" id="pricefeed-config">, finds the
 * server-rendered rows (<tr data-pair="BTC/USD">) and keeps them current from a PriceFeed
 * (pricefeed.js, loaded first). Prices stay decimal strings from the wire to the cell.
 *
 * Hooks that browser tests rely on:
 *   tr[data-pair] > td.price, td.change, td.age; tr.stale; tr.flash-up / tr.flash-down
 *   #mode-banner[data-mode]    live | redis | local | degraded | connecting | reconnecting | closed
 *   #simulated-banner[hidden]  shown while the feed is simulated
 *   #connection-state          the PriceFeed connection state, as text and data-state
 *   body[data-last-event-id]   the last SSE event id seen
 */
(function () {
  "use strict";

  const Decimal = window.PriceFeed.Decimal;
  const FLASH_MS = 1000;
  const TICK_MS = 1000;
  const DEFAULT_STALE_AFTER_MS = 10000;

  const MODE_LABELS = {
    live: "LIVE",
    redis: "STALE — showing last known prices",
    local: "LIVE (local feed)",
    degraded: "DEGRADED — no live data",
  };
  const CONNECTION_LABELS = {
    connecting: "CONNECTING…",
    reconnecting: "RECONNECTING…",
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

  /** "0.4 s", "12 s", "3 min", "2 h", "5 d". */
  function formatAge(ms) {
    const age = Math.max(0, ms);
    if (age < 10000) return (age / 1000).toFixed(1) + " s";
    if (age < 60000) return Math.floor(age / 1000) + " s";
    if (age < 3600000) return Math.floor(age / 60000) + " min";
    if (age < 86400000) return Math.floor(age / 3600000) + " h";
    return Math.floor(age / 86400000) + " d";
  }

  function pairKey(pair) {
    return String(pair).toUpperCase();
  }

  /** One table row: what it shows and how it changes. */
  class Row {
    constructor(tr) {
      this.tr = tr;
      this.priceCell = tr.querySelector("td.price");
      this.changeCell = tr.querySelector("td.change");
      this.ageCell = tr.querySelector("td.age");
      this.restTag = tr.querySelector(".tag-rest");
      this.staleTag = tr.querySelector(".tag-stale");
      this.simTag = tr.querySelector(".tag-sim");
      this.price = null;
      this.change = null;
      this.flashTimer = null;
    }

    static create(pair, tbody) {
      const tr = document.createElement("tr");
      tr.dataset.pair = pair;
      const head = document.createElement("th");
      head.scope = "row";
      head.className = "pair";
      const name = document.createElement("span");
      name.className = "pair-name";
      name.textContent = pair;
      head.append(name);
      for (const [kind, text] of [["rest", "REST"], ["stale", "STALE"], ["sim", "SIM"]]) {
        const tag = document.createElement("span");
        tag.className = "tag tag-" + kind;
        tag.textContent = text;
        tag.hidden = true;
        head.append(" ", tag);
      }
      tr.append(head);
      for (const cls of ["price", "change", "age"]) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = "—";
        tr.append(td);
      }
      const empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      tbody.append(tr);
      return new Row(tr);
    }

    /** Show a newly accepted price; flash if it moved. */
    showPrice(price) {
      const previous = this.price;
      this.price = price;
      this.priceCell.textContent = Decimal.format(price.price);
      this.priceCell.dataset.source = price.source || "";
      // change24h comes only when known; keep the last known one until a new one arrives.
      if (typeof price.change24h === "string" && Decimal.isDecimal(price.change24h)) {
        this.change = price.change24h;
      }
      this.renderChange();
      this.restTag.hidden = price.source !== "rest";
      this.simTag.hidden = price.source !== "simulator";
      if (previous && previous.price !== price.price) {
        const direction = Decimal.compare(price.price, previous.price);
        if (direction !== 0) this.flash(direction);
      }
    }

    /** Take the feed's copy of the held price (a status may have changed its stale flag). */
    refreshHeld(price) {
      if (price && this.price && price.ts === this.price.ts && price.price === this.price.price) {
        this.price = price;
      }
    }

    renderChange() {
      if (this.change === null) return;
      const direction = Decimal.sign(Decimal.round(this.change, 2));
      this.changeCell.textContent = Decimal.formatPercent(this.change);
      this.changeCell.dataset.direction = direction > 0 ? "up" : direction < 0 ? "down" : "flat";
    }

    flash(direction) {
      const tr = this.tr;
      tr.classList.remove("flash-up", "flash-down");
      void tr.offsetWidth; // restart the CSS animation when ticks come fast
      tr.classList.add(direction > 0 ? "flash-up" : "flash-down");
      clearTimeout(this.flashTimer);
      this.flashTimer = setTimeout(() => tr.classList.remove("flash-up", "flash-down"), FLASH_MS);
    }

    /** Age and staleness; `connected` false means the server can no longer vouch for freshness. */
    renderAge(serverNow, staleAfterMs, connected) {
      if (!this.price) return;
      const age = serverNow - this.price.ts;
      const stale = this.price.stale === true || (!connected && age > staleAfterMs);
      const text = formatAge(age);
      if (this.ageCell.textContent !== text) this.ageCell.textContent = text;
      this.ageCell.title = "Exchange time " + new Date(this.price.ts).toLocaleString();
      this.tr.classList.toggle("stale", stale);
      this.staleTag.hidden = !stale;
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
      this.baseTitle = document.title;
      this.rows = new Map();
      for (const tr of this.tbody.querySelectorAll("tr[data-pair]")) {
        this.rows.set(pairKey(tr.dataset.pair), new Row(tr));
      }
      this.serverMode = null;
      this.serverDetail = "";
      this.serverSimulated = false;
      this.connection = "connecting";
      this.connectionInfo = {};
      this.clockOffsetMs = 0;
      this.staleAfterMs = Number.isFinite(config.stale_after_ms) ? config.stale_after_ms : DEFAULT_STALE_AFTER_MS;

      this.feed = new window.PriceFeed({
        url: config.stream_url || "/api/market-data/stream",
        pricesUrl: config.prices_url || null,
        pairs: Array.isArray(config.pairs) ? config.pairs : [],
      });
      this.feed.on("connection", (state, info) => this.onConnection(state, info));
      this.feed.on("snapshot", (snapshot, meta) => this.onSnapshot(snapshot, meta));
      this.feed.on("status", (status, meta) => this.onStatus(status, meta));
      this.feed.on("price", (price, meta) => this.onPrice(price, meta));
    }

    start() {
      this.renderBanners();
      this.feed.start();
      this.timer = setInterval(() => this.renderAges(), TICK_MS);
    }

    // -- feed events

    onConnection(state, info) {
      this.connection = state;
      this.connectionInfo = info || {};
      this.connectionState.textContent = state;
      this.connectionState.dataset.state = state;
      document.body.dataset.connection = state;
      this.renderBanners();
      this.renderAges();
    }

    onSnapshot(snapshot, meta) {
      this.noteEventId(meta);
      this.noteServerTime(snapshot.server_time);
      if (typeof snapshot.mode === "string") this.serverMode = snapshot.mode;
      this.serverSimulated = snapshot.simulated === true;
      this.serverDetail = typeof snapshot.detail === "string" ? snapshot.detail : "";
      if (Number.isFinite(snapshot.stale_after_ms) && snapshot.stale_after_ms > 0) {
        this.staleAfterMs = snapshot.stale_after_ms;
      }
      this.renderBanners();
    }

    onStatus(status, meta) {
      this.noteEventId(meta);
      this.noteServerTime(status.server_time);
      if (typeof status.mode === "string") this.serverMode = status.mode;
      if (typeof status.simulated === "boolean") this.serverSimulated = status.simulated;
      this.serverDetail = typeof status.detail === "string" ? status.detail : "";
      for (const price of this.feed.latestAll()) {
        const row = this.rows.get(pairKey(price.pair));
        if (row) row.refreshHeld(price);
      }
      this.renderBanners();
      this.renderAges();
    }

    onPrice(price, meta) {
      this.noteEventId(meta);
      let row = this.rows.get(pairKey(price.pair));
      if (!row) {
        row = Row.create(price.pair, this.tbody);
        this.rows.set(pairKey(price.pair), row);
      }
      row.showPrice(price);
      row.renderAge(this.serverNow(), this.staleAfterMs, this.connection === "open");
      this.renderSimulated();
    }

    noteEventId(meta) {
      if (meta && meta.lastEventId) document.body.dataset.lastEventId = meta.lastEventId;
    }

    /** Ages count on the server's clock, so a skewed client clock does not age prices. */
    noteServerTime(serverTime) {
      if (Number.isFinite(serverTime)) this.clockOffsetMs = serverTime - Date.now();
    }

    serverNow() {
      return Date.now() + this.clockOffsetMs;
    }

    // -- rendering

    renderAges() {
      const now = this.serverNow();
      const connected = this.connection === "open";
      for (const row of this.rows.values()) row.renderAge(now, this.staleAfterMs, connected);
    }

    renderBanners() {
      let mode;
      let label;
      let detail = this.serverDetail;
      if (this.connection !== "open" || this.serverMode === null) {
        mode = this.connection === "open" ? "connecting" : this.connection;
        label = CONNECTION_LABELS[mode] || CONNECTION_LABELS.connecting;
        if (this.connection === "reconnecting") {
          const wait = this.connectionInfo.retryInMs;
          detail = wait ? `The price stream is unavailable; retrying in ${Math.ceil(wait / 1000)} s.`
            : "Connection to the price stream lost; reconnecting.";
        } else if (this.connection === "closed") {
          detail = "Not connected to the price stream.";
        }
      } else {
        mode = this.serverMode;
        label = MODE_LABELS[mode] || mode.toUpperCase();
      }
      this.modeBanner.dataset.mode = mode;
      if (this.modeBanner.textContent !== label) this.modeBanner.textContent = label;
      this.modeDetail.textContent = detail;
      this.renderSimulated();
    }

    renderSimulated() {
      let simulated = this.serverSimulated;
      for (const row of this.rows.values()) {
        if (row.price && row.price.source === "simulator") simulated = true;
      }
      this.simulatedBanner.hidden = !simulated;
      const note = document.getElementById("source-note");
      if (note) {
        note.textContent = simulated
          ? "Prices from a simulated exchange, not real market data."
          : "Prices from Binance, streamed live.";
      }
      document.body.classList.toggle("is-simulated", simulated);
      document.title = simulated ? "[SIMULATED] " + this.baseTitle : this.baseTitle;
    }
  }

  function main() {
    const dashboard = new Dashboard(readConfig());
    window.pricefeedDashboard = dashboard;
    dashboard.start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
