// Live updates for the monitor: the page names an SSE URL and the element to refresh
// (data-live, data-live-target on <body>). The server sends that element's new content
// already rendered and escaped; "final"/"done" mean the view will not change again.
// A <details> with an id that the reader opened or closed keeps that state across
// updates (a run's JSON blobs are part of its live view).
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
    var open = {};
    target.querySelectorAll("details[id]").forEach(function (details) {
      open[details.id] = details.open;
    });
    target.innerHTML = event.data;
    target.querySelectorAll("details[id]").forEach(function (details) {
      if (Object.prototype.hasOwnProperty.call(open, details.id)) {
        details.open = open[details.id];
      }
    });
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
