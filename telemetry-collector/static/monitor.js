// The monitor's one script (the pages work without it; it only adds to them):
//
// - Live updates: the page names an SSE URL and the element to refresh (data-live,
//   data-live-target on <body>). The server sends that element's new content already
//   rendered and escaped; "final"/"done" mean the view will not change again. A
//   <details> with an id that the reader opened or closed keeps that state across
//   updates (a run's JSON blobs are part of its live view). Keyboard focus inside the
//   refreshed element stays on the same link or control (found again by its id, or
//   its href and text), and what changed is announced in the polite live region
//   (#live-status), so a screen reader hears "2 new runs" without losing its place.
// - Periodic refresh (the overview): an element with data-refresh-url is fetched
//   again every data-refresh-ms while the tab is visible and its content replaced,
//   keyboard focus kept as for live updates. Nothing is announced: the figures change
//   every time, and a screen reader hearing "updated" every minute loses its place.
// - Relative times ("3 min ago", elements .ago[data-at]) are kept current.
// - Date-time pickers (input[data-instant]) show the browser's time zone, or UTC when
//   the reader ticks the form's UTC box (remembered). The server takes and gives
//   UTC: values arrive as UTC and are sent as RFC 3339 instants ("...Z").
"use strict";
(function () {
  var TZ_KEY = "monitor.timeZone";

  // --- relative times (the same words as the server's views::fmt_ago) ---
  function ago(at, now) {
    var ahead = at > now;
    var secs = Math.floor(Math.abs(now - at) / 1000);
    var span;
    if (secs < 5) {
      return "just now";
    } else if (secs < 60) {
      span = secs + " s";
    } else if (secs < 3600) {
      span = Math.floor(secs / 60) + " min";
    } else if (secs < 86400) {
      span = Math.floor(secs / 3600) + " h";
    } else {
      span = Math.floor(secs / 86400) + " d";
    }
    return ahead ? "in " + span : span + " ago";
  }

  function refreshAges(root) {
    var now = Date.now();
    root.querySelectorAll(".ago[data-at]").forEach(function (el) {
      var at = Number(el.dataset.at);
      if (isFinite(at)) {
        el.textContent = ago(at, now);
      }
    });
  }

  // --- announcements and focus across live updates ---
  function announce(message) {
    var region = document.getElementById("live-status");
    if (!region || !message) {
      return;
    }
    // Cleared first, so that the same words twice are announced twice.
    region.textContent = "";
    window.setTimeout(function () {
      region.textContent = message;
    }, 50);
  }

  function rowKeys(root) {
    var keys = {};
    root.querySelectorAll("tr.run[data-run-id]").forEach(function (row) {
      keys["run:" + row.dataset.runId] = true;
    });
    root.querySelectorAll("tr.event").forEach(function (row) {
      keys["event:" + row.textContent.trim()] = true;
    });
    return keys;
  }

  function textOf(root, selector) {
    var el = root.querySelector(selector);
    return el ? el.textContent.trim() : "";
  }

  // What changed, in words: new runs or events in a list, a run's new status or counts.
  function describe(target, before, after) {
    var status = textOf(target, "#run-status");
    if (status) {
      var counts = [textOf(target, "#run-ok"), textOf(target, "#run-failed"), textOf(target, "#run-timeout")]
        .filter(Boolean).join(", ");
      if (status !== before.status) {
        return "Run " + status + (counts ? ": " + counts : "");
      }
      return counts !== before.counts ? "Run updated: " + counts : "";
    }
    var runs = 0;
    var events = 0;
    Object.keys(after).forEach(function (key) {
      if (!before.keys[key]) {
        if (key.indexOf("run:") === 0) {
          runs += 1;
        } else {
          events += 1;
        }
      }
    });
    if (runs) {
      return runs + (runs === 1 ? " new run" : " new runs");
    }
    if (events) {
      return events + (events === 1 ? " new event" : " new events");
    }
    return "";
  }

  // How to find the focused element again in the new content.
  function focusKey(target) {
    var active = document.activeElement;
    if (!active || active === document.body || !target.contains(active)) {
      return null;
    }
    return {
      id: active.id,
      tag: active.tagName,
      href: active.getAttribute("href"),
      text: active.textContent,
      // Where it was among its kind: a link whose target moves with the clock (the
      // overview's, for a window ending now) is found again by place and text.
      index: Array.prototype.indexOf.call(target.querySelectorAll(active.tagName), active)
    };
  }

  function refocus(target, key) {
    if (!key) {
      return;
    }
    var found = key.id ? document.getElementById(key.id) : null;
    if (!found) {
      var same = Array.prototype.filter.call(target.querySelectorAll(key.tag), function (el) {
        return el.getAttribute("href") === key.href && el.textContent === key.text;
      });
      found = same[0] || null;
    }
    if (!found && key.index >= 0) {
      var there = target.querySelectorAll(key.tag)[key.index];
      found = there && there.textContent === key.text ? there : null;
    }
    if (!found) {
      // Gone from the view: the region itself keeps focus, not the page's top.
      target.setAttribute("tabindex", "-1");
      found = target;
    }
    found.focus({ preventScroll: true });
  }

  function live() {
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
      var before = {
        keys: rowKeys(target),
        status: textOf(target, "#run-status"),
        counts: [textOf(target, "#run-ok"), textOf(target, "#run-failed"), textOf(target, "#run-timeout")]
          .filter(Boolean).join(", ")
      };
      var focused = focusKey(target);
      target.innerHTML = event.data;
      target.querySelectorAll("details[id]").forEach(function (details) {
        if (Object.prototype.hasOwnProperty.call(open, details.id)) {
          details.open = open[details.id];
        }
      });
      refocus(target, focused);
      refreshAges(target);
      announce(describe(target, before, rowKeys(target)));
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
  }

  function periodic() {
    var target = document.querySelector("[data-refresh-url]");
    var every = target ? Number(target.dataset.refreshMs || "0") : 0;
    if (!target || !(every > 0) || !window.fetch) {
      return;
    }
    var load = function () {
      if (document.hidden) {
        return;
      }
      fetch(target.dataset.refreshUrl, { credentials: "same-origin" })
        .then(function (response) {
          return response.ok ? response.text() : Promise.reject(response.status);
        })
        .then(function (html) {
          var focused = focusKey(target);
          target.innerHTML = html;
          refocus(target, focused);
          target.classList.remove("refresh-failed");
          target.dataset.refreshes = String(Number(target.dataset.refreshes || "0") + 1);
        })
        .catch(function () {
          // The last figures stay, marked as old.
          target.classList.add("refresh-failed");
        });
    };
    window.setInterval(load, every);
  }

  // --- date-time pickers: browser time zone or UTC ---
  function pad(n, width) {
    var text = String(n);
    while (text.length < (width || 2)) {
      text = "0" + text;
    }
    return text;
  }

  // A Date as an <input type=datetime-local> value, from its local or UTC fields.
  function pickerValue(date, utc) {
    var get = function (local, universal) {
      return utc ? date[universal]() : date[local]();
    };
    var value = pad(get("getFullYear", "getUTCFullYear"), 4) + "-" +
      pad(get("getMonth", "getUTCMonth") + 1) + "-" + pad(get("getDate", "getUTCDate")) + "T" +
      pad(get("getHours", "getUTCHours")) + ":" + pad(get("getMinutes", "getUTCMinutes")) + ":" +
      pad(get("getSeconds", "getUTCSeconds"));
    var ms = get("getMilliseconds", "getUTCMilliseconds");
    return ms ? value + "." + pad(ms, 3) : value;
  }

  // A picker value read as UTC, or as the browser's local time; null when unreadable.
  function instant(value, utc) {
    if (!value) {
      return null;
    }
    // Without an offset, a date-time string is local time to Date; "Z" makes it UTC.
    var date = new Date(utc ? value + "Z" : value);
    return isNaN(date.getTime()) ? null : date;
  }

  function offsetName(date) {
    var minutes = -date.getTimezoneOffset();
    var sign = minutes < 0 ? "-" : "+";
    minutes = Math.abs(minutes);
    return "UTC" + sign + pad(Math.floor(minutes / 60)) + ":" + pad(minutes % 60);
  }

  function readChoice() {
    try {
      return window.localStorage.getItem(TZ_KEY) === "utc";
    } catch (e) {
      return false;
    }
  }

  function saveChoice(utc) {
    try {
      window.localStorage.setItem(TZ_KEY, utc ? "utc" : "local");
    } catch (e) {
      // Storage refused (private mode): the choice lasts for this page.
    }
  }

  function picker(form) {
    var inputs = Array.prototype.slice.call(form.querySelectorAll("input[data-instant]"));
    var toggle = form.querySelector("input[data-tz-utc]");
    if (!inputs.length || !toggle) {
      return;
    }
    var utc = readChoice();
    var zone = "";
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      zone = "";
    }
    // The instant each picker holds (the server sent UTC).
    var held = inputs.map(function (input) {
      return instant(input.value, true);
    });
    var show = function () {
      inputs.forEach(function (input, i) {
        input.value = held[i] ? pickerValue(held[i], utc) : "";
      });
      var name = utc ? "(UTC)" : "(" + (zone ? zone + ", " : "") + offsetName(new Date()) + ")";
      form.querySelectorAll(".tz-name").forEach(function (el) {
        el.textContent = name;
      });
      toggle.checked = utc;
    };
    inputs.forEach(function (input, i) {
      var read = function () {
        held[i] = instant(input.value, utc);
      };
      input.addEventListener("change", read);
      input.addEventListener("input", read);
    });
    toggle.addEventListener("change", function () {
      utc = toggle.checked;
      saveChoice(utc);
      show();
    });
    form.addEventListener("submit", function () {
      inputs.forEach(function (input, i) {
        var name = input.getAttribute("name");
        if (!name) {
          return;
        }
        // Sent as an instant in a hidden field; the picker itself is not sent.
        var sent = document.createElement("input");
        sent.type = "hidden";
        sent.name = name;
        sent.value = held[i] ? held[i].toISOString() : "";
        sent.dataset.sentInstant = name;
        form.appendChild(sent);
        input.dataset.name = name;
        input.removeAttribute("name");
      });
      // A From time replaces a quick range.
      var range = form.querySelector("input[type=hidden][name=range]");
      var from = inputs.filter(function (input) {
        return input.dataset.name === "from";
      })[0];
      if (range && from && held[inputs.indexOf(from)]) {
        range.remove();
      }
    });
    // Back from the next page (the browser kept this one): the pickers as they were.
    window.addEventListener("pageshow", function () {
      form.querySelectorAll("input[data-sent-instant]").forEach(function (sent) {
        sent.remove();
      });
      inputs.forEach(function (input) {
        if (input.dataset.name) {
          input.setAttribute("name", input.dataset.name);
        }
      });
    });
    toggle.closest(".tz-toggle").hidden = false;
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(picker);
    refreshAges(document);
    window.setInterval(function () {
      refreshAges(document);
    }, 30000);
    live();
    periodic();
  });
})();

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
