/**
 * pricefeed.js — the browser client of pricefeed, as an ES module.
 *
 *   import {PriceFeed, sharedFeed, Decimal} from "/pricefeed-static/pricefeed.js";
 *   const feed = new PriceFeed({pairs: ["BTC/USD"], transport: "auto", interval: 1000});
 *   feed.on("price", (price, meta) => ...);   // price.price is the exchange's decimal string
 *   feed.on("stale", (pair, isStale, price) => ...);
 *   feed.start();
 *
 * A page that used the old classic script: load this file with <script type="module"> (it
 * also sets window.PriceFeed, before any deferred script after it runs), or load the classic
 * shim pricefeed.global.js, which sets window.PriceFeed when the module has loaded.
 *
 * Transports: WebSocket ({prefix}/ws) or Server-Sent Events ({prefix}/stream), the latter read
 * with fetch() rather than EventSource, because EventSource hides the status and Retry-After of
 * a refused stream. Options, events and types: pricefeed.d.ts beside this file; README, "Browser client".
 */
import {PriceFeed, EVENTS} from "./pricefeed/feed.js";
import {Decimal} from "./pricefeed/decimal.js";
import {sharedFeed, PriceView} from "./pricefeed/shared.js";
import {pairKey} from "./pricefeed/payloads.js";

PriceFeed.Decimal = Decimal;
PriceFeed.shared = sharedFeed;
PriceFeed.EVENTS = EVENTS;

if (typeof window !== "undefined" && !window.PriceFeed) window.PriceFeed = PriceFeed;

export {PriceFeed, Decimal, sharedFeed, PriceView, EVENTS, pairKey};
export default PriceFeed;
