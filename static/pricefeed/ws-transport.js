/**
 * The WebSocket transport: `{prefix}/ws`, JSON text frames
 * `{"event": ..., "id": "<epoch>-<seq>" | null, "data": {...}}` carrying exactly the SSE events' data.
 * Pairs change on the open socket with `{"op":"subscribe"|"unsubscribe","pairs":[...]}`; a
 * `{"op":"ping"}` every `pingMs` keeps idle proxies from closing the socket and proves the peer alive.
 */

/**
 * One socket. Callbacks: onOpen(), onEvent(name, data, id), onServerError(data), onSubscribed(pairs),
 * onClose({code, reason, error, detail, opened}). onClose fires once unless close() was called first.
 */
export class WsTransport {
  constructor({url, callbacks, pingMs, idleTimeoutMs, WebSocketImpl, logger}) {
    this.kind = "ws";
    this.url = url;
    this.callbacks = callbacks;
    this.pingMs = pingMs;
    this.idleTimeoutMs = idleTimeoutMs;
    this.WebSocket = WebSocketImpl;
    this.logger = logger;
    this.closed = false;
    this.opened = false;
    this.socket = null;
    this.pingTimer = null;
    this.idleTimer = null;
  }

  get canChangePairsLive() {
    return this.opened && !this.closed;
  }

  start() {
    let socket;
    try {
      socket = new this.WebSocket(this.url);
    } catch (err) {
      setTimeout(() => this.finish({error: "websocket_refused", detail: String(err && err.message || err)}), 0);
      return this;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (this.closed) return;
      this.opened = true;
      this.touch();
      this.pingTimer = setInterval(() => this.send({op: "ping"}), this.pingMs);
      this.callbacks.onOpen();
    });
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", (event) => this.finish({
      code: event.code, reason: event.reason,
      error: event.code === 1008 ? "policy_violation" : "websocket_closed",
      detail: `closed with code ${event.code}${event.reason ? ": " + event.reason : ""}`,
    }));
    return this;
  }

  onMessage(event) {
    if (this.closed) return;
    this.touch();
    let frame;
    try {
      frame = JSON.parse(typeof event.data === "string" ? event.data : "");
    } catch (err) {
      frame = undefined;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.event !== "string") {
      this.logger.warn("PriceFeed: skipping malformed WebSocket frame:", event.data);
      return;
    }
    const id = typeof frame.id === "string" ? frame.id : null;
    if (frame.event === "pong") return;
    if (frame.event === "error") this.callbacks.onServerError(frame.data);
    else if (frame.event === "subscribed") this.callbacks.onSubscribed(frame.data && frame.data.pairs);
    else this.callbacks.onEvent(frame.event, frame.data, id);
  }

  /** Live pair changes; the server answers `subscribed`, then a `price` per added pair. */
  changePairs(added, removed) {
    if (removed.length) this.send({op: "unsubscribe", pairs: removed});
    if (added.length) this.send({op: "subscribe", pairs: added});
  }

  send(message) {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(message));
  }

  touch() {
    if (!this.idleTimeoutMs) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.finish({error: "stream_silent",
      detail: `nothing received for ${this.idleTimeoutMs} ms`}), this.idleTimeoutMs);
  }

  finish(info) {
    if (this.closed) return;
    this.close();
    this.callbacks.onClose(Object.assign({opened: this.opened}, info));
  }

  close() {
    this.closed = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.idleTimer);
    const socket = this.socket;
    if (!socket) return;
    // Closing a socket still connecting makes the browser log an error: close it once it opens.
    if (socket.readyState === 0) socket.addEventListener("open", () => socket.close(1000, "client closed"));
    else if (socket.readyState === 1) socket.close(1000, "client closed");
  }
}
