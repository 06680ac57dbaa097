/**
 * Decimal strings without floats: compare, round and format prices exactly as the exchange sent them.
 * A price shown on a page is always the exchange's string (formatted), never a parsed float.
 */

const DECIMAL_RE = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/** Parse "-0012.3400" into {neg, int: "12", frac: "34"}; null if not a plain decimal. */
export function parseDecimal(text) {
  if (typeof text !== "string") return null;
  const match = DECIMAL_RE.exec(text.trim());
  if (!match || (match[2] === "" && !match[3])) return null;
  const int = match[2].replace(/^0+/, "");
  const frac = (match[3] || "").replace(/0+$/, "");
  return {neg: match[1] === "-" && (int !== "" || frac !== ""), int, frac};
}

export function isDecimal(text) {
  return parseDecimal(text) !== null;
}

function compareMagnitude(a, b) {
  if (a.int.length !== b.int.length) return a.int.length < b.int.length ? -1 : 1;
  if (a.int !== b.int) return a.int < b.int ? -1 : 1;
  const width = Math.max(a.frac.length, b.frac.length);
  const fa = a.frac.padEnd(width, "0");
  const fb = b.frac.padEnd(width, "0");
  return fa === fb ? 0 : (fa < fb ? -1 : 1);
}

/** -1, 0 or 1 as decimal string a is below, equal to or above b. */
export function compare(a, b) {
  const pa = parseDecimal(a);
  const pb = parseDecimal(b);
  if (!pa || !pb) throw new TypeError("PriceFeed.Decimal.compare: not decimal strings");
  if (pa.neg !== pb.neg) return pa.neg ? -1 : 1;
  const magnitude = compareMagnitude(pa, pb);
  return pa.neg ? -magnitude : magnitude;
}

/** -1, 0 or 1: the sign of a decimal string. */
export function sign(text) {
  const p = parseDecimal(text);
  if (!p) throw new TypeError("PriceFeed.Decimal.sign: not a decimal string");
  if (p.int === "" && p.frac === "") return 0;
  return p.neg ? -1 : 1;
}

function incrementDigits(digits) {
  const out = digits.split("");
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] !== "9") {
      out[i] = String.fromCharCode(out[i].charCodeAt(0) + 1);
      return out.join("");
    }
    out[i] = "0";
  }
  return "1" + out.join("");
}

/** Round to `places` decimals, half away from zero, as a plain decimal string. */
export function round(text, places) {
  const p = parseDecimal(text);
  if (!p) throw new TypeError("PriceFeed.Decimal.round: not a decimal string");
  const kept = p.frac.padEnd(places, "0").slice(0, places);
  let digits = (p.int || "0") + kept;
  if ((p.frac[places] || "0") >= "5") digits = incrementDigits(digits);
  const int = digits.slice(0, digits.length - places).replace(/^0+/, "") || "0";
  const frac = places > 0 ? digits.slice(digits.length - places) : "";
  const zero = /^0*$/.test(int + frac);
  return (p.neg && !zero ? "-" : "") + int + (frac ? "." + frac : "");
}

function groupThousands(int, separator) {
  return int.replace(/\B(?=(\d{3})+(?!\d))/g, separator);
}

/**
 * Display form: trailing zeros trimmed, at least `minDecimals` kept, thousands grouped.
 * "43250.12000000" -> "43,250.12"; "0.00012300" -> "0.000123". Non-decimals pass through.
 */
export function format(text, options) {
  const minDecimals = (options && options.minDecimals !== undefined) ? options.minDecimals : 2;
  const separator = (options && options.separator !== undefined) ? options.separator : ",";
  const p = parseDecimal(text);
  if (!p) return String(text);
  const frac = p.frac.padEnd(minDecimals, "0");
  return (p.neg ? "-" : "") + groupThousands(p.int || "0", separator) + (frac ? "." + frac : "");
}

/** "2.976" -> "+2.98%", "-0.693" -> "-0.69%", "-0.001" -> "0.00%". */
export function formatPercent(text) {
  const rounded = round(text, 2);
  const s = sign(rounded);
  return (s > 0 ? "+" : "") + format(rounded) + "%";
}

export const Decimal = Object.freeze({parse: parseDecimal, isDecimal, compare, sign, round, format, formatPercent});
