// React 19 in StrictMode (development build): two components on one pair, one on another when asked.
import {StrictMode, createElement as h, useState} from "react";
import {createRoot} from "react-dom/client";
import {usePriceStream} from "/pricefeed-static/react-pricefeed.js";
import {Decimal} from "/pricefeed-static/pricefeed.js";

const params = new URLSearchParams(location.search);
const options = {transport: params.get("transport") || "sse", lingerMs: 500};
window.renders = 0;

function Price({id, pair}) {
  const {prices, status, stale, error} = usePriceStream([pair], options);
  window.renders += 1;
  const price = prices[pair];
  return h("p", {className: "price", "data-id": id, "data-pair": pair, "data-raw": price ? price.price : "",
    "data-connection": status.connection, "data-transport": status.transport || "",
    "data-stale": String(Boolean(stale[pair])), "data-error": error ? error.error : ""},
  `${pair} ${price ? Decimal.format(price.price) : "…"}`);
}

function App() {
  const [shown, setShown] = useState({a: true, b: true, c: false});
  window.show = (next) => setShown((current) => Object.assign({}, current, next));
  return h("div", null,
    shown.a ? h(Price, {id: "a", pair: "BTC/USD"}) : null,
    shown.b ? h(Price, {id: "b", pair: "BTC/USD"}) : null,
    shown.c ? h(Price, {id: "c", pair: "ETH/USD"}) : null);
}

createRoot(document.getElementById("root")).render(h(StrictMode, null, h(App)));
