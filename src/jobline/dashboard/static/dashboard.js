// jobline dashboard: confirm steps and live updates. Everything works without this file (forms
// post to the server, which asks for confirmation itself); with it, confirmations are a dialog
// and the marked parts of a page follow the server's live stream.
(function () {
  "use strict";

  // -- confirm steps -----------------------------------------------------------------------
  var dialog = document.getElementById("confirm-dialog");

  function ask(text, then) {
    if (!dialog || typeof dialog.showModal !== "function") { if (window.confirm(text)) then(); return; }
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-yes").focus();
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "yes") then();
    });
  }

  function submitConfirmed(form) {
    var input = document.createElement("input");
    input.type = "hidden"; input.name = "confirm"; input.value = "yes";
    form.appendChild(input);
    form.submit();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("data-confirm")) {
      event.preventDefault();
      ask(form.getAttribute("data-confirm"), function () { submitConfirmed(form); });
    } else if (form.hasAttribute("data-confirm-bulk")) {
      event.preventDefault();
      var picked = form.querySelectorAll('input[name="id"]:checked').length;
      var select = form.querySelector('select[name="bulk_action"]');
      var verb = select.options[select.selectedIndex].text;
      if (!picked) { ask("Select the jobs to act on first.", function () {}); return; }
      ask(verb + " " + picked + " selected job" + (picked === 1 ? "" : "s") + "?", function () { submitConfirmed(form); });
    }
  });

  // -- live updates --------------------------------------------------------------------------
  var regions = document.querySelectorAll("[data-live]");
  var toggle = document.getElementById("live-toggle");
  if (!regions.length || !toggle || !window.EventSource) return;
  var meta = document.querySelector('meta[name="jobline-live"]');
  var digest = meta ? meta.content : "";
  var source = null;
  var pending = null;
  var paused = window.localStorage && localStorage.getItem("jobline-live-paused") === "1";

  function selecting() {
    return document.querySelector('[data-live] input[name="id"]:checked') !== null;
  }

  function apply(update) {
    if (selecting()) { pending = update; document.getElementById("held").hidden = false; return; }
    pending = null;
    var held = document.getElementById("held");
    if (held) held.hidden = true;
    Object.keys(update.regions).forEach(function (id) {
      var el = document.querySelector('[data-live="' + id + '"]');
      if (el) el.innerHTML = update.regions[id];
    });
    digest = update.digest;
  }

  function connect() {
    if (source || paused) return;
    var path = location.pathname + location.search;
    source = new EventSource("/events?path=" + encodeURIComponent(path) + "&digest=" + encodeURIComponent(digest));
    source.addEventListener("update", function (e) { apply(JSON.parse(e.data)); });
    source.addEventListener("bye", function () { disconnect(); connect(); });
    source.addEventListener("signed-out", function () { disconnect(); location.reload(); });
    source.addEventListener("open", function () { toggle.classList.remove("stale"); });
    source.addEventListener("error", function () { toggle.classList.add("stale"); });
  }

  function disconnect() {
    if (source) { source.close(); source = null; }
  }

  function show() {
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    toggle.querySelector(".label").textContent = paused ? "Paused" : "Live";
    toggle.title = paused ? "Live updates are paused: click to resume" : "Live updates are on: click to pause";
  }

  toggle.hidden = false;
  show();
  toggle.addEventListener("click", function () {
    paused = !paused;
    if (window.localStorage) localStorage.setItem("jobline-live-paused", paused ? "1" : "0");
    show();
    if (paused) disconnect(); else connect();
  });
  document.addEventListener("change", function (e) {
    if (e.target.name === "id" && pending && !selecting()) apply(pending);
  });
  connect();
})();
