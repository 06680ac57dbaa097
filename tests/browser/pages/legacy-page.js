// Yesterday's dashboard code: runs deferred and expects window.PriceFeed to be there already.
(function () {
  var feed = new window.PriceFeed({url: "/api/market-data/stream", pairs: ["ETH/USD"], transport: "sse"});
  feed.on("price", function (price) {
    var cell = document.getElementById("price");
    cell.textContent = window.PriceFeed.Decimal.format(price.price);
    cell.dataset.raw = price.price;
  });
  feed.start();
})();
