// Ferrule console, apps: sends a bundle (the zip as it is, not a form) with
// the page's CSRF token, shows its size and the upload's progress, and puts
// the server's answer next to the field it is about.
(function () {
  "use strict";

  function csrf() {
    return document.body.getAttribute("data-csrf") || "";
  }

  function size(n) {
    if (n < 1024) { return n + " bytes"; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + " KiB"; }
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function fieldError(input, note, text) {
    if (text) {
      input.setAttribute("aria-invalid", "true");
      note.textContent = text;
      note.classList.add("field-error");
    } else {
      input.removeAttribute("aria-invalid");
      note.classList.remove("field-error");
    }
  }

  // Sends `file` to `url`; calls done(status, answer).
  function send(url, file, progress, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("content-type", "application/zip");
    xhr.setRequestHeader("x-csrf-token", csrf());
    if (progress) {
      progress.hidden = false;
      progress.value = 0;
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { progress.value = Math.round(100 * e.loaded / e.total); }
      });
    }
    xhr.addEventListener("load", function () {
      var answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch (e) {
        answer = { field: "form", error: "The server answered " + xhr.status + ": reload the page and try again." };
      }
      done(xhr.status, answer);
    });
    xhr.addEventListener("error", function () {
      done(0, { field: "form", error: "The upload did not reach the server: check the connection and try again." });
    });
    xhr.send(file);
  }

  function checkSize(file, max) {
    if (!file) { return "Choose a zip file."; }
    if (file.size > max) { return "The file is " + size(file.size) + ", more than " + size(max) + ": make it smaller."; }
    return "";
  }

  var upload = document.getElementById("app-upload");
  if (upload) {
    var max = Number(upload.getAttribute("data-max"));
    var input = document.getElementById("app-bundle");
    var note = document.getElementById("app-bundle-status");
    var formError = document.getElementById("upload-form-error");
    var progress = document.getElementById("app-progress");
    var fields = { id: document.getElementById("app-id"), name: document.getElementById("app-name"), role: document.getElementById("app-role") };
    input.addEventListener("change", function () {
      var f = input.files[0];
      fieldError(input, note, "");
      note.textContent = f ? f.name + ": " + size(f.size) : "";
      var tooBig = f ? checkSize(f, max) : "";
      if (tooBig) { fieldError(input, note, tooBig); }
    });
    upload.addEventListener("submit", function (e) {
      e.preventDefault();
      var f = input.files[0];
      var wrong = checkSize(f, max);
      if (wrong) { fieldError(input, note, wrong); input.focus(); return; }
      formError.hidden = true;
      Object.keys(fields).forEach(function (k) { fields[k].removeAttribute("aria-invalid"); });
      var old = upload.querySelectorAll(".field-error.server");
      for (var i = 0; i < old.length; i++) { old[i].remove(); }
      var q = "?id=" + encodeURIComponent(fields.id.value.trim()) +
        "&name=" + encodeURIComponent(fields.name.value.trim()) +
        "&role=" + encodeURIComponent(fields.role.value);
      note.textContent = "Uploading " + size(f.size) + "…";
      upload.querySelector("button[type=submit]").disabled = true;
      send("/apps/-/upload" + q, f, progress, function (status, answer) {
        upload.querySelector("button[type=submit]").disabled = false;
        progress.hidden = true;
        if (status === 200) { window.location.assign("/apps"); return; }
        if (answer.field === "bundle") {
          fieldError(input, note, answer.error);
          input.focus();
        } else if (fields[answer.field]) {
          var target = fields[answer.field];
          var p = document.createElement("p");
          p.className = "field-error server";
          p.id = target.id + "-error";
          p.textContent = answer.error;
          target.setAttribute("aria-invalid", "true");
          target.setAttribute("aria-describedby", p.id);
          target.parentNode.appendChild(p);
          note.textContent = "";
          target.focus();
        } else {
          formError.textContent = answer.error;
          formError.hidden = false;
          note.textContent = "";
        }
      });
    });
  }

  var replaces = document.querySelectorAll("form.app-replace");
  Array.prototype.forEach.call(replaces, function (form) {
    var input = form.querySelector("input[type=file]");
    var note = form.querySelector(".field-note");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var f = input.files[0];
      var wrong = checkSize(f, upload ? Number(upload.getAttribute("data-max")) : 10485760);
      if (wrong) { fieldError(input, note, wrong); input.focus(); return; }
      fieldError(input, note, "");
      note.textContent = "Uploading " + size(f.size) + "…";
      send(form.getAttribute("action"), f, null, function (status, answer) {
        if (status === 200) { window.location.assign("/apps"); return; }
        fieldError(input, note, answer.error);
        input.focus();
      });
    });
  });

  var deletes = document.querySelectorAll("form.app-delete");
  Array.prototype.forEach.call(deletes, function (form) {
    form.addEventListener("submit", function (e) {
      var name = form.getAttribute("data-name");
      if (!window.confirm("Delete " + name + "? Its files and its API key go; pages open now stop working.")) {
        e.preventDefault();
      }
    });
  });
})();
