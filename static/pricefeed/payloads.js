/** Checking what the server sends before the feed relies on it. Prices stay strings. */
import {isDecimal} from "./decimal.js";

export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    return undefined;
  }
}

export function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A price payload with what the feed relies on, or null. `ts` may come as digits. */
export function validPrice(p) {
  if (!isObject(p) || typeof p.pair !== "string" || p.pair === "" || !isDecimal(p.price)) return null;
  let ts = p.ts;
  if (typeof ts === "string" && /^\d+$/.test(ts)) ts = Number(ts);
  if (typeof ts !== "number" || !Number.isFinite(ts)) return null;
  return ts === p.ts ? p : Object.assign({}, p, {ts});
}

/** Pairs as the server spells them: "btc/usd " -> "BTC/USD". */
export function pairKey(pair) {
  return String(pair).trim().toUpperCase();
}

/** "{prefix}/stream" -> "{prefix}/<name>", keeping the URL relative if it was; null if not a /stream URL. */
export function endpointUrl(streamUrl, name) {
  const text = String(streamUrl);
  return /\/stream(?=$|[?#])/.test(text) ? text.replace(/\/stream(?=$|[?#])/, "/" + name).replace(/[?#].*$/, "") : null;
}
