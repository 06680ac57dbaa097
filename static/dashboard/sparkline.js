/**
 * A sparkline per pair: a bounded series of [ts, price] points (one per interval, inside a
 * window, as /history serves them) drawn as an SVG line. The y coordinate is the only place a
 * price becomes a Number; the text a person reads is always the exchange's string.
 */
import {Decimal} from "../pricefeed.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 120;
const HEIGHT = 32;
const PAD = 3;

export class PriceSeries {
  constructor(intervalMs = 1000, windowMs = 900000) {
    this.intervalMs = intervalMs;
    this.windowMs = windowMs;
    this.points = [];   // [ts ms, "price"], oldest first
  }

  /** Take the server's history (older points); live points already held stay after it. */
  seed(points, intervalMs, windowMs) {
    if (Number.isFinite(intervalMs) && intervalMs > 0) this.intervalMs = intervalMs;
    if (Number.isFinite(windowMs) && windowMs > 0) this.windowMs = windowMs;
    const firstLive = this.points.length ? this.points[0][0] : Infinity;
    const older = points.filter((p) => Array.isArray(p) && Number.isFinite(p[0]) && Decimal.isDecimal(p[1])
      && p[0] < firstLive).sort((a, b) => a[0] - b[0]);
    this.points = older.concat(this.points);
  }

  /** A live price: at most one point per interval (the latest in it wins). */
  add(ts, price, now) {
    const last = this.points[this.points.length - 1];
    if (last && Math.floor(last[0] / this.intervalMs) === Math.floor(ts / this.intervalMs)) {
      last[0] = ts;
      last[1] = price;
    } else if (!last || ts > last[0]) {
      this.points.push([ts, price]);
    }
    this.trim(now);
  }

  trim(now) {
    const oldest = now - this.windowMs;
    let drop = 0;
    while (drop < this.points.length - 1 && this.points[drop][0] < oldest) drop += 1;
    if (drop) this.points.splice(0, drop);
  }
}

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

export class Sparkline {
  constructor(cell, pair) {
    this.pair = pair;
    this.svg = svgElement("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", class: "sparkline",
      role: "img", "aria-label": `${pair}: no recent prices yet`});
    this.area = svgElement("path", {class: "sparkline-area", d: ""});
    this.line = svgElement("path", {class: "sparkline-line", d: "", "vector-effect": "non-scaling-stroke"});
    // A zero-length round-capped stroke stays a round dot however the SVG is stretched.
    this.dot = svgElement("path", {class: "sparkline-dot", d: "", "vector-effect": "non-scaling-stroke"});
    this.svg.append(this.area, this.line, this.dot);
    cell.append(this.svg);
    this.pending = false;
  }

  /** Redraw once per animation frame however many points arrived. */
  schedule(series, describe) {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw(series, describe);
    });
  }

  draw(series, describe) {
    const points = series.points;
    this.svg.dataset.points = String(points.length);
    if (points.length < 2) return;
    const ys = points.map((p) => Number(p[1]));
    const low = Math.min(...ys);
    const high = Math.max(...ys);
    const t0 = points[0][0];
    const span = Math.max(1, points[points.length - 1][0] - t0);
    const x = (ts) => ((ts - t0) / span) * WIDTH;
    const y = (v) => (high === low ? HEIGHT / 2 : PAD + (1 - (v - low) / (high - low)) * (HEIGHT - 2 * PAD));
    const coords = points.map((p, i) => `${x(p[0]).toFixed(2)},${y(ys[i]).toFixed(2)}`);
    this.line.setAttribute("d", "M" + coords.join(" L"));
    this.area.setAttribute("d", `M0,${HEIGHT} L${coords.join(" L")} L${WIDTH},${HEIGHT} Z`);
    const [lastX, lastY] = coords[coords.length - 1].split(",");
    this.dot.setAttribute("d", `M${lastX},${lastY} l0,0`);
    const first = ys[0];
    const last = ys[ys.length - 1];
    this.svg.dataset.trend = last > first ? "up" : last < first ? "down" : "flat";
    this.svg.setAttribute("aria-label", describe(points));
  }
}
