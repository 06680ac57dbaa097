"""Settings: every knob, read from `app.config` or `PRICEFEED_*` environment variables.

Each setting is declared once in `SETTINGS` with its type, default and bounds, so
validation, defaults and the README table cannot drift apart. An invalid value
stops start-up with a `ConfigError` that names the variable.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit


PREFIX = "PRICEFEED_"


class ConfigError(ValueError):
    """A PRICEFEED_* setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class Setting:
    name: str                      # without the PRICEFEED_ prefix
    parse: Callable[[str], Any]
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parts = urlsplit(text.strip())
        located = parts.path if parts.scheme == "unix" else parts.hostname
        if parts.scheme not in schemes or not located:
            raise ValueError(f"expected a {'/'.join(schemes)} URL")
        return text.strip().rstrip("/")
    return parse


def _prefix(text: str) -> str:
    text = text.strip()
    if not text.startswith("/") or text.endswith("/") or " " in text:
        raise ValueError("expected a path like /api/market-data")
    return text


def _pairs(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ValueError("expected a comma-separated list like BTC/USD,ETH/USD")
    return items


def _choice(text: str, choices: tuple[str, ...]) -> str:
    lowered = text.strip().lower()
    if lowered not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}")
    return lowered


def _asset(text: str) -> str:
    if not text.isascii():   # before upper(): "ß".upper() is "SS"
        raise ValueError("expected an asset code like USDT")
    text = text.strip().upper()
    if not text.isalnum():
        raise ValueError("expected an asset code like USDT")
    return text


# -- Redis Sentinel URLs -------------------------------------------------------------

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    """`redis+sentinel://[user:password@]h1:26379[,h2:26379]/<master>[/<db>]`, parsed once.

    The credentials are the master's (and its replicas'); the sentinels' own come from
    PRICEFEED_REDIS_SENTINEL_USERNAME / _PASSWORD.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(text: str) -> SentinelURL:
    """Parse strictly; a ValueError names what is wrong and never contains the password."""
    scheme, sep, rest = text.strip().partition("://")
    if scheme != SENTINEL_SCHEME or not sep:
        raise ValueError(f"expected {SENTINEL_SCHEME}://host:port[,host:port]/master[/db]")
    if "?" in rest or "#" in rest:
        raise ValueError("a sentinel URL takes no query or fragment")
    authority, _, path = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    if not at:
        userinfo, hostlist = "", authority
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon and user:
            # redis://secret@host is read by redis-py as a password: do the same.
            username, password = None, unquote(user)
    sentinels = tuple(_sentinel_address(item) for item in hostlist.split(","))
    parts = path.split("/") if path else []
    if not parts or not parts[0] or len(parts) > 2:
        raise ValueError("expected the master's name after the hosts: .../<master-name>[/<db>]")
    master = unquote(parts[0])
    if not all(c.isalnum() or c in "-_." for c in master):
        raise ValueError("the master name may hold letters, digits, '-', '_' and '.' only")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit() or int(parts[1]) > 15:
            raise ValueError("the database must be a number 0-15")
        db = int(parts[1])
    return SentinelURL(sentinels, master, db, username, password)


def _sentinel_address(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):
        host, close, port_text = item[1:].partition("]")
        port_text = port_text[1:] if port_text.startswith(":") else port_text
        if not close or not host:
            raise ValueError("malformed [IPv6] sentinel address")
    else:
        host, _, port_text = item.partition(":")
    if not host or not all(c.isalnum() or c in "-_.:" for c in host):
        raise ValueError("every sentinel needs a host (host:port, comma-separated)")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("a sentinel port must be a number 1-65535")
    return host, int(port_text)


def _redis_url(text: str) -> str | None:
    if not text.strip():
        return None
    if text.strip().startswith(SENTINEL_SCHEME + ":"):
        parse_sentinel_url(text)
        return text.strip()
    return _url(("redis", "rediss", "unix"))(text)


def _optional_text(text: str) -> str | None:
    return text.strip() or None
def _networks(text: str) -> tuple:
    """IPs and CIDRs, comma-separated, as ip_network values (a bare IP is a /32 or /128)."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError("expected IPs or CIDRs like 127.0.0.1,10.0.0.0/8") from None
    return tuple(networks)


