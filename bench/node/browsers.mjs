/**
 * Browsers that reconnect the way EventSource (and pricefeed.js) does — the Node.js twin of
 * bench/browser_load.py, written separately from it and cheaper in CPU, so that a generator
 * holding 10,000 streams does not take a core of the 2-core machine it measures on.
 *
 *     node bench/node/browsers.mjs '<spec as JSON>'
 *
 * bench/browser_round.py starts these for `--generator node` (bench/restart.py,
 * bench/overload.py), with browser_load's spec plus `stream_paths`: the path client i asks
 * for is stream_paths[i % stream_paths.length], computed there from bench/fanout_scenarios.py
 * so that the scenarios have one source. This process runs clients first, first+step, ...
 * below `clients`, each launched at start_at + index / ramp_per_s.
 *
 * One raw socket per client (`net`, no HTTP library): the request is written by hand, the
 * response head parsed, a chunked body decoded and the event stream parsed by the WHATWG
 * rules (`id:`, `retry:`, `event:`, `data:`, comments, any line ending; ./event_stream.mjs).
 * All sockets read into one buffer, and a client outside the age sample whose stream is busy
 * (reads less than 500 ms apart) pauses 250 ms after a read, as browser_load's sleep between
 * reads: in the trader scenario the reads, not the parsing, are the cost. A client:
 * - sends Last-Event-ID once the server has given it an id, as EventSource does
 *   (browser_load.py does not: its reconnects always get a fresh snapshot);
 * - on a refusal (503, 429) records how long connect() to its complete head took, waits the
 *   Retry-After (1 s without one) plus 0..1 s of jitter, and tries again;
 * - when the server ends its stream (the last chunk, or the connection closed) waits the last
 *   `retry:` it was sent (3,000 ms, EventSource's default, until then) and reconnects,
 *   recording when its stream closed and when it was streaming again: its first complete
 *   event block (a blank line) after the new response head;
 * - on a connect error (refused, reset, no head within connect_timeout) waits 1-3 s;
 * - never gives up: at stop_at every socket is closed, the figures printed, and the process
 *   exits. It stops by itself.
 * The JSON printed has browser_load.py's keys and meanings, which bench/browser_round.py
 * merges: counters split by the "after restart: " prefix at recovery_from, 1 ms histograms
 * of refusal times and of price ages (wall clock now − the event's `ts`, for the clients in
 * the age sample: the same crc32 pick), and cpu_s, this process's user + system CPU seconds.
 */
import net from "node:net";
import zlib from "node:zlib";

import { EventStreamParser, HttpResponse, ProtocolError } from "./event_stream.mjs";

const AGE_CAP_MS = 60_000;              // ages above this share the top bucket (the max is kept exactly)
const DEFAULT_RETRY_MS = 3000;          // EventSource's reconnection time until the server sends `retry:`
const REFUSAL_BODY_WAIT_MS = 1000;      // how long a refused client waits for the JSON naming the refusal
const BATCH_READ_MS = 250;              // a busy stream outside the age sample is read this often at most
// Busy: its reads less than this apart. Twice the pause, so that the read at the end of a pause
// (of what arrived during it) still counts as busy; a widget's update a second does not.
const BUSY_READS_MS = 2 * BATCH_READ_MS;
// Every socket reads into this one buffer (net's `onread`): no allocation per read. Safe because
// a read is consumed before the next one: what outlives the callback is copied (strings, a head).
const READ_BUFFER = Buffer.alloc(65536);
const TS_IN_PRICE = /"ts":([0-9]+)/;
const ERROR_CODE = /"error":"([a-z_]+)"/;

/** Wall-clock seconds with sub-millisecond resolution, comparable with the spec's times and `ts`. */
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const uniform = (low, high) => low + Math.random() * (high - low);

class Histogram {
  constructor() { this.buckets = new Map(); this.max = 0; }

  add(ms) {
    const value = Math.min(Math.max(Math.trunc(ms), 0), AGE_CAP_MS);
    this.buckets.set(value, (this.buckets.get(value) ?? 0) + 1);
    this.max = Math.max(this.max, Math.trunc(ms));
  }

  asJson() { return { buckets: Object.fromEntries(this.buckets), max: this.max }; }
}

class Tally {
  constructor() { this.counts = {}; }
  add(key) { this.counts[key] = (this.counts[key] ?? 0) + 1; }
}

