"""Adopting a catalogue: each configured pair served as the exchange lists it, and the log saying so.

One line per change, not per read: a pair the exchange does not list (with the closest pairs it
does list: "BTC/USD is not listed on api.binance.com; BTC/USDT, BTC/USDC are"), a pair traded
under an alias, a market halted or trading again.
"""
from __future__ import annotations

import logging

from pricefeed.exchange.catalogue import HALTED, LISTED, UNLISTED, ExchangeCatalogue, Standing, closest_listed, stand
from pricefeed.pairs import PairCatalog
from pricefeed.shown_urls import reduce_url

log = logging.getLogger("pricefeed.exchange.catalogue")


def adopt_listing(catalog: PairCatalog, catalogue: ExchangeCatalogue, previous: dict[str, Standing],
                  venue_url: str) -> tuple[dict[str, Standing], bool]:
    """The standings to serve, and whether the symbols to subscribe changed (`catalog` adopted)."""
    venue = (reduce_url(venue_url) or "").split("://", 1)[-1]
    result = stand(catalog.configured, catalogue, catalog.stable_quote)
    standings = {name: standing for name, (_, standing) in result.items()}
    for pair in catalog.configured:
        standing, before = standings[pair.name], previous.get(pair.name)
        if before is not None and (before.listing, before.symbol) == (standing.listing, standing.symbol):
            continue
        if standing.listing == UNLISTED:
            near = closest_listed(pair, catalogue)
            log.error("catalogue: %s is not listed on %s; %s", pair.name, venue,
                      f"{', '.join(near)} {'is' if len(near) == 1 else 'are'}" if near
                      else "nothing close to it is listed")
        elif standing.listing == HALTED:
            log.warning("catalogue: %s (%s) is %s on %s: no new prices; its last one is shown stale",
                        pair.name, standing.symbol, standing.exchange_status, venue)
        elif standing.quote is not None:
            log.warning("catalogue: %s is not listed on %s; serving it as %s (quote %s), and every "
                        "entry says so", pair.name, venue, standing.symbol, standing.quote)
        elif before is not None and before.listing == HALTED and standing.listing == LISTED:
            log.warning("catalogue: %s (%s) is trading again", pair.name, standing.symbol)
    resubscribe = catalog.adopt({name: traded for name, (traded, _) in result.items()})
    if resubscribe:
        symbols = [pair.symbol for pair in catalog.pairs]
        log.warning("catalogue: subscribing to %d symbols: %s%s", len(symbols), ", ".join(symbols[:10]),
                    ", ..." if len(symbols) > 10 else "")
    return standings, resubscribe
