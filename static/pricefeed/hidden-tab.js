/**
 * Calls onHiddenLong() once the page has been hidden for `afterMs`, and onVisible() each time it
 * is seen again; the feed uses it to give the server its connection back while nobody looks.
 */
export class HiddenTab {
  constructor(afterMs, onHiddenLong, onVisible) {
    this.afterMs = afterMs;
    this.onHiddenLong = onHiddenLong;
    this.onVisible = onVisible;
    this.timer = null;
    this.listener = () => this.changed();
  }

  watch() {
    if (typeof document === "undefined") return;
    document.addEventListener("visibilitychange", this.listener);
    if (document.visibilityState === "hidden") this.changed(); // opened in a background tab
  }

  unwatch() {
    if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this.listener);
    clearTimeout(this.timer);
    this.timer = null;
  }

  changed() {
    if (document.visibilityState === "hidden") {
      if (this.afterMs > 0 && Number.isFinite(this.afterMs) && !this.timer) {
        this.timer = setTimeout(() => { this.timer = null; this.onHiddenLong(); }, this.afterMs);
      }
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.onVisible();
  }
}