class Stats {
  constructor(recoveryFrom) {
    this.recoveryFrom = recoveryFrom;
    this.connects = 0;                  // responses with 200
    this.open = 0;                      // streaming now: a 200 head, not yet ended
    this.refusals = new Tally();        // non-200 answers, by "status error_code"
    this.refusalMs = new Histogram();   // connect() -> complete refusal head
    this.connectErrors = new Tally();
    this.serverCloses = 0;
    this.returns = [];                  // [stream closed by the server, streaming again]
    this.ages = new Histogram();        // price ages of the sample, in the window
    this.recoveryAges = new Histogram();  // the same, from recovery_from on
    this.windowEvents = 0;
    this.notStreamingAtStop = 0;
    this.firstConnectedAt = [];
  }

  /** Counters are split at recovery_from (the restart): what clients saw before it, and after. */
  phase() { return now() >= this.recoveryFrom ? "after restart: " : ""; }

  asJson() {
    return {
      connects: this.connects, open_at_stop: this.open, refusals: this.refusals.counts,
      refusal_ms: this.refusalMs.asJson(), connect_errors: this.connectErrors.counts,
      server_closes: this.serverCloses, returns: this.returns, ages: this.ages.asJson(),
      recovery_ages: this.recoveryAges.asJson(), window_events: this.windowEvents,
      not_streaming_at_stop: this.notStreamingAtStop, first_connected_at: this.firstConnectedAt,
    };
  }
}

/** One browser tab with an EventSource open on its stream: connects, reads, reconnects until stop. */
class Browser {
  constructor(index, spec, stats) {
    this.spec = spec;
    this.stats = stats;
    this.path = spec.stream_paths[index % spec.stream_paths.length];
    this.sourceIp = spec.source_ips[index % spec.source_ips.length];
    this.sampled = inAgeSample(index, spec.sample_every);
    this.closedAt = null;               // when the server last ended our stream
    this.retryMs = DEFAULT_RETRY_MS;
    this.lastEventId = "";
    this.streaming = false;             // a 200 head, and the stream not ended since
    this.firstBlock = false;            // waiting for the first event block of this response
    this.attempt = null;                // the socket of the request in flight
    this.wait = null;                   // the timer before the next attempt
  }

  connect() {
    this.wait = null;
    const { host, port } = this.spec;
    const started = now();
    const socket = net.connect({ host, port, localAddress: this.sourceIp, family: 4,
                                 onread: { buffer: READ_BUFFER, callback: (length) => received(length) } });
    this.attempt = socket;
    const mine = (handler) => (...args) => { if (this.attempt === socket) handler(...args); };
    const resume = mine(() => socket.resume());
    const headTimer = setTimeout(mine(() => this.failed(socket, "timed out")), this.spec.connect_timeout * 1000);
    let parser = null;
    let refusal = null;                 // {status, tookMs, retryAfter, body, timer} once refused
    const response = new HttpResponse({
      onHead: (status, headers) => {
        clearTimeout(headTimer);
        if (status === 200) {
          parser = new EventStreamParser(this);
          return this.streamOpened();
        }
        refusal = { status, tookMs: (now() - started) * 1000, retryAfter: headers.get("retry-after"), body: "" };
        refusal.timer = setTimeout(mine(() => this.refused(socket, refusal)), REFUSAL_BODY_WAIT_MS);
      },
      onBody: (bytes) => {
        if (parser) parser.feed(bytes, receivedAt);
        else refusal.body += bytes.toString("latin1");
      },
      onEnd: mine(() => (refusal ? this.refused(socket, refusal) : this.streamEnded(socket))),
    });
    let receivedAt = started;
    // Returns false to stop reading for a while: a client outside the age sample reads a busy
    // stream in batches, which saves the wake-ups and syscalls of one read per event. A quiet
    // one (a widget's update a second) is read as it comes: pausing it would only add two
    // epoll calls and a timer per read (+30 % CPU in bench.restart's 20,000 widgets).
    const received = (length) => {
      if (this.attempt !== socket) return true;
      const previousAt = receivedAt;
      receivedAt = now();
      try {
        response.feed(READ_BUFFER.subarray(0, length));
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this.failed(socket, error.message);
        return true;
      }
      if (this.sampled || !parser || this.attempt !== socket) return true;
      if ((receivedAt - previousAt) * 1000 >= BUSY_READS_MS) return true;
      setTimeout(resume, BATCH_READ_MS);
      return false;
    };
    socket.on("end", mine(() => {
      if (refusal) this.refused(socket, refusal);
      else if (parser) this.streamEnded(socket);
      else this.failed(socket, "closed before answering");
    }));
    socket.on("error", mine((error) => {
      if (refusal) this.refused(socket, refusal);   // as browser_load: a refusal read is best effort
      else this.failed(socket, error.code ?? error.message);
    }));
    socket.on("close", () => clearTimeout(headTimer));
    let request = `GET ${this.path} HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: text/event-stream\r\n`;
    if (this.lastEventId) request += `Last-Event-ID: ${this.lastEventId}\r\n`;
    socket.write(request + "\r\n");
  }

