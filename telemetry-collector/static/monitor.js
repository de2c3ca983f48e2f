// Live updates for the monitor: the page names an SSE URL and the element to refresh
// (data-live, data-live-target on <body>). The server sends that element's new content
// already rendered and escaped; "final"/"done" mean the view will not change again.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var body = document.body;
  var url = body.dataset.live;
  var target = document.getElementById(body.dataset.liveTarget || "");
  if (!url || !target || !window.EventSource) {
    return;
  }
  var source = new EventSource(url);
  var swap = function (event) {
    target.innerHTML = event.data;
    body.dataset.liveUpdates = String(Number(body.dataset.liveUpdates || "0") + 1);
  };
  source.addEventListener("fragment", swap);
  source.addEventListener("final", function (event) {
    swap(event);
    source.close();
  });
  source.addEventListener("done", function () {
    source.close();
  });
});
