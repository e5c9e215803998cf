// Ferrule console, dashboards: places the widgets on the 12-column grid
// (CSSOM, which the CSP allows; never inline styles), draws their data from
// the page's source (the console's `/dashboards/{id}/data`, or the public
// shared API), keeps them live over `/live` (logged in) or by polling
// (shared), and in edit mode moves and resizes them with the pointer or
// the keyboard and saves the layout with the version it started from.
// Also reads an export file into the import form.
(function () {
  "use strict";

  var COLUMNS = 12;
  var MAX_ROW = 999;
  var MAX_HEIGHT = 24;
  var MAX_LIVE_POINTS = 2000;
  var SHARED_REFRESH_MS = 15000;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = String(text); }
    return e;
  }

  function setText(node, text) { if (node) { node.textContent = text; } }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function time(ts) { return new Date(ts).toLocaleString(); }

  // Numbers of a telemetry payload, flattened as the server does
  // ({"engine": {"rpm": 1}} → engine.rpm), in its three shapes.
  function numbers(payload) {
    var out = {};
    function walk(prefix, v) {
      if (typeof v === "number" && isFinite(v)) { out[prefix] = v; }
      else if (typeof v === "boolean") { out[prefix] = v ? 1 : 0; }
      else if (typeof v === "string") { out[prefix] = v; }
      else if (v && typeof v === "object" && !Array.isArray(v)) {
        Object.keys(v).forEach(function (k) { walk(prefix ? prefix + "." + k : k, v[k]); });
      }
    }
    (Array.isArray(payload) ? payload : [payload]).forEach(function (item) {
      if (item && typeof item === "object" && item.values && typeof item.values === "object") { walk("", item.values); }
      else { walk("", item); }
    });
    return out;
  }

  // ------------------------------------------------------------ placement

  function place(article, w) {
    article.style.gridColumn = (w.x + 1) + " / span " + w.w;
    article.style.gridRow = (w.y + 1) + " / span " + w.h;
    article.setAttribute("data-x", w.x);
    article.setAttribute("data-y", w.y);
    article.setAttribute("data-w", w.w);
    article.setAttribute("data-h", w.h);
    var pos = article.querySelector(".pos");
    if (pos) { pos.textContent = "column " + (w.x + 1) + ", row " + (w.y + 1) + ", " + w.w + " wide, " + w.h + " high"; }
  }

  // ------------------------------------------------------------- widgets

  // Each kind: draw(body, widget, data) once; live(widget, values, ts) after.
  var views = {};

  function keysOf(w) {
    if (w.type === "map" && (!w.keys || !w.keys.length)) { return ["lat", "lon"]; }
    return w.keys || [];
  }

  function valueList(body, w, latest) {
    var dl = el("dl", "widget-values");
    var cells = {};
    keysOf(w).forEach(function (k) {
      var pair = el("div");
      pair.appendChild(el("dt", "", k));
      var dd = el("dd", "", latest[k] ? latest[k].value : "–");
      dd.setAttribute("data-key", k);
      cells[k] = dd;
      pair.appendChild(dd);
      dl.appendChild(pair);
    });
    body.appendChild(dl);
    return function (values) {
      Object.keys(values).forEach(function (k) { if (cells[k]) { cells[k].textContent = String(values[k]); } });
    };
  }

  views.latest_value = function (body, w, d) { return valueList(body, w, d.latest || {}); };

  views.table = function (body, w, d) {
    var latest = d.latest || {};
    var wrap = el("div", "scroll");
    var table = el("table", "list");
    var head = el("tr");
    ["Key", "Value", "At"].forEach(function (h) { var th = el("th", "", h); th.setAttribute("scope", "col"); head.appendChild(th); });
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var tbody = el("tbody");
    var rows = {};
    keysOf(w).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("td", "", k));
      var v = el("td", "", latest[k] ? latest[k].value : "–");
      var at = el("td", "", latest[k] ? time(latest[k].ts) : "never");
      tr.appendChild(v); tr.appendChild(at);
      rows[k] = [v, at];
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    wrap.appendChild(table);
    body.appendChild(wrap);
    return function (values, ts) {
      Object.keys(values).forEach(function (k) {
        if (rows[k]) { rows[k][0].textContent = String(values[k]); rows[k][1].textContent = time(ts); }
      });
    };
  }

  views.gauge = function (body, w, d) {
    var key = keysOf(w)[0];
    var o = w.options || {};
    var min = typeof o.min === "number" ? o.min : 0;
    var max = typeof o.max === "number" ? o.max : 100;
    var meter = el("meter", "gauge");
    meter.min = min; meter.max = max;
    meter.setAttribute("aria-label", key + " from " + min + " to " + max);
    var text = el("p", "gauge-value");
    function show(v) {
      if (typeof v !== "number") { text.textContent = v === undefined ? "no value yet" : String(v); return; }
      meter.value = Math.max(min, Math.min(max, v));
      text.textContent = key + ": " + v + (o.unit ? " " + o.unit : "");
    }
    show(d.latest && d.latest[key] ? d.latest[key].value : undefined);
    body.appendChild(meter);
    body.appendChild(text);
    return function (values) { if (values[key] !== undefined) { show(values[key]); } };
  }

  // No tile server: the points on a plain equirectangular outline.
  views.map = function (body, w, d) {
    var keys = keysOf(w);
    var latest = d.latest || {};
    var svgNS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", "-180 -90 360 180");
    svg.setAttribute("class", "map");
    svg.setAttribute("role", "img");
    var frame = document.createElementNS(svgNS, "rect");
    frame.setAttribute("x", "-180"); frame.setAttribute("y", "-90");
    frame.setAttribute("width", "360"); frame.setAttribute("height", "180");
    frame.setAttribute("class", "map-frame");
    svg.appendChild(frame);
    for (var lon = -120; lon <= 120; lon += 60) {
      var v = document.createElementNS(svgNS, "line");
      v.setAttribute("x1", lon); v.setAttribute("x2", lon); v.setAttribute("y1", "-90"); v.setAttribute("y2", "90");
      v.setAttribute("class", "map-grid"); svg.appendChild(v);
    }
    for (var lat = -60; lat <= 60; lat += 30) {
      var h = document.createElementNS(svgNS, "line");
      h.setAttribute("y1", lat); h.setAttribute("y2", lat); h.setAttribute("x1", "-180"); h.setAttribute("x2", "180");
      h.setAttribute("class", "map-grid"); svg.appendChild(h);
    }
    var dot = document.createElementNS(svgNS, "circle");
    dot.setAttribute("r", "4");
    dot.setAttribute("class", "map-dot");
    var caption = el("p", "map-caption");
    var pos = { lat: latest[keys[0]] ? latest[keys[0]].value : null, lon: latest[keys[1]] ? latest[keys[1]].value : null };
    function show() {
      if (typeof pos.lat !== "number" || typeof pos.lon !== "number") {
        svg.setAttribute("aria-label", "No position yet");
        caption.textContent = "No position yet (keys " + keys.join(", ") + ").";
        if (dot.parentNode) { dot.parentNode.removeChild(dot); }
        return;
      }
      dot.setAttribute("cx", pos.lon);
      dot.setAttribute("cy", -pos.lat);
      if (!dot.parentNode) { svg.appendChild(dot); }
      var where = "latitude " + pos.lat + ", longitude " + pos.lon;
      svg.setAttribute("aria-label", (w.device || "device") + " at " + where);
      caption.textContent = where;
    }
    show();
    body.appendChild(svg);
    body.appendChild(caption);
    return function (values) {
      if (values[keys[0]] !== undefined) { pos.lat = values[keys[0]]; }
      if (values[keys[1]] !== undefined) { pos.lon = values[keys[1]]; }
      show();
    };
  }

  views.alarm_list = function (body, w, d) {
    var alarms = d.alarms || [];
    if (!alarms.length) { body.appendChild(el("p", "empty", "No open alarms.")); return null; }
    var ul = el("ul", "alarms");
    alarms.forEach(function (a) {
      var li = el("li");
      li.appendChild(el("span", "badge " + (a.state === "active" ? "off" : "on"), a.severity));
      li.appendChild(document.createTextNode(" " + a.type + (a.device ? " on " + a.device : "") +
        " (" + a.state + ", " + a.count + "×, last " + time(a.last_seen) + ")"));
      ul.appendChild(li);
    });
    body.appendChild(ul);
    return null;
  };

  views.line_chart = function (body, w, d) {
    var keys = keysOf(w);
    var history = d.history || {};
    if (typeof uPlot === "undefined") { body.appendChild(el("p", "empty", "Charts need uPlot, which did not load.")); return null; }
    // One x axis: the union of every key's timestamps.
    var byTs = {};
    keys.forEach(function (k, i) {
      (history[k] || []).forEach(function (p) {
        if (!byTs[p.ts]) { byTs[p.ts] = keys.map(function () { return null; }); }
        byTs[p.ts][i] = typeof p.value === "number" ? p.value : null;
      });
    });
    var xs = Object.keys(byTs).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs.map(function (t) { return t / 1000; })];
    keys.forEach(function (k, i) { data.push(xs.map(function (t) { return byTs[t][i]; })); });
    var rangeS = (w.range_ms || 3600000) / 1000;
    var chartBox = el("div", "chart");
    body.appendChild(chartBox);
    var status = el("p", "status", xs.length ? "" : "No history in this range yet; new values appear live.");
    body.appendChild(status);
    var palette = [cssVar("--accent", "#0a58ca"), cssVar("--danger", "#b3261e"), cssVar("--ok", "#146c2e"), "#8a5a00"];
    var axis = { stroke: cssVar("--muted", "#4f5863"), grid: { stroke: cssVar("--line", "#d5dae0") } };
    function size() {
      var r = body.getBoundingClientRect();
      return { width: Math.max(200, Math.floor(r.width || 300)), height: Math.max(120, Math.floor((r.height || 200) - 60)) };
    }
    var s = size();
    var chart = new uPlot({
      width: s.width, height: s.height,
      series: [{}].concat(keys.map(function (k, i) { return { label: k, stroke: palette[i % palette.length], width: 2, spanGaps: true }; })),
      axes: [axis, axis],
      // The widget's range up to now, however few points there are.
      scales: { x: { time: true, range: function () { var now = Date.now() / 1000; return [now - rangeS, now]; } } }
    }, data, chartBox);
    window.addEventListener("resize", function () { chart.setSize(size()); });
    return function (values, ts) {
      var any = keys.some(function (k) { return typeof values[k] === "number"; });
      if (!any) { return; }
      data[0].push(ts / 1000);
      keys.forEach(function (k, i) { data[i + 1].push(typeof values[k] === "number" ? values[k] : null); });
      if (data[0].length > MAX_LIVE_POINTS) { data.forEach(function (series) { series.shift(); }); }
      chart.setData(data);
      status.textContent = "";
    };
  };

  // ---------------------------------------------------------------- data

  function draw(grid, doc) {
    var updaters = {};
    (doc.widgets || []).forEach(function (w) {
      var article = document.getElementById("widget-" + w.id);
      if (!article) { return; }
      place(article, w);
      var view = views[w.type];
      if (!view) { return; }
      var body = article.querySelector("[data-body]");
      while (body.firstChild) { body.removeChild(body.firstChild); }
      var update = view(body, w, (doc.data || {})[w.id] || {});
      if (update && w.device) {
        (updaters[w.device] = updaters[w.device] || []).push(update);
      }
    });
    return updaters;
  }

  function load(grid, status) {
    return fetch(grid.getAttribute("data-source"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 404) { throw new Error("this dashboard is no longer available; reload the page"); }
        if (!r.ok) { throw new Error("the server answered " + r.status + "; reload the page to try again"); }
        return r.json();
      })
      .catch(function (e) { setText(status, "Could not load the widgets: " + e.message + "."); throw e; });
  }

  function live(updaters, status) {
    Object.keys(updaters).forEach(function (device) {
      var retry = 1000;
      function connect() {
        var scheme = location.protocol === "https:" ? "wss://" : "ws://";
        var ws = new WebSocket(scheme + location.host + "/live?filter=" + encodeURIComponent("devices/" + device + "/telemetry"));
        ws.onopen = function () { retry = 1000; };
        ws.onmessage = function (ev) {
          var frame;
          try { frame = JSON.parse(ev.data); } catch (e) { return; }
          if (frame.type !== "message" || frame.payload === undefined) { return; }
          var values = numbers(frame.payload);
          var ts = frame.ts || Date.now();
          updaters[device].forEach(function (u) { u(values, ts); });
          setText(status, "Live: last value " + new Date(ts).toLocaleTimeString() + ".");
        };
        ws.onclose = function () {
          setText(status, "Live stream closed; reconnecting…");
          setTimeout(connect, retry);
          retry = Math.min(retry * 2, 30000);
        };
      }
      connect();
    });
  }

  // ---------------------------------------------------------- edit mode

  function editor(grid, doc) {
    var panel = document.getElementById("layout-panel");
    if (!panel) { return; }
    var status = document.getElementById("layout-status");
    var saveButton = document.getElementById("save-layout");
    var byId = {};
    (doc.widgets || []).forEach(function (w) { byId[w.id] = w; });
    grid.classList.add("editing");

    function cell() {
      var cs = getComputedStyle(grid);
      var gap = parseFloat(cs.columnGap) || 0;
      var rowGap = parseFloat(cs.rowGap) || 0;
      var row = parseFloat(cs.gridAutoRows) || 72;
      return { col: (grid.clientWidth + gap) / COLUMNS, row: row + rowGap };
    }

    function clamp(w) {
      w.w = Math.max(1, Math.min(COLUMNS, w.w));
      w.h = Math.max(1, Math.min(MAX_HEIGHT, w.h));
      w.x = Math.max(0, Math.min(COLUMNS - w.w, w.x));
      w.y = Math.max(0, Math.min(MAX_ROW, w.y));
    }

    function changed(article, w) {
      clamp(w);
      place(article, w);
      setText(status, "Layout changed; not saved yet.");
    }

    Array.prototype.forEach.call(grid.querySelectorAll("[data-widget]"), function (article) {
      var w = byId[article.getAttribute("data-widget")];
      if (!w) { return; }
      article.tabIndex = 0;
      var pos = el("span", "pos");
      article.querySelector(".widget-head").appendChild(pos);
      var handle = el("span", "resize-handle");
      handle.setAttribute("aria-hidden", "true");
      article.appendChild(handle);
      place(article, w);

      article.addEventListener("keydown", function (ev) {
        if (ev.target !== article) { return; }
        var dx = { ArrowLeft: -1, ArrowRight: 1 }[ev.key] || 0;
        var dy = { ArrowUp: -1, ArrowDown: 1 }[ev.key] || 0;
        if (!dx && !dy) { return; }
        ev.preventDefault();
        if (ev.shiftKey) { w.w += dx; w.h += dy; } else { w.x += dx; w.y += dy; }
        changed(article, w);
      });

      function drag(start, resize) {
        start.preventDefault();
        var c = cell();
        var from = { x: w.x, y: w.y, w: w.w, h: w.h };
        var target = start.currentTarget;
        target.setPointerCapture(start.pointerId);
        article.classList.add("dragging");
        function move(ev) {
          var dc = Math.round((ev.clientX - start.clientX) / c.col);
          var dr = Math.round((ev.clientY - start.clientY) / c.row);
          if (resize) { w.w = from.w + dc; w.h = from.h + dr; w.x = from.x; w.y = from.y; }
          else { w.x = from.x + dc; w.y = from.y + dr; w.w = from.w; w.h = from.h; }
          changed(article, w);
        }
        function up() {
          article.classList.remove("dragging");
          target.removeEventListener("pointermove", move);
          target.removeEventListener("pointerup", up);
          target.removeEventListener("pointercancel", up);
        }
        target.addEventListener("pointermove", move);
        target.addEventListener("pointerup", up);
        target.addEventListener("pointercancel", up);
      }
      article.querySelector(".widget-head").addEventListener("pointerdown", function (ev) { drag(ev, false); });
      handle.addEventListener("pointerdown", function (ev) { drag(ev, true); });
    });

    saveButton.addEventListener("click", function () {
      saveButton.disabled = true;
      setText(status, "Saving…");
      fetch(panel.getAttribute("data-save"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.getAttribute("data-csrf") },
        body: JSON.stringify({ version: +panel.getAttribute("data-version"), widgets: doc.widgets })
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) { return { status: r.status, body: body }; });
      }).then(function (r) {
        if (r.status === 200) {
          panel.setAttribute("data-version", r.body.version);
          Array.prototype.forEach.call(document.querySelectorAll("input[data-version]"), function (i) { i.value = r.body.version; });
          setText(status, "Layout saved.");
        } else if (r.status === 412) {
          setText(status, "Not saved: this dashboard was changed meanwhile. Reload the page, then move the widgets again.");
        } else {
          setText(status, "Not saved: " + (r.body.error || "the server answered " + r.status) + ".");
        }
      }).catch(function () {
        setText(status, "Not saved: the server could not be reached. Check the connection and save again.");
      }).then(function () { saveButton.disabled = false; });
    });
  }

  function dashboard() {
    var grid = document.getElementById("grid");
    if (!grid) { return; }
    var status = document.getElementById("grid-status");
    // Placed at once from the page; drawn when the data arrives.
    Array.prototype.forEach.call(grid.querySelectorAll("[data-widget]"), function (a) {
      place(a, { x: +a.getAttribute("data-x"), y: +a.getAttribute("data-y"), w: +a.getAttribute("data-w"), h: +a.getAttribute("data-h") });
    });
    load(grid, status).then(function (doc) {
      grid.setAttribute("data-loaded", "1");
      var updaters = draw(grid, doc);
      if (grid.hasAttribute("data-live")) {
        live(updaters, status);
        editor(grid, doc);
      } else {
        // Shared: read again now and then (no live stream without a login).
        setInterval(function () {
          load(grid, status).then(function (again) { draw(grid, again); }, function () {});
        }, SHARED_REFRESH_MS);
      }
    }, function () {});
  }

  function importFile() {
    var input = document.getElementById("import-file");
    var area = document.getElementById("import-document");
    if (!input || !area) { return; }
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) { return; }
      file.text().then(function (text) { area.value = text; });
    });
  }

  // A command button's answer goes to its status line; htmx swaps nothing
  // on an error answer, so say it there.
  document.addEventListener("htmx:responseError", function (e) {
    var target = e.detail && e.detail.target;
    if (!target || !/-status$/.test(target.id || "")) { return; }
    var p = el("span", "error", "The command was refused (" + e.detail.xhr.status + "). Reload the page and try again.");
    p.setAttribute("role", "alert");
    target.replaceChildren(p);
  });

  dashboard();
  importFile();
})();
