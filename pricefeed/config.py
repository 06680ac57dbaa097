"""Settings: every knob, read from `app.config` or `PRICEFEED_*` environment variables.

Each setting is declared once in `SETTINGS` with its type, default and bounds, so
validation, defaults and the README table cannot drift apart. An invalid value
stops start-up with a `ConfigError` that names the variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

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


def _optional_url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    parse_url = _url(schemes)
    return lambda text: parse_url(text) if text.strip() else None


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


def _asset(text: str) -> str:
    text = text.strip().upper()
    if not text.isascii() or not text.isalnum():
        raise ValueError("expected an asset code like USDT")
    return text


SETTINGS: tuple[Setting, ...] = (
    Setting("REDIS_URL", _optional_url(("redis", "rediss", "unix")), None,
            "Redis for the shared lease, bus and price cache. Unset: single-host in-process bus."),
    Setting("UPSTREAM_URL", _url(("ws", "wss")), "wss://stream.binance.com:9443",
            "Exchange WebSocket base; the client appends /stream?streams=..."),
    Setting("REST_URL", _url(("http", "https")), "https://api.binance.com",
            "Exchange REST base, polled while the WebSocket is down."),
    Setting("PAIRS", _pairs, ("BTC/USD", "ETH/USD", "SOL/USD", "BNB/USD", "XRP/USD"),
            "Pairs served, BASE/QUOTE, comma-separated."),
    Setting("STABLE_QUOTE", _asset, "USDT",
            "What the quote USD maps to on the exchange."),
    Setting("URL_PREFIX", _prefix, "/api/market-data", "Prefix of the HTTP API."),
    Setting("DASHBOARD", _bool, True, "Serve the dashboard at / and /dashboard."),
    Setting("STALE_AFTER", float, 10.0, "Seconds after which a price is flagged stale.",
            minimum=0.5, maximum=3600),
    Setting("HEARTBEAT_INTERVAL", float, 15.0, "Seconds between `: ping` comments on streams.",
            minimum=0.1, maximum=15),
    Setting("RETRY_MS", int, 2000, "Base of the SSE `retry:` hint, ms.", minimum=100, maximum=600000),
    Setting("RETRY_JITTER_MS", int, 3000, "Random extra added per connection to `retry:`, ms.",
            minimum=0, maximum=600000),
    Setting("MAX_CLIENTS", int, 900, "Streaming clients per worker before answering 503.",
            minimum=1, maximum=1_000_000),
    Setting("MAX_PAIRS_PER_REQUEST", int, 50, "Pairs one request may ask for.", minimum=1,
            maximum=1024),
    Setting("MAX_QUERY_LENGTH", int, 2048, "Longest accepted query string, bytes.", minimum=64,
            maximum=65536),
    Setting("WRITE_TIMEOUT", float, 30.0, "Seconds a stream write may block before the client is dropped.",
            minimum=1, maximum=3600),
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
    # Issue 13 (server side): the WebSocket transport and the price history.
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
    max_clients: int
    max_pairs_per_request: int
    max_query_length: int
    write_timeout: float
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
    ws_max_message_bytes: int
    ws_ops_per_second: float
    ws_ops_burst: int
    ws_idle_timeout: float
    history_window: float

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
        shown["redis_url"] = _redact(self.redis_url)
        return shown


def _validate(setting: Setting, key: str, raw: Any) -> Any:
    # app.config may hold already-typed values (True, 3.0, a list of pairs).
    if setting.parse is _pairs and isinstance(raw, (list, tuple)):
        raw = ",".join(raw)
    text = raw if isinstance(raw, str) else str(raw)
    try:
        value = setting.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{key}={text[:80]!r} is invalid: {exc}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN
            raise ConfigError(f"{key} is not a number")
        if setting.minimum is not None and value < setting.minimum:
            raise ConfigError(f"{key}={value} is below the minimum {setting.minimum}")
        if setting.maximum is not None and value > setting.maximum:
            raise ConfigError(f"{key}={value} is above the maximum {setting.maximum}")
    return value


def _check_pairs(config: "Config") -> None:
    """The pairs must parse, be distinct on the exchange, and fit one exchange connection."""
    from pricefeed.pairs import MAX_PAIRS, PairCatalog, PairError
    if len(config.pairs) > MAX_PAIRS:
        raise ConfigError(f"PRICEFEED_PAIRS is invalid: {len(config.pairs)} pairs, at most {MAX_PAIRS} "
                          "fit one exchange connection")
    try:
        PairCatalog(config.pairs, config.stable_quote)
    except PairError as exc:
        raise ConfigError(f"PRICEFEED_PAIRS is invalid: {exc.detail}") from None
    except ValueError as exc:
        raise ConfigError(f"PRICEFEED_PAIRS is invalid: {exc}") from None


def _redact(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def setting_docs() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for the README."""
    rows = []
    for setting in SETTINGS:
        default = setting.default
        if isinstance(default, tuple):
            default = ",".join(default)
        rows.append((PREFIX + setting.name, "unset" if default is None else str(default), setting.doc))
    return rows
