// Types of pricefeed.js (the browser client, an ES module). Prices are decimal strings: never floats.

/** "BASE/QUOTE", e.g. "BTC/USD" (case-insensitive; the server answers in upper case). */
export type Pair = string;

/** A price exactly as the server sent it (SSE `price` event data, or an entry of a snapshot). */
export interface Price {
  pair: Pair;
  symbol?: string;
  /** The exchange's decimal string, e.g. "43250.12000000". Format it with Decimal.format; never parseFloat it. */
  price: string;
  /** Exchange event time, ms since the epoch. */
  ts: number;
  source?: "binance" | "rest" | "simulator" | string;
  stale?: boolean;
  /** live | stale | halted (listed, not trading: never fresh) | unlisted (the exchange does not list it). */
  status?: PairStatusWord;
  /** The quote the exchange trades it under, when not the pair's own (BTC/USD traded as BTCUSDT: "USDT"). */
  quote?: string;
  age_ms?: number;
  open24h?: string;
  /** 24 h change in percent, a decimal string such as "-0.693". */
  change24h?: string;
  [field: string]: unknown;
}

export type Mode = "live" | "redis" | "local" | "degraded";

export type PairStatusWord = "live" | "stale" | "halted" | "unlisted";

/** Per pair, priced or not: its status and the symbol the exchange trades it as (null when unlisted). */
export interface PairState {
  status: PairStatusWord | string;
  symbol: string | null;
  quote?: string;
  [field: string]: unknown;
}

export interface Snapshot {
  prices: Price[];
  mode: Mode | string;
  simulated: boolean;
  stale: Pair[];
  stale_after_ms: number;
  server_time: number;
  /** The pace in force for this client, when the server supports `interval`. */
  interval_ms?: number;
  worker?: string;
  resume: {last_event_id: string; gap: boolean; missed?: number} | null;
  detail?: string;
  pairs?: Record<Pair, PairState>;
  /** Why the exchange refuses this server, if it does: "region_not_served" (451), "blocked_by_exchange_firewall" (403). */
  reason?: string | null;
  [field: string]: unknown;
}

export interface Status {
  mode: Mode | string;
  simulated?: boolean;
  stale?: Pair[];
  server_time?: number;
  detail?: string;
  pairs?: Record<Pair, PairState>;
  reason?: string | null;
  [field: string]: unknown;
}

export type ConnectionState = "closed" | "connecting" | "open" | "reconnecting" | "paused";
export type TransportKind = "ws" | "sse";

export interface ConnectionInfo {
  transport: TransportKind | null;
  /** reconnecting: the wait before the next attempt, ms (full jitter, plus Retry-After when given). */
  retryInMs?: number;
  attempt?: number;
  status?: number | null;
  error?: string;
  detail?: string;
  retryAfterMs?: number | null;
  /** open: the snapshot's resume report, when the stream resumed from a Last-Event-ID. */
  resume?: Snapshot["resume"];
  resumed?: boolean;
}

export interface EventMeta {
  lastEventId: string;
  transport?: TransportKind | "poll";
  fromSnapshot?: boolean;
  /** The snapshot came from polling {prefix}/prices while the stream was down. */
  polled?: boolean;
}

/** A server refusal or a bad WebSocket operation: {"error", "detail"} as the server sent it. */
export interface FeedError {
  error: string;
  detail?: string;
  status?: number;
  source?: "server";
}

export interface PriceFeedOptions {
  /** The SSE stream URL (default "/api/market-data/stream"); /ws, /prices are found beside it. */
  url?: string;
  /** WebSocket URL (default: `url` with /stream replaced by /ws; http(s) becomes ws(s)). */
  wsUrl?: string;
  /** JSON snapshot polled while disconnected (default: beside `url`); false or null: no polling. */
  pricesUrl?: string | false | null;
  /** Pairs to ask for; omitted or []: the server's default set. */
  pairs?: Pair[];
  /** "auto" (default): WebSocket, falling back to SSE for good if no snapshot ever comes over it. */
  transport?: "auto" | "sse" | "ws";
  /** Pace per client, ms: 0 every tick, 100–60000 at most one update per pair per interval. */
  interval?: number;
  /** Reconnect ceilings: the n-th wait is uniform in [0, min(maxMs, initialMs·2ⁿ)] (initialMs: the server's retry: hint when known). */
  backoff?: {initialMs?: number; maxMs?: number};
  /** Poll /prices every this many ms while disconnected (default 5000). */
  pollMs?: number;
  /** Close the stream after the tab has been hidden this long (default 60000; 0: never). */
  hiddenCloseMs?: number;
  /** Reconnect when nothing (not even a ping) arrived for this long (default 45000). */
  idleTimeoutMs?: number;
  /** WebSocket {"op":"ping"} period (default 20000). */
  pingMs?: number;
  /** stale_after_ms until the server says its own (default 10000). */
  staleAfterMs?: number;
  /** How often staleness is re-judged (default 1000). */
  staleCheckMs?: number;
  /** Shared feeds: close this long after the last holder released (default 1000). */
  lingerMs?: number;
  logger?: Pick<Console, "warn" | "error">;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
}

