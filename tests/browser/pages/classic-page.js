// A classic script (no modules): waits for the shim's promise, then uses window.PriceFeed.
window.PriceFeedReady.then(function () {
  var feed = new window.PriceFeed({pairs: ["BTC/USD"], transport: "sse"});
  feed.on("price", function (price) {
    var cell = document.getElementById("price");
    cell.textContent = window.PriceFeed.Decimal.format(price.price);
    cell.dataset.raw = price.price;
  });
  feed.start();
});
