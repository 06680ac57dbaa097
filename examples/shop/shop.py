"""A small existing Flask app (a shop) that embeds pricefeed: its own routes and templates, plus live prices.

    pip install pricefeed            # or: pip install /path/to/pricefeed-checkout
    gunicorn -c gunicorn.conf.py shop:app

The shop keeps its own pages (`/shop`, `/orders`); pricefeed adds `/api/market-data/...`
(the stream, prices, health), its dashboard at `/dashboard` and the browser client at
`/pricefeed-static/pricefeed.js`, which the shop's own page uses.
"""
from __future__ import annotations

import os

from flask import Flask, jsonify, render_template, url_for

from pricefeed import PriceFeed

app = Flask(__name__)
# The shop's own settings; pricefeed's come from PRICEFEED_* variables or here.
app.config["SHOP_NAME"] = os.environ.get("SHOP_NAME", "Corner Shop")
app.config.setdefault("PRICEFEED_PAIRS", os.environ.get("PRICEFEED_PAIRS", "BTC/USD,ETH/USD"))
feed = PriceFeed(app)

ORDERS = [{"id": 1, "item": "coffee", "price": "3.50", "currency": "USD"},
          {"id": 2, "item": "bagel", "price": "2.25", "currency": "USD"}]


@app.route("/shop")
def shop():
    return render_template("shop/ticker.html", shop_name=app.config["SHOP_NAME"], orders=ORDERS,
                           pairs=list(feed.config.upstream.pairs),
                           client_url=url_for("pricefeed_dashboard.static", filename="pricefeed.js"),
                           stream_url=url_for("pricefeed_api.stream"))


@app.route("/orders")
def orders():
    return jsonify({"shop": app.config["SHOP_NAME"], "orders": ORDERS})
