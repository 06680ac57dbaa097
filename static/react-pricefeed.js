/**
 * react-pricefeed.js — usePriceStream(pairs, options) for React 18/19, with no build step.
 *
 * An ES module importing "react" by its bare name: the host page maps it with an import map
 * (or a bundler resolves it). Every component on a page asking with the same options shares
 * one connection (pricefeed.js sharedFeed, reference-counted by pair); React StrictMode's
 * mount, unmount and mount again keeps that connection (it closes lingerMs after the last user).
 *
 *   import {usePriceStream} from "/pricefeed-static/react-pricefeed.js";
 *   function Ticker() {
 *     const {prices, status, stale, error} = usePriceStream(["BTC/USD"], {interval: 1000});
 *     const btc = prices["BTC/USD"];
 *     return <span>{btc ? Decimal.format(btc.price) : "…"}</span>;   // the exchange's string
 *   }
 */
import {useMemo, useSyncExternalStore} from "react";
import {sharedFeed, PriceView} from "./pricefeed.js";

/**
 * Live prices for `pairs` (an array of "BASE/QUOTE"; [] = the server's default set).
 * Returns {prices: {pair: price}, status: {connection, transport, mode, simulated, intervalMs,
 * staleAfterMs, lastEventId}, stale: {pair: boolean}, error: {error, detail, status} | null}.
 * `options` are PriceFeed options (url, transport, interval, ...); they pick the shared connection.
 */
export function usePriceStream(pairs, options) {
  const pairsKey = Array.isArray(pairs) ? pairs.join(",") : "";
  const optionsKey = JSON.stringify(options || {});
  const view = useMemo(
    () => PriceView.of(sharedFeed(options), pairsKey ? pairsKey.split(",") : []),
    // The keys stand for the arrays and objects a caller rebuilds on every render.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [pairsKey, optionsKey]);
  return useSyncExternalStore(view.subscribe, view.getSnapshot, view.getSnapshot);
}

export {sharedFeed};
