// A plain page using the ES module: options from the query string, what it sees in window.record.
import {PriceFeed, Decimal} from "/pricefeed-static/pricefeed.js";

const params = new URLSearchParams(location.search);
const options = {
  pairs: (params.get("pairs") || "").split(",").filter(Boolean),
  transport: params.get("transport") || "sse",
};
for (const name of ["interval", "hiddenCloseMs", "pollMs", "staleCheckMs", "lingerMs"]) {
  if (params.has(name)) options[name] = Number(params.get(name));
}
if (params.has("wsUrl")) options.wsUrl = params.get("wsUrl");
if (params.has("backoffMs")) options.backoff = {initialMs: Number(params.get("backoffMs")), maxMs: Number(params.get("backoffMs"))};

const record = {states: [], snapshots: [], stale: [], errors: [], prices: {}, priceEvents: 0, polled: 0};
window.record = record;
const feed = new PriceFeed(options);
window.feed = feed;

function row(pair) {
  let li = document.querySelector(`li[data-pair="${pair}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.pair = pair;
    li.append(Object.assign(document.createElement("span"), {className: "pair", textContent: pair}), " ",
      Object.assign(document.createElement("span"), {className: "price"}));
    document.getElementById("prices").append(li);
  }
  return li;
}

feed.on("connection", (state, info) => {
  record.states.push({state, info, at: Date.now()});
  document.getElementById("state").textContent = state;
});
feed.on("snapshot", (snapshot, meta) => {
  if (meta.polled) record.polled += 1;
  record.snapshots.push({resume: snapshot.resume || null, polled: Boolean(meta.polled), transport: meta.transport,
    interval_ms: snapshot.interval_ms === undefined ? null : snapshot.interval_ms,
    pairs: (snapshot.prices || []).map((p) => p.pair), at: Date.now()});
});
feed.on("price", (price) => {
  record.prices[price.pair] = price.price;
  record.priceEvents += 1;
  const cell = row(price.pair).querySelector(".price");
  cell.textContent = Decimal.format(price.price);
  cell.dataset.raw = price.price;
});
feed.on("stale", (pair, stale) => {
  record.stale.push({pair, stale, at: Date.now()});
  row(pair).dataset.stale = String(stale);
});
feed.on("error", (error) => record.errors.push(error));
feed.start();
