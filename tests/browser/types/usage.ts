// Compiled with tsc --noEmit by test_type_declarations.py: what a TypeScript page writes must type-check.
import {PriceFeed, Decimal, sharedFeed, type Price, type PriceFeedOptions} from "../../../static/pricefeed.js";
import {usePriceStream} from "../../../static/react-pricefeed.js";

const options: PriceFeedOptions = {pairs: ["BTC/USD"], transport: "auto", interval: 1000, hiddenCloseMs: 60000};
const feed = new PriceFeed(options);
const off = feed.on("price", (price: Price, meta) => {
  const shown: string = Decimal.format(price.price);
  const when: number = price.ts;
  console.log(shown, when, meta.lastEventId, meta.fromSnapshot);
});
feed.on("stale", (pair, stale, price) => console.log(pair.toUpperCase(), stale === true, price.price));
feed.on("connection", (state, info) => {
  if (state === "reconnecting") console.log(info.retryInMs, info.retryAfterMs);
});
feed.on("error", (error) => console.log(error.error, error.detail));
feed.start().subscribe(["ETH/USD"]);
feed.unsubscribe(["ETH/USD"]);
const release = sharedFeed({transport: "sse"}).hold(["SOL/USD"]);
release();
off();
const latest = feed.latest("BTC/USD");
if (latest) console.log(Decimal.compare(latest.price, "1.0") > 0);

// @ts-expect-error a price is a string, not a number
const wrong: number = feed.latestAll()[0].price;
// @ts-expect-error the transports are "auto", "sse" and "ws"
new PriceFeed({transport: "long-polling"});
// @ts-expect-error no such event
feed.on("tick", () => undefined);

function Ticker(): string {
  const {prices, status, stale, error} = usePriceStream(["BTC/USD"], {interval: 1000});
  const btc = prices["BTC/USD"];
  if (error) return error.error;
  return `${status.connection} ${stale["BTC/USD"] ? "stale" : ""} ${btc ? Decimal.format(btc.price) : "…"}`;
}
console.log(Ticker, wrong, window.PriceFeed, window.PriceFeedReady);
