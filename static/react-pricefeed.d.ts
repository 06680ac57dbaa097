// Types of react-pricefeed.js: usePriceStream for React 18/19.
import type {Pair, PriceFeedOptions, PriceStreamState} from "./pricefeed.js";

export type {PriceStreamState} from "./pricefeed.js";
export {sharedFeed} from "./pricefeed.js";

/**
 * Live prices of `pairs` ([] = the server's default set) as {prices, status, stale, error}.
 * Components with the same options share one connection; StrictMode opens no second one.
 */
export declare function usePriceStream(pairs: Pair[], options?: Omit<PriceFeedOptions, "pairs">): PriceStreamState;
