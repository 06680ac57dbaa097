/**
 * Which pairs a feed asks the server for: the pairs named explicitly (constructor, subscribe,
 * unsubscribe) and the pairs held by subscribers, reference-counted. null means "the server's
 * default set" (no `pairs` parameter).
 */
import {pairKey} from "./payloads.js";

export class PairInterest {
  constructor(pairs) {
    this.explicit = Array.isArray(pairs) ? pairs.map(pairKey) : [];
    // Constructed without pairs: the default set, until subscribe/unsubscribe name some.
    this.defaultSet = this.explicit.length === 0;
    this.holds = new Map();
    this.holdAll = 0;
    this.holding = false;
  }

  add(pairs) {
    this.defaultSet = false;
    for (const pair of pairs.map(pairKey)) if (!this.explicit.includes(pair)) this.explicit.push(pair);
  }

  remove(pairs) {
    this.defaultSet = false;
    const gone = new Set(pairs.map(pairKey));
    this.explicit = this.explicit.filter((pair) => !gone.has(pair));
  }

  /** Count one more holder of `pairs` ([] = the default set); returns the keys to release with. */
  hold(pairs) {
    const keys = (pairs || []).map(pairKey);
    if (keys.length === 0) this.holdAll += 1;
    for (const key of keys) this.holds.set(key, (this.holds.get(key) || 0) + 1);
    this.holding = true;
    return keys;
  }

  release(keys) {
    if (keys.length === 0) this.holdAll -= 1;
    for (const key of keys) {
      const count = this.holds.get(key) - 1;
      if (count > 0) this.holds.set(key, count);
      else this.holds.delete(key);
    }
  }

  get unheld() {
    return this.holdAll === 0 && this.holds.size === 0;
  }

  /** Pair names to ask for ([] when none), or null for the server's default set. */
  desired() {
    if (this.holding) {
      if (this.holdAll > 0) return null;
      return Array.from(new Set([...this.explicit, ...this.holds.keys()])).sort();
    }
    return this.defaultSet ? null : this.explicit.slice();
  }
}
