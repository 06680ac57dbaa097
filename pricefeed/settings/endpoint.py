"""The public endpoint: where the API is, who may use it, how much one address may take, and
what every response says about itself."""
from __future__ import annotations

from dataclasses import dataclass

from pricefeed.settings import parsers
from pricefeed.settings.declaration import OPERATOR, SettingsGroup, setting


@dataclass(frozen=True)
class EndpointSettings(SettingsGroup):
    TITLE = "Public endpoint: requests, origins, proxies, per-address caps, headers, tokens"
    SUMMARY = ("What the web layer and the worker's accept path enforce (web/, server/): the prefix and the "
               "dashboard, request limits, cross-origin use, reverse proxies, what one client address may "
               "hold, security headers and the operator token.")
    ATTRIBUTE = "endpoint"

    url_prefix: str = setting(parsers.path_prefix, "/api/market-data", "Prefix of the HTTP API.", kind=OPERATOR)
    dashboard: bool = setting(parsers.boolean, True, "Serve the dashboard at / and /dashboard.", kind=OPERATOR)
    max_pairs_per_request: int = setting(
        int, 50, "Pairs one request may ask for.", minimum=1, maximum=1024)
    max_query_length: int = setting(
        int, 2048, "Longest accepted query string, bytes.", minimum=64, maximum=65536)
    allowed_origins: tuple[str, ...] = setting(
        parsers.origins, (),
        "Origins (scheme://host[:port], comma-separated, exact match) allowed to use the API from "
        "another site; `*` for any. Empty: same origin only.", kind=OPERATOR)
    trusted_proxies: tuple = setting(
        parsers.networks, (),
        "IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed (the right-most untrusted hop "
        "is the client). Empty: the socket's peer is the client.", kind=OPERATOR)
    max_streams_per_ip: int = setting(
        int, 100,
        "Concurrent streams one client address may hold across the whole deployment (counted in Redis; "
        "without Redis, or while it is unreachable, across the instance's workers); beyond it 429 "
        "too_many_streams (IPv6 addresses count per /64).", kind=OPERATOR, minimum=1, maximum=1_000_000)
    new_streams_share_per_ip: float = setting(
        float, 0.1,
        "Fraction of one worker's admission gate (burst and rate) one client address may use, paced for "
        "the whole deployment (Redis; else the instance's workers); beyond it 429 too_many_new_streams.",
        minimum=0.001, maximum=1)
    max_pending_per_ip: int = setting(
        int, 32,
        "Per worker, connections one address may hold before their first request head is complete (a "
        "slow-header client); more are closed at accept, before gunicorn's parser (server/pending.py). Keyed on "
        "the TCP peer (IPv6 per /64): X-Forwarded-For is not known yet, so a peer in TRUSTED_PROXIES is exempt "
        "and nginx's limit_conn / client_header_timeout bound each visitor. One address holds at most workers x "
        "this per instance. 0: no limit.",
        minimum=0, maximum=1_000_000)
    request_head_timeout: float = setting(
        float, 5.0,
        "Seconds a new connection has to send its whole first request head; then it is closed. 0: none "
        "(gunicorn's keepalive still bounds it).", minimum=0, maximum=300)
    max_stream_lifetime: float = setting(
        float, 0.0,
        "Seconds after which a stream is closed (plus up to 10% jitter) so browsers reconnect, with "
        "Last-Event-ID, and spread over new workers. 0: never.", minimum=0, maximum=7 * 86400)
    admin_token: str | None = setting(
        parsers.optional_text, None,
        "Bearer token for the detailed /health (and fault injection). Unset: only a direct loopback "
        "peer that is not a trusted proxy sees it.", kind=OPERATOR)
    frame_ancestors: str = setting(
        parsers.frame_ancestors, "'none'",
        "The dashboard's CSP frame-ancestors: who may embed it in a frame ('none', 'self' or origins).",
        kind=OPERATOR)
    referrer_policy: str = setting(
        parsers.policy_token, "no-referrer", "Referrer-Policy sent on every response of pricefeed.")
    fault_injection: bool = setting(
        parsers.boolean, False,
        "Test only: expose POST {prefix}/_fault/block-hub?seconds=N[&worker=ID] to freeze a worker. "
        "Never in production.")
