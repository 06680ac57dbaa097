"""Upstream: the exchange — its URLs, the pairs, its connections, the catalogue and the REST tier."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from pricefeed.settings import parsers
from pricefeed.settings.declaration import OPERATOR, ConfigError, SettingsGroup, setting


@dataclass(frozen=True)
class UpstreamSettings(SettingsGroup):
    TITLE = "Upstream: the exchange"
    SUMMARY = ("Where prices come from (exchange/): the WebSocket and REST URLs, the pairs, the connections to "
               "the exchange and their backoff, the catalogue and the REST tier.")
    ATTRIBUTE = "upstream"

    upstream_url: str = setting(
        parsers.url("ws", "wss"), "wss://data-stream.binance.vision",
        "Exchange WebSocket base; the client appends /stream?streams=... Default: Binance's "
        "market-data-only host (README: \"Pointing it at an exchange\").", kind=OPERATOR)
    rest_url: str = setting(
        parsers.url("http", "https"), "https://data-api.binance.vision",
        "Exchange REST base: the catalogue (exchangeInfo), and prices while the WebSocket is down. "
        "Default: Binance's market-data-only host. Point it at the same venue as PRICEFEED_UPSTREAM_URL.",
        kind=OPERATOR)
    pairs: tuple[str, ...] = setting(
        parsers.pair_list, ("BTC/USD", "ETH/USD", "SOL/USD", "BNB/USD", "XRP/USD"),
        "Pairs served, BASE/QUOTE, comma-separated.", kind=OPERATOR)
    stable_quote: str = setting(
        parsers.asset_code, "USDT",
        "What a USD pair trades as when the exchange does not list it under its own name "
        "(binance.com: BTC/USD as BTCUSDT; on Binance.US, BTC/USD is BTCUSD).", kind=OPERATOR)
    simulated: bool = setting(
        parsers.boolean, False,
        "Label every price as simulated even if the exchange does not identify as the simulator (the simulator "
        "sends `X-Pricefeed-Simulator: 1` on its handshake, which labels prices by itself).",
        kind=OPERATOR)
    allow_insecure_upstream: bool = setting(
        parsers.boolean, False,
        "Allow ws:// and http:// exchange URLs to hosts other than loopback; otherwise start-up stops with an "
        "error naming this variable. Certificates are always verified and redirects never followed.",
        kind=OPERATOR)
    upstream_silence_timeout: float = setting(
        float, 15.0, "Seconds without a data message before the upstream connection is replaced.",
        minimum=0.2, maximum=600)
    upstream_connect_timeout: float = setting(
        float, 10.0, "Seconds for the upstream handshake.", minimum=0.1, maximum=120)
    upstream_rotate_after: float = setting(
        float, 23 * 3600.0,
        "Seconds after which the upstream connection is replaced make-before-break (Binance closes at 24 h).",
        minimum=1, maximum=24 * 3600)
    upstream_backoff_base: float = setting(
        float, 0.5, "First reconnect delay ceiling, seconds (full jitter).", minimum=0.01, maximum=60)
    upstream_backoff_cap: float = setting(
        float, 30.0, "Largest reconnect delay ceiling, seconds.", minimum=0.05, maximum=3600)
    upstream_max_attempts_per_5min: int = setting(
        int, 100, "Connection attempts allowed per 5 minutes (Binance bans past 300 per IP).",
        minimum=1, maximum=300)
    upstream_attempt_budget_dir: str = setting(
        str, "",
        "Directory of the file in which the workers of a host share one budget of exchange connection "
        "attempts (PRICEFEED_UPSTREAM_MAX_ATTEMPTS_PER_5MIN per host). Empty: `<tmp>/pricefeed-<uid>`.")
    upstream_probe_timeout: float = setting(
        float, 3.0,
        "Seconds a quiet exchange connection has to answer its LIST_SUBSCRIPTIONS probe before it is "
        "replaced (it is probed after PRICEFEED_UPSTREAM_SILENCE_TIMEOUT, or half PRICEFEED_STALE_AFTER "
        "if shorter, without data).", minimum=0.1, maximum=60)
    upstream_max_frame_bytes: int = setting(
        int, 1 << 20,
        "Largest exchange WebSocket frame read; a longer one gets the connection replaced (counted).",
        minimum=4096, maximum=64 << 20)
    upstream_max_streams_per_connection: int = setting(
        int, 1024,
        "Streams one exchange connection carries at most (Binance: 1024); more pairs open more "
        "connections, all held by the one leader.", minimum=2, maximum=1024)
    upstream_max_target_length: int = setting(
        int, 8000,
        "Longest handshake request target (`/stream?streams=...`, percent-encoded) of one exchange "
        "connection, characters; longer lists are split over more connections.", minimum=200, maximum=8000)
    rest_max_body_bytes: int = setting(
        int, 4 << 20,
        "Largest REST ticker response body read (one call for every symbol: about 1 MB on "
        "binance.com); longer is malformed.", minimum=4096, maximum=64 << 20)
    catalogue_refresh: float = setting(
        float, 300.0,
        "Seconds between reads of the exchange's catalogue (exchangeInfo: which pairs it lists, "
        "their status, its request-weight limit); a failed read is retried sooner.",
        minimum=5, maximum=86400)
    refused_retry_interval: float = setting(
        float, 60.0,
        "Seconds between attempts while the exchange refuses this host outright (HTTP 451: region "
        "not served; 403: its firewall), for the stream, the REST tier and the catalogue alike.",
        minimum=0.1, maximum=3600)
    max_clock_skew: float = setting(
        float, 86400.0,
        "Seconds an exchange event time (or a tick read from Redis) may be from the local clock, "
        "past or future; outside it the tick is rejected and counted. 0: no window (replaying old captures).",
        minimum=0, maximum=30 * 86400)

    def __post_init__(self) -> None:
        if self.upstream_backoff_cap < self.upstream_backoff_base:
            raise ConfigError("PRICEFEED_UPSTREAM_BACKOFF_CAP must be >= PRICEFEED_UPSTREAM_BACKOFF_BASE")
        self._check_pairs()
        self._check_tls()

    def _check_pairs(self) -> None:
        """The pairs must parse and be distinct on the exchange. Their number is not limited: the
        feed splits them over as many exchange connections as needed (exchange/stream_plan.py)."""
        from pricefeed.pairs import PairCatalog, PairError
        try:
            PairCatalog(self.pairs, self.stable_quote)
        except PairError as exc:
            raise ConfigError(f"PRICEFEED_PAIRS is invalid: {exc.detail}") from None
        except ValueError as exc:
            raise ConfigError(f"PRICEFEED_PAIRS is invalid: {exc}") from None

    def _check_tls(self) -> None:
        """Plaintext to the exchange only on loopback (the simulator), unless explicitly allowed."""
        if self.allow_insecure_upstream:
            return
        for key, url, plain in (("PRICEFEED_UPSTREAM_URL", self.upstream_url, "ws"),
                                ("PRICEFEED_REST_URL", self.rest_url, "http")):
            parts = urlsplit(url)
            if parts.scheme == plain and not _is_loopback(parts.hostname or ""):
                # Scheme and host only: the URL may carry credentials.
                raise ConfigError(f"{key} uses plaintext {plain}:// to {parts.hostname!r}, which is not loopback; "
                                  f"use {plain}s:// or set PRICEFEED_ALLOW_INSECURE_UPSTREAM=true")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
