/**
 * pricefeed.global.js — a classic-script shim for pages that cannot use <script type="module">.
 *
 *   <script src="/pricefeed-static/pricefeed.global.js"></script>
 *   window.PriceFeedReady.then(({PriceFeed}) => new PriceFeed({...}).start());
 *   // or: document.addEventListener("pricefeed:ready", () => new window.PriceFeed({...}).start());
 *
 * It imports pricefeed.js (beside this file) and then sets window.PriceFeed. A module is always
 * asynchronous, so code must wait for PriceFeedReady (or the event) rather than run at once.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var moduleUrl = new URL("pricefeed.js", script ? script.src : window.location.href).toString();
  window.PriceFeedReady = import(moduleUrl).then(function (module) {
    window.PriceFeed = module.PriceFeed;
    document.dispatchEvent(new CustomEvent("pricefeed:ready", {detail: module}));
    return module;
  });
})();
