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

// The health strip: every page loads it (data-health on #health-strip) and refreshes
// it every HEALTH_REFRESH_MS. Only a change of the overall level is announced to
// screen readers (#health-announce is aria-live), not every new figure.
var HEALTH_REFRESH_MS = 15000;
document.addEventListener("DOMContentLoaded", function () {
  var strip = document.getElementById("health-strip");
  var announce = document.getElementById("health-announce");
  if (!strip || !strip.dataset.health || !window.fetch) {
    return;
  }
  var level = "";
  var load = function () {
    fetch(strip.dataset.health, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : Promise.reject(response.status);
      })
      .then(function (html) {
        strip.innerHTML = html;
        var section = strip.querySelector("section.health");
        var now = section ? section.getAttribute("aria-label") : "";
        if (announce && level && now !== level) {
          announce.textContent = now;
        }
        level = now;
        strip.dataset.loaded = String(Number(strip.dataset.loaded || "0") + 1);
      })
      .catch(function () {
        strip.classList.add("health-stale");
      });
  };
  load();
  setInterval(load, HEALTH_REFRESH_MS);
});
