/**
 * The wire under bench/node/browsers.mjs: an HTTP/1.1 response read from raw bytes (its head,
 * then a body framed by chunked transfer coding, Content-Length or the connection's end), and
 * the WHATWG event-stream parser EventSource runs over the body. No dependencies; the classes
 * keep nothing of the bytes they are given past the call (browsers.mjs reads every socket
 * into one shared buffer).
 */
import { StringDecoder } from "node:string_decoder";

const MAX_HEAD_BYTES = 65536;

/** The peer did not speak HTTP/1.1 as expected: the client counts it as a connect error. */
export class ProtocolError extends Error {}

/** A chunked transfer-coded body (RFC 9112 §7.1): hands on the data, calls onEnd at the last chunk. */
export class ChunkedDecoder {
  constructor(onData, onEnd) {
    this.onData = onData;
    this.onEnd = onEnd;
    this.state = "size";                // size -> data -> data-end -> size ... -> trailer -> done
    this.remaining = 0;
    this.line = "";
  }

  feed(bytes) {
    let at = 0;
    while (at < bytes.length && this.state !== "done") {
      if (this.state === "data") {
        const take = Math.min(this.remaining, bytes.length - at);
        this.onData(bytes.subarray(at, at + take));
        at += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = "data-end";
        continue;
      }
      const lf = bytes.indexOf(10, at);
      if (lf < 0) {
        this.line += bytes.toString("latin1", at);
        if (this.line.length > 1024) throw new ProtocolError("malformed chunked body");
        return;
      }
      const line = (this.line + bytes.toString("latin1", at, lf)).replace(/\r$/, "");
      this.line = "";
      at = lf + 1;
      if (this.state === "size") {
        const size = /^[0-9a-fA-F]+/.exec(line);
        if (!size) throw new ProtocolError("malformed chunked body");
        this.remaining = parseInt(size[0], 16);
        this.state = this.remaining === 0 ? "trailer" : "data";
      } else if (this.state === "data-end") {
        if (line !== "") throw new ProtocolError("malformed chunked body");
        this.state = "size";
      } else if (line === "") {           // the blank line that ends the trailer section
        this.state = "done";
        this.onEnd();
      }
    }
  }
}

/**
 * The response to one request: its head, then its body framed by Transfer-Encoding: chunked,
 * Content-Length, or the end of the connection. Calls onHead(status, headers) once, then
 * onBody(bytes) and onEnd() when the framing says the body is complete.
 */
export class HttpResponse {
  constructor({ onHead, onBody, onEnd }) {
    Object.assign(this, { onHead, onBody, onEnd });
    this.pending = null;                // bytes of an incomplete head
    this.body = null;                   // a function taking body bytes, once the head is parsed
  }

  feed(bytes) {
    if (this.body) return this.body(bytes);
    const buffered = this.pending ? Buffer.concat([this.pending, bytes]) : bytes;
    const end = buffered.indexOf("\r\n\r\n");
    if (end < 0) {
      if (buffered.length > MAX_HEAD_BYTES) throw new ProtocolError("response head too long");
      this.pending = Buffer.from(buffered);     // a copy: `bytes` is the shared read buffer
      return;
    }
    this.pending = null;
    const [statusLine, ...fields] = buffered.toString("latin1", 0, end).split("\r\n");
    const status = /^HTTP\/1\.[01] ([0-9]{3})/.exec(statusLine);
    if (!status) throw new ProtocolError("malformed status line");
    const headers = new Map();
    for (const field of fields) {
      const colon = field.indexOf(":");
      if (colon > 0) headers.set(field.slice(0, colon).trim().toLowerCase(), field.slice(colon + 1).trim());
    }
    this.body = this.bodyReader(headers);
    this.onHead(Number(status[1]), headers);
    const rest = buffered.subarray(end + 4);
    if (rest.length) this.body(rest);
  }

  bodyReader(headers) {
    if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
      const chunked = new ChunkedDecoder(this.onBody, this.onEnd);
      return (bytes) => chunked.feed(bytes);
    }
    if (headers.has("content-length")) {
      let remaining = Number(headers.get("content-length"));
      if (remaining === 0) queueMicrotask(this.onEnd);
      return (bytes) => {
        if (remaining <= 0) return;
        const take = bytes.subarray(0, remaining);
        remaining -= take.length;
        this.onBody(take);
        if (remaining === 0) this.onEnd();
      };
    }
    return this.onBody;                 // delimited by the end of the connection
  }
}

/**
 * The WHATWG event-stream parser, for one response. Calls browser.onBlockEnd(type, data, at) at
 * every blank line (data "" when no event is dispatched), keeps browser.lastEventId (carried
 * over from the previous response, as Chromium's parser does) and browser.retryMs.
 */
export class EventStreamParser {
  constructor(browser) {
    this.browser = browser;
    this.decoder = new StringDecoder("utf8");   // a character split across two reads stays whole
    this.partial = "";                  // the current line so far
    this.crPending = false;             // the last read ended in CR: a LF starting the next is its pair
    this.eventType = "";
    this.data = "";
    this.idBuffer = browser.lastEventId;
  }

  feed(bytes, at) {
    let text = this.decoder.write(bytes);
    if (this.crPending && text.startsWith("\n")) text = text.slice(1);
    this.crPending = text.endsWith("\r");
    if (text.includes("\r")) text = text.replace(/\r\n?/g, "\n");
    text = this.partial + text;
    let start = 0;
    for (let lf = text.indexOf("\n"); lf >= 0; lf = text.indexOf("\n", start)) {
      this.line(text.slice(start, lf), at);
      start = lf + 1;
    }
    this.partial = text.slice(start);
  }

  line(line, at) {
    if (line === "") return this.dispatch(at);
    if (line.charCodeAt(0) === 58) return;    // ":" a comment (the server's pings)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") this.data += value + "\n";
    else if (field === "event") this.eventType = value;
    else if (field === "id") { if (!value.includes("\0")) this.idBuffer = value; }
    else if (field === "retry") { if (/^[0-9]+$/.test(value)) this.browser.retryMs = Number(value); }
  }

  dispatch(at) {
    this.browser.lastEventId = this.idBuffer;
    const data = this.data.endsWith("\n") ? this.data.slice(0, -1) : this.data;
    const type = this.eventType || "message";
    this.data = "";
    this.eventType = "";
    this.browser.onBlockEnd(type, data, at);
  }
}
