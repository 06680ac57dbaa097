/**
 * One pair on the dashboard: its price (the exchange's string, formatted), 24 h change, sparkline,
 * age and tags. Browser tests rely on: tr[data-pair] > td.price, td.change, td.trend svg, td.age;
 * tr.stale; tr.flash-up / tr.flash-down; tr[data-status] (live | stale | halted | unlisted);
 * .traded-as (the symbol the exchange trades an aliased pair as, e.g. ETHUSDT for ETH/USD).
 */
import {Decimal} from "../pricefeed.js";
import {PriceSeries, Sparkline} from "./sparkline.js";

const FLASH_MS = 1000;

/** "0.4 s", "12 s", "3 min", "2 h", "5 d". */
export function formatAge(ms) {
  const age = Math.max(0, ms);
  if (age < 10000) return (age / 1000).toFixed(1) + " s";
  if (age < 60000) return Math.floor(age / 1000) + " s";
  if (age < 3600000) return Math.floor(age / 60000) + " min";
  if (age < 86400000) return Math.floor(age / 3600000) + " h";
  return Math.floor(age / 86400000) + " d";
}

function changeWords(change) {
  const rounded = Decimal.round(change, 2);
  const direction = Decimal.sign(rounded);
  if (direction === 0) return "unchanged over 24 hours";
  return `${direction > 0 ? "up" : "down"} ${Decimal.format(rounded.replace("-", ""))} percent over 24 hours`;
}

export class Row {
  constructor(tr) {
    this.tr = tr;
    this.pair = tr.dataset.pair;
    this.priceCell = tr.querySelector("td.price");
    this.changeCell = tr.querySelector("td.change");
    this.ageCell = tr.querySelector("td.age");
    this.restTag = tr.querySelector(".tag-rest");
    this.staleTag = tr.querySelector(".tag-stale");
    this.simTag = tr.querySelector(".tag-sim");
    this.haltedTag = tr.querySelector(".tag-halted");
    this.unlistedTag = tr.querySelector(".tag-unlisted");
    this.tradedAs = tr.querySelector(".traded-as");
    this.series = new PriceSeries();
    this.sparkline = new Sparkline(tr.querySelector("td.trend"), this.pair);
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
    const tradedAs = document.createElement("span");
    tradedAs.className = "traded-as";
    tradedAs.hidden = true;
    head.append(name, " ", tradedAs);
    for (const [kind, text] of [["halted", "HALTED"], ["unlisted", "UNLISTED"], ["rest", "REST"], ["stale", "STALE"],
      ["sim", "SIM"]]) {
      const tag = document.createElement("span");
      tag.className = "tag tag-" + kind;
      tag.textContent = text;
      tag.hidden = true;
      head.append(" ", tag);
    }
    tr.append(head);
    for (const cls of ["price", "change", "trend", "age"]) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = cls === "trend" ? "" : "—";
      tr.append(td);
    }
    const empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    tbody.append(tr);
    return new Row(tr);
  }

  /** Show a newly accepted price; flash if it moved. Returns a sentence for screen readers, or null. */
  showPrice(price, serverNow) {
    const previous = this.price;
    this.price = price;
    this.priceCell.textContent = Decimal.format(price.price);
    this.priceCell.dataset.source = price.source || "";
    // change24h comes only when known; keep the last known one until a new one arrives.
    if (typeof price.change24h === "string" && Decimal.isDecimal(price.change24h)) this.change = price.change24h;
    this.renderChange();
    this.restTag.hidden = price.source !== "rest";
    this.simTag.hidden = price.source !== "simulator";
    this.series.add(price.ts, price.price, serverNow);
    this.sparkline.schedule(this.series, (points) => this.describeTrend(points));
    if (previous && previous.price !== price.price) {
      const direction = Decimal.compare(price.price, previous.price);
      if (direction !== 0) this.flash(direction);
      return `${this.pair} ${Decimal.format(price.price)}${this.change !== null ? ", " + changeWords(this.change) : ""}.`;
    }
    return null;
  }

  /** History from the server, drawn at once. */
  seedHistory(points, intervalMs, windowMs, serverNow) {
    this.series.seed(points, intervalMs, windowMs);
    this.series.trim(serverNow);
    this.sparkline.draw(this.series, (p) => this.describeTrend(p));
  }

  describeTrend(points) {
    const minutes = Math.max(1, Math.round((points[points.length - 1][0] - points[0][0]) / 60000));
    const prices = points.map((p) => p[1]);
    const low = prices.reduce((a, b) => (Decimal.compare(a, b) <= 0 ? a : b));
    const high = prices.reduce((a, b) => (Decimal.compare(a, b) >= 0 ? a : b));
    return `${this.pair}, last ${minutes} min: from ${Decimal.format(prices[0])} to ${Decimal.format(prices[prices.length - 1])}`
      + `, low ${Decimal.format(low)}, high ${Decimal.format(high)}`;
  }

  /** Take the feed's copy of the held price (a status may have changed its stale flag). */
  refreshHeld(price) {
    if (price && this.price && price.ts === this.price.ts && price.price === this.price.price) this.price = price;
  }

  renderChange() {
    if (this.change === null) return;
    const direction = Decimal.sign(Decimal.round(this.change, 2));
    this.changeCell.textContent = Decimal.formatPercent(this.change);
    this.changeCell.dataset.direction = direction > 0 ? "up" : direction < 0 ? "down" : "flat";
    this.tr.dataset.change = this.changeCell.dataset.direction;
  }

  flash(direction) {
    const tr = this.tr;
    tr.classList.remove("flash-up", "flash-down");
    void tr.offsetWidth; // restart the CSS animation when ticks come fast
    tr.classList.add(direction > 0 ? "flash-up" : "flash-down");
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => tr.classList.remove("flash-up", "flash-down"), FLASH_MS);
  }

  /**
   * What the exchange lists: the pair's status (live | stale | halted | unlisted) and, when it trades
   * under another quote than its name says, the traded symbol beside the name.
   */
  renderListing(state) {
    if (!state || !this.haltedTag) return;
    const status = state.status;
    if (this.tr.dataset.status !== status) this.tr.dataset.status = status;
    this.haltedTag.hidden = status !== "halted";
    this.unlistedTag.hidden = status !== "unlisted";
    if (status === "halted" || status === "unlisted") {
      this.staleTag.hidden = true;      // its own tag says more than STALE
      this.tr.classList.add("stale");
    }
    if (status === "unlisted" && !this.price) this.priceCell.textContent = "not listed";
    const aliased = typeof state.quote === "string" && typeof state.symbol === "string";
    this.tradedAs.hidden = !aliased;
    if (aliased && this.tradedAs.textContent !== state.symbol) {
      this.tradedAs.textContent = state.symbol;
      this.tradedAs.title = `Traded on the exchange as ${state.symbol} (quote ${state.quote}): it does not list ${this.pair}`;
    }
  }

  /** The age counter and the stale flag, on the server's clock. */
  renderAge(serverNow, stale) {
    if (!this.price) return;
    const text = formatAge(serverNow - this.price.ts);
    if (this.ageCell.textContent !== text) this.ageCell.textContent = text;
    this.ageCell.title = "Exchange time " + new Date(this.price.ts).toLocaleString();
    this.tr.classList.toggle("stale", stale);
    this.staleTag.hidden = !stale;
  }
}