  streamOpened() {
    this.stats.connects += 1;
    this.stats.open += 1;
    this.streaming = true;
    this.firstBlock = true;
  }

  onBlockEnd(type, data, at) {
    if (this.firstBlock) {
      this.firstBlock = false;
      if (this.closedAt !== null) {
        this.stats.returns.push([this.closedAt, at]);
        this.closedAt = null;
      } else {
        this.stats.firstConnectedAt.push(at);
      }
    }
    if (type !== "price" || data === "") return;
    const inWindow = this.spec.window_start <= at && at < this.spec.window_end;
    if (!this.sampled) {
      if (inWindow) this.stats.windowEvents += 1;
      return;
    }
    const ts = TS_IN_PRICE.exec(data);
    if (!ts) return;
    const age = at * 1000 - Number(ts[1]);
    if (inWindow) {
      this.stats.ages.add(age);
      this.stats.windowEvents += 1;
    }
    if (at >= this.stats.recoveryFrom) this.stats.recoveryAges.add(age);
  }

  /** The server ended the stream: come back after its retry:, as EventSource does. */
  streamEnded(socket) {
    this.hangUp(socket);
    this.stats.serverCloses += 1;
    this.closedAt = now();
    this.retryIn(this.retryMs);
  }

  refused(socket, refusal) {
    clearTimeout(refusal.timer);
    this.hangUp(socket);
    const code = ERROR_CODE.exec(refusal.body);
    this.stats.refusals.add(this.stats.phase() + `${refusal.status} ${code ? code[1] : ""}`.trim());
    this.stats.refusalMs.add(refusal.tookMs);
    const retryAfter = /^[0-9]+$/.test(refusal.retryAfter ?? "") ? Number(refusal.retryAfter) : 1;
    this.retryIn((retryAfter + uniform(0, 1)) * 1000);
  }

  /** A network error (or a response that is not HTTP), before or during the stream. */
  failed(socket, reason) {
    const wasStreaming = this.streaming;
    this.hangUp(socket);
    if (wasStreaming) this.closedAt = now();
    this.stats.connectErrors.add(this.stats.phase() + reason);
    this.retryIn(uniform(1, 3) * 1000);
  }

  hangUp(socket) {
    socket.destroy();
    this.attempt = null;
    if (this.streaming) {
      this.streaming = false;
      this.stats.open -= 1;
    }
  }

  retryIn(ms) {
    if (now() + ms / 1000 < this.spec.stop_at) this.wait = setTimeout(() => this.connect(), ms);
  }

  /** stop_at: close whatever is open; a client is either streaming now or not. */
  stop() {
    clearTimeout(this.wait);
    if (this.attempt) this.attempt.destroy();
    this.attempt = null;
    if (!this.streaming) this.stats.notStreamingAtStop += 1;
  }
}

/** About one client in sample_every, the same ones as bench/fanout_client.py's in_age_sample. */
function inAgeSample(index, sampleEvery) {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(index);
  return zlib.crc32(bytes) % sampleEvery === 0;
}

function run(spec) {
  if (!Array.isArray(spec.stream_paths) || spec.stream_paths.length === 0) {
    throw new Error("the spec needs stream_paths (bench/browser_round.py adds them)");
  }
  const stats = new Stats(spec.recovery_from || Infinity);
  const browsers = [];
  for (let index = spec.first; index < spec.clients; index += spec.step) browsers.push(new Browser(index, spec, stats));
  const launchAt = (k) => spec.start_at + (spec.first + k * spec.step) / spec.ramp_per_s;
  let launched = 0;
  let launcher = null;
  // On the common schedule of all generators: every client whose time has come, then sleep to the next.
  const launchDue = () => {
    while (launched < browsers.length && launchAt(launched) <= now()) browsers[launched++].connect();
    if (launched < browsers.length) launcher = setTimeout(launchDue, Math.max(1, (launchAt(launched) - now()) * 1000));
  };
  launchDue();
  setTimeout(() => {
    clearTimeout(launcher);
    for (const browser of browsers) browser.stop();
    const cpu = process.cpuUsage();
    const result = { ...stats.asJson(), cpu_s: Math.round((cpu.user + cpu.system) / 1e4) / 100 };
    process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
  }, Math.max(0, (spec.stop_at - now()) * 1000));
}

run(JSON.parse(process.argv[2]));
