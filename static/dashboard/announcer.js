/**
 * Price changes for screen readers: one polite, atomic live region updated at most once per
 * `everyMs` with the pairs that changed since the last announcement, so a fast market reads
 * as a short summary now and then rather than a flood.
 */
export class Announcer {
  constructor(region, everyMs) {
    this.region = region;
    this.everyMs = everyMs;
    this.changed = new Map();   // pair -> sentence
    this.timer = null;
    this.announcements = 0;
  }

  note(pair, sentence) {
    if (!this.region || !(this.everyMs > 0)) return;
    this.changed.set(pair, sentence);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), this.everyMs);
  }

  flush() {
    this.timer = null;
    if (!this.changed.size) return;
    this.region.textContent = Array.from(this.changed.values()).join(" ");
    this.changed.clear();
    this.announcements += 1;
    this.region.dataset.announcements = String(this.announcements);
  }
}