export interface PriceFeedEvents {
  price: (price: Price, meta: EventMeta) => void;
  snapshot: (snapshot: Snapshot, meta: EventMeta) => void;
  status: (status: Status, meta: EventMeta) => void;
  connection: (state: ConnectionState, info: ConnectionInfo) => void;
  stale: (pair: Pair, stale: boolean, price: Price) => void;
  error: (error: FeedError) => void;
}

export declare class PriceFeed {
  constructor(options?: PriceFeedOptions);
  static Decimal: typeof Decimal;
  static shared: typeof sharedFeed;
  static EVENTS: ReadonlyArray<keyof PriceFeedEvents>;

  readonly state: ConnectionState;
  readonly transport: TransportKind | null;
  readonly lastEventId: string;
  readonly lastError: FeedError | null;
  readonly lastSnapshot: Snapshot | null;
  readonly mode: Mode | string | null;
  readonly simulated: boolean;
  readonly intervalMs: number | null;
  readonly staleAfterMs: number;
  readonly clockOffsetMs: number;

  on<E extends keyof PriceFeedEvents>(event: E, listener: PriceFeedEvents[E]): () => void;
  off<E extends keyof PriceFeedEvents>(event: E, listener: PriceFeedEvents[E]): void;
  start(): this;
  stop(): this;
  /** Add pairs: live over WebSocket; over SSE one new request resuming from Last-Event-ID. */
  subscribe(pairs: Pair[]): void;
  unsubscribe(pairs: Pair[]): void;
  /** Reference-counted interest; the connection opens with the first hold. Returns release(). */
  hold(pairs: Pair[]): () => void;
  latest(pair: Pair): Price | null;
  latestAll(): Price[];
  serverNow(): number;
  isStale(pair: Pair): boolean;
  stalePairs(): Pair[];
  /** Live | stale | halted | unlisted and the traded symbol; null before the server said. */
  pairStatus(pair: Pair): PairState | null;
  /** The pairs asked of the server; null: the server's default set. */
  activePairs(): Pair[] | null;
}

/** The page's one shared PriceFeed for these options (its pairs come from hold()). */
export declare function sharedFeed(options?: Omit<PriceFeedOptions, "pairs">): PriceFeed;

export interface PriceStreamState {
  prices: Record<Pair, Price>;
  status: {
    connection: ConnectionState;
    transport: TransportKind | null;
    mode: Mode | string | null;
    simulated: boolean;
    intervalMs: number | null;
    staleAfterMs: number;
    lastEventId: string;
  };
  stale: Record<Pair, boolean>;
  error: FeedError | null;
}

/** A store of some pairs of a feed, shaped for React's useSyncExternalStore. */
export declare class PriceView {
  static of(feed: PriceFeed, pairs: Pair[]): PriceView;
  subscribe(onChange: () => void): () => void;
  getSnapshot(): PriceStreamState;
}

/** String-only decimal helpers: prices are shown as the exchange sent them. */
export declare const Decimal: {
  parse(text: string): {neg: boolean; int: string; frac: string} | null;
  isDecimal(text: unknown): boolean;
  compare(a: string, b: string): -1 | 0 | 1;
  sign(text: string): -1 | 0 | 1;
  round(text: string, places: number): string;
  format(text: string, options?: {minDecimals?: number; separator?: string}): string;
  formatPercent(text: string): string;
};

export declare const EVENTS: ReadonlyArray<keyof PriceFeedEvents>;
/** A pair as the server spells it: "btc/usd " -> "BTC/USD". */
export declare function pairKey(pair: string): Pair;
export default PriceFeed;

declare global {
  interface Window {
    /** Set by pricefeed.js (or by the classic shim pricefeed.global.js once loaded). */
    PriceFeed?: typeof PriceFeed;
    /** Set by pricefeed.global.js: resolves with the module. */
    PriceFeedReady?: Promise<typeof import("./pricefeed.js")>;
  }
}
