// Ferrule console: the few things htmx does not do — the live chart over
// the console's WebSocket and the history chart. No inline script anywhere
// (the page's CSP forbids it); this file finds its elements by id.
(function () {
  "use strict";

  var MAX_LIVE_POINTS = 300;

  function chartWidth(el) {
    return Math.max(280, Math.floor(el.getBoundingClientRect().width || 600));
  }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function makeChart(el, label, data, xRange) {
    var stroke = cssVar("--accent", "#0a58ca");
    var axis = { stroke: cssVar("--muted", "#4f5863"), grid: { stroke: cssVar("--line", "#d5dae0") } };
    return new uPlot({
      width: chartWidth(el),
      height: 220,
      series: [{}, { label: label, stroke: stroke, width: 2, spanGaps: true }],
      axes: [axis, axis],
      scales: { x: xRange ? { time: true, range: function () { return xRange; } } : { time: true } }
    }, data, el);
  }

  // Numbers in a telemetry payload, flattened as the server does
  // ({"engine": {"rpm": 1}} → engine.rpm). Accepts the three shapes.
  function numbers(payload) {
    var out = {};
    function walk(prefix, v) {
      if (typeof v === "number" && isFinite(v)) { out[prefix] = v; }
      else if (typeof v === "boolean") { out[prefix] = v ? 1 : 0; }
      else if (v && typeof v === "object" && !Array.isArray(v)) {
        Object.keys(v).forEach(function (k) { walk(prefix ? prefix + "." + k : k, v[k]); });
      }
    }
    var items = Array.isArray(payload) ? payload : [payload];
    items.forEach(function (item) {
      if (item && typeof item === "object" && item.values && typeof item.values === "object") {
        walk("", item.values);
      } else {
        walk("", item);
      }
    });
    return out;
  }

  function setText(el, text) { if (el) { el.textContent = text; } }

  function live() {
    var el = document.getElementById("live-chart");
    if (!el || typeof uPlot === "undefined") { return; }
    var device = el.getAttribute("data-device");
    var status = document.getElementById("live-status");
    var valuesEl = document.getElementById("live-values");
    var chart = null, chartKey = null, xs = [], ys = [];
    // Values rendered with the page (the latest stored) update in place.
    var shown = {};
    Array.prototype.forEach.call(valuesEl.querySelectorAll("dd[data-key]"), function (dd) {
      shown[dd.getAttribute("data-key")] = dd;
    });
    var retry = 1000;

    function showValue(key, value) {
      var dd = shown[key];
      if (!dd) {
        var pair = document.createElement("div");
        var dt = document.createElement("dt");
        dt.textContent = key;
        dd = document.createElement("dd");
        dd.setAttribute("data-key", key);
        pair.appendChild(dt);
        pair.appendChild(dd);
        valuesEl.appendChild(pair);
        shown[key] = dd;
      }
      dd.textContent = String(value);
    }

    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var filter = encodeURIComponent("devices/" + device + "/telemetry");
      var ws = new WebSocket(scheme + location.host + "/live?filter=" + filter);
      ws.onopen = function () { retry = 1000; setText(status, "Live: waiting for telemetry from " + device + "."); };
      ws.onmessage = function (ev) {
        var frame;
        try { frame = JSON.parse(ev.data); } catch (e) { return; }
        if (frame.type === "subscribed") {
          var refused = (frame.filters || []).filter(function (f) { return !f.granted; });
          if (refused.length) { setText(status, "Live stream refused: " + (refused[0].reason || "no read access")); }
          return;
        }
        if (frame.type !== "message" || frame.payload === undefined) { return; }
        var values = numbers(frame.payload);
        var keys = Object.keys(values);
        if (!keys.length) { return; }
        keys.forEach(function (k) { showValue(k, values[k]); });
        if (chartKey === null) { chartKey = keys[0]; }
        if (values[chartKey] === undefined) { return; }
        xs.push((frame.ts || Date.now()) / 1000);
        ys.push(values[chartKey]);
        if (xs.length > MAX_LIVE_POINTS) { xs.shift(); ys.shift(); }
        if (!chart) { chart = makeChart(el, chartKey, [xs, ys]); }
        else { chart.setData([xs, ys]); }
        setText(status, "Live: last message " + new Date(frame.ts || Date.now()).toLocaleTimeString() + ".");
      };
      ws.onclose = function (ev) {
        setText(status, "Live stream closed" + (ev.reason ? " (" + ev.reason + ")" : "") + "; reconnecting…");
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      };
    }
    connect();
    window.addEventListener("resize", function () { if (chart) { chart.setSize({ width: chartWidth(el), height: 220 }); } });
  }

  function history() {
    var form = document.getElementById("history-form");
    var el = document.getElementById("history-chart");
    if (!form || !el || typeof uPlot === "undefined") { return; }
    var status = document.getElementById("history-status");
    var chart = null;

    function load() {
      var params = new URLSearchParams(new FormData(form));
      setText(status, "Loading…");
      fetch(form.getAttribute("data-url") + "?" + params.toString(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("the server answered " + r.status); }
          return r.json();
        })
        .then(function (d) {
          if (chart) { chart.destroy(); chart = null; }
          if (!d.key) { setText(status, "No telemetry yet."); return; }
          var n = d.values.filter(function (v) { return v !== null; }).length;
          setText(status, n + (n === 1 ? " point" : " points") + " of " + d.key + ", averaged per " + d.interval + ".");
          chart = makeChart(el, d.key + " (avg per " + d.interval + ")", [d.ts, d.values], [d.from, d.to]);
        })
        .catch(function (e) { setText(status, "Could not load the history: " + e.message + ". Try again."); });
    }
    form.addEventListener("submit", function (ev) { ev.preventDefault(); load(); });
    form.addEventListener("change", load);
    load();
  }

  // The overview's small charts: each refresh of the tiles (htmx, every
  // 5 s) adds a sample; the charts sit outside the swapped tiles so they
  // keep their points.
  function overviewSparks() {
    var stats = document.getElementById("stats");
    var rateEl = document.getElementById("spark-rate");
    var onlineEl = document.getElementById("spark-online");
    if (!stats || !rateEl || !onlineEl || typeof uPlot === "undefined") { return; }
    var MAX = 120;
    var xs = [], rate = [], online = [];
    var charts = null;

    function spark(el, label, ys) {
      var axis = { stroke: cssVar("--muted", "#4f5863"), grid: { show: false }, size: 40 };
      return new uPlot({
        width: chartWidth(el), height: 90, legend: { show: false }, cursor: { show: false },
        series: [{}, { label: label, stroke: cssVar("--accent", "#0a58ca"), width: 2, spanGaps: true }],
        axes: [{ show: false }, axis], scales: { x: { time: true } }
      }, [xs, ys], el);
    }

    function sample() {
      var tiles = stats.querySelector("dl.tiles");
      if (!tiles) { return; }
      var r = tiles.getAttribute("data-rate");
      xs.push(Date.now() / 1000);
      rate.push(r === "" || r === null ? null : Number(r));
      online.push(Number(tiles.getAttribute("data-online")));
      if (xs.length > MAX) { xs.shift(); rate.shift(); online.shift(); }
      if (!charts) {
        charts = [spark(rateEl, "Messages per second", rate), spark(onlineEl, "Devices online", online)];
      } else {
        charts[0].setData([xs, rate]);
        charts[1].setData([xs, online]);
      }
    }
    sample();
    document.body.addEventListener("htmx:afterSwap", function (ev) {
      if (ev.detail && ev.detail.target === stats) { sample(); }
    });
    window.addEventListener("resize", function () {
      if (!charts) { return; }
      charts[0].setSize({ width: chartWidth(rateEl), height: 90 });
      charts[1].setSize({ width: chartWidth(onlineEl), height: 90 });
    });
  }

  // A JSON field the server could not parse (profiles): the caret goes
  // where parsing stopped (line and column, 1-based).
  function jsonErrorCaret() {
    var area = document.querySelector("textarea[data-error-line]");
    if (!area) { return; }
    var line = +area.dataset.errorLine, column = +area.dataset.errorColumn || 1;
    var lines = area.value.split("\n"), offset = 0;
    for (var i = 0; i < Math.min(line - 1, lines.length); i++) { offset += lines[i].length + 1; }
    offset = Math.min(offset + Math.max(0, column - 1), area.value.length);
    area.focus();
    area.setSelectionRange(offset, offset);
  }

  document.addEventListener("DOMContentLoaded", function () {
    live(); history(); overviewSparks(); jsonErrorCaret();
  });
})();
