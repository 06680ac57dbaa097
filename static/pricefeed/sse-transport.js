/**
 * The Server-Sent Events transport, read with fetch() and a stream reader.
 *
 * Not EventSource: EventSource hides the HTTP status and headers of a refused stream, so a
 * page could not honour `Retry-After` on a 503/429 nor tell `unknown_pair` from a restart,
 * and its own reconnects carry no jitter. Reading the stream ourselves gives all three; the
 * feed (feed.js) owns every reconnect.
 */

/** Parses the text/event-stream format (WHATWG HTML §9.2.6) into {event, data, id} records. */
export class EventStreamParser {
  constructor(onEvent, onRetry, onActivity) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.onActivity = onActivity;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.eventName = "";
    this.dataLines = [];
    this.eventId = null;
  }

  push(text) {
    let chunk = this.buffer + text;
    // A "\r" at the very end may be the first half of "\r\n": decide when the next chunk comes.
    const held = chunk.endsWith("\r") ? "\r" : "";
    if (held) chunk = chunk.slice(0, -1);
    const lines = chunk.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + held; // the last piece has no line end yet
    for (const line of lines) this.line(line);
  }

  line(line) {
    this.onActivity();
    if (line === "") {
      if (this.dataLines.length) this.onEvent(this.eventName || "message", this.dataLines.join("\n"), this.eventId);
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventName = value;
    else if (field === "data") this.dataLines.push(value);
    else if (field === "id" && !value.includes("\0")) this.eventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

/** Seconds or an HTTP date, as milliseconds from now; null when absent or unreadable. */
export function parseRetryAfter(header) {
  if (!header) return null;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : null;
}

/**
 * One stream request. Callbacks: onOpen(), onEvent(name, dataText, id), onRetryHint(ms),
 * onClose({status, error, detail, retryAfterMs, opened}). onClose fires exactly once unless
 * close() was called first.
 */
export class SseTransport {
  constructor({url, callbacks, idleTimeoutMs, fetchImpl}) {
    this.kind = "sse";
    this.url = url;
    this.callbacks = callbacks;
    this.idleTimeoutMs = idleTimeoutMs;
    this.fetch = fetchImpl;
    this.controller = new AbortController();
    this.closed = false;
    this.opened = false;
    this.idleTimer = null;
  }

  /** A pair change needs a new request: the feed reopens with Last-Event-ID. */
  get canChangePairsLive() {
    return false;
  }

  start() {
    this.run().catch((err) => this.finish({error: "network_error", detail: String(err && err.message || err)}));
    return this;
  }

  async run() {
    const response = await this.fetch(this.url, {
      headers: {Accept: "text/event-stream"}, cache: "no-store", signal: this.controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      this.finish({
        status: response.status,
        error: body && typeof body.error === "string" ? body.error : `http_${response.status}`,
        detail: body && typeof body.detail === "string" ? body.detail : response.statusText,
        retryAfterMs: parseRetryAfter(response.headers.get("Retry-After")),
      });
      return;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream") || !response.body) {
      this.finish({status: response.status, error: "not_an_event_stream", detail: `Content-Type ${type || "missing"}`});
      return;
    }
    this.opened = true;
    this.touch();
    this.callbacks.onOpen();
    const parser = new EventStreamParser(
      (name, data, id) => { if (!this.closed) this.callbacks.onEvent(name, data, id); },
      (ms) => this.callbacks.onRetryHint(ms),
      () => this.touch());
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const {value, done} = await reader.read();
      if (this.closed) return;
      if (done) break;
      parser.push(value);
    }
    this.finish({error: "stream_ended", detail: "the server ended the stream"});
  }

  /** Every line (pings included) proves the stream alive; silence past the limit means a dead peer. */
  touch() {
    if (!this.idleTimeoutMs) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.controller.abort();
      this.finish({error: "stream_silent", detail: `nothing received for ${this.idleTimeoutMs} ms`});
    }, this.idleTimeoutMs);
  }

  finish(info) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.controller.abort();
    this.callbacks.onClose(Object.assign({opened: this.opened}, info));
  }

  close() {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.controller.abort();
  }
}
