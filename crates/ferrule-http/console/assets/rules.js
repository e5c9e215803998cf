// Ferrule console, rules editor: puts the caret where the server says the
// SQL is wrong (line and column, 1-based) — after a save, and after a dry
// run whose result names the place. No inline script (the CSP forbids it).
(function () {
  "use strict";

  function caretAt(area, line, column) {
    var lines = area.value.split("\n");
    var offset = 0;
    for (var i = 0; i < Math.min(line - 1, lines.length); i++) {
      offset += lines[i].length + 1;
    }
    offset += Math.max(0, column - 1);
    offset = Math.min(offset, area.value.length);
    area.focus();
    area.setSelectionRange(offset, offset);
  }

  function fromSave() {
    var area = document.getElementById("rule-sql");
    if (!area || !area.dataset.errorLine) { return; }
    caretAt(area, +area.dataset.errorLine, +area.dataset.errorColumn || 1);
  }

  function fromDryRun() {
    var area = document.getElementById("rule-sql");
    var note = document.querySelector("#dry-run-out [data-sql-line]");
    if (!area) { return; }
    if (note && note.dataset.sqlLine) {
      area.setAttribute("aria-invalid", "true");
      caretAt(area, +note.dataset.sqlLine, +note.dataset.sqlColumn || 1);
    } else if (!document.querySelector("#dry-run-out .error")) {
      // The draft compiles now: the error shown since the last save is
      // out of date.
      area.removeAttribute("aria-invalid");
      var stale = document.getElementById("rule-sql-error");
      if (stale) {
        stale.remove();
        area.setAttribute("aria-describedby", "rule-sql-help");
      }
    }
  }

  // Deferred: the document is parsed when this runs.
  fromSave();
  // htmx swaps nothing on an error answer: say what happened and what to do.
  document.addEventListener("htmx:responseError", function (e) {
    var out = document.getElementById("dry-run-out");
    if (!out || !e.detail || !e.detail.xhr) { return; }
    var p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = "The dry run was refused (" + e.detail.xhr.status + "). Reload the page and try again.";
    out.replaceChildren(p);
  });
  document.addEventListener("htmx:sendError", function () {
    var out = document.getElementById("dry-run-out");
    if (out) { out.textContent = "The server could not be reached. Check the connection and try again."; }
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target && e.target.id === "dry-run-out") { fromDryRun(); }
  });
})();