_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$")


def _origins(text: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower().rstrip("/") for item in text.split(",") if item.strip())
    if "*" in items:
        if len(items) > 1:
            raise ValueError("`*` allows every origin: write it alone")
        return items
    if not all(_ORIGIN.match(item) for item in items):
        raise ValueError("expected origins like https://example.com or http://localhost:8080, or `*`")
    return items


def _frame_ancestors(text: str) -> str:
    items = text.split()
    allowed = all(item in ("'none'", "'self'") or _ORIGIN.match(item.lower()) for item in items)
    if not items or not allowed or ("'none'" in items and len(items) > 1):
        raise ValueError("expected 'none', 'self' or origins like https://example.com, space-separated")
    return " ".join(items)


def _token(text: str) -> str:
    text = text.strip()
    if not re.fullmatch(r"[a-z-]{1,40}", text):
        raise ValueError("expected a policy like no-referrer or strict-origin-when-cross-origin")
    return text


SETTINGS: tuple[Setting, ...] = (
    Setting("REDIS_URL", _redis_url, None,
            "Redis for the shared lease, bus and price cache (redis://, rediss://, unix:// or "
            "redis+sentinel://[user:password@]h1:26379[,h2:26379]/<master>[/<db>]). "
            "Unset: single-host in-process bus."),
    Setting("UPSTREAM_URL", _url(("ws", "wss")), "wss://data-stream.binance.vision",
            "Exchange WebSocket base; the client appends /stream?streams=... Default: Binance's "
            "market-data-only host (see Venues)."),
    Setting("REST_URL", _url(("http", "https")), "https://data-api.binance.vision",
            "Exchange REST base: the catalogue (exchangeInfo), and prices while the WebSocket is down. "
            "Default: Binance's market-data-only host. Point it at the same venue as PRICEFEED_UPSTREAM_URL."),
    Setting("PAIRS", _pairs, ("BTC/USD", "ETH/USD", "SOL/USD", "BNB/USD", "XRP/USD"),
            "Pairs served, BASE/QUOTE, comma-separated."),
    Setting("STABLE_QUOTE", _asset, "USDT",
            "What a USD pair trades as when the exchange does not list it under its own name "
            "(binance.com: BTC/USD as BTCUSDT; on Binance.US, BTC/USD is BTCUSD)."),
    Setting("URL_PREFIX", _prefix, "/api/market-data", "Prefix of the HTTP API."),
    Setting("DASHBOARD", _bool, True, "Serve the dashboard at / and /dashboard."),
    Setting("STALE_AFTER", float, 10.0, "Seconds after which a price is flagged stale.",
            minimum=0.5, maximum=3600),
    Setting("HEARTBEAT_INTERVAL", float, 15.0, "Seconds between `: ping` comments on streams.",
            minimum=0.1, maximum=15),
    Setting("RETRY_MS", int, 2000, "Base of the SSE `retry:` hint, ms.", minimum=100, maximum=600000),
    Setting("RETRY_JITTER_MS", int, 3000, "Random extra added per connection to `retry:`, ms.",
            minimum=0, maximum=600000),
    Setting("MAX_CLIENTS", int, None,
            "Streaming clients per worker before answering 503. Unset: derived from worker_connections "
            "(capacity.py: worker_connections − 100).",
            minimum=1, maximum=1_000_000),
    Setting("MAX_PAIRS_PER_REQUEST", int, 50, "Pairs one request may ask for.", minimum=1,
            maximum=1024),
    Setting("MAX_QUERY_LENGTH", int, 2048, "Longest accepted query string, bytes.", minimum=64,
            maximum=65536),
    Setting("WRITE_TIMEOUT", float, 30.0,
            "Seconds a stream may stay behind (its writes waiting on a client that does not read as fast as "
            "they come) before the client is dropped.", minimum=1, maximum=3600),
    Setting("STREAM_SEND_BUFFER", int, 32768,
            "Bytes of the kernel's send buffer per stream socket (SO_SNDBUF; Linux doubles it). Bounds the "
            "kernel memory a client that stops reading holds, and how long it takes to notice it (a full "
            "buffer, then PRICEFEED_WRITE_TIMEOUT). 0: the kernel's autotuning (up to tcp_wmem's maximum).",
            minimum=0, maximum=16 * 1024 * 1024),
    Setting("MIN_UPDATE_INTERVAL", float, 0.0,
            "Per client and pair, at most one price update per this many seconds (0: every tick): the pace of a "
            "stream that gives no `interval`, and the floor of one that does.",
            minimum=0, maximum=60),
    Setting("DIRECT_WRITES", _bool, True,
            "Write stream chunks straight to the socket from the flush loop (plain HTTP/1.1 under gunicorn's "
            "gevent worker only; elsewhere chunks go through WSGI, which costs more CPU per write)."),
    Setting("NEW_STREAMS_PER_SECOND", float, 1000.0,
            "Per worker, new streams admitted per second after a burst (a reconnect storm waits its turn).",
            minimum=1, maximum=100_000),
    Setting("NEW_STREAMS_BURST", int, 500, "Per worker, new streams admitted at once before pacing starts.",
            minimum=1, maximum=100_000),
    Setting("NEW_STREAM_MAX_WAIT", float, 10.0,
            "Longest a new stream waits for admission before it gets 503 with Retry-After.",
            minimum=0, maximum=120),
    Setting("RESUME_WINDOW", int, 4096, "Recent ticks remembered to tell a resuming client whether it has a gap.",
            minimum=0, maximum=1_000_000),
    Setting("UPSTREAM_SILENCE_TIMEOUT", float, 15.0,
            "Seconds without a data message before the upstream connection is replaced.",
            minimum=0.2, maximum=600),
    Setting("UPSTREAM_CONNECT_TIMEOUT", float, 10.0, "Seconds for the upstream handshake.",
            minimum=0.1, maximum=120),
    Setting("UPSTREAM_ROTATE_AFTER", float, 23 * 3600.0,
            "Seconds after which the upstream connection is replaced make-before-break (Binance closes at 24 h).",
            minimum=1, maximum=24 * 3600),
    Setting("UPSTREAM_BACKOFF_BASE", float, 0.5, "First reconnect delay ceiling, seconds (full jitter).",
            minimum=0.01, maximum=60),
    Setting("UPSTREAM_BACKOFF_CAP", float, 30.0, "Largest reconnect delay ceiling, seconds.",
            minimum=0.05, maximum=3600),
    Setting("UPSTREAM_MAX_ATTEMPTS_PER_5MIN", int, 100,
            "Connection attempts allowed per 5 minutes (Binance bans past 300 per IP).",
            minimum=1, maximum=300),
    Setting("REDIS_PREFIX", lambda t: t.strip() or "pricefeed", "pricefeed",
            "Prefix of every Redis key and channel (run several deployments on one Redis)."),
    Setting("LEASE_TTL", float, 2.0, "Seconds the upstream lease lives without renewal.",
            minimum=0.3, maximum=300),
    Setting("LEASE_RENEW_INTERVAL", float, 0.5, "Seconds between lease renewals (and standby attempts).",
            minimum=0.05, maximum=100),
    Setting("LEASE_RENEW_DEADLINE", float, 1.5,
            "Seconds without a successful renewal after which the leader demotes itself (< TTL).",
            minimum=0.1, maximum=299),
    Setting("BUS_HEARTBEAT_INTERVAL", float, 1.0, "Seconds between the leader's heartbeats on the bus.",
            minimum=0.05, maximum=30),
    Setting("FAULT_INJECTION", _bool, False,
            "Test only: expose POST {prefix}/_fault/block-hub?seconds=N[&worker=ID] to freeze a worker. Never in production."),
    Setting("SIMULATED", _bool, False,
            "Label every price as simulated even if the exchange does not identify as the simulator."),
    # -- the exchange connection against a real peer --------------------------------
    Setting("UPSTREAM_PROBE_TIMEOUT", float, 3.0,
            "Seconds a quiet exchange connection has to answer its LIST_SUBSCRIPTIONS probe before it is "
            "replaced (it is probed after PRICEFEED_UPSTREAM_SILENCE_TIMEOUT, or half PRICEFEED_STALE_AFTER "
            "if shorter, without data).", minimum=0.1, maximum=60),
    Setting("UPSTREAM_MAX_FRAME_BYTES", int, 1 << 20,
            "Largest exchange WebSocket frame read; a longer one gets the connection replaced (counted).",
            minimum=4096, maximum=64 << 20),
    Setting("UPSTREAM_MAX_STREAMS_PER_CONNECTION", int, 1024,
            "Streams one exchange connection carries at most (Binance: 1024); more pairs open more "
            "connections, all held by the one leader.", minimum=2, maximum=1024),
    Setting("UPSTREAM_MAX_TARGET_LENGTH", int, 8000,
            "Longest handshake request target (`/stream?streams=...`, percent-encoded) of one exchange "
            "connection, characters; longer lists are split over more connections.", minimum=200, maximum=8000),
    Setting("REST_MAX_BODY_BYTES", int, 4 << 20,
            "Largest REST ticker response body read (one call for every symbol: about 1 MB on "
            "binance.com); longer is malformed.", minimum=4096, maximum=64 << 20),
    Setting("CATALOGUE_REFRESH", float, 300.0,
            "Seconds between reads of the exchange's catalogue (exchangeInfo: which pairs it lists, "
            "their status, its request-weight limit); a failed read is retried sooner.",
            minimum=5, maximum=86400),
    Setting("REFUSED_RETRY_INTERVAL", float, 60.0,
            "Seconds between attempts while the exchange refuses this host outright (HTTP 451: region "
            "not served; 403: its firewall), for the stream, the REST tier and the catalogue alike.",
            minimum=0.1, maximum=3600),
    Setting("MAX_CLOCK_SKEW", float, 86400.0,
            "Seconds an exchange event time (or a tick read from Redis) may be from the local clock, "
            "past or future; outside it the tick is rejected and counted. 0: no window (replaying old captures).",
            minimum=0, maximum=30 * 86400),
    Setting("UPSTREAM_ATTEMPT_BUDGET_DIR", str, "",
            "Directory of the file in which the workers of a host share one budget of exchange connection "
            "attempts (PRICEFEED_UPSTREAM_MAX_ATTEMPTS_PER_5MIN per host). Empty: <tmp>/pricefeed-<uid>."),
    Setting("ALLOW_INSECURE_UPSTREAM", _bool, False,
            "Allow ws:// and http:// exchange URLs to hosts other than loopback (TLS is otherwise required)."),
    # Sentinel credentials and the leader's yield
    Setting("REDIS_SENTINEL_USERNAME", _optional_text, None,
            "Username for the sentinels themselves (redis+sentinel:// URLs; the URL's credentials are the master's)."),
    Setting("REDIS_SENTINEL_PASSWORD", _optional_text, None,
            "Password for the sentinels themselves (redis+sentinel:// URLs)."),
    Setting("LEADER_YIELD_AFTER", float, 30.0,
            "Seconds a leader's exchange connection may stay down (while Redis works) before it yields the "
            "lease so another host, whose route may work, tries. 0: never yield.", minimum=0, maximum=3600),
    # -- a public endpoint ---------------------------------------------------
    Setting("MAX_STREAMS_PER_IP", int, 100,
            "Concurrent streams one client address may hold across the whole deployment (counted in Redis; "
            "without Redis, or while it is unreachable, across the instance's workers); beyond it 429 "
            "too_many_streams (IPv6 addresses count per /64).", minimum=1, maximum=1_000_000),
    Setting("NEW_STREAMS_SHARE_PER_IP", float, 0.1,
            "Fraction of one worker's admission gate (burst and rate) one client address may use, paced for "
            "the whole deployment (Redis; else the instance's workers); beyond it 429 too_many_new_streams.",
            minimum=0.001, maximum=1),
    Setting("TRUSTED_PROXIES", _networks, (),
            "IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed (the right-most untrusted hop "
            "is the client). Empty: the socket's peer is the client."),
    Setting("CONNECTION_RESERVE", int, 100,
            "Connections per worker kept free of streams so /health and /prices always answer: streams are "
            "capped at gunicorn's worker_connections minus this.", minimum=0, maximum=1_000_000),
    Setting("MAX_STREAM_LIFETIME", float, 0.0,
            "Seconds after which a stream is closed (plus up to 10% jitter) so browsers reconnect, with "
            "Last-Event-ID, and spread over new workers. 0: never.", minimum=0, maximum=7 * 86400),
    Setting("ALLOWED_ORIGINS", _origins, (),
            "Origins (scheme://host[:port], comma-separated, exact match) allowed to use the API from "
            "another site; `*` for any. Empty: same origin only."),
    Setting("ADMIN_TOKEN", lambda t: t.strip() or None, None,
            "Bearer token for the detailed /health (and fault injection). Unset: only a direct loopback "
            "peer that is not a trusted proxy sees it."),
    Setting("FRAME_ANCESTORS", _frame_ancestors, "'none'",
            "The dashboard's CSP frame-ancestors: who may embed it in a frame ('none', 'self' or origins)."),
    Setting("REFERRER_POLICY", _token, "no-referrer", "Referrer-Policy sent on every response of pricefeed."),
    # Shedding on lag, and restarts without a reconnect storm.
    Setting("LAG_BOUND", float, 0.0,
            "Seconds the flusher may run late (tick arrival, or slot due, to the end of its flush) before new "
            "streams get 503 at_capacity. 0: from the pace (0.25 every tick; conflated: half the interval, >= 0.25).",
            minimum=0, maximum=60),
    Setting("SHED_AFTER_FLUSHES", int, 3,
            "Consecutive flushes over the lag bound before shedding starts (it stops below half the bound).",
            minimum=1, maximum=1000),
    Setting("SHED_AFTER_SECONDS", float, 1.0,
            "...and those late flushes must span at least this long (a burst of connects is the admission "
            "gate's to pace, not an overload).", minimum=0, maximum=60),
    Setting("SHED_RETRY_AFTER", int, 2, "Retry-After of a stream refused for lag, seconds (plus the jitter).",
            minimum=1, maximum=3600),
    Setting("SHED_RETRY_JITTER", int, 3, "Random extra seconds added per refusal to SHED_RETRY_AFTER.",
            minimum=0, maximum=3600),
    Setting("ACCEPT_BATCH", int, 32,
            "Per worker, connections accepted per turn of the event loop (gunicorn's gevent worker "
            "takes one when there are several workers: a busy worker's listen queue fills, and its 503s wait in it).",
            minimum=1, maximum=1000),
    Setting("MAX_PENDING_PER_IP", int, 32,
            "Per worker, connections one address (the TCP peer; IPv6 per /64) may hold before their first request "
            "head is complete; more are closed at accept. A peer in TRUSTED_PROXIES is exempt. 0: no limit.",
            minimum=0, maximum=1_000_000),
    Setting("REQUEST_HEAD_TIMEOUT", float, 5.0,
            "Seconds a new connection has to send its whole first request head; then it is closed. 0: none "
            "(gunicorn's keepalive still bounds it).", minimum=0, maximum=300),
    Setting("RESTART_SPREAD", float, 4.0,
            "On a graceful stop (TERM, HUP, a worker recycled), the longest a worker takes to close its streams in "
            "slices (kept 3 s inside gunicorn's graceful_timeout). 0: all at once.",
            minimum=0, maximum=120),
    Setting("RESTART_CLOSE_DELAY", float, 2.0,
            "On a graceful stop of a worker holding more than NEW_STREAMS_BURST streams, the most seconds it keeps "
            "streaming after the handover before it starts closing: "
            "a reload's new workers boot meanwhile, so the first browsers back find them accepting (with Redis it "
            "ends once another worker of this host leads under a newer epoch: a successor is up).",
            minimum=0, maximum=60),
    Setting("RESTART_CLOSES_PER_SECOND", float, 1000.0,
            "Per worker, streams closed per second by a graceful stop (faster if RESTART_SPREAD would not "
            "suffice): about what the admission gate lets back in.", minimum=1, maximum=1_000_000),
    Setting("RESTART_RETRY_MS", int, 1000, "Base of the `retry:` sent to each stream closed by a restart, ms.",
            minimum=0, maximum=600000),
    Setting("RESTART_RETRY_JITTER_MS", int, 3000, "Random extra per stream added to RESTART_RETRY_MS, ms.",
            minimum=0, maximum=600000),
    # The WebSocket transport and the price history.
    Setting("WS_MAX_MESSAGE_BYTES", int, 4096, "Largest WebSocket message a client may send, bytes (close 1009).",
            minimum=128, maximum=1_048_576),
    Setting("WS_OPS_PER_SECOND", float, 10.0,
            "WebSocket messages a client may send per second after a burst (past it: close 1008).",
            minimum=0.1, maximum=10_000),
    Setting("WS_OPS_BURST", int, 20, "WebSocket messages a client may send at once before the rate applies.",
            minimum=1, maximum=100_000),
    Setting("WS_IDLE_TIMEOUT", float, 60.0,
            "Seconds a WebSocket may stay silent (no message, no pong to the server's pings) before it is "
            "closed; above PRICEFEED_HEARTBEAT_INTERVAL.", minimum=1, maximum=3600),
    Setting("HISTORY_WINDOW", float, 900.0, "Seconds of one-point-per-second price history kept per pair "
            "for {prefix}/history.", minimum=1, maximum=86400),
    # capacity by default, logs
    Setting("WORKER_CONNECTIONS", int, None,
            "gunicorn worker_connections (read by pricefeed's worker at start). Unset: derived from the "
            "open-files limit, raised to the hard limit at start (capacity.py: open files − 128).",
            minimum=1, maximum=1_000_000),
    Setting("LOG_FORMAT", lambda t: _choice(t, ("text", "json")), "text",
            "app.py and the service's gunicorn.conf.py: `text` (one line per event, key=value fields) or `json` "
            "(one JSON object per line, python-json-logger). The extension itself configures no handlers."),
    # Prometheus metrics.
    Setting("METRICS", _bool, True,
            "Serve Prometheus metrics at {prefix}/metrics (operators only, like the detailed health report). "
            "Across gunicorn workers they are summed through PROMETHEUS_MULTIPROC_DIR, which the bundled "
            "gunicorn config sets up."),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Validated settings for one PriceFeed instance."""

    redis_url: str | None
    upstream_url: str
    rest_url: str
    pairs: tuple[str, ...]
    stable_quote: str
    url_prefix: str
    dashboard: bool
    stale_after: float
    heartbeat_interval: float
    retry_ms: int
    retry_jitter_ms: int
    max_clients: int | None         # None: derived by the worker (capacity.py)
    max_pairs_per_request: int
    max_query_length: int
    write_timeout: float
    stream_send_buffer: int
    min_update_interval: float
    direct_writes: bool
    new_streams_per_second: float
    new_streams_burst: int
    new_stream_max_wait: float
    resume_window: int
    upstream_silence_timeout: float
    upstream_connect_timeout: float
    upstream_rotate_after: float
    upstream_backoff_base: float
    upstream_backoff_cap: float
    upstream_max_attempts_per_5min: int
    redis_prefix: str
    lease_ttl: float
    lease_renew_interval: float
    lease_renew_deadline: float
    bus_heartbeat_interval: float
    fault_injection: bool
    simulated: bool
    upstream_probe_timeout: float
    upstream_max_frame_bytes: int
    upstream_max_streams_per_connection: int
    upstream_max_target_length: int
    rest_max_body_bytes: int
    catalogue_refresh: float
    refused_retry_interval: float
    max_clock_skew: float
    upstream_attempt_budget_dir: str
    allow_insecure_upstream: bool
    redis_sentinel_username: str | None
    redis_sentinel_password: str | None
    leader_yield_after: float
    # the public endpoint
    max_streams_per_ip: int
    new_streams_share_per_ip: float
    trusted_proxies: tuple
    connection_reserve: int
    max_stream_lifetime: float
    allowed_origins: tuple[str, ...]
    admin_token: str | None
    frame_ancestors: str
    referrer_policy: str
    lag_bound: float
    shed_after_flushes: int
    shed_after_seconds: float
    shed_retry_after: int
    shed_retry_jitter: int
    accept_batch: int
    max_pending_per_ip: int
    request_head_timeout: float
    restart_spread: float
    restart_closes_per_second: float
    restart_close_delay: float
    restart_retry_ms: int
    restart_retry_jitter_ms: int
    ws_max_message_bytes: int
    ws_ops_per_second: float
    ws_ops_burst: int
    ws_idle_timeout: float
    history_window: float
    # capacity and logs
    worker_connections: int | None
    log_format: str
    metrics: bool

    @classmethod
    def load(cls, app_config: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> "Config":
        """Build from `app_config` (wins) and then the environment, validating every value."""
        app_config = app_config or {}
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            key = PREFIX + setting.name
            if key in app_config:
                raw = app_config[key]
            elif key in environ:
                raw = environ[key]
            else:
                values[setting.name.lower()] = setting.default
                continue
            values[setting.name.lower()] = _validate(setting, key, raw)
        config = cls(**values)
        if config.upstream_backoff_cap < config.upstream_backoff_base:
            raise ConfigError("PRICEFEED_UPSTREAM_BACKOFF_CAP must be >= PRICEFEED_UPSTREAM_BACKOFF_BASE")
        _check_pairs(config)
        _check_tls(config)
        if config.min_update_interval >= config.heartbeat_interval:
            raise ConfigError("PRICEFEED_MIN_UPDATE_INTERVAL must be below PRICEFEED_HEARTBEAT_INTERVAL "
                              "(a stream waiting that long would miss its keep-alive)")
        if config.ws_idle_timeout <= config.heartbeat_interval:
            raise ConfigError("PRICEFEED_WS_IDLE_TIMEOUT must be above PRICEFEED_HEARTBEAT_INTERVAL "
                              "(a client answers the server's pings; it need not send anything else)")
        if not config.lease_renew_interval < config.lease_renew_deadline < config.lease_ttl:
            raise ConfigError("PRICEFEED_LEASE_RENEW_INTERVAL < PRICEFEED_LEASE_RENEW_DEADLINE < "
                              "PRICEFEED_LEASE_TTL must hold")
        return config

    def public(self) -> dict[str, Any]:
        """The settings safe to show in /health (no credentials)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        # The sentinels' password is not shown at all: "set" or not is all /health needs to say.
        del shown["redis_sentinel_password"]
        for name in ("redis_url", "upstream_url", "rest_url"):
            shown[name] = reduce_url(shown[name])
        shown["admin_token"] = "set" if self.admin_token else None
        shown["trusted_proxies"] = [str(network) for network in self.trusted_proxies]
        return shown


def _validate(setting: Setting, key: str, raw: Any) -> Any:
    # app.config may hold already-typed values (True, 3.0, a list of pairs).
    if setting.parse in (_pairs, _origins, _networks) and isinstance(raw, (list, tuple)):
        raw = ",".join(str(item) for item in raw)
    text = raw if isinstance(raw, str) else str(raw)
    # The value is never echoed (it may be a credential): the message names the variable and
    # says what was expected. Number parsers put the text in their messages, so not theirs.
    try:
        value = setting.parse(text)
    except ValueError as exc:
        expected = _EXPECTED.get(setting.parse) or str(exc)
        raise ConfigError(f"{key} is invalid: {expected}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{key} is not a number")
        if setting.minimum is not None and value < setting.minimum:
            raise ConfigError(f"{key} is below the minimum {setting.minimum:g}")
        if setting.maximum is not None and value > setting.maximum:
            raise ConfigError(f"{key} is above the maximum {setting.maximum:g}")
    return value


_EXPECTED: dict[Callable, str] = {int: "expected a whole number", float: "expected a number"}


def _check_pairs(config: "Config") -> None:
    """The pairs must parse and be distinct on the exchange. Their number is not limited: the
    feed splits them over as many exchange connections as needed (exchange/stream_plan.py)."""
    from pricefeed.pairs import PairCatalog, PairError
    try:
        PairCatalog(config.pairs, config.stable_quote)
    except PairError as exc:
        raise ConfigError(f"PRICEFEED_PAIRS is invalid: {exc.detail}") from None
    except ValueError as exc:
        raise ConfigError(f"PRICEFEED_PAIRS is invalid: {exc}") from None


def _check_tls(config: "Config") -> None:
    """Plaintext to the exchange only on loopback (the simulator), unless explicitly allowed."""
    if config.allow_insecure_upstream:
        return
    for key, url, plain in (("PRICEFEED_UPSTREAM_URL", config.upstream_url, "ws"),
                            ("PRICEFEED_REST_URL", config.rest_url, "http")):
        parts = urlsplit(url)
        if parts.scheme == plain and not _is_loopback(parts.hostname or ""):
            # Scheme and host only: the URL may carry credentials.
            raise ConfigError(f"{key} uses plaintext {plain}:// to {parts.hostname!r}, which is not loopback; "
                              f"use {plain}s:// or set PRICEFEED_ALLOW_INSECURE_UPSTREAM=true")


def _is_loopback(host: str) -> bool:
    import ipaddress
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SHOWN_PATH = re.compile(r"^(/[A-Za-z0-9_.-]{1,64}){0,2}$")


def reduce_url(url: str | None) -> str | None:
    """A URL as it may be shown anywhere: scheme://host:port[/db] — no user, password, query or
    fragment (redis-py also takes `?password=`), and for Redis only a db (or sentinel master) path."""
    if not url:
        return url
    scheme, _, rest = url.partition("://")
    if not rest:
        return "(unparsable URL)"
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]            # drop user:password@
    path = ("/" + path) if slash else ""
    if scheme == "unix":
        return f"unix://{path}"
    if not (scheme.startswith("redis") and _SHOWN_PATH.match(path.rstrip("/"))):
        path = ""
    return f"{scheme}://{authority}{path.rstrip('/')}"




def setting_docs() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for the README."""
    rows = []
    for setting in SETTINGS:
        default = setting.default
        if isinstance(default, tuple):
            default = ",".join(default) or "empty"
        rows.append((PREFIX + setting.name, "unset" if default is None else str(default), setting.doc))
    return rows
