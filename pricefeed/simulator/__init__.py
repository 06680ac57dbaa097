"""A local exchange that speaks Binance's Spot market-data protocol.

Tests and offline demos run it instead of Binance: `python -m pricefeed.simulator`.
It is an independent implementation of the protocol in BINANCE.md and imports
nothing from the rest of pricefeed, so it can check our client rather than
mirror it. Every response it sends carries `X-Pricefeed-Simulator: 1`.

Modules, one concept each:
    instruments  symbols, tick sizes and 8-decimal fixed-point amounts
    streams      stream names and events encoded per client (raw/combined, ms/µs)
    market       the random-walk market (trades, book, tickers)
    candles      kline candles
    replay       replay of captured message files
    quotes       last trade and best bid/ask per symbol
    control      SUBSCRIBE & co. over the WebSocket, with Binance's error codes
    connection   one WebSocket client: outbox, pings, limits, lifetime
    handler      gevent-websocket handler: identification header, refusals, control frames
    rest         REST ticker endpoints with request weights
    faults       injectable faults
    stats        counters
    admin        the /_sim inspection and control endpoints
    exchange     the WSGI application tying these together
    options      settings and command line
    server       the gevent server and signal handling
"""
